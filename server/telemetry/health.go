package telemetry

import (
	"net/http"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Health publishes a node's readiness in the two forms probes use: the
// standard grpc.health.v1 service and the HTTP endpoints /healthz
// (liveness) and /readyz (readiness). It starts not ready; the owner
// decides when the node is ready with Set, and calls Shutdown first thing
// when it stops. Its methods are safe for concurrent use.
type Health struct {
	server   *health.Server
	services []string

	mu       sync.Mutex
	ready    bool   // guarded by mu
	reason   string // why not ready; guarded by mu
	shutdown bool   // guarded by mu
}

// NewHealth returns a Health reporting on the whole server (the empty
// service name, which is what probes ask about by default) and on each of
// services, such as "log.v1.Log".
func NewHealth(services ...string) *Health {
	h := &Health{
		server:   health.NewServer(),
		services: append([]string{""}, services...),
		reason:   "starting",
	}
	// health.NewServer reports the whole server SERVING from the start;
	// a node is not ready until its owner says so.
	h.publishLocked()
	return h
}

// Register adds the grpc.health.v1 service to srv. Authentication lets
// its calls through without a client certificate (see server/auth).
func (h *Health) Register(srv *grpc.Server) {
	healthpb.RegisterHealthServer(srv, h.server)
}

// Set records whether the node is ready, and why not when it is not (the
// reason is what /readyz answers). After Shutdown it does nothing.
func (h *Health) Set(ready bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shutdown || (h.ready == ready && h.reason == reason) {
		return
	}
	h.ready, h.reason = ready, reason
	h.publishLocked()
}

// Ready reports whether the node is ready, and why not when it is not.
func (h *Health) Ready() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready, h.reason
}

// Shutdown reports the node NOT_SERVING for good: watchers hear it at once,
// so clients and load balancers move away before the servers stop.
func (h *Health) Shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shutdown {
		return
	}
	h.shutdown, h.ready, h.reason = true, false, "shutting down"
	h.server.Shutdown()
}

// publishLocked copies the readiness to the gRPC health server. mu must be
// held, so that two Sets cannot publish out of order.
func (h *Health) publishLocked() {
	status := healthpb.HealthCheckResponse_NOT_SERVING
	if h.ready {
		status = healthpb.HealthCheckResponse_SERVING
	}
	for _, s := range h.services {
		h.server.SetServingStatus(s, status)
	}
}

// LivenessHandler answers 200 "ok" to every request: the process is up
// and serving HTTP. Mount it on /healthz.
func (h *Health) LivenessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writePlain(w, http.StatusOK, "ok")
	})
}

// ReadinessHandler answers 200 "ok" when the node is ready and 503 with
// the reason when it is not, by the same rule as the gRPC health service.
// Mount it on /readyz.
func (h *Health) ReadinessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ready, reason := h.Ready()
		if !ready {
			writePlain(w, http.StatusServiceUnavailable, reason)
			return
		}
		writePlain(w, http.StatusOK, "ok")
	})
}

func writePlain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	// The status line has gone out; a failed body write leaves nothing to do.
	_, _ = w.Write([]byte(body + "\n"))
}
