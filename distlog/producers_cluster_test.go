package distlog

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
)

// produced makes one idempotent produce call of producer with sequence seq
// through the leader (again on a new leader) and returns its outcome.
func (c *testCluster) produced(producer, seq uint64, value string) api.ProducerResult {
	c.t.Helper()
	var result api.ProducerResult
	err := c.leaderDo(func(l *DistributedLog) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		results, err := l.AppendProduced(ctx, "", []api.ProducerBatch{{ProducerID: producer, Sequence: seq, Records: []*api.Record{{Value: []byte(value)}}}})
		if err == nil {
			result = results[0]
		}
		return err
	})
	require.NoError(c.t, err)
	return result
}

// A follower that was away while the log was compacted catches up by
// installing a snapshot and holds the same producer state as the others;
// after a full restart (snapshot restored, entries replayed) a retry is
// still recognised on every node's state.
func TestDistributedProducerStateThroughSnapshotAndRestart(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		cfg.Raft.SnapshotThreshold = 16
		cfg.Raft.SnapshotInterval = 20 * time.Millisecond
		cfg.Raft.TrailingLogs = 4
		cfg.Raft.TrailingBytes = -1 // a fixed count: these entries are small
	})
	leader := c.waitLeader()
	first := c.produced(42, 0, "p0")
	require.False(t, first.Duplicate)
	away := c.followers(leader)[0]
	awayIndex := slices.Index(c.nodes, away)
	awayLast := away.log.Stats().LastIndex
	c.stop(awayIndex)

	var last api.ProducerResult
	for seq := uint64(1); seq <= 40; seq++ {
		last = c.produced(42, seq, fmt.Sprintf("p%d", seq))
		require.False(t, last.Duplicate)
		c.produced(43, seq, fmt.Sprintf("q%d", seq)) // interleaved: spans do not merge
	}
	require.Eventually(t, func() bool {
		first, err := c.waitLeader().log.logStore.FirstIndex()
		return err == nil && first > awayLast+1
	}, waitTimeout, 10*time.Millisecond, "the leader never compacted its log")
	c.start(awayIndex)
	require.Eventually(t, func() bool {
		return away.log.fsm.restoreCount() >= 1 && nextOffset(away.log) == nextOffset(c.waitLeader().log)
	}, waitTimeout, 10*time.Millisecond, "the node never caught up by snapshot")

	requireSameProducers := func() {
		t.Helper()
		require.Eventually(t, func() bool {
			want := producersOf(c.waitLeader())
			for _, node := range c.nodes {
				if fmt.Sprint(producersOf(node)) != fmt.Sprint(want) {
					return false
				}
			}
			return want[42] != "" && want[43] != ""
		}, waitTimeout, 10*time.Millisecond, "nodes hold different producer state")
	}
	requireSameProducers()

	// Retries are recognised: the last call, and one inside the window.
	retry := c.produced(42, 40, "p40")
	require.Equal(t, api.ProducerResult{First: last.First, Count: 1, Duplicate: true}, retry)

	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.waitLeader()
	requireSameProducers()
	retry = c.produced(42, 40, "p40")
	require.Equal(t, api.ProducerResult{First: last.First, Count: 1, Duplicate: true}, retry, "retry after a full restart")
	gap := c.produced(42, 45, "p45")
	var seqErr api.SequenceError
	require.ErrorAs(t, gap.Err, &seqErr)
	require.Equal(t, uint64(41), seqErr.Expected)
}

// producersOf describes node's producer state, for comparison.
func producersOf(node *testNode) map[uint64]string {
	f := node.log.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[uint64]string{}
	for id, st := range f.producers.byID {
		out[id] = fmt.Sprintf("%d %v", st.lastSeq, st.spans)
	}
	return out
}
