package distlog

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// TestPeerFailuresFoldIntoOneWarning: Raft's heartbeat errors about one
// peer become one warning when it goes, a count every
// peerSummaryInterval, and one info line when it returns; an append
// failure to a peer not known to be down is logged as Raft gave it.
func TestPeerFailuresFoldIntoOneWarning(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := newHCLogger(zap.New(core)).Named("raft").With("node", "n1")
	hl, ok := l.(*hclogZap)
	require.True(t, ok)
	now := time.Unix(1000, 0)
	hl.peers.now = func() time.Time { return now }
	refused := errors.New("dial tcp 127.0.0.1:9: connect: connection refused")

	l.Error(msgAppendEntriesFailed, "peer", raft.Server{ID: "n3", Address: "127.0.0.1:7"}, "error", refused)
	for range 10 {
		l.Error(msgHeartbeatFailed, "peer", raft.ServerAddress("127.0.0.1:9"), "backoff time", 10*time.Millisecond, "error", refused)
		now = now.Add(650 * time.Millisecond)
		l.Error(msgAppendEntriesFailed, "peer", raft.Server{ID: "n2", Address: "127.0.0.1:9"}, "error", refused)
	}
	hl.peers.returned("127.0.0.1:9")
	hl.peers.returned("127.0.0.1:9") // once only

	count := func(level zapcore.Level, msg string) int {
		return logs.Filter(func(e observer.LoggedEntry) bool { return e.Level == level && e.Message == msg }).Len()
	}
	require.Equal(t, 1, count(zapcore.ErrorLevel, msgAppendEntriesFailed), "append failure to a peer whose heartbeats work, at error level")
	require.Equal(t, 0, count(zapcore.ErrorLevel, msgHeartbeatFailed), "heartbeat errors at error level")
	warnings := logs.FilterLevelExact(zapcore.WarnLevel).All()
	require.Len(t, warnings, 1, "warnings")
	require.Equal(t, "127.0.0.1:9", warnings[0].ContextMap()["peer"])
	require.Equal(t, refused.Error(), warnings[0].ContextMap()["error"])
	require.Equal(t, 9, count(zapcore.DebugLevel, msgHeartbeatFailed), "later heartbeat failures at debug level")
	require.Equal(t, 10, count(zapcore.DebugLevel, msgAppendEntriesFailed), "append failures to the down peer at debug level")
	// 19 failures after the first over 6.5 s: no summary yet (30 s).
	require.Equal(t, 0, count(zapcore.InfoLevel, "raft peer still unreachable"))
	back := logs.FilterMessage("raft peer reachable again").All()
	require.Len(t, back, 1)
	require.Equal(t, zapcore.InfoLevel, back[0].Level)
	require.Equal(t, int64(20), back[0].ContextMap()["failures"])
	require.Equal(t, "n1", back[0].ContextMap()["node"])

	// A long outage gets a count every peerSummaryInterval.
	for range 100 {
		l.Error(msgHeartbeatFailed, "peer", raft.ServerAddress("127.0.0.1:9"), "error", refused)
		now = now.Add(650 * time.Millisecond)
	}
	summaries := logs.FilterMessage("raft peer still unreachable").All()
	require.Len(t, summaries, 2, "summaries over 65 s")
	require.Equal(t, 2, logs.FilterLevelExact(zapcore.WarnLevel).Len(), "a second outage warns again")
}

// TestDistributedLogPeerDownLogsOnce: with a follower stopped, the leader
// logs one warning and no heartbeat errors, and one line when it returns.
func TestDistributedLogPeerDownLogsOnce(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		if cfg.Raft.LocalID == "node-0" {
			cfg.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)).Named("node-0")
		}
	})
	require.Equal(t, "node-0", c.waitLeader().id, "the bootstrap node leads")
	c.stop(2)
	peer := c.nodes[2].addr
	heartbeatFailures := func() int { return logs.FilterMessage(msgHeartbeatFailed).Len() }
	require.Eventually(t, func() bool { return heartbeatFailures() >= 5 }, waitTimeout, 10*time.Millisecond,
		"the leader never failed to heartbeat the stopped follower")
	c.start(2)
	require.Eventually(t, func() bool { return logs.FilterMessage("raft peer reachable again").Len() == 1 }, waitTimeout, 10*time.Millisecond,
		"no line for the returned follower")

	require.Equal(t, 0, logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessage(msgHeartbeatFailed).Len(), "heartbeat errors at error level")
	warnings := logs.FilterMessage("raft peer unreachable; further failures are counted at debug level until it returns").All()
	require.Len(t, warnings, 1)
	require.Equal(t, peer, warnings[0].ContextMap()["peer"])
	back := logs.FilterMessage("raft peer reachable again").All()[0]
	require.Equal(t, peer, back.ContextMap()["peer"])
	require.GreaterOrEqual(t, back.ContextMap()["failures"], int64(5))
}
