package distlog

import (
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestHCLogBridge(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := newHCLogger(zap.New(core)).Named("raft").With("node", "n1")

	l.Debug("hidden")     // below the zap level
	l.Trace("hidden too") // Trace maps to Debug
	l.Info("hello", "peer", "n2", "index", 7)
	l.Warn("odd", "dangling")
	l.Error("failed", "error", errors.New("boom"), "fmt", hclog.Fmt("%d-%s", 1, "x"))
	l.StandardLogger(nil).Print("from the standard library\n")

	require.False(t, l.IsDebug())
	require.True(t, l.IsInfo())
	require.Equal(t, hclog.Info, l.GetLevel())
	require.Equal(t, "raft", l.Name())
	require.Equal(t, []any{"node", "n1"}, l.ImpliedArgs())

	entries := logs.All()
	require.Len(t, entries, 4)
	tests := []struct {
		msg    string
		level  zapcore.Level
		fields map[string]any
	}{
		{msg: "hello", level: zapcore.InfoLevel, fields: map[string]any{"node": "n1", "peer": "n2", "index": int64(7)}},
		{msg: "odd", level: zapcore.WarnLevel, fields: map[string]any{"node": "n1", "EXTRA_VALUE_AT_END": "dangling"}},
		{msg: "failed", level: zapcore.ErrorLevel, fields: map[string]any{"node": "n1", "error": "boom", "fmt": "1-x"}},
		{msg: "from the standard library", level: zapcore.InfoLevel, fields: map[string]any{"node": "n1"}},
	}
	for k, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			e := entries[k]
			require.Equal(t, tt.msg, e.Message)
			require.Equal(t, tt.level, e.Level)
			require.Equal(t, "raft", e.LoggerName)
			require.Equal(t, tt.fields, e.ContextMap())
		})
	}
}
