package telemetry_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

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

	// Nothing makes a node that is shutting down ready again.
	h.Set(true, "")
	got := check("")
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, got, "Check after Set(true) past Shutdown")
	h.Shutdown() // idempotent
}
