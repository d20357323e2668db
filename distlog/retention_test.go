package distlog

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"testing"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
)

// duBytes is the size of the files under dir, as du counts them (a file
// hard-linked twice once).
func duBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed meanwhile
		}
		key := fmt.Sprint(fileID(info))
		if !seen[key] {
			seen[key] = true
			n += info.Size()
		}
		return nil
	})
	require.NoError(t, err)
	return n
}

func retentionCluster(t *testing.T) *testCluster {
	return newTestCluster(t, 3, func(cfg *DistributedConfig) {
		cfg.RetentionCheckInterval = 20 * time.Millisecond
		cfg.Raft.SnapshotThreshold = 32
		cfg.Raft.SnapshotInterval = 20 * time.Millisecond
		cfg.Raft.TrailingLogs = 16
		cfg.Raft.TrailingBytes = -1             // a fixed count: these entries are small
		cfg.Log.Segment.MaxStoreBytes = 8 << 10 // the Raft log's segments too, so compaction frees space
	})
}

// Bytes retention on a real cluster: a producer writes 10× the limit three
// times; every node ends with the same lowest offset, holds at most the
// limit plus a few segments, answers a read below the lowest offset with
// OutOfRange naming it, and its data directory stays under a bound that
// does not depend on how much was written.
func TestDistributedRetentionBytes(t *testing.T) {
	c := retentionCluster(t)
	const segment, limit = 1 << 10, 4 << 10
	require.NoError(t, c.leaderDo(func(l *DistributedLog) error {
		return l.CreateTopic(context.Background(), "r", TopicConfig{SegmentBytes: segment, RetentionBytes: limit})
	}))
	value := bytes.Repeat([]byte("v"), 100)
	write := func(n int) {
		for k := 0; k < n; k += 10 {
			batch := make([]*api.Record, 10)
			for j := range batch {
				batch[j] = &api.Record{Value: value}
			}
			require.NoError(t, c.leaderDo(func(l *DistributedLog) error {
				_, err := l.AppendBatch(context.Background(), "r", batch)
				return err
			}))
		}
	}
	settled := func() TopicInfo {
		t.Helper()
		var info TopicInfo
		require.Eventually(t, func() bool {
			lead, err := c.waitLeader().log.Topic("r")
			if err != nil || lead.Bytes > limit+2*segment {
				return false
			}
			for _, node := range c.nodes {
				got, err := node.log.Topic("r")
				if err != nil || got.LowestOffset != lead.LowestOffset || got.NextOffset != lead.NextOffset || got.Bytes > limit+3*segment {
					return false
				}
			}
			info = lead
			return true
		}, waitTimeout, 20*time.Millisecond, "retention never brought every node under the limit")
		return info
	}
	// The data directory's bound: the topic (limit + a few segments), the
	// Raft log between snapshots (SnapshotThreshold + TrailingLogs entries
	// of ~1 KiB, in 8 KiB segments) and two snapshots' links. Each round
	// writes 40 KiB; three rounds would be 120 KiB in the topic alone.
	const duBound = 112 << 10
	write(10 * limit / len(value))
	first := settled()
	require.Positive(t, first.LowestOffset)
	for range 2 {
		write(10 * limit / len(value))
	}
	second := settled()
	require.Greater(t, second.LowestOffset, first.LowestOffset)
	for i, node := range c.nodes {
		require.Eventually(t, func() bool { return duBytes(t, node.dir) < duBound }, waitTimeout, 50*time.Millisecond,
			"node %d: data directory holds %d bytes, bound %d", i, duBytes(t, node.dir), duBound)
		t.Logf("node %d: du %d bytes after 3 × 40 KiB written, retention %d", i, duBytes(t, node.dir), limit)

		_, err := node.log.Read(context.Background(), "r", 0)
		var oor api.ErrOffsetOutOfRange
		require.ErrorAs(t, err, &oor)
		require.True(t, oor.BelowLowest)
		// The leader may have truncated once more since settled.
		require.GreaterOrEqual(t, oor.Lowest, second.LowestOffset)
		rec, err := node.log.Read(context.Background(), "r", oor.Lowest)
		require.NoError(t, err)
		require.Equal(t, value, rec.Value)

		// The batch reader keeps the same line: below the lowest offset is
		// out of range and names it, from it on the records come in order.
		_, err = node.log.ReadBatch(context.Background(), "r", oor.Lowest-1, 100, 1<<20)
		var batchOOR api.ErrOffsetOutOfRange
		require.ErrorAs(t, err, &batchOOR)
		require.True(t, batchOOR.BelowLowest)
		lowest := batchOOR.Lowest
		batch, err := node.log.ReadBatch(context.Background(), "r", lowest, 100, 1<<20)
		require.NoError(t, err)
		require.NotEmpty(t, batch)
		for k, rec := range batch {
			require.Equal(t, lowest+uint64(k), rec.GetOffset())
			require.Equal(t, value, rec.GetValue())
		}
	}
}

// Age retention, and a follower that was away while the log was truncated
// and compacted catches up by a snapshot with the same lowest offset.
func TestDistributedRetentionAgeAndCatchUp(t *testing.T) {
	c := retentionCluster(t)
	leader := c.waitLeader()
	away := c.followers(leader)[0]
	awayIndex := slices.Index(c.nodes, away)
	require.NoError(t, c.leaderDo(func(l *DistributedLog) error {
		return l.CreateTopic(context.Background(), "aged", TopicConfig{SegmentBytes: 1 << 10})
	}))
	awayLast := away.log.Stats().LastIndex
	c.stop(awayIndex)
	value := bytes.Repeat([]byte("a"), 100)
	for range 50 {
		c.appendTopic("aged", string(value))
	}
	// Retention set later (AlterTopic): everything sealed is older than
	// 100 ms by the time the leader looks.
	require.NoError(t, c.leaderDo(func(l *DistributedLog) error {
		return l.AlterTopic(context.Background(), "aged", TopicConfig{RetentionAge: 100 * time.Millisecond})
	}))
	// next is the leader's count, not 50: an append whose 2 s attempt timed
	// out on a loaded machine is retried and may have landed twice.
	var lowest, next uint64
	require.Eventually(t, func() bool {
		info, err := c.waitLeader().log.Topic("aged")
		lowest, next = info.LowestOffset, info.NextOffset
		return err == nil && info.LowestOffset > 0 && info.Segments == 1
	}, waitTimeout, 20*time.Millisecond, "age retention never removed the sealed segments")
	require.GreaterOrEqual(t, next, uint64(50))
	require.Eventually(t, func() bool {
		first, err := c.waitLeader().log.logStore.FirstIndex()
		return err == nil && first > awayLast+1
	}, waitTimeout, 10*time.Millisecond, "the leader never compacted its log")

	c.start(awayIndex)
	require.Eventually(t, func() bool {
		info, err := away.log.Topic("aged")
		return err == nil && info.LowestOffset == lowest && info.NextOffset == next
	}, waitTimeout, 20*time.Millisecond, "the follower never caught up")
	require.GreaterOrEqual(t, away.log.fsm.restoreCount(), uint64(1), "caught up without a snapshot")
	info, err := away.log.Topic("aged")
	require.NoError(t, err)
	require.Equal(t, 100*time.Millisecond, info.Config.RetentionAge)
	for off := lowest; off < next; off++ {
		rec, err := away.log.Read(context.Background(), "aged", off)
		require.NoError(t, err)
		require.Equal(t, value, rec.Value)
	}
	_, err = away.log.Read(context.Background(), "aged", lowest-1)
	require.ErrorAs(t, err, new(api.ErrOffsetOutOfRange))
	// The same through the batch reader, on the node restored from a
	// snapshot: every record from the lowest offset, in order.
	_, err = away.log.ReadBatch(context.Background(), "aged", lowest-1, 100, 1<<20)
	require.ErrorAs(t, err, new(api.ErrOffsetOutOfRange))
	batch, err := away.log.ReadBatch(context.Background(), "aged", lowest, 100, 1<<20)
	require.NoError(t, err)
	require.Len(t, batch, int(next-lowest))
	for k, rec := range batch {
		require.Equal(t, lowest+uint64(k), rec.GetOffset())
		require.Equal(t, value, rec.GetValue())
	}
}
