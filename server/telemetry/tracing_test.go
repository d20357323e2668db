package telemetry_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/telemetry"
)

// statusCodeKey is the span attribute otelgrpc puts the call's code in.
const statusCodeKey = attribute.Key("rpc.response.status_code")

// spanNamed returns the one span of the given name and kind.
func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string, kind trace.SpanKind) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name && s.SpanKind == kind {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "%v spans named %s", kind, name)
	return found[0]
}

func attr(s tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

func TestTracingSpanPerCall(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tracing, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{
		SpanExporter: exporter, InstanceID: "node-1",
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tracing.Shutdown(context.Background())) })
	h := newHarness(t, harnessOptions{logger: zaptest.NewLogger(t), tracing: tracing})
	ctx := callCtx(t)
	root := h.client(t, "root")

	_, err = root.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("v")}})
	require.NoError(t, err)
	_, err = root.Consume(ctx, &api.ConsumeRequest{Offset: 99})
	require.Equal(t, codes.OutOfRange, status.Code(err), "Consume(99) code")
	_, err = root.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: []*api.Record{{Value: []byte(failValue)}}})
	require.Equal(t, codes.Internal, status.Code(err), "ProduceBatch(%q) code", failValue)
	_, err = h.client(t, "").GetServers(ctx, &api.GetServersRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "GetServers without certificate code")

	// The server ends its span after the client has its answer.
	require.Eventually(t, func() bool { return len(exporter.GetSpans()) >= 4 }, callTimeout, 10*time.Millisecond)
	spans := exporter.GetSpans()
	require.Len(t, spans, 4, "one span per call")

	tests := []struct {
		name       string
		span       string
		code       string
		spanStatus otelcodes.Code
	}{
		{"ok", "log.v1.Log/Produce", "OK", otelcodes.Unset},
		{"client error", "log.v1.Log/Consume", "OUT_OF_RANGE", otelcodes.Unset},
		{"server fault", "log.v1.Log/ProduceBatch", "INTERNAL", otelcodes.Error},
		{"refused by auth", "log.v1.Log/GetServers", "UNAUTHENTICATED", otelcodes.Unset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spanNamed(t, spans, tt.span, trace.SpanKindServer)
			require.Equal(t, tt.code, attr(s, statusCodeKey), "%s %s", tt.span, statusCodeKey)
			require.Equal(t, tt.spanStatus, s.Status.Code, "%s span status", tt.span)
			instance, ok := s.Resource.Set().Value("service.instance.id")
			require.True(t, ok, "service.instance.id missing")
			require.Equal(t, "node-1", instance.AsString())
		})
	}
}

func TestTracingPropagatesFromClient(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tracing, err := telemetry.NewTracing(context.Background(), telemetry.TracingConfig{SpanExporter: exporter})
	require.NoError(t, err)
	h := newHarness(t, harnessOptions{tracing: tracing})
	client := h.client(t, "root", grpc.WithStatsHandler(tracing.ClientHandler()))
	_, err = client.Produce(callCtx(t), &api.ProduceRequest{Record: &api.Record{Value: []byte("v")}})
	require.NoError(t, err)

	require.Eventually(t, func() bool { return len(exporter.GetSpans()) >= 2 }, callTimeout, 10*time.Millisecond)
	spans := exporter.GetSpans()
	clientSpan := spanNamed(t, spans, "log.v1.Log/Produce", trace.SpanKindClient)
	serverSpan := spanNamed(t, spans, "log.v1.Log/Produce", trace.SpanKindServer)
	require.Equal(t, clientSpan.SpanContext.TraceID(), serverSpan.SpanContext.TraceID(), "trace id")
	require.Equal(t, clientSpan.SpanContext.SpanID(), serverSpan.Parent.SpanID(), "server span's parent")
}

func TestNewTracingExporters(t *testing.T) {
	tests := []struct {
		name      string
		cfg       telemetry.TracingConfig
		recording bool
		wantErr   error
	}{
		{"default is none", telemetry.TracingConfig{}, false, nil},
		{"none", telemetry.TracingConfig{Exporter: telemetry.ExporterNone}, false, nil},
		{"stdout", telemetry.TracingConfig{Exporter: telemetry.ExporterStdout}, true, nil},
		// The OTLP exporter connects lazily, so a closed port is no error
		// until spans are sent.
		{"otlp", telemetry.TracingConfig{Exporter: telemetry.ExporterOTLP, OTLPEndpoint: "127.0.0.1:1", OTLPInsecure: true}, true, nil},
		{"unknown", telemetry.TracingConfig{Exporter: "zipkin"}, false, telemetry.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			tt.cfg.Writer = &out
			tracing, err := telemetry.NewTracing(context.Background(), tt.cfg)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			_, span := tracing.TracerProvider().Tracer("test").Start(context.Background(), "op")
			require.Equal(t, tt.recording, span.IsRecording(), "span recording")
			if tt.cfg.Exporter != telemetry.ExporterStdout {
				require.NoError(t, tracing.Shutdown(context.Background()))
				return
			}
			span.End()
			// Shutdown flushes the batch, so the span is written by now.
			require.NoError(t, tracing.Shutdown(context.Background()))
			require.Contains(t, out.String(), `"Name":"op"`, "stdout exporter output")
			require.NoError(t, tracing.Shutdown(context.Background()), "second Shutdown")
		})
	}
}

func TestOTelErrorHandler(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	telemetry.OTelErrorHandler(zap.New(core)).Handle(errors.New("collector unreachable"))
	entries := logs.FilterMessage("opentelemetry error").All()
	require.Len(t, entries, 1, "entries")
	require.Equal(t, "collector unreachable", entries[0].ContextMap()["error"], "error field")
	require.Equal(t, "otel", entries[0].LoggerName, "logger name")
}
