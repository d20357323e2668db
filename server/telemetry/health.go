package telemetry

import (
	"context"
	"net/http"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Health publishes a node's readiness in the two forms probes use: the
// standard grpc.health.v1 service and the HTTP endpoints /healthz
// (liveness) and /readyz (readiness). It starts not ready; the owner
// decides when the node is ready with Set, and calls Shutdown first thing
// when it stops. Its methods are safe for concurrent use.
//
// It implements the health service itself rather than use
// google.golang.org/grpc/health.Server, whose Watch streams end only when
// their clients go away: every client that balances with gRPC's health
// checking holds one open, so grpc.Server.GracefulStop would wait for its
// deadline on every shutdown. Here Shutdown tells watchers NOT_SERVING and
// then ends their streams.
type Health struct {
	healthpb.UnimplementedHealthServer

	services []string // "" (the whole server) and the named services; read-only

	mu       sync.Mutex
	ready    bool          // guarded by mu
	reason   string        // why not ready; guarded by mu
	dead     string        // why the node must be restarted; "" while alive; guarded by mu
	changed  chan struct{} // closed and replaced at every change; guarded by mu
	shutdown chan struct{} // closed by Shutdown
}

var _ healthpb.HealthServer = (*Health)(nil)

// NewHealth returns a Health reporting on the whole server (the empty
// service name, which is what probes ask about by default) and on each of
// services, such as "log.v1.Log". All report the same status.
func NewHealth(services ...string) *Health {
	return &Health{
		services: append([]string{""}, services...),
		reason:   "starting",
		changed:  make(chan struct{}),
		shutdown: make(chan struct{}),
	}
}

// Register adds the grpc.health.v1 service to srv. Authentication lets
// its calls through without a client certificate (see server/auth).
func (h *Health) Register(srv *grpc.Server) {
	healthpb.RegisterHealthServer(srv, h)
}

// Set records whether the node is ready, and why not when it is not (the
// reason is what /readyz answers). After Shutdown it does nothing.
func (h *Health) Set(ready bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.isShutdown() || (h.ready == ready && h.reason == reason) {
		return
	}
	h.ready, h.reason = ready, reason
	h.notifyLocked()
}

// SetDead marks the node as needing a restart (its state machine stopped on
// a storage error, say): /healthz answers 503 with reason from then on, so
// a supervisor whose liveness probe reads it (Kubernetes) restarts the
// process. It is for good: a node recovers only by restarting.
func (h *Health) SetDead(reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead == "" {
		h.dead = reason
	}
}

// Ready reports whether the node is ready, and why not when it is not.
func (h *Health) Ready() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready, h.reason
}

// Shutdown reports the node NOT_SERVING for good: watchers hear it at once
// and their streams end, so clients and load balancers move away and the
// gRPC server can stop gracefully. It is idempotent.
func (h *Health) Shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.isShutdown() {
		return
	}
	h.ready, h.reason = false, "shutting down"
	close(h.shutdown)
	h.notifyLocked()
}

func (h *Health) isShutdown() bool {
	select {
	case <-h.shutdown:
		return true
	default:
		return false
	}
}

// notifyLocked wakes every watcher. mu must be held.
func (h *Health) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// servingStatus returns the status of service and the channel closed at
// the next change; ok is false for a service Health does not know.
func (h *Health) servingStatus(service string) (s healthpb.HealthCheckResponse_ServingStatus, changed <-chan struct{}, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Contains(h.services, service) {
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, h.changed, false
	}
	if h.ready {
		return healthpb.HealthCheckResponse_SERVING, h.changed, true
	}
	return healthpb.HealthCheckResponse_NOT_SERVING, h.changed, true
}

// Check answers the status of the requested service, NotFound for one it
// does not know.
func (h *Health) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	s, _, ok := h.servingStatus(req.GetService())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: s}, nil
}

// List answers the status of every service.
func (h *Health) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	statuses := make(map[string]*healthpb.HealthCheckResponse, len(h.services))
	for _, service := range h.services {
		s, _, _ := h.servingStatus(service)
		statuses[service] = &healthpb.HealthCheckResponse{Status: s}
	}
	return &healthpb.HealthListResponse{Statuses: statuses}, nil
}

// Watch sends the status of the requested service (SERVICE_UNKNOWN for one
// it does not know) and then every change, until the client goes away or
// Shutdown: then it sends NOT_SERVING and ends the stream with OK, and the
// client retries elsewhere or later.
func (h *Health) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		s, changed, _ := h.servingStatus(req.GetService())
		if s != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: s}); err != nil {
				return err
			}
			last = s
		}
		if h.isShutdown() {
			return nil
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

// LivenessHandler answers 200 "ok" while the process is up and serving
// HTTP, and 503 with the reason once SetDead said the node needs a
// restart. Mount it on /healthz.
func (h *Health) LivenessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		dead := h.dead
		h.mu.Unlock()
		if dead != "" {
			writePlain(w, http.StatusServiceUnavailable, dead)
			return
		}
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
