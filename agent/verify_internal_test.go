package agent

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestJoinVerifierLogsEachRefusalOnce(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	v := &joinVerifier{logger: zap.New(core), retry: time.Minute, refused: map[string]refusal{}}
	now := time.Unix(1000, 0)
	badCA := fmt.Errorf("%w: unknown authority", ErrPeerRefused)

	v.refuse("rogue", "10.0.0.9:8401", badCA, now)
	v.refuse("rogue", "10.0.0.9:8401", badCA, now.Add(time.Second))
	v.refuse("rogue", "10.0.0.9:8401", badCA, now.Add(2*time.Second))
	require.Equal(t, 1, logs.FilterLevelExact(zapcore.WarnLevel).Len(), "same refusal: warnings")
	require.Equal(t, 2, logs.FilterLevelExact(zapcore.DebugLevel).Len(), "same refusal: debug lines")

	// A new reason, or a new address, is news.
	v.refuse("rogue", "10.0.0.9:8401", fmt.Errorf("%w: connection refused", ErrPeerUnreachable), now.Add(3*time.Second))
	v.refuse("rogue", "10.0.0.10:8401", fmt.Errorf("%w: connection refused", ErrPeerUnreachable), now.Add(4*time.Second))
	require.Equal(t, 3, logs.FilterLevelExact(zapcore.WarnLevel).Len(), "changed refusals: warnings")
	require.Equal(t, "certificate", refusalKind(badCA))
	require.Equal(t, "unreachable", refusalKind(fmt.Errorf("%w: connection refused", ErrPeerUnreachable)))
	require.Equal(t, "distrusts", refusalKind(fmt.Errorf("%w: %w: bad certificate", ErrPeerRefused, ErrPeerDistrusts)))

	require.True(t, v.refusedRecently("rogue", "10.0.0.10:8401", now.Add(5*time.Second)))
	require.False(t, v.refusedRecently("rogue", "10.0.0.10:8401", now.Add(4*time.Second+time.Minute)), "after the retry interval")
	require.False(t, v.refusedRecently("rogue", "10.0.0.11:8401", now.Add(5*time.Second)), "at a new address")
	v.admitted("rogue")
	require.False(t, v.refusedRecently("rogue", "10.0.0.10:8401", now.Add(5*time.Second)), "after admission")
}

func TestJoinVerifierForgetsOldestPastTheBound(t *testing.T) {
	v := &joinVerifier{logger: zap.NewNop(), retry: time.Hour, refused: map[string]refusal{}}
	now := time.Unix(1000, 0)
	for i := range maxRefusals + 1 {
		v.refuse(fmt.Sprintf("m%d", i), "a:1", errors.New("no"), now.Add(time.Duration(i)*time.Second))
	}
	require.Len(t, v.refused, maxRefusals)
	require.NotContains(t, v.refused, "m0", "the oldest refusal is kept")
	require.Contains(t, v.refused, fmt.Sprintf("m%d", maxRefusals))
}
