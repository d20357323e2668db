package telemetry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/telemetry"
)

// callEntry finds the single "grpc call" entry for method, failing the test
// when there is not exactly one.
func callEntry(t *testing.T, logs *observer.ObservedLogs, method string) observer.LoggedEntry {
	t.Helper()
	var found []observer.LoggedEntry
	for _, e := range logs.FilterMessage("grpc call").All() {
		if e.ContextMap()["method"] == method {
			found = append(found, e)
		}
	}
	require.Len(t, found, 1, "entries for %s", method)
	return found[0]
}

func TestCallLoggerLogsEveryCall(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := newHarness(t, harnessOptions{logger: zap.New(core)})
	ctx := callCtx(t)

	root := h.client(t, "root")
	_, err := root.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("hello")}})
	require.NoError(t, err)
	_, err = root.Consume(ctx, &api.ConsumeRequest{Offset: 99})
	require.Equal(t, codes.OutOfRange, status.Code(err), "Consume(99) code")
	_, err = h.client(t, "nobody").ProduceBatch(ctx, &api.ProduceBatchRequest{Records: []*api.Record{{Value: []byte("x")}}})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "nobody's ProduceBatch code")
	_, err = h.client(t, "").GetServers(ctx, &api.GetServersRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "GetServers without certificate code")

	streamCtx, cancelStream := context.WithCancel(ctx)
	stream, err := root.ConsumeStream(streamCtx, &api.ConsumeRequest{Offset: 0})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.NoError(t, err)
	cancelStream()
	// The server logs the stream when its handler returns, after the client
	// has seen the cancellation; wait for the entry.
	require.Eventually(t, func() bool {
		return logs.FilterField(zap.String("method", "/log.v1.Log/ConsumeStream")).Len() == 1
	}, callTimeout, 10*time.Millisecond, "ConsumeStream entry")

	tests := []struct {
		name    string
		method  string
		code    codes.Code
		subject string
		level   zapcore.Level
		stream  bool
	}{
		{"ok", "/log.v1.Log/Produce", codes.OK, "root", zapcore.DebugLevel, false},
		{"end of log", "/log.v1.Log/Consume", codes.OutOfRange, "root", zapcore.DebugLevel, false},
		{"denied", "/log.v1.Log/ProduceBatch", codes.PermissionDenied, "nobody", zapcore.WarnLevel, false},
		{"no certificate", "/log.v1.Log/GetServers", codes.Unauthenticated, "", zapcore.WarnLevel, false},
		{"stream", "/log.v1.Log/ConsumeStream", codes.Canceled, "root", zapcore.DebugLevel, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := callEntry(t, logs, tt.method)
			fields := e.ContextMap()
			require.Equal(t, tt.code.String(), fields["code"], "code")
			require.Equal(t, tt.subject, fields["subject"], "subject")
			require.Equal(t, tt.level, e.Level, "level")
			require.Contains(t, fields["peer"], "127.0.0.1:", "peer")
			d, ok := fields["duration"].(time.Duration)
			require.True(t, ok, "duration = %T, want time.Duration", fields["duration"])
			require.Greater(t, d, time.Duration(0), "duration")
			_, hasErr := fields["error"]
			require.Equal(t, tt.code != codes.OK, hasErr, "error field present")
			_, isStream := fields["stream"]
			require.Equal(t, tt.stream, isStream, "stream field present")
			require.Equal(t, "grpc.call", e.LoggerName, "logger name")
		})
	}
}

func TestCallLoggerRespectsLevel(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	h := newHarness(t, harnessOptions{logger: zap.New(core)})
	_, err := h.client(t, "root").Produce(callCtx(t), &api.ProduceRequest{Record: &api.Record{Value: []byte("v")}})
	require.NoError(t, err)
	require.Zero(t, logs.FilterMessage("grpc call").Len(), "a Debug call entry was written at Info")
}

func TestCallLoggerSlowCall(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	calls := telemetry.NewCallLogger(telemetry.CallLogConfig{Logger: zap.New(core), SlowCallThreshold: time.Nanosecond})
	info := &grpc.UnaryServerInfo{FullMethod: "/log.v1.Log/Produce"}
	// Any call takes longer than a nanosecond.
	ok := func(context.Context, any) (any, error) { return nil, nil }
	_, err := calls.UnaryServerInterceptor()(context.Background(), nil, info, ok)
	require.NoError(t, err)
	e := callEntry(t, logs, info.FullMethod)
	require.Equal(t, zapcore.WarnLevel, e.Level, "slow OK call level")
}

func TestCallLoggerSubjectWithoutInnerInterceptor(t *testing.T) {
	// Installed inside authentication, the outer interceptor alone finds
	// the subject in its own context.
	core, logs := observer.New(zapcore.DebugLevel)
	calls := telemetry.NewCallLogger(telemetry.CallLogConfig{Logger: zap.New(core)})
	info := &grpc.UnaryServerInfo{FullMethod: "/log.v1.Log/Consume"}
	ctx := auth.WithSubject(context.Background(), "carol")
	_, err := calls.UnaryServerInterceptor()(ctx, nil, info, func(context.Context, any) (any, error) {
		return nil, errors.New("boom")
	})
	require.Error(t, err)
	e := callEntry(t, logs, info.FullMethod)
	require.Equal(t, "carol", e.ContextMap()["subject"], "subject")
	require.Equal(t, codes.Unknown.String(), e.ContextMap()["code"], "code of a plain error")
	require.Equal(t, zapcore.ErrorLevel, e.Level, "level of Unknown")
}

func TestDefaultCallLevel(t *testing.T) {
	tests := []struct {
		code codes.Code
		want zapcore.Level
	}{
		{codes.OK, zapcore.DebugLevel},
		{codes.OutOfRange, zapcore.DebugLevel},
		{codes.InvalidArgument, zapcore.DebugLevel},
		{codes.Canceled, zapcore.DebugLevel},
		{codes.Unauthenticated, zapcore.WarnLevel},
		{codes.PermissionDenied, zapcore.WarnLevel},
		{codes.Unavailable, zapcore.WarnLevel},
		{codes.ResourceExhausted, zapcore.WarnLevel},
		{codes.Internal, zapcore.ErrorLevel},
		{codes.Unknown, zapcore.ErrorLevel},
		{codes.DataLoss, zapcore.ErrorLevel},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			got := telemetry.DefaultCallLevel(tt.code)
			require.Equal(t, tt.want, got, "DefaultCallLevel(%v) = %v, want %v", tt.code, got, tt.want)
		})
	}
}
