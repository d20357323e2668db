package distlog

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTrailingEntries(t *testing.T) {
	tests := []struct {
		name                          string
		budget, least, bytes, entries uint64
		want                          uint64
	}{
		{name: "empty log keeps the least", budget: 1 << 20, least: 16, want: 16},
		{name: "small entries: many", budget: 1 << 20, least: 16, bytes: 100 * 200, entries: 100, want: (1 << 20) / 200},
		{name: "large entries: the least wins", budget: 1 << 20, least: 16, bytes: 10 << 20, entries: 10, want: 16},
		{name: "entries under a byte each", budget: 64, least: 1, bytes: 1, entries: 10, want: 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, trailingEntries(tt.budget, tt.least, tt.bytes, tt.entries))
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
