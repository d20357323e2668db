package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/server/tlsconfig"
)

// clientSettings are the settings every client command shares: where the
// cluster is and how to prove who we are.
type clientSettings struct {
	// addrs are RPC addresses of some cluster members (the proglog:///
	// resolver's seeds).
	addrs []string
	// tls names the CA and the client certificate and key.
	tls tlsconfig.Config
	// timeout bounds each call, retries included.
	timeout time.Duration
	// attemptTimeout bounds one try of a call (loadbalance.Config's
	// AttemptTimeout).
	attemptTimeout time.Duration
	logLevel       string
}

// readClientSettings reads the client settings; certificate paths left empty
// default to the files `make gencert` writes into the config dir.
func readClientSettings(s *settings) clientSettings {
	files := tlsconfig.Files(configDir(s))
	return clientSettings{
		addrs: s.List(keyAddr),
		tls: tlsconfig.Config{
			CAFile:   orDefault(s.String(keyTLSCAFile), files.CAFile),
			CertFile: orDefault(s.String(keyTLSCertFile), files.RootClientCertFile),
			KeyFile:  orDefault(s.String(keyTLSKeyFile), files.RootClientKeyFile),
		},
		timeout:        s.Duration(keyTimeout),
		attemptTimeout: s.Duration(keyAttemptTimeout),
		logLevel:       s.String(keyLogLevel),
	}
}

// validate checks the settings without touching the network or the files.
func (c clientSettings) validate() error {
	if len(c.addrs) == 0 {
		return usageError(errors.New("--addr names no address"))
	}
	if _, err := loadbalance.ParseSeeds(strings.Join(c.addrs, ",")); err != nil {
		return usageError(fmt.Errorf("--addr: %w", err))
	}
	if c.timeout <= 0 {
		return usageError(fmt.Errorf("--timeout %v must be positive", c.timeout))
	}
	if c.attemptTimeout <= 0 {
		return usageError(fmt.Errorf("--attempt-timeout %v must be positive", c.attemptTimeout))
	}
	if _, err := parseLogLevel(c.logLevel); err != nil {
		return err
	}
	return nil
}

// connect makes the logger the settings ask for (on cmd's standard error)
// and dials the cluster with it: the start of every client command that
// needs no logger of its own. A dial error is prefixed with op.
func (c clientSettings) connect(cmd *cobra.Command, op string) (*loadbalance.Client, error) {
	logger, err := newLogger(c.logLevel, cmd.ErrOrStderr())
	if err != nil {
		return nil, err
	}
	client, err := c.dial(logger)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return client, nil
}

// dial returns a client balanced over the cluster through the proglog:///
// resolver. It does not wait for a connection: the first call does.
func (c clientSettings) dial(logger *zap.Logger) (*loadbalance.Client, error) {
	return c.dialWith(logger, nil)
}

// dialWith is dial with adjust (when not nil) changing the client's config
// before the client is made.
func (c clientSettings) dialWith(logger *zap.Logger, adjust func(*loadbalance.Config)) (*loadbalance.Client, error) {
	tlsConfig, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	cfg := loadbalance.Config{
		Seeds:               c.addrs,
		TLSConfig:           tlsConfig,
		RetryTimeout:        c.timeout,
		StreamResumeTimeout: c.timeout,
		AttemptTimeout:      c.attemptTimeout,
		FailFastWhenRefused: refusedGiveUp,
		Logger:              logger,
	}
	if adjust != nil {
		adjust(&cfg)
	}
	client, err := loadbalance.New(cfg)
	if err != nil {
		return nil, usageError(err)
	}
	return client, nil
}

// tlsConfig reads the client's certificates.
func (c clientSettings) tlsConfig() (*tls.Config, error) {
	tlsConfig, err := tlsconfig.SetupTLSConfig(c.tls)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w%s", err, gencertHint(err))
	}
	return tlsConfig, nil
}

// dialDirect connects to the one server at addr, without balancing.
func (c clientSettings) dialDirect(addr string) (*grpc.ClientConn, error) {
	tlsConfig, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return conn, nil
}

// refusedGiveUp is how long a client command retries when no server has
// ever answered and every connection is refused: nothing listens there, and
// waiting out --timeout would only delay the news.
const refusedGiveUp = time.Second

// rpcError turns a failed call into one line that says what to check.
func (c clientSettings) rpcError(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: interrupted", op)
	}
	if errors.Is(err, loadbalance.ErrNothingListens) {
		return fmt.Errorf("%s: nothing listens at %s (is the cluster running? 'make run' starts one): %s",
			op, strings.Join(c.addrs, ","), briefCause(status.Convert(err).Message()))
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		cause := briefCause(st.Message())
		if strings.Contains(cause, "tls: ") {
			// The cluster answered but one side's certificate did not
			// verify: "is it running?" would send the user the wrong way.
			return fmt.Errorf("%s: TLS handshake with the cluster at %s failed (is %s the CA of the servers' certificates, and does the cluster trust the CA of %s? --config-dir picks both): %s",
				op, strings.Join(c.addrs, ","), c.tls.CAFile, c.tls.CertFile, cause)
		}
		if leaderless(st.Message()) {
			// The servers answered, so "is it running?" would mislead: the
			// cluster is up but has no quorum to elect a leader.
			return fmt.Errorf("%s: the cluster at %s is up but has no leader, still none after %v (a majority of its voters is down or cut off from the rest; 'proglog servers' lists the voters, and each node's /readyz says what it sees): %s",
				op, strings.Join(c.addrs, ","), c.timeout, cause)
		}
		return fmt.Errorf("%s: no answer from a cluster at %s within %v (is it running? 'make run' starts one): %s",
			op, strings.Join(c.addrs, ","), c.timeout, cause)
	case codes.Unauthenticated, codes.PermissionDenied:
		return fmt.Errorf("%s: refused for the client certificate %s: %s", op, c.tls.CertFile, serverMessage(err, st))
	default:
		return fmt.Errorf("%s: %s: %s", op, st.Code(), serverMessage(err, st))
	}
}

// serverMessage is what the server said: the message of the status err
// wraps, without the client's wrapping around it ("loadbalance: consume
// stream at offset 2: rpc error: code = NotFound desc = ..."), which
// status.FromError folds into st's message.
func serverMessage(err error, st *status.Status) string {
	var inner interface{ GRPCStatus() *status.Status }
	if errors.As(err, &inner) {
		if msg := inner.GRPCStatus().Message(); msg != "" {
			return msg
		}
	}
	return st.Message()
}

// leaderless reports whether a call's Unavailable message says that servers
// answered but know no leader: the balancer's "the cluster reports no
// leader" / "no leader known" and a server's "no leader is known". The
// messages are all the client has: the balancer's pick error carries no
// details.
func leaderless(msg string) bool {
	return strings.Contains(msg, "no leader known") || strings.Contains(msg, "the cluster reports no leader") ||
		strings.Contains(msg, "no leader is known")
}

// briefCause shortens a message of gRPC's transport, which nests the real
// cause in quotes several layers deep, to that cause: "dial tcp
// 127.0.0.1:8401: connect: connection refused", "tls: failed to verify
// certificate: ...". Other messages are returned whole.
func briefCause(msg string) string {
	const marker = `desc = "`
	i := strings.LastIndex(msg, marker)
	if i < 0 {
		return msg
	}
	// The cause is Go-quoted (gRPC formats it with %q): unquote it, so that
	// a cause holding quotes itself, like x509's "(possibly because of
	// \"...\")", is neither cut at its first quote nor left escaped.
	quoted := msg[i+len(marker)-1:]
	cause := quoted[1:]
	if q, err := strconv.QuotedPrefix(quoted); err == nil {
		if unquoted, err := strconv.Unquote(q); err == nil {
			cause = unquoted
		}
	} else if j := strings.Index(cause, `"`); j >= 0 {
		cause = cause[:j]
	}
	cause = strings.TrimPrefix(cause, "transport: ")
	cause = strings.TrimPrefix(cause, "Error while dialing: ")
	cause = strings.TrimPrefix(cause, "authentication handshake failed: ")
	return cause
}

// configDir is the directory of the certificates and ACL files.
func configDir(s *settings) string {
	return orDefault(s.String(keyConfigDir), tlsconfig.ConfigDir())
}

// orDefault returns v, or def when v is empty.
func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// gencertHint tells how to create missing certificates.
func gencertHint(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return " (run 'make gencert' to create the certificates, or point --config-dir at them)"
	}
	return ""
}
