package distlog

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCountsFor(t *testing.T) {
	cfg := RaftConfig{TrailingLogs: 16, SnapshotThreshold: 1024, TrailingBytes: 1 << 20}
	tests := []struct {
		name           string
		cfg            RaftConfig
		bytes, entries uint64
		want           trailingCounts
	}{
		{name: "empty log: the configured counts", cfg: cfg, want: trailingCounts{trailing: 16, threshold: 1024}},
		{name: "small entries: many kept, threshold at its most", cfg: cfg, bytes: 100 * 200, entries: 100,
			want: trailingCounts{trailing: (1 << 20) / 200, threshold: 1024}},
		{name: "mid-sized entries", cfg: cfg, bytes: 10 * 4096, entries: 10, want: trailingCounts{trailing: 256, threshold: 256}},
		{name: "large entries: the least kept, snapshots every 16", cfg: cfg, bytes: 10 << 20, entries: 10,
			want: trailingCounts{trailing: 16, threshold: 16}},
		{name: "entries under a byte each", cfg: RaftConfig{TrailingLogs: 1, SnapshotThreshold: 8, TrailingBytes: 64}, bytes: 1, entries: 10,
			want: trailingCounts{trailing: 64, threshold: 16}},
		{name: "budget off: as configured", cfg: RaftConfig{TrailingLogs: 4, SnapshotThreshold: 8, TrailingBytes: -1}, bytes: 100, entries: 10,
			want: trailingCounts{trailing: 4, threshold: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, countsFor(tt.cfg, tt.bytes, tt.entries))
		})
	}
}

// A follower that was away while the leader snapshotted catches up from
// the log when the entries it missed fit in TrailingBytes, although there
// are far more of them than TrailingLogs: no snapshot with every record.
// (TestDistributedLogCatchUpThroughSnapshot is the same with the byte
// budget off: there the follower is sent a snapshot.)
func TestDistributedLogCatchUpFromLogWithinTrailingBytes(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		cfg.Raft.SnapshotThreshold = 16
		cfg.Raft.SnapshotInterval = 20 * time.Millisecond
		cfg.Raft.TrailingLogs = 4
		cfg.Raft.TrailingBytes = 1 << 20
	})
	leader := c.waitLeader()
	want := values("early", 10)
	c.appendValues(want...)
	// Every node has sized its trailing logs from the budget (entries of a
	// few hundred bytes: thousands), before anything is compacted.
	for _, node := range c.nodes {
		require.Eventually(t, func() bool {
			return node.log.raft.ReloadableConfig().TrailingLogs >= 1000
		}, waitTimeout, 10*time.Millisecond, "%s never raised its trailing logs", node.id)
	}
	away := c.followers(leader)[0]
	awayIndex := slices.Index(c.nodes, away)
	c.requireTopicMatches(away, DefaultTopic, want)
	awayLast := away.log.Stats().LastIndex
	c.stop(awayIndex)

	more := values("while-away", 100)
	c.appendValues(more...)
	want = append(want, more...)
	leader = c.waitLeader()
	require.Eventually(t, func() bool {
		return leader.log.Stats().SnapshotIndex > awayLast+50
	}, waitTimeout, 10*time.Millisecond, "the leader never snapshotted past what the follower has")
	first, err := leader.log.logStore.FirstIndex()
	require.NoError(t, err)
	require.LessOrEqual(t, first, awayLast+1, "the leader compacted what the follower lacks")

	c.start(awayIndex)
	c.requireTopicMatches(away, DefaultTopic, want)
	require.Zero(t, away.log.fsm.restoreCount(), "the follower was sent a snapshot")
}
