package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server"
)

// Namespace prefixes every metric proglog defines itself. The gRPC metrics
// keep the grpc_server_ names of go-grpc-middleware, which existing
// dashboards and alerts expect.
const Namespace = "proglog"

// DefaultLatencyBuckets returns the default upper bounds, in seconds, of
// the gRPC handling-time histogram: from 0.5 ms (an append on an idle
// leader) to 10 s (the apply timeout). A function, not a variable, so no
// caller can change another's buckets.
func DefaultLatencyBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
}

// MetricsConfig configures NewMetrics.
type MetricsConfig struct {
	// Registry receives every metric. Default: a new registry that also
	// holds the Go runtime and process collectors. A given registry gets
	// only proglog's own metrics; add those collectors to it yourself if
	// you want them. Never the global default registry: several nodes may
	// run in one process (tests do), and each must report its own values.
	Registry *prometheus.Registry
	// LatencyBuckets are the gRPC handling-time histogram's bucket upper
	// bounds in seconds. Default DefaultLatencyBuckets().
	LatencyBuckets []float64
	// MaxTopicLabels is how many topics get a topic label value of their own
	// on the per-topic metrics (records and bytes appended, offsets,
	// segments); the topics a node meets after that are counted under
	// OtherTopicLabel, "(other)". Default DefaultMaxTopicLabels (100).
	MaxTopicLabels int
	// Logger receives errors met while serving /metrics. Default
	// zap.NewNop().
	Logger *zap.Logger
}

// Metrics is one node's Prometheus instrumentation: gRPC request counts and
// latency by method and code, the records and bytes appended through the
// node's APIs, and whatever collectors (such as a StatsCollector) are added
// with Register. Serve it with Handler.
type Metrics struct {
	registry        *prometheus.Registry
	logger          *zap.Logger
	grpc            *grpcprom.ServerMetrics
	topics          *TopicLabels
	recordsAppended *prometheus.CounterVec // by topic
	bytesAppended   *prometheus.CounterVec // by topic
}

// NewMetrics creates the metrics and registers them in cfg.Registry. It
// fails when a metric of the same name is already registered there.
func NewMetrics(cfg MetricsConfig) (*Metrics, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MaxTopicLabels < 0 {
		return nil, fmt.Errorf("telemetry: MetricsConfig.MaxTopicLabels = %d, want >= 0", cfg.MaxTopicLabels)
	}
	if len(cfg.LatencyBuckets) == 0 {
		cfg.LatencyBuckets = DefaultLatencyBuckets()
	}
	registry := cfg.Registry
	if registry == nil {
		registry = prometheus.NewRegistry()
		if err := registerAll(registry,
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		); err != nil {
			return nil, err
		}
	}
	m := &Metrics{
		registry: registry,
		logger:   cfg.Logger.Named("metrics"),
		grpc: grpcprom.NewServerMetrics(
			grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(cfg.LatencyBuckets)),
		),
		topics: NewTopicLabels(cfg.MaxTopicLabels),
		recordsAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "records_appended_total",
			Help:      "Records appended through this node's gRPC and HTTP APIs, by topic (\"(other)\" past the topic label cap).",
		}, []string{"topic"}),
		bytesAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "bytes_appended_total",
			Help:      "Bytes of record values appended through this node's gRPC and HTTP APIs, by topic (\"(other)\" past the topic label cap).",
		}, []string{"topic"}),
	}
	// The default topic's series exist from the start, at zero, so that a
	// rate() over them works from the first scrape.
	m.recordsAppended.WithLabelValues(m.topics.Label(api.DefaultTopic))
	m.bytesAppended.WithLabelValues(m.topics.Label(api.DefaultTopic))
	if err := registerAll(registry, m.grpc, m.recordsAppended, m.bytesAppended); err != nil {
		return nil, err
	}
	return m, nil
}

func registerAll(r prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("telemetry: register metrics: %w", err)
		}
	}
	return nil
}

// TopicLabels is the bound on topic label values these metrics share; give
// it to StatsSources.TopicLabels so the gauges name the same topics.
func (m *Metrics) TopicLabels() *TopicLabels { return m.topics }

// Registry is where the metrics live.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Register adds collectors, such as a StatsCollector, to the registry.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	return registerAll(m.registry, cs...)
}

// UnaryServerInterceptor counts and times unary calls
// (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_handling_seconds). Install it outside authentication, so
// refused calls are counted with their code.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return m.grpc.UnaryServerInterceptor()
}

// StreamServerInterceptor counts and times streaming calls, and counts
// their messages (grpc_server_msg_received_total, grpc_server_msg_sent_total).
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return m.grpc.StreamServerInterceptor()
}

// InitializeGRPC creates every method's series at zero with code OK, so a
// rate() over them works from the first scrape. Call it after every
// service is registered on srv and before srv serves.
func (m *Metrics) InitializeGRPC(srv *grpc.Server) {
	m.grpc.InitializeMetrics(srv)
}

// Handler serves the registry in the Prometheus exposition formats. A
// collector that fails is logged and left out; the rest are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:      promLogger{m.logger},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.registry,
	})
}

// promLogger adapts zap to promhttp.Logger.
type promLogger struct{ logger *zap.Logger }

// Println logs a /metrics serving error.
func (l promLogger) Println(v ...any) {
	l.logger.Warn("serve metrics", zap.String("error", fmt.Sprint(v...)))
}

// CountAppends returns log, counting in proglog_records_appended_total and
// proglog_bytes_appended_total, by topic, the records (and their value
// bytes) that each successful AppendBatch and AppendProduced added. Give it to the server's
// Config.CommitLog. A follower refuses writes, so only the node that took
// the write counts it; proglog_log_highest_offset shows every node's
// progress.
func (m *Metrics) CountAppends(log server.CommitLog) server.CommitLog {
	return &countingLog{CommitLog: log, topics: m.topics, records: m.recordsAppended, bytes: m.bytesAppended}
}

// countingLog is a server.CommitLog that counts successful appends.
type countingLog struct {
	server.CommitLog
	topics  *TopicLabels
	records *prometheus.CounterVec
	bytes   *prometheus.CounterVec
}

var _ server.CommitLog = (*countingLog)(nil)

// AppendProduced appends and counts the records of each call that was
// appended now: a duplicate (appended by an earlier attempt, and counted
// then) and a refused call add nothing.
func (l *countingLog) AppendProduced(ctx context.Context, topic string, batches []api.ProducerBatch) ([]api.ProducerResult, error) {
	results, err := l.CommitLog.AppendProduced(ctx, topic, batches)
	if err != nil {
		return results, err
	}
	l.count(topic, batches, results)
	return results, err
}

// count counts the records of each call of batches that was appended now.
func (l *countingLog) count(topic string, batches []api.ProducerBatch, results []api.ProducerResult) {
	records, bytes := 0, 0
	for i, result := range results {
		if i >= len(batches) || result.Err != nil || result.Duplicate {
			continue
		}
		records += len(batches[i].Records)
		for _, r := range batches[i].Records {
			bytes += len(r.GetValue())
		}
	}
	if records > 0 {
		label := l.topics.Label(topic)
		l.records.WithLabelValues(label).Add(float64(records))
		l.bytes.WithLabelValues(label).Add(float64(bytes))
	}
}

// StartAppend starts an append; its records are counted, as by
// AppendProduced, when its outcome is read.
func (l *countingLog) StartAppend(ctx context.Context, topic string, batches []api.ProducerBatch) (api.AppendWaiter, error) {
	w, err := l.CommitLog.StartAppend(ctx, topic, batches)
	if err != nil {
		return nil, err
	}
	return &countingWaiter{AppendWaiter: w, log: l, topic: topic, batches: batches}, nil
}

// countingWaiter counts a started append's records once, at the first
// Result.
type countingWaiter struct {
	api.AppendWaiter
	log     *countingLog
	topic   string
	batches []api.ProducerBatch
	once    sync.Once
}

// Result returns the append's outcome and counts what it appended.
func (w *countingWaiter) Result() ([]api.ProducerResult, error) {
	results, err := w.AppendWaiter.Result()
	if err == nil {
		w.once.Do(func() { w.log.count(w.topic, w.batches, results) })
	}
	return results, err
}

// AppendBatch appends and counts records.
func (l *countingLog) AppendBatch(ctx context.Context, topic string, records []*api.Record) (uint64, error) {
	first, err := l.CommitLog.AppendBatch(ctx, topic, records)
	if err == nil {
		n := 0
		for _, r := range records {
			n += len(r.GetValue())
		}
		label := l.topics.Label(topic)
		l.records.WithLabelValues(label).Add(float64(len(records)))
		l.bytes.WithLabelValues(label).Add(float64(n))
	}
	return first, err
}
