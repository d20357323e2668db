package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog"
	"github.com/proglog/proglog/server/auth"
)

// Joins are verified because gossip alone proves nothing: before this,
// anyone who reached a Serf port was made a Raft voter by the leader, and
// two such voters that could not speak Raft were enough to take a
// three-node cluster's quorum away. Now the leader adds a member only after
// a TLS handshake with the member's Raft port (the same header byte and
// peer certificates Raft uses) has shown that the member holds a
// certificate that chains to the cluster's CA, is a server certificate for
// the address the member advertises, and names a subject allowed to join.
//
// Who may join: when the ACL policy has any line for the action
// auth.ActionJoin ("p, <subject>, *, join"), exactly the subjects it grants.
// A policy without such lines (every policy written before joins were
// verified) lets in the subject of this node's own server certificate, the
// one its Raft port serves, and no other: the cluster's server certificate,
// as `make gencert` makes one for all nodes.

// maxRefusals bounds the refusals remembered for logging once; past it the
// oldest are forgotten (and would be logged again).
const maxRefusals = 1024

// joinVerifier decides whether a Serf member may become a Raft voter, and
// remembers whom it refused so that each refusal is logged once. Its
// methods are safe for concurrent use (the Serf handler and the reconcile
// loop both call them).
type joinVerifier struct {
	peerTLS *tls.Config
	// allowed returns nil when subject may join, else why not.
	allowed func(subject string) error
	// rule describes allowed, for logs.
	rule    string
	timeout time.Duration
	retry   time.Duration
	logger  *zap.Logger

	// refusals counts every failed verification by kind (see
	// refusalKind): proglog_raft_join_refusals_total.
	refusals *prometheus.CounterVec

	// mu guards refused.
	mu sync.Mutex
	// refused holds the last refusal of each member, by name.
	refused map[string]refusal
}

// refusal is the last verdict against one member.
type refusal struct {
	addr   string
	reason string
	at     time.Time
}

// newJoinVerifier builds the verifier of cfg (defaults filled in): the
// client side of the handshake from PeerTLSConfig, the join rule from the
// ACL files and, without join lines, from the certificate of
// PeerServerTLSConfig.
func newJoinVerifier(cfg Config, logger *zap.Logger) (*joinVerifier, error) {
	authorizer, err := auth.New(cfg.ACLModelFile, cfg.ACLPolicyFile)
	if err != nil {
		return nil, err
	}
	v := &joinVerifier{
		peerTLS: cfg.PeerTLSConfig.Clone(),
		timeout: cfg.JoinVerifyTimeout,
		retry:   cfg.RefusedRetryInterval,
		logger:  logger,
		refused: map[string]refusal{},
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proglog_raft_join_refusals_total",
			Help: "Serf members the leader did not make Raft voters, by why: certificate (their certificate or " +
				"subject was refused), distrusts (they refused this node's certificate), unreachable.",
		}, []string{"reason"}),
	}
	for _, kind := range []string{refusalCertificate, refusalDistrusts, refusalUnreachable} {
		v.refusals.WithLabelValues(kind) // every series exists from the start, at 0
	}
	// A member must accept this node's certificate as well: with TLS 1.3
	// the client's handshake ends before the server has checked the
	// client's certificate, so a member that would refuse every Raft
	// connection from this node would pass. TLS 1.2 makes the server's
	// verdict part of the handshake. Raft's own connections are unchanged.
	v.peerTLS.MaxVersion = tls.VersionTLS12

	named, err := authorizer.Names(auth.ActionJoin)
	if err != nil {
		return nil, err
	}
	if named {
		v.rule = fmt.Sprintf("policy %s grants %q", cfg.ACLPolicyFile, auth.ActionJoin)
		v.allowed = func(subject string) error {
			if err := authorizer.Authorize(subject, auth.ObjectAll, auth.ActionJoin); err != nil {
				return fmt.Errorf("the policy %s does not let %q join (add \"p, %s, %s, %s\")",
					cfg.ACLPolicyFile, subject, subject, auth.ObjectAll, auth.ActionJoin)
			}
			return nil
		}
		return v, nil
	}
	own, err := ownSubject(cfg.PeerServerTLSConfig)
	if err != nil {
		return nil, err
	}
	v.rule = fmt.Sprintf("same certificate subject as this node (%q; the policy has no %q lines)", own, auth.ActionJoin)
	v.allowed = func(subject string) error {
		if subject != own {
			return fmt.Errorf("certificate subject %q is not this cluster's server subject %q (or grant it with \"p, %s, %s, %s\" in %s)",
				subject, own, subject, auth.ObjectAll, auth.ActionJoin, cfg.ACLPolicyFile)
		}
		return nil
	}
	return v, nil
}

// ownSubject is the Common Name of the certificate server serves: what
// this node shows on its Raft port, as other nodes must.
func ownSubject(server *tls.Config) (string, error) {
	if server == nil || len(server.Certificates) == 0 || len(server.Certificates[0].Certificate) == 0 {
		return "", errors.New("agent: the Raft port serves no certificate of its own (PeerServerTLSConfig): cannot tell which subject may join (add join lines to the ACL policy)")
	}
	leaf := server.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(server.Certificates[0].Certificate[0]); err != nil {
			return "", fmt.Errorf("agent: parse the Raft port's certificate: %w", err)
		}
	}
	if leaf.Subject.CommonName == "" {
		return "", errors.New("agent: the Raft port's certificate has no Common Name: cannot tell which subject may join (add join lines to the ACL policy)")
	}
	return leaf.Subject.CommonName, nil
}

// verify runs the TLS handshake of a Raft connection with the member at
// addr and checks who answered. It returns the subject of the member's
// certificate, or an error wrapping ErrPeerRefused or ErrPeerUnreachable.
func (v *joinVerifier) verify(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	state, err := v.handshake(ctx, addr)
	if err != nil {
		return "", err
	}
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", fmt.Errorf("%w: its certificate was not verified against the cluster CA", ErrPeerRefused)
	}
	subject := state.VerifiedChains[0][0].Subject.CommonName
	if err := v.allowed(subject); err != nil {
		return subject, fmt.Errorf("%w: %w", ErrPeerRefused, err)
	}
	return subject, nil
}

// handshake dials addr, writes the Raft header byte and completes the TLS
// handshake Raft would, then hangs up: the member's Raft transport sees a
// connection that closed before its first command, which it ignores.
func (v *joinVerifier) handshake(ctx context.Context, addr string) (tls.ConnectionState, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, fmt.Errorf("%w: %w", ErrPeerUnreachable, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return tls.ConnectionState{}, fmt.Errorf("%w: %w", ErrPeerUnreachable, err)
		}
	}
	if _, err := conn.Write([]byte{distlog.RaftRPC}); err != nil {
		return tls.ConnectionState{}, fmt.Errorf("%w: %w", ErrPeerUnreachable, err)
	}
	cfg := v.peerTLS
	if cfg.ServerName == "" {
		// As Raft's StreamLayer does: the certificate must name the
		// address the member advertises.
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return tls.ConnectionState{}, fmt.Errorf("%w: address %q: %w", ErrPeerRefused, addr, err)
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tlsConn := tls.Client(conn, cfg)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, classifyHandshakeError(err)
	}
	state := tlsConn.ConnectionState()
	// Close sends close_notify; the error of a connection going away is of
	// no interest.
	_ = tlsConn.Close()
	return state, nil
}

// classifyHandshakeError tells a certificate problem, on either side, from
// a network one.
func classifyHandshakeError(err error) error {
	var verifyErr *tls.CertificateVerificationError
	var opErr *net.OpError
	switch {
	case errors.As(err, &verifyErr):
		// This node refused the member's certificate.
		return fmt.Errorf("%w: %w", ErrPeerRefused, err)
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// The member refused this node's certificate (a TLS alert): it
		// trusts another CA.
		return fmt.Errorf("%w: %w (it trusts another CA): %w", ErrPeerRefused, ErrPeerDistrusts, err)
	default:
		return fmt.Errorf("%w: tls handshake: %w", ErrPeerUnreachable, err)
	}
}

// refusedRecently reports whether member name at addr was refused less
// than the retry interval ago.
func (v *joinVerifier) refusedRecently(name, addr string, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	r, ok := v.refused[name]
	return ok && r.addr == addr && now.Sub(r.at) < v.retry
}

// Values of the reason label of proglog_raft_join_refusals_total.
const (
	refusalCertificate = "certificate"
	refusalDistrusts   = "distrusts"
	refusalUnreachable = "unreachable"
)

// refusalKind is the reason label of a verification error.
func refusalKind(err error) string {
	switch {
	case errors.Is(err, ErrPeerDistrusts):
		return refusalDistrusts
	case errors.Is(err, ErrPeerRefused):
		return refusalCertificate
	default:
		return refusalUnreachable
	}
}

// refuse records a refusal, counts it, and logs it: at warning level the
// first time for this member, address and reason, at debug level after.
func (v *joinVerifier) refuse(name, addr string, err error, now time.Time) {
	if v.refusals != nil {
		v.refusals.WithLabelValues(refusalKind(err)).Inc()
	}
	v.mu.Lock()
	prev, seen := v.refused[name]
	if !seen && len(v.refused) >= maxRefusals {
		v.forgetOldestLocked()
	}
	v.refused[name] = refusal{addr: addr, reason: err.Error(), at: now}
	v.mu.Unlock()
	fields := []zap.Field{zap.String("member", name), zap.String("rpc_addr", addr), zap.Error(err)}
	if seen && prev.addr == addr && prev.reason == err.Error() {
		v.logger.Debug("member still refused as a raft voter", fields...)
		return
	}
	v.logger.Warn("member refused as a raft voter", append(fields, zap.String("rule", v.rule))...)
}

// forgetOldestLocked drops the oldest refusal. mu must be held.
func (v *joinVerifier) forgetOldestLocked() {
	var oldest string
	var at time.Time
	for name, r := range v.refused {
		if oldest == "" || r.at.Before(at) {
			oldest, at = name, r.at
		}
	}
	delete(v.refused, oldest)
}

// admitted forgets any refusal of member name.
func (v *joinVerifier) admitted(name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.refused, name)
}

// admit makes member name, at RPC address addr, a voter once it has proved
// it may be one; this node must lead (distlog refuses otherwise). servers
// is the current Raft configuration. A member already in it at addr is left
// alone (no handshake: joins are idempotent). A member whose verification
// fails is logged once and not added; if its identity was refused it is
// also removed from Serf, unless Raft knows its name (an address change of
// a voter is refused, not the voter). With recheck false, a member refused
// less than RefusedRetryInterval ago is skipped: the reconcile loop runs
// every second, a Serf join event is news.
func (a *Agent) admit(name, addr string, servers []*api.Server, recheck bool) error {
	var known *api.Server
	for _, s := range servers {
		if s.GetId() == name {
			known = s
		}
	}
	if known != nil && known.GetRpcAddr() == addr {
		return nil
	}
	now := time.Now()
	if !recheck && a.verifier.refusedRecently(name, addr, now) {
		return nil
	}
	subject, err := a.verifyMember(name, addr, servers)
	if err != nil {
		a.verifier.refuse(name, addr, err, now)
		if errors.Is(err, ErrPeerRefused) && !errors.Is(err, ErrPeerDistrusts) && known == nil {
			if err := a.membership.Remove(name); err != nil {
				a.logger.Warn("remove refused member from gossip", zap.String("member", name), zap.Error(err))
			}
		}
		return nil
	}
	a.verifier.admitted(name)
	a.logger.Info("member verified; adding it as a raft voter",
		zap.String("member", name), zap.String("rpc_addr", addr), zap.String("subject", subject))
	return a.log.Join(name, addr)
}

// verifyMember checks member name at addr: its address must not be a
// running voter's (distlog.Join would replace that voter), and its Raft
// port must prove its identity (joinVerifier.verify).
func (a *Agent) verifyMember(name, addr string, servers []*api.Server) (string, error) {
	for _, s := range servers {
		if s.GetId() != name && s.GetRpcAddr() == addr && a.memberAlive(s.GetId()) {
			return "", fmt.Errorf("%w: its RPC address %s belongs to voter %s, which is alive", ErrPeerRefused, addr, s.GetId())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-a.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	return a.verifier.verify(ctx, addr)
}
