package distlog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// testPKI is a throwaway CA with one node certificate (server and client
// usage, valid for 127.0.0.1), built in memory so tests never depend on
// `make gencert`.
type testPKI struct {
	caPool *x509.CertPool
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	node   tls.Certificate
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "proglog test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	p := &testPKI{caPool: pool, ca: ca, caKey: caKey}
	p.node = p.issue(t, "node", 2, ca, caKey)
	return p
}

// issue signs a certificate for 127.0.0.1 usable as server and client.
func (p *testPKI) issue(t testing.TB, cn string, serial int64, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serverTLS is the configuration for accepting peers. It deliberately leaves
// ClientAuth unset: NewStreamLayer must require client certificates itself.
func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.node}, ClientCAs: p.caPool, MinVersion: tls.VersionTLS12}
}

// peerTLS is the configuration for dialing peers.
func (p *testPKI) peerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.node}, RootCAs: p.caPool, MinVersion: tls.VersionTLS12}
}

func newTestListener(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// acceptOne accepts one connection on s in a goroutine the test owns and,
// like Raft's per-connection goroutine, starts using it at once so the lazy
// header check and handshake run while the dialer waits for them.
func acceptOne(t *testing.T, s *StreamLayer) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := s.Accept()
		if err != nil {
			close(ch)
			return
		}
		if ac, ok := conn.(*acceptedConn); ok {
			_ = ac.init() // the test reads the outcome from the conn
		}
		ch <- conn
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return ch
}

func receiveConn(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case conn, ok := <-ch:
		require.True(t, ok, "Accept failed")
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return within 5s")
		return nil
	}
}

func TestStreamLayerRoundTrip(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name      string
		serverTLS *tls.Config
		peerTLS   *tls.Config
	}{
		{name: "mutual TLS", serverTLS: pki.serverTLS(), peerTLS: pki.peerTLS()},
		{name: "plain TCP", serverTLS: nil, peerTLS: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := NewStreamLayer(newTestListener(t), tt.serverTLS, nil)
			client := NewStreamLayer(newTestListener(t), nil, tt.peerTLS)
			accepted := acceptOne(t, server)

			out, err := client.Dial(raft.ServerAddress(server.Addr().String()), 5*time.Second)
			require.NoError(t, err)
			defer func() { _ = out.Close() }()
			in := receiveConn(t, accepted)

			_, err = out.Write([]byte("ping"))
			require.NoError(t, err)
			got := make([]byte, 4)
			_, err = io.ReadFull(in, got)
			require.NoError(t, err)
			require.Equal(t, "ping", string(got))

			_, err = in.Write([]byte("pong"))
			require.NoError(t, err)
			_, err = io.ReadFull(out, got)
			require.NoError(t, err)
			require.Equal(t, "pong", string(got))

			state, ok := in.(*acceptedConn).ConnectionState()
			require.Equal(t, tt.serverTLS != nil, ok, "ConnectionState ok")
			if ok {
				require.Len(t, state.PeerCertificates, 1, "server must have seen the client certificate")
				require.Equal(t, "node", state.PeerCertificates[0].Subject.CommonName)
			}
		})
	}
}

func TestStreamLayerAddrIsListenerAddr(t *testing.T) {
	ln := newTestListener(t)
	s := NewStreamLayer(ln, nil, nil)
	require.Equal(t, ln.Addr().String(), s.Addr().String())
}

func TestStreamLayerRejects(t *testing.T) {
	pki := newTestPKI(t)
	// A certificate from a CA the server does not trust.
	otherPKI := newTestPKI(t)

	tests := []struct {
		name string
		// connect opens a raw connection to addr and misbehaves.
		connect     func(t *testing.T, addr string) net.Conn
		wantErr     error // matched with errors.Is when non-nil
		wantTimeout bool  // the error must be a net.Error timeout, and otherwise must not be
	}{
		{
			name: "wrong header byte",
			connect: func(t *testing.T, addr string) net.Conn {
				conn, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				_, err = conn.Write([]byte{'P', 'R', 'I'})
				require.NoError(t, err)
				return conn
			},
			wantErr: ErrBadRaftHeader,
		},
		{
			name: "client without certificate",
			connect: func(t *testing.T, addr string) net.Conn {
				cfg := pki.peerTLS()
				cfg.Certificates = nil
				return dialHandshakeInBackground(t, addr, cfg)
			},
		},
		{
			name: "client certificate from an unknown CA",
			connect: func(t *testing.T, addr string) net.Conn {
				cfg := otherPKI.peerTLS()
				cfg.RootCAs = pki.caPool // trusts the server, but is not trusted by it
				return dialHandshakeInBackground(t, addr, cfg)
			},
		},
		{
			name: "peer stalls after the header byte",
			connect: func(t *testing.T, addr string) net.Conn {
				conn, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				_, err = conn.Write([]byte{RaftRPC})
				require.NoError(t, err)
				return conn
			},
			wantTimeout: true,
		},
		{
			name: "peer closes before the header byte",
			connect: func(t *testing.T, addr string) net.Conn {
				conn, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				require.NoError(t, conn.Close())
				return conn
			},
			wantErr: io.EOF,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := NewStreamLayer(newTestListener(t), pki.serverTLS(), nil)
			server.handshakeTimeout = 300 * time.Millisecond
			accepted := acceptOne(t, server)
			conn := tt.connect(t, server.Addr().String())
			defer func() { _ = conn.Close() }()
			in := receiveConn(t, accepted)

			// acceptOne already ran the lazy setup; its outcome sticks.
			err := in.(*acceptedConn).init()
			require.Error(t, err, "setup of a misbehaving connection succeeded")
			n, rerr := in.Read(make([]byte, 1))
			require.Equal(t, err, rerr, "Read = %d, %v; want the setup error", n, rerr)
			var netErr net.Error
			isTimeout := errors.As(err, &netErr) && netErr.Timeout()
			require.Equal(t, tt.wantTimeout, isTimeout, "setup error = %v; timeout = %v, want %v", err, isTimeout, tt.wantTimeout)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			// The failure sticks: Write fails the same way, nothing reaches Raft.
			_, werr := in.Write([]byte("x"))
			require.Error(t, werr)
		})
	}
}

// dialHandshakeInBackground connects with the Raft header and runs a TLS
// client handshake with cfg on a goroutine the test waits for, so the server
// side can run its own half.
func dialHandshakeInBackground(t *testing.T, addr string, cfg *tls.Config) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = conn.Write([]byte{RaftRPC})
	require.NoError(t, err)
	cfg.ServerName = "127.0.0.1"
	tlsConn := tls.Client(conn, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tlsConn.Handshake()
		// TLS 1.3 reports a rejected client certificate on the first read.
		_, _ = tlsConn.Read(make([]byte, 1))
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return tlsConn
}

func TestStreamLayerDialFailsAgainstUntrustedServer(t *testing.T) {
	pki := newTestPKI(t)
	otherPKI := newTestPKI(t)
	server := NewStreamLayer(newTestListener(t), otherPKI.serverTLS(), nil)
	accepted := acceptOne(t, server)
	client := NewStreamLayer(newTestListener(t), nil, pki.peerTLS())

	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case conn, ok := <-accepted:
			if ok {
				_, _ = conn.Read(make([]byte, 1)) // run the server half of the handshake
				_ = conn.Close()
			}
		case <-time.After(5 * time.Second):
		}
	}()
	_, err := client.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second)
	require.Error(t, err, "Dial to a server signed by an untrusted CA succeeded")
	var verifyErr *tls.CertificateVerificationError
	require.ErrorAs(t, err, &verifyErr)
	<-done
}

func TestStreamLayerDialTimeout(t *testing.T) {
	pki := newTestPKI(t)
	// A listener that accepts but never answers the TLS handshake.
	ln := newTestListener(t)
	client := NewStreamLayer(newTestListener(t), nil, pki.peerTLS())
	start := time.Now()
	_, err := client.Dial(raft.ServerAddress(ln.Addr().String()), 300*time.Millisecond)
	require.Error(t, err)
	require.Less(t, time.Since(start), 5*time.Second, "Dial ignored its timeout")
}

func TestStreamLayerCloseClosesAcceptedConnections(t *testing.T) {
	pki := newTestPKI(t)
	server := NewStreamLayer(newTestListener(t), pki.serverTLS(), nil)
	client := NewStreamLayer(newTestListener(t), nil, pki.peerTLS())
	accepted := acceptOne(t, server)
	out, err := client.Dial(raft.ServerAddress(server.Addr().String()), 5*time.Second)
	require.NoError(t, err)
	defer func() { _ = out.Close() }()
	in := receiveConn(t, accepted)

	// A read blocked on the accepted side ends with io.EOF when the layer
	// closes, as if the peer had hung up.
	readErr := make(chan error, 1)
	go func() {
		_, err := in.Read(make([]byte, 1))
		readErr <- err
	}()
	require.NoError(t, server.Close())
	require.NoError(t, server.Close(), "a second Close")
	select {
	case err := <-readErr:
		require.ErrorIs(t, err, io.EOF)
	case <-time.After(5 * time.Second):
		t.Fatal("Read on an accepted connection still blocked after Close")
	}
	// The dialing side sees the connection go.
	require.NoError(t, out.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = out.Read(make([]byte, 1))
	require.Error(t, err)
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "the peer's connection stayed open: %v", err)
}
