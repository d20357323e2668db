package telemetry

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/server/auth"
)

// DefaultSlowCallThreshold is CallLogConfig.SlowCallThreshold's default: a
// unary call that takes longer is logged at Warn whatever its code.
const DefaultSlowCallThreshold = time.Second

// CallLogConfig configures a CallLogger.
type CallLogConfig struct {
	// Logger receives one entry per call, named "grpc.call". Default
	// zap.NewNop().
	Logger *zap.Logger
	// LevelFor picks the level of a finished call's entry from its code.
	// Default DefaultCallLevel.
	LevelFor func(codes.Code) zapcore.Level
	// SlowCallThreshold raises a unary call that took longer to at least
	// Warn. Streams are exempt: a ConsumeStream lives as long as its
	// consumer. Default DefaultSlowCallThreshold (1 s); negative turns it off.
	SlowCallThreshold time.Duration
}

// DefaultCallLevel is the default CallLogConfig.LevelFor. A commit log
// serves many small calls, so an ordinary call — including the OutOfRange a
// consumer gets at the end of the log and other refusals caused by the
// client's request — is Debug; refused credentials and overload are Warn,
// as an operator should see them; server faults are Error.
func DefaultCallLevel(code codes.Code) zapcore.Level {
	switch code {
	case codes.OK, codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.OutOfRange, codes.FailedPrecondition, codes.Aborted:
		return zapcore.DebugLevel
	case codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted,
		codes.DeadlineExceeded, codes.Unavailable:
		return zapcore.WarnLevel
	default: // Unknown, Unimplemented, Internal, DataLoss
		return zapcore.ErrorLevel
	}
}

// CallLogger logs every gRPC call once, when it ends, with constant message
// "grpc call" and the fields method, code, duration, peer and subject (and
// error when the call failed).
//
// Install its interceptors in two places so that calls refused by
// authentication are logged too, yet authenticated calls name their
// subject:
//
//	grpc.ChainUnaryInterceptor(
//		calls.UnaryServerInterceptor(),  // outside authentication
//		auth.UnaryServerInterceptor(),
//		calls.UnarySubjectInterceptor(), // inside: records auth.Subject
//	)
//
// (and the same for streams). Without the subject interceptors, the
// outer interceptor still reads auth.Subject from its own context, which
// works when it is installed inside authentication instead.
type CallLogger struct {
	logger   *zap.Logger
	levelFor func(codes.Code) zapcore.Level
	slow     time.Duration
}

// NewCallLogger returns a CallLogger configured by cfg.
func NewCallLogger(cfg CallLogConfig) *CallLogger {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.LevelFor == nil {
		cfg.LevelFor = DefaultCallLevel
	}
	if cfg.SlowCallThreshold == 0 {
		cfg.SlowCallThreshold = DefaultSlowCallThreshold
	}
	return &CallLogger{
		logger:   cfg.Logger.Named("grpc.call"),
		levelFor: cfg.LevelFor,
		slow:     cfg.SlowCallThreshold,
	}
}

// callRecordKey is the context key of the *callRecord the outer
// interceptor hands to the subject interceptor.
type callRecordKey struct{}

// callRecord carries what an inner interceptor learns back to the outer
// one. The subject interceptor runs on the call's goroutine before the
// handler, but a stream handler may pass its context to other goroutines,
// so the field is guarded anyway.
type callRecord struct {
	mu      sync.Mutex
	subject string // guarded by mu
}

func (r *callRecord) setSubject(subject string) {
	r.mu.Lock()
	r.subject = subject
	r.mu.Unlock()
}

func (r *callRecord) getSubject() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subject
}

// UnaryServerInterceptor logs each unary call when it returns.
func (l *CallLogger) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		rec := &callRecord{}
		resp, err := handler(context.WithValue(ctx, callRecordKey{}, rec), req)
		l.log(ctx, rec, info.FullMethod, start, err, false)
		return resp, err
	}
}

// StreamServerInterceptor logs each streaming call when it returns.
func (l *CallLogger) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		rec := &callRecord{}
		ctx := context.WithValue(ss.Context(), callRecordKey{}, rec)
		err := handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		l.log(ss.Context(), rec, info.FullMethod, start, err, true)
		return err
	}
}

// UnarySubjectInterceptor records the authenticated subject for the log
// entry; install it after auth.UnaryServerInterceptor.
func (l *CallLogger) UnarySubjectInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		recordSubject(ctx)
		return handler(ctx, req)
	}
}

// StreamSubjectInterceptor records the authenticated subject for the log
// entry; install it after auth.StreamServerInterceptor.
func (l *CallLogger) StreamSubjectInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		recordSubject(ss.Context())
		return handler(srv, ss)
	}
}

func recordSubject(ctx context.Context) {
	rec, ok := ctx.Value(callRecordKey{}).(*callRecord)
	if !ok {
		return
	}
	if subject, ok := auth.Subject(ctx); ok {
		rec.setSubject(subject)
	}
}

// contextStream replaces a stream's context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the replaced context.
func (s *contextStream) Context() context.Context { return s.ctx }

func (l *CallLogger) log(ctx context.Context, rec *callRecord, method string, start time.Time, err error, stream bool) {
	duration := time.Since(start)
	code := status.Code(err)
	level := l.levelFor(code)
	if !stream && l.slow > 0 && duration > l.slow && level < zapcore.WarnLevel {
		level = zapcore.WarnLevel
	}
	ce := l.logger.Check(level, "grpc call")
	if ce == nil {
		return
	}
	subject := rec.getSubject()
	if subject == "" {
		subject, _ = auth.Subject(ctx)
	}
	peerAddr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		peerAddr = p.Addr.String()
	}
	fields := []zap.Field{
		zap.String("method", method),
		zap.String("code", code.String()),
		zap.Duration("duration", duration),
		zap.String("peer", peerAddr),
		zap.String("subject", subject),
	}
	if stream {
		fields = append(fields, zap.Bool("stream", true))
	}
	if err != nil {
		// The status message only: the wrapped error's details were logged
		// (or deliberately hidden) by the server when it built the status.
		fields = append(fields, zap.String("error", strings.TrimSpace(status.Convert(err).Message())))
	}
	ce.Write(fields...)
}
