package discovery

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestStdLoggerBridge(t *testing.T) {
	tests := []struct {
		line      string
		wantLevel zapcore.Level
		wantMsg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", zapcore.DebugLevel, "Stream connection from=127.0.0.1:1"},
		{"[TRACE] memberlist: probe", zapcore.DebugLevel, "probe"},
		{"[INFO] memberlist: Marking n2 as failed", zapcore.InfoLevel, "Marking n2 as failed"},
		{"[WARN] memberlist: Was able to connect", zapcore.WarnLevel, "Was able to connect"},
		{"[ERR] memberlist: Failed to send", zapcore.ErrorLevel, "Failed to send"},
		{"[ERROR] memberlist: Failed to send", zapcore.ErrorLevel, "Failed to send"},
		{"[ERR] Failed to shutdown transport: x", zapcore.ErrorLevel, "Failed to shutdown transport: x"},
		{"no prefix at all", zapcore.InfoLevel, "no prefix at all"},
		{"[NOTICE] memberlist: odd level", zapcore.InfoLevel, "[NOTICE] memberlist: odd level"},
		{"[unterminated", zapcore.InfoLevel, "[unterminated"},
		{"", zapcore.InfoLevel, ""},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			std := newStdLogger(zap.New(core), "memberlist", &logGate{})
			std.Print(tt.line) // adds the newline log.Logger always writes

			entries := logs.All()
			require.Len(t, entries, 1)
			require.Equal(t, tt.wantLevel, entries[0].Level, "level of %q", tt.line)
			require.Equal(t, tt.wantMsg, entries[0].Message, "message of %q", tt.line)
		})
	}
}

func TestStdLoggerBridgeHonoursLevel(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	std := newStdLogger(zap.New(core), "serf", &logGate{})
	std.Print("[DEBUG] serf: noise")
	std.Print("[WARN] serf: signal")
	require.Equal(t, []string{"signal"}, messages(logs.All()))
}

func messages(entries []observer.LoggedEntry) []string {
	var msgs []string
	for _, e := range entries {
		msgs = append(msgs, e.Message)
	}
	return msgs
}

func TestStdLoggerBridgeSilentAfterGateCloses(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	gate := &logGate{}
	std := newStdLogger(zap.New(core), "serf", gate)
	std.Print("[INFO] serf: before")
	gate.close()
	std.Print("[INFO] serf: after")
	require.Equal(t, []string{"before"}, messages(logs.All()))
}
