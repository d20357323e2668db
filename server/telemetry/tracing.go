package telemetry

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
	"google.golang.org/grpc/stats"
)

// Trace exporters TracingConfig.Exporter accepts.
const (
	// ExporterNone records no spans (the default).
	ExporterNone = "none"
	// ExporterStdout writes each finished span as JSON to
	// TracingConfig.Writer, for debugging.
	ExporterStdout = "stdout"
	// ExporterOTLP sends spans over OTLP/gRPC to TracingConfig.OTLPEndpoint
	// (an OpenTelemetry Collector, Jaeger, Tempo…).
	ExporterOTLP = "otlp"
)

// DefaultServiceName is TracingConfig.ServiceName's default.
const DefaultServiceName = "proglog"

// TracingConfig configures NewTracing.
type TracingConfig struct {
	// Exporter is ExporterNone (or empty: the default), ExporterStdout or
	// ExporterOTLP.
	Exporter string
	// OTLPEndpoint is the host:port of the OTLP/gRPC receiver. Empty: the
	// exporter's own default, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317.
	OTLPEndpoint string
	// OTLPInsecure sends spans without TLS, for a collector on the same
	// host or pod. Default false: TLS with the system's roots.
	OTLPInsecure bool
	// Writer receives the stdout exporter's spans. Default os.Stdout.
	Writer io.Writer
	// SpanExporter, when set, replaces Exporter: every span is handed to it
	// synchronously as it ends. For tests (tracetest.InMemoryExporter) and
	// for embedding with an exporter of your own.
	SpanExporter sdktrace.SpanExporter
	// ServiceName is the service.name resource attribute. Default
	// DefaultServiceName.
	ServiceName string
	// InstanceID is the service.instance.id resource attribute: the node's
	// name, so that spans from several nodes can be told apart.
	InstanceID string
}

// Tracing is one node's OpenTelemetry tracing: its own TracerProvider
// (never the global one, so that nodes in one process keep their spans
// apart) and the gRPC stats handlers that make a span per call.
type Tracing struct {
	provider   trace.TracerProvider
	sdk        *sdktrace.TracerProvider // nil when no exporter is set
	propagator propagation.TextMapPropagator

	shutdownOnce sync.Once
	shutdownErr  error
}

// NewTracing builds the exporter cfg names and a TracerProvider on it. The
// OTLP exporter connects lazily: an unreachable collector is not an error
// here, and spans it cannot take are dropped after its retries.
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	if cfg.ServiceName == "" {
		cfg.ServiceName = DefaultServiceName
	}
	if cfg.Writer == nil {
		cfg.Writer = os.Stdout
	}
	t := &Tracing{
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.instance.id", cfg.InstanceID),
	)
	var opt sdktrace.TracerProviderOption
	switch {
	case cfg.SpanExporter != nil:
		opt = sdktrace.WithSyncer(cfg.SpanExporter)
	case cfg.Exporter == "" || cfg.Exporter == ExporterNone:
		t.provider = tracenoop.NewTracerProvider()
		return t, nil
	case cfg.Exporter == ExporterStdout:
		exp, err := stdouttrace.New(stdouttrace.WithWriter(cfg.Writer))
		if err != nil {
			return nil, fmt.Errorf("telemetry: stdout trace exporter: %w", err)
		}
		opt = sdktrace.WithBatcher(exp)
	case cfg.Exporter == ExporterOTLP:
		var opts []otlptracegrpc.Option
		if cfg.OTLPEndpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint))
		}
		if cfg.OTLPInsecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp trace exporter: %w", err)
		}
		opt = sdktrace.WithBatcher(exp)
	default:
		return nil, fmt.Errorf("%w: Exporter %q (want %q, %q or %q)",
			ErrInvalidConfig, cfg.Exporter, ExporterNone, ExporterStdout, ExporterOTLP)
	}
	t.sdk = sdktrace.NewTracerProvider(opt, sdktrace.WithResource(res))
	t.provider = t.sdk
	return t, nil
}

// TracerProvider is the node's provider, for spans of its own.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.provider }

// options are the otelgrpc options of both handlers: this node's provider
// and propagators, and no metrics (Prometheus has them), so that nothing
// falls back to OpenTelemetry's global providers.
func (t *Tracing) options() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithPropagators(t.propagator),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
	}
}

// ServerHandler makes a server span per call, continuing the caller's
// trace when its metadata carries one: install it with grpc.StatsHandler.
// The span's rpc.response.status_code attribute is the call's code; its
// status is Error for server faults (Unknown, DeadlineExceeded,
// Unimplemented, Internal, Unavailable, DataLoss).
func (t *Tracing) ServerHandler() stats.Handler {
	return otelgrpc.NewServerHandler(t.options()...)
}

// ClientHandler makes a client span per call and sends the trace context
// to the server: pass grpc.WithStatsHandler(ClientHandler()) in
// loadbalance.Config.DialOptions or to grpc.NewClient.
func (t *Tracing) ClientHandler() stats.Handler {
	return otelgrpc.NewClientHandler(t.options()...)
}

// Shutdown flushes the spans not yet exported and stops the exporter, no
// longer than ctx allows. Later calls return the first call's result.
func (t *Tracing) Shutdown(ctx context.Context) error {
	t.shutdownOnce.Do(func() {
		if t.sdk == nil {
			return
		}
		if err := t.sdk.Shutdown(ctx); err != nil {
			t.shutdownErr = fmt.Errorf("telemetry: shut down tracer provider: %w", err)
		}
	})
	return t.shutdownErr
}

// OTelErrorHandler returns an OpenTelemetry error handler that logs to
// logger. The SDK reports failures it cannot return — an exporter that
// cannot reach its collector, a full span queue — only to its global error
// handler, which by default prints them with the standard library's log
// package. Install it once, in main: otel.SetErrorHandler is global, so a
// library must not call it.
func OTelErrorHandler(logger *zap.Logger) otel.ErrorHandler {
	logger = logger.Named("otel")
	return otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry error", zap.Error(err))
	})
}
