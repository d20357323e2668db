package discovery

import (
	"log"
	"strings"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newStdLogger returns a standard-library logger, the kind Serf and
// memberlist take, whose lines go to logger at the level their "[LEVEL] "
// prefix names, until gate is closed. component is the prefix the libraries
// repeat at the start of each message ("serf: ..."), dropped because logger's
// name already says it.
func newStdLogger(logger *zap.Logger, component string, gate *logGate) *log.Logger {
	// No flags: zap adds the time itself.
	return log.New(&zapWriter{logger: logger, component: component + ": ", gate: gate}, "", 0)
}

// logGate lets Close cut Serf's and memberlist's logging off. Some of their
// goroutines outlive Shutdown (a probe in flight finishes its timeout, then
// logs the result), and they must not write to a logger its owner has
// finished with: zaptest, for one, fails the test when that happens.
type logGate struct {
	// mu guards closed. Writers hold it for reading across each write, so
	// once close returns no write is in progress and none will start.
	mu     sync.RWMutex
	closed bool
}

// close stops all further writes through the gate, waiting for those in
// progress.
func (g *logGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// zapWriter is an io.Writer that turns each line a log.Logger writes into one
// zap entry. log.Logger calls Write once per line and serialises the calls.
type zapWriter struct {
	logger    *zap.Logger
	component string
	gate      *logGate
}

// Write implements io.Writer. It never fails: a log line that cannot be parsed
// is logged at info level as it is, and one written after the gate closed is
// dropped.
func (w *zapWriter) Write(p []byte) (int, error) {
	w.gate.mu.RLock()
	defer w.gate.mu.RUnlock()
	if w.gate.closed {
		return len(p), nil
	}
	line := strings.TrimRight(string(p), "\r\n")
	level, msg := parseLevel(line)
	msg = strings.TrimPrefix(msg, w.component)
	if ce := w.logger.Check(level, msg); ce != nil {
		ce.Write()
	}
	return len(p), nil
}

// parseLevel splits the "[LEVEL] " prefix Serf and memberlist put on their
// lines from the message. Lines without a known prefix are info.
func parseLevel(line string) (zapcore.Level, string) {
	rest, ok := strings.CutPrefix(line, "[")
	if !ok {
		return zapcore.InfoLevel, line
	}
	name, msg, ok := strings.Cut(rest, "]")
	if !ok {
		return zapcore.InfoLevel, line
	}
	var level zapcore.Level
	switch name {
	case "TRACE", "DEBUG":
		level = zapcore.DebugLevel
	case "INFO":
		level = zapcore.InfoLevel
	case "WARN", "WARNING":
		level = zapcore.WarnLevel
	case "ERR", "ERROR":
		level = zapcore.ErrorLevel
	default:
		return zapcore.InfoLevel, line
	}
	return level, strings.TrimPrefix(msg, " ")
}
