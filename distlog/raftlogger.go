package distlog

import (
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// hclogZap bridges Raft's hclog.Logger onto zap, so Raft's messages land in
// the node's structured log under the same name and fields. hclog's key/value
// argument pairs become zap fields; Trace maps to zap's Debug level, as zap
// has nothing below it. The level is zap's: SetLevel is a no-op.
type hclogZap struct {
	z       *zap.Logger
	name    string
	implied []any // With key/value pairs, kept for ImpliedArgs
	// peers folds Raft's repeated errors about an unreachable peer into
	// one warning (see peerFailures); shared by derived loggers.
	peers *peerFailures
}

var _ hclog.Logger = (*hclogZap)(nil)

// newHCLogger returns an hclog.Logger writing to z.
func newHCLogger(z *zap.Logger) hclog.Logger {
	// Skip the adapter's own frames so callers show as Raft's code.
	return &hclogZap{z: z.WithOptions(zap.AddCallerSkip(2)), peers: newPeerFailures()}
}

// fields turns hclog's alternating key/value arguments into zap fields. A
// dangling value gets the key "EXTRA_VALUE_AT_END", as hclog itself does.
func fields(args []any) []zap.Field {
	out := make([]zap.Field, 0, (len(args)+1)/2)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = append(out, zap.Any("EXTRA_VALUE_AT_END", args[i]))
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = fmt.Sprint(args[i])
		}
		switch v := args[i+1].(type) {
		case hclog.Format:
			out = append(out, zap.String(key, formatHCLog(v)))
		case error:
			out = append(out, zap.NamedError(key, v))
		default:
			out = append(out, zap.Any(key, v))
		}
	}
	return out
}

// formatHCLog renders hclog.Fmt's (format, args...) value.
func formatHCLog(v hclog.Format) string {
	if len(v) == 0 {
		return ""
	}
	format, ok := v[0].(string)
	if !ok {
		return fmt.Sprint(v...)
	}
	return fmt.Sprintf(format, v[1:]...)
}

func zapLevel(level hclog.Level) zapcore.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return zapcore.DebugLevel
	case hclog.Warn:
		return zapcore.WarnLevel
	case hclog.Error:
		return zapcore.ErrorLevel
	default:
		return zapcore.InfoLevel
	}
}

// Log implements hclog.Logger.
func (l *hclogZap) Log(level hclog.Level, msg string, args ...any) {
	if addr := peerAddress(msg, args); addr != "" && l.peers != nil {
		if !l.peers.failed(l.z, msg, addr, fields(args)) {
			return
		}
	}
	if ce := l.z.Check(zapLevel(level), msg); ce != nil {
		ce.Write(fields(args)...)
	}
}

// Trace implements hclog.Logger.
func (l *hclogZap) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (l *hclogZap) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (l *hclogZap) Info(msg string, args ...any) { l.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (l *hclogZap) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (l *hclogZap) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (l *hclogZap) IsTrace() bool { return l.z.Core().Enabled(zapcore.DebugLevel) }

// IsDebug implements hclog.Logger.
func (l *hclogZap) IsDebug() bool { return l.z.Core().Enabled(zapcore.DebugLevel) }

// IsInfo implements hclog.Logger.
func (l *hclogZap) IsInfo() bool { return l.z.Core().Enabled(zapcore.InfoLevel) }

// IsWarn implements hclog.Logger.
func (l *hclogZap) IsWarn() bool { return l.z.Core().Enabled(zapcore.WarnLevel) }

// IsError implements hclog.Logger.
func (l *hclogZap) IsError() bool { return l.z.Core().Enabled(zapcore.ErrorLevel) }

// ImpliedArgs implements hclog.Logger.
func (l *hclogZap) ImpliedArgs() []any { return l.implied }

// With implements hclog.Logger.
func (l *hclogZap) With(args ...any) hclog.Logger {
	implied := append(append([]any(nil), l.implied...), args...)
	return &hclogZap{z: l.z.With(fields(args)...), name: l.name, implied: implied, peers: l.peers}
}

// Name implements hclog.Logger.
func (l *hclogZap) Name() string { return l.name }

// Named implements hclog.Logger.
func (l *hclogZap) Named(name string) hclog.Logger {
	full := name
	if l.name != "" {
		full = l.name + "." + name
	}
	return &hclogZap{z: l.z.Named(name), name: full, implied: l.implied, peers: l.peers}
}

// ResetNamed implements hclog.Logger. zap names only grow, so the new name
// is recorded for Name but zap keeps the prefix it already has.
func (l *hclogZap) ResetNamed(name string) hclog.Logger {
	return &hclogZap{z: l.z, name: name, implied: l.implied, peers: l.peers}
}

// SetLevel implements hclog.Logger as a no-op: zap's level rules.
func (l *hclogZap) SetLevel(hclog.Level) {}

// GetLevel implements hclog.Logger from zap's enabled levels.
func (l *hclogZap) GetLevel() hclog.Level {
	switch {
	case l.z.Core().Enabled(zapcore.DebugLevel):
		return hclog.Debug
	case l.z.Core().Enabled(zapcore.InfoLevel):
		return hclog.Info
	case l.z.Core().Enabled(zapcore.WarnLevel):
		return hclog.Warn
	case l.z.Core().Enabled(zapcore.ErrorLevel):
		return hclog.Error
	default:
		return hclog.Off
	}
}

// StandardLogger implements hclog.Logger: lines written to the returned
// logger are logged at Info (or opts.ForceLevel).
func (l *hclogZap) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger.
func (l *hclogZap) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return &hclogWriter{l: l, level: level}
}

// hclogWriter logs each Write as one message.
type hclogWriter struct {
	l     *hclogZap
	level hclog.Level
}

// Write implements io.Writer.
func (w *hclogWriter) Write(p []byte) (int, error) {
	w.l.Log(w.level, strings.TrimRight(string(p), "\r\n"))
	return len(p), nil
}
