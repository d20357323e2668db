package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/telemetry"
)

// observability is what makes a node observable (issue 7): Prometheus
// metrics in a registry of the node's own, OpenTelemetry tracing with a
// provider of its own, a log line per gRPC call, and health.
type observability struct {
	metrics *telemetry.Metrics
	tracing *telemetry.Tracing
	calls   *telemetry.CallLogger
	health  *telemetry.Health
	// startIndex is the last Raft index on disk when the node started, for
	// the readiness rule (see readiness).
	startIndex uint64
}

// setupTelemetry builds the node's observability. It runs after the log is
// open (readiness starts from its last Raft index) and before the servers
// are built, since they are instrumented with it; the gauges read the log
// and membership only when scraped, once the node serves.
func (a *Agent) setupTelemetry() error {
	logger := a.cfg.Logger.With(zap.String("node", a.cfg.NodeName))
	metrics, err := telemetry.NewMetrics(telemetry.MetricsConfig{
		Registry:       a.cfg.MetricsRegistry,
		MaxTopicLabels: a.cfg.MetricsMaxTopicLabels,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	sources := a.statsSources()
	sources.TopicLabels = metrics.TopicLabels()
	if err := metrics.Register(telemetry.NewStatsCollector(sources)); err != nil {
		return err
	}
	tracing, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{
		Exporter:     a.cfg.TraceExporter,
		OTLPEndpoint: a.cfg.OTLPEndpoint,
		OTLPInsecure: a.cfg.OTLPInsecure,
		SpanExporter: a.cfg.SpanExporter,
		InstanceID:   a.cfg.NodeName,
	})
	if err != nil {
		return err
	}
	a.obs = &observability{
		metrics:    metrics,
		tracing:    tracing,
		calls:      telemetry.NewCallLogger(telemetry.CallLogConfig{Logger: logger}),
		health:     telemetry.NewHealth(api.Log_ServiceDesc.ServiceName),
		startIndex: a.log.Stats().LastIndex,
	}
	return nil
}

// grpcServerOptions instruments the gRPC server around authn, the
// authentication interceptors: the trace handler sees every call; the call
// log and the metrics sit outside authentication, so refused calls are
// logged and counted too, and the subject interceptors inside it tell the
// call log who called.
func (o *observability) grpcServerOptions(unaryAuthn grpc.UnaryServerInterceptor, streamAuthn grpc.StreamServerInterceptor) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StatsHandler(o.tracing.ServerHandler()),
		grpc.ChainUnaryInterceptor(o.calls.UnaryServerInterceptor(), o.metrics.UnaryServerInterceptor(),
			unaryAuthn, o.calls.UnarySubjectInterceptor()),
		grpc.ChainStreamInterceptor(o.calls.StreamServerInterceptor(), o.metrics.StreamServerInterceptor(),
			streamAuthn, o.calls.StreamSubjectInterceptor()),
	}
}

// registerGRPC adds the grpc.health.v1 service to srv and creates the
// metrics of every method. Call it once every other service is registered.
func (o *observability) registerGRPC(srv *grpc.Server) {
	o.health.Register(srv)
	o.metrics.InitializeGRPC(srv)
}

// registerHTTP mounts /metrics, /healthz and /readyz on mux. The health
// endpoints answer without a client certificate, for Kubernetes probes.
// /metrics wants a verified client certificate, like the JSON API: it shows
// the cluster's shape and traffic, and Prometheus presents one with
// tls_config.cert_file and key_file. Any subject the CA signed may scrape;
// the Casbin policy speaks of the log only.
func (o *observability) registerHTTP(mux *http.ServeMux) {
	mux.Handle("/metrics", auth.HTTPMiddleware(o.metrics.Handler()))
	mux.Handle("/healthz", o.health.LivenessHandler())
	mux.Handle("/readyz", o.health.ReadinessHandler())
}

// close flushes the spans not yet exported, within timeout.
func (o *observability) close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return o.tracing.Shutdown(ctx)
}

// statsSources read the node's gauges at scrape time.
func (a *Agent) statsSources() telemetry.StatsSources {
	return telemetry.StatsSources{
		RetentionDeletedBytes: a.log.RetentionDeletedBytes,
		Groups: func() ([]telemetry.GroupStats, error) {
			var stats []telemetry.GroupStats
			for _, g := range a.log.Groups() {
				for _, t := range g.Topics {
					stats = append(stats, telemetry.GroupStats{Group: g.Name, Topic: t.Topic, Lag: t.Lag})
				}
			}
			return stats, nil
		},
		Topics: func() ([]telemetry.TopicStats, error) {
			topics := a.log.Topics()
			stats := make([]telemetry.TopicStats, 0, len(topics))
			for _, t := range topics {
				stats = append(stats, telemetry.TopicStats{
					Topic:        t.Name,
					Bytes:        t.Bytes,
					LowestOffset: t.LowestOffset,
					NextOffset:   t.NextOffset,
					Segments:     t.Segments,
				})
			}
			return stats, nil
		},
		Raft: func() (telemetry.RaftStats, error) {
			s := a.log.Stats()
			leaderID, _ := a.log.Leader()
			lastContact := time.Duration(-1)
			switch {
			case s.State == "Leader":
				lastContact = 0
			case !s.LastContact.IsZero():
				lastContact = time.Since(s.LastContact)
			}
			return telemetry.RaftStats{
				State:        s.State,
				Term:         s.Term,
				CommitIndex:  s.CommitIndex,
				AppliedIndex: s.AppliedIndex,
				LastLogIndex: s.LastIndex,
				HasLeader:    leaderID != "",
				LastContact:  lastContact,
			}, nil
		},
		Members: func() (map[string]int, error) {
			if a.membership == nil {
				return nil, fmt.Errorf("agent: membership not started")
			}
			counts := make(map[string]int)
			for _, m := range a.membership.Members() {
				counts[m.Status.String()]++
			}
			return counts, nil
		},
	}
}
