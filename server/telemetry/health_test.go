package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/server"
	"github.com/proglog/proglog/server/telemetry"
)

// healthClient serves h's gRPC health service on 127.0.0.1:0 and returns a
// client of it.
func healthClient(t *testing.T, h *telemetry.Health) healthpb.HealthClient {
	t.Helper()
	srv := grpc.NewServer()
	h.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // returns when stopped below
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// httpStatus serves one request to handler and returns the status and body.
func httpStatus(handler http.Handler) (int, string) {
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

func TestHealthLifecycle(t *testing.T) {
	const service = "log.v1.Log"
	h := telemetry.NewHealth(service)
	client := healthClient(t, h)
	ctx := callCtx(t)

	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	next := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := watch.Recv()
		require.NoError(t, err)
		return resp.GetStatus()
	}

	check := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		require.NoError(t, err)
		return resp.GetStatus()
	}

	steps := []struct {
		name       string
		act        func()
		want       healthpb.HealthCheckResponse_ServingStatus
		readyz     int
		readyzBody string
	}{
		{"starts not serving", func() {}, healthpb.HealthCheckResponse_NOT_SERVING, http.StatusServiceUnavailable, "starting"},
		{"ready", func() { h.Set(true, "") }, healthpb.HealthCheckResponse_SERVING, http.StatusOK, "ok"},
		{"lost leader", func() { h.Set(false, "no leader") }, healthpb.HealthCheckResponse_NOT_SERVING, http.StatusServiceUnavailable, "no leader"},
		{"ready again", func() { h.Set(true, "") }, healthpb.HealthCheckResponse_SERVING, http.StatusOK, "ok"},
		{"shutdown", h.Shutdown, healthpb.HealthCheckResponse_NOT_SERVING, http.StatusServiceUnavailable, "shutting down"},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.act()
			require.Equal(t, step.want, next(), "Watch after %s", step.name)
			for _, svc := range []string{"", service} {
				got := check(svc)
				require.Equal(t, step.want, got, "Check(%q) = %v, want %v", svc, got, step.want)
			}
			code, body := httpStatus(h.ReadinessHandler())
			require.Equal(t, step.readyz, code, "/readyz status")
			require.Equal(t, step.readyzBody, body, "/readyz body")
			code, _ = httpStatus(h.LivenessHandler())
			require.Equal(t, http.StatusOK, code, "/healthz status")
		})
	}

	// After NOT_SERVING, Shutdown ended the stream, so that a graceful stop
	// of the server need not wait for the client.
	_, err = watch.Recv()
	require.ErrorIs(t, err, io.EOF, "Watch after Shutdown")

	// Nothing makes a node that is shutting down ready again.
	h.Set(true, "")
	got := check("")
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, got, "Check after Set(true) past Shutdown")
	h.Shutdown() // idempotent
}

func TestHealthUnknownService(t *testing.T) {
	h := telemetry.NewHealth("log.v1.Log")
	h.Set(true, "")
	client := healthClient(t, h)
	ctx := callCtx(t)

	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	require.Equal(t, codes.NotFound, status.Code(err), "Check(nope) code")

	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	require.NoError(t, err)
	resp, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVICE_UNKNOWN, resp.GetStatus(), "Watch(nope)")

	list, err := client.List(ctx, &healthpb.HealthListRequest{})
	require.NoError(t, err)
	got := map[string]healthpb.HealthCheckResponse_ServingStatus{}
	for name, s := range list.GetStatuses() {
		got[name] = s.GetStatus()
	}
	require.Equal(t, map[string]healthpb.HealthCheckResponse_ServingStatus{
		"":           healthpb.HealthCheckResponse_SERVING,
		"log.v1.Log": healthpb.HealthCheckResponse_SERVING,
	}, got, "List")
}

func TestHealthShutdownLetsGracefulStopReturn(t *testing.T) {
	h := telemetry.NewHealth()
	srv := grpc.NewServer()
	h.Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // returns when stopped below
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	watch, err := healthpb.NewHealthClient(conn).Watch(callCtx(t), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = watch.Recv() // the stream is open on the server
	require.NoError(t, err)

	h.Shutdown()
	// server.GracefulStop falls back to Stop and fails at the deadline: a
	// Watch still open would make it fail.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, server.GracefulStop(ctx, srv), "GracefulStop with a watcher after Shutdown")
}

// TestHealthDeadFailsLiveness: once SetDead says the node needs a restart,
// /healthz answers 503 with the reason (and keeps doing so), so a
// supervisor restarts it; until then it answers 200 whatever readiness
// says.
func TestHealthDeadFailsLiveness(t *testing.T) {
	h := telemetry.NewHealth()
	h.Set(false, "no raft leader")
	code, _ := httpStatus(h.LivenessHandler())
	require.Equal(t, http.StatusOK, code, "/healthz of a node that is only not ready")

	h.SetDead("state machine stopped, restart the node: disk full")
	h.SetDead("a later reason")
	code, body := httpStatus(h.LivenessHandler())
	require.Equal(t, http.StatusServiceUnavailable, code, "/healthz of a dead node")
	require.Equal(t, "state machine stopped, restart the node: disk full", body)
	h.Set(true, "")
	code, _ = httpStatus(h.LivenessHandler())
	require.Equal(t, http.StatusServiceUnavailable, code, "/healthz of a dead node that reports ready")
}
