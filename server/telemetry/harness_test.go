package telemetry_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server"
	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/servertest"
	"github.com/proglog/proglog/server/telemetry"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

// callTimeout bounds every call of these tests, so a regression fails
// instead of hanging.
const callTimeout = 10 * time.Second

// failValue is a record value memLog refuses with an unexpected error, which
// the server turns into codes.Internal.
const failValue = "fail"

// newMemLog is the shared in-memory log, failing any append that carries
// failValue with an unexpected error.
func newMemLog() *servertest.Log {
	return servertest.NewLog(servertest.WithAppendHook(func(_ context.Context, records []*api.Record) error {
		for _, r := range records {
			if string(r.GetValue()) == failValue {
				return errors.New("memlog: disk on fire")
			}
		}
		return nil
	}))
}

// harness is a gRPC server wired as the agent wires it: TLS, the call
// logger outside authentication, metrics, the real auth interceptors and
// Casbin policy of `make gencert`, and the subject interceptors inside.
type harness struct {
	addr    string
	files   tlsconfig.FileSet
	metrics *telemetry.Metrics
	health  *telemetry.Health
}

// harnessOptions are the pieces a test wants to watch; nil ones get quiet
// defaults.
type harnessOptions struct {
	logger  *zap.Logger
	calls   telemetry.CallLogConfig
	tracing *telemetry.Tracing
}

func newHarness(t *testing.T, opts harnessOptions) *harness {
	t.Helper()
	files := tlsconfigtest.Files(t)
	if opts.logger == nil {
		opts.logger = zap.NewNop()
	}
	if opts.calls.Logger == nil {
		opts.calls.Logger = opts.logger
	}
	if opts.tracing == nil {
		tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{})
		require.NoError(t, err)
		opts.tracing = tr
	}
	metrics, err := telemetry.NewMetrics(telemetry.MetricsConfig{Logger: opts.logger})
	require.NoError(t, err)
	authorizer, err := auth.New(files.ACLModelFile, files.ACLPolicyFile)
	require.NoError(t, err)
	serverTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile, Server: true,
	})
	require.NoError(t, err)

	calls := telemetry.NewCallLogger(opts.calls)
	stopping := make(chan struct{})
	srv, err := server.NewGRPCServer(&server.Config{
		CommitLog:  metrics.CountAppends(newMemLog()),
		Authorizer: authorizer,
		Stopping:   stopping,
		Logger:     opts.logger,
	},
		grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.StatsHandler(opts.tracing.ServerHandler()),
		grpc.ChainUnaryInterceptor(calls.UnaryServerInterceptor(), metrics.UnaryServerInterceptor(),
			auth.UnaryServerInterceptor(), calls.UnarySubjectInterceptor()),
		grpc.ChainStreamInterceptor(calls.StreamServerInterceptor(), metrics.StreamServerInterceptor(),
			auth.StreamServerInterceptor(), calls.StreamSubjectInterceptor()),
	)
	require.NoError(t, err)
	health := telemetry.NewHealth(api.Log_ServiceDesc.ServiceName)
	health.Register(srv)
	metrics.InitializeGRPC(srv)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // returns when stopped below
	}()
	t.Cleanup(func() {
		health.Shutdown()
		close(stopping)
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		require.NoError(t, server.GracefulStop(ctx, srv))
		<-served
	})
	return &harness{addr: ln.Addr().String(), files: files, metrics: metrics, health: health}
}

// client dials the harness as the named gencert client ("root", "nobody"),
// or without a client certificate when who is "".
func (h *harness) client(t *testing.T, who string, opts ...grpc.DialOption) api.LogClient {
	t.Helper()
	cfg := tlsconfig.Config{CAFile: h.files.CAFile, ServerAddress: "127.0.0.1"}
	switch who {
	case "root":
		cfg.CertFile, cfg.KeyFile = h.files.RootClientCertFile, h.files.RootClientKeyFile
	case "nobody":
		cfg.CertFile, cfg.KeyFile = h.files.NobodyClientCertFile, h.files.NobodyClientKeyFile
	}
	clientTLS, err := tlsconfig.SetupTLSConfig(cfg)
	require.NoError(t, err)
	return api.NewLogClient(h.dial(t, clientTLS, opts...))
}

func (h *harness) dial(t *testing.T, clientTLS *tls.Config, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(h.addr, append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)),
	}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}
