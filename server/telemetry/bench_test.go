package telemetry_test

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"

	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/telemetry"
)

// BenchmarkUnaryInstrumentation measures what the call log and metrics
// interceptors add to one unary call, with the log at Info (an OK call's
// Debug entry is skipped, as in production).
func BenchmarkUnaryInstrumentation(b *testing.B) {
	core, _ := observer.New(zapcore.InfoLevel)
	calls := telemetry.NewCallLogger(telemetry.CallLogConfig{Logger: zap.New(core)})
	metrics, err := telemetry.NewMetrics(telemetry.MetricsConfig{})
	if err != nil {
		b.Fatal(err)
	}
	info := &grpc.UnaryServerInfo{FullMethod: "/log.v1.Log/Produce"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	outer, counted, inner := calls.UnaryServerInterceptor(), metrics.UnaryServerInterceptor(), calls.UnarySubjectInterceptor()
	call := func(ctx context.Context, req any) (any, error) {
		return counted(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return inner(auth.WithSubject(ctx, "root"), req, info, handler)
		})
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := outer(ctx, nil, info, call); err != nil {
			b.Fatal(err)
		}
	}
}
