package distlog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// RaftRPC is the first byte of every Raft connection on the node's shared RPC
// port. The agent's connection multiplexer routes connections that start with
// it to the StreamLayer and everything else to gRPC; a gRPC (HTTP/2)
// connection can never start with this byte, because its preface starts with
// "PRI" and a TLS record starts with 0x16.
const RaftRPC = 1

// defaultHandshakeTimeout bounds the header read and the TLS handshake of one
// connection when the caller gave no timeout of its own, so a peer that
// connects and then stalls cannot hold a connection forever.
const defaultHandshakeTimeout = 10 * time.Second

// StreamLayer carries Raft's peer traffic: it implements raft.StreamLayer over
// a listener that the agent shares with gRPC. Dial writes the RaftRPC byte and
// then runs a TLS client handshake with the peer configuration; Accept hands
// out connections that check that byte and run the TLS server handshake
// (client certificate required and verified) on first use, within a deadline.
//
// With both TLS configurations nil the layer speaks plain TCP after the
// header byte; that is meant for tests and never for a real deployment.
type StreamLayer struct {
	ln        net.Listener
	serverTLS *tls.Config // nil: plain TCP; else ClientAuth forced to RequireAndVerifyClientCert
	peerTLS   *tls.Config // nil: plain TCP

	// handshakeTimeout bounds the header byte and TLS handshake of an
	// accepted connection; tests shorten it.
	handshakeTimeout time.Duration
	// observe, when set, hears the outcome of every TLS handshake.
	observe func(HandshakeResult)

	// mu guards accepted and closed. Raft's transport does not close the
	// connections it accepted when it shuts down (their goroutines would
	// block on reads until the peers hang up), so Close closes them.
	mu       sync.Mutex
	accepted map[*acceptedConn]struct{}
	closed   bool
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// HandshakeResult is the outcome of one TLS handshake of a StreamLayer with a
// Raft peer, as a handshake observer hears it.
type HandshakeResult struct {
	// Peer is the address dialed when Dialing, else the remote address of
	// the accepted connection (its port is ephemeral).
	Peer string
	// Dialing is true for a connection this node opened (it presented its
	// peer certificate and verified the other node's server certificate),
	// false for one it accepted (it served its server certificate and
	// verified the dialer's peer certificate).
	Dialing bool
	// Certificate is the leaf certificate the other side presented,
	// verified or not; nil when it presented none.
	Certificate *x509.Certificate
	// Err is nil when the handshake succeeded, else why it failed.
	Err error
}

// StreamLayerOption configures a StreamLayer.
type StreamLayerOption func(*StreamLayer)

// WithHandshakeObserver calls observe after every TLS handshake with a peer,
// failed or not, on the goroutine of the connection: observe must be quick
// and must not block. An operator learns from it why peers cannot talk (the
// agent logs each peer's failure once and reports it on /readyz); Raft itself
// only sees the failed RPCs and retries them.
func WithHandshakeObserver(observe func(HandshakeResult)) StreamLayerOption {
	return func(s *StreamLayer) { s.observe = observe }
}

// NewStreamLayer returns a StreamLayer that accepts on ln and dials peers.
// serverTLS is used for connections accepted on ln: it is cloned and its
// ClientAuth is forced to tls.RequireAndVerifyClientCert, because a Raft peer
// that cannot prove who it is must never reach the log. peerTLS is used when
// dialing: it must hold this node's client certificate and the CA that signed
// the peers' server certificates; when its ServerName is empty, the host of the
// dialed address is verified. ln may be a cmux branch already matched on the
// RaftRPC byte (cmux replays the bytes it matched on, so the byte is still
// there to be read and checked).
//
// As in the seed book, the two configurations play different parts:
// serverTLS holds the server certificate (with the IP and DNS names peers
// dial) and the CA that verifies the dialers' peer certificates, while peerTLS
// holds the peer certificate, which may be a plain client certificate (the
// book uses its root client certificate).
func NewStreamLayer(ln net.Listener, serverTLS, peerTLS *tls.Config, opts ...StreamLayerOption) *StreamLayer {
	s := &StreamLayer{ln: ln, handshakeTimeout: defaultHandshakeTimeout, accepted: map[*acceptedConn]struct{}{}}
	for _, opt := range opts {
		opt(s)
	}
	if serverTLS != nil {
		s.serverTLS = serverTLS.Clone()
		s.serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if peerTLS != nil {
		s.peerTLS = peerTLS.Clone()
	}
	return s
}

// Dial connects to a peer's RPC port, writes the RaftRPC header byte and, when
// the layer has a peer TLS configuration, completes the TLS handshake, all
// within timeout (0 means a default of 10 s).
func (s *StreamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		return nil, fmt.Errorf("distlog: dial raft peer %s: %w", addr, err)
	}
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, errors.Join(fmt.Errorf("distlog: dial raft peer %s: %w", addr, err), conn.Close())
	}
	if _, err := conn.Write([]byte{RaftRPC}); err != nil {
		return nil, errors.Join(fmt.Errorf("distlog: write raft header to %s: %w", addr, err), conn.Close())
	}
	var out net.Conn = conn
	if s.peerTLS != nil {
		cfg := s.peerTLS
		if cfg.ServerName == "" {
			host, _, err := net.SplitHostPort(string(addr))
			if err != nil {
				return nil, errors.Join(fmt.Errorf("distlog: raft peer address %q: %w", addr, err), conn.Close())
			}
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		tlsConn := tls.Client(conn, cfg)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			s.report(string(addr), true, tlsConn, err)
			return nil, errors.Join(fmt.Errorf("distlog: tls handshake with raft peer %s: %w", addr, err), conn.Close())
		}
		// With TLS 1.3 the client's handshake ends before the peer has
		// checked the client's certificate: a refusal arrives as an alert on
		// the first read, which dialedConn reports.
		out = &dialedConn{Conn: tlsConn, layer: s, peer: string(addr)}
	}
	// Raft sets its own deadlines per RPC from here on.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, errors.Join(fmt.Errorf("distlog: dial raft peer %s: %w", addr, err), out.Close())
	}
	return out, nil
}

// Accept waits for the next connection. The header byte check and the TLS
// handshake run on the connection's first Read or Write, that is on the
// goroutine Raft starts for the connection, so one slow or hostile client
// cannot stall Accept for everybody else; both are bounded by a deadline and a
// connection that fails them returns the error from every Read and Write.
func (s *StreamLayer) Accept() (net.Conn, error) {
	conn, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	c := &acceptedConn{layer: s, raw: conn, active: conn, timeout: s.handshakeTimeout}
	if s.serverTLS != nil {
		c.tls = tls.Server(conn, s.serverTLS)
		c.active = c.tls
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.Join(net.ErrClosed, conn.Close())
	}
	s.accepted[c] = struct{}{}
	return c, nil
}

// Close closes the listener and every accepted connection still open; their
// next (or pending) Read returns io.EOF, which Raft takes as a clean hang-up.
// It is idempotent.
func (s *StreamLayer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*acceptedConn, 0, len(s.accepted))
	for c := range s.accepted {
		conns = append(conns, c)
	}
	clear(s.accepted)
	s.mu.Unlock()
	for _, c := range conns {
		c.closedByLayer.Store(true)
		_ = c.active.Close() // the peer may be gone already; nothing to report
	}
	return err
}

// report tells the handshake observer, if any, how a handshake with peer
// went.
func (s *StreamLayer) report(peer string, dialing bool, conn *tls.Conn, err error) {
	if s.observe == nil {
		return
	}
	result := HandshakeResult{Peer: peer, Dialing: dialing, Err: err}
	var verifyErr *tls.CertificateVerificationError
	if errors.As(err, &verifyErr) && len(verifyErr.UnverifiedCertificates) > 0 {
		result.Certificate = verifyErr.UnverifiedCertificates[0]
	} else if certs := conn.ConnectionState().PeerCertificates; len(certs) > 0 {
		result.Certificate = certs[0]
	}
	s.observe(result)
}

// dialedConn is a TLS connection this layer dialed. Its first read settles
// whether the peer accepted this node's certificate, which TLS 1.3 tells
// only then; it reports that outcome to the handshake observer.
type dialedConn struct {
	*tls.Conn
	layer    *StreamLayer
	peer     string
	reported atomic.Bool
}

// Read implements net.Conn.
func (c *dialedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.reported.Load() {
		return n, err
	}
	var opErr *net.OpError
	switch {
	case err != nil && errors.As(err, &opErr) && opErr.Op == "remote error":
		// The peer refused the handshake (an alert): our certificate.
		if c.reported.CompareAndSwap(false, true) {
			c.layer.report(c.peer, true, c.Conn, fmt.Errorf("the peer refused this node's certificate: %w", err))
		}
	case n > 0:
		if c.reported.CompareAndSwap(false, true) {
			c.layer.report(c.peer, true, c.Conn, nil)
		}
	}
	return n, err
}

// forget drops a connection closed by its owner from the accepted set.
func (s *StreamLayer) forget(c *acceptedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.accepted, c)
}

// Addr returns the listener's address.
func (s *StreamLayer) Addr() net.Addr {
	return s.ln.Addr()
}

// ErrBadRaftHeader is returned from the first Read or Write of an accepted
// connection whose first byte is not RaftRPC.
var ErrBadRaftHeader = errors.New("distlog: connection does not start with the raft header byte")

// acceptedConn is an accepted connection whose header check and TLS server
// handshake run once, on first use.
type acceptedConn struct {
	layer   *StreamLayer
	raw     net.Conn
	tls     *tls.Conn // nil in plain mode; built at accept time so Close never races setup
	active  net.Conn  // tls, or raw in plain mode; fixed at accept time
	timeout time.Duration

	once    sync.Once
	initErr error // set once by init

	// closedByLayer is set when StreamLayer.Close closed the connection.
	closedByLayer atomic.Bool
}

var _ net.Conn = (*acceptedConn)(nil)

// init reads and checks the header byte, then runs the TLS handshake, within
// the handshake timeout.
func (c *acceptedConn) init() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		deadline, _ := ctx.Deadline()
		if err := c.raw.SetDeadline(deadline); err != nil {
			c.initErr = fmt.Errorf("distlog: raft connection from %s: %w", c.raw.RemoteAddr(), err)
			return
		}
		header := make([]byte, 1)
		if _, err := io.ReadFull(c.raw, header); err != nil {
			c.initErr = fmt.Errorf("distlog: read raft header from %s: %w", c.raw.RemoteAddr(), err)
			return
		}
		if header[0] != RaftRPC {
			c.initErr = fmt.Errorf("%w: got %#x from %s", ErrBadRaftHeader, header[0], c.raw.RemoteAddr())
			return
		}
		if c.tls != nil {
			err := c.tls.HandshakeContext(ctx)
			if !c.closedByLayer.Load() {
				c.layer.report(c.raw.RemoteAddr().String(), false, c.tls, err)
			}
			if err != nil {
				c.initErr = fmt.Errorf("distlog: tls handshake with raft peer %s: %w", c.raw.RemoteAddr(), err)
				return
			}
		}
		if err := c.raw.SetDeadline(time.Time{}); err != nil {
			c.initErr = fmt.Errorf("distlog: raft connection from %s: %w", c.raw.RemoteAddr(), err)
		}
	})
	return c.initErr
}

// Read implements net.Conn.
func (c *acceptedConn) Read(b []byte) (int, error) {
	if err := c.init(); err != nil {
		return 0, c.closedErr(err)
	}
	n, err := c.active.Read(b)
	return n, c.closedErr(err)
}

// closedErr turns the error of a connection that StreamLayer.Close closed
// into io.EOF: a shutdown, not a failure worth logging.
func (c *acceptedConn) closedErr(err error) error {
	if err != nil && c.closedByLayer.Load() {
		return io.EOF
	}
	return err
}

// Write implements net.Conn.
func (c *acceptedConn) Write(b []byte) (int, error) {
	if err := c.init(); err != nil {
		return 0, err
	}
	return c.active.Write(b)
}

// Close implements net.Conn; it may run concurrently with init, whose reads
// then fail.
func (c *acceptedConn) Close() error {
	c.layer.forget(c)
	return c.active.Close()
}

// LocalAddr implements net.Conn.
func (c *acceptedConn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *acceptedConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *acceptedConn) SetDeadline(t time.Time) error { return c.active.SetDeadline(t) }

// SetReadDeadline implements net.Conn.
func (c *acceptedConn) SetReadDeadline(t time.Time) error { return c.active.SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *acceptedConn) SetWriteDeadline(t time.Time) error { return c.active.SetWriteDeadline(t) }

// ConnectionState runs the header check and handshake if they have not run
// yet and returns the TLS state, which names the peer's certificate; ok is
// false in plain mode or when the handshake failed.
func (c *acceptedConn) ConnectionState() (state tls.ConnectionState, ok bool) {
	if c.tls == nil || c.init() != nil {
		return tls.ConnectionState{}, false
	}
	return c.tls.ConnectionState(), true
}
