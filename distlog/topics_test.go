package distlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// createTopic creates name through the leader, retrying across a leader
// change.
func (c *testCluster) createTopic(name string) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.waitLeader().log.CreateTopic(ctx, name, TopicConfig{}) == nil
	}, waitTimeout, 10*time.Millisecond, "CreateTopic(%q)", name)
}

// leaderDo runs op on the leader, again on the new one after a leader
// change, and returns its error (the tests' Raft timeouts are short, so a
// loaded machine sees elections).
func (c *testCluster) leaderDo(op func(*DistributedLog) error) error {
	c.t.Helper()
	var err error
	require.Eventually(c.t, func() bool {
		err = op(c.waitLeader().log)
		return !errors.As(err, new(api.ErrNotLeader))
	}, waitTimeout, 10*time.Millisecond, "no leader took the operation: %v", err)
	return err
}

// appendRetrying appends value to topic through whichever node leads,
// again after a leader change (so it may append it twice), until
// waitTimeout. Unlike the other helpers it may run in any goroutine: it
// reports instead of failing the test.
func (c *testCluster) appendRetrying(topic, value string) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		var err error = api.ErrNotLeader{}
		for _, node := range c.nodes {
			if l := node.log; l != nil && l.IsLeader() {
				_, err = l.AppendBatch(context.Background(), topic, []*api.Record{{Value: []byte(value)}})
				break
			}
		}
		if !errors.As(err, new(api.ErrNotLeader)) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no leader took the write within %v: %w", waitTimeout, err)
		}
		<-time.After(5 * time.Millisecond) // retry backoff while an election runs
	}
}

// appendNumbered appends to each of topics, in turn, the next of its values
// "v0", "v1", ..., recording them in values.
func (c *testCluster) appendNumbered(values map[string][]string, topics ...string) {
	for _, topic := range topics {
		v := fmt.Sprintf("v%d", len(values[topic]))
		c.appendTopic(topic, v)
		values[topic] = append(values[topic], v)
	}
}

// appendTopic appends each value to topic through the leader and returns
// the acknowledged offsets.
func (c *testCluster) appendTopic(topic string, values ...string) []uint64 {
	c.t.Helper()
	offsets := make([]uint64, len(values))
	for k, v := range values {
		require.Eventually(c.t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			off, err := c.waitLeader().log.AppendBatch(ctx, topic, []*api.Record{{Value: []byte(v)}})
			offsets[k] = off
			return err == nil
		}, waitTimeout, 10*time.Millisecond, "Append(%q, %q)", topic, v)
	}
	return offsets
}

// requireTopicHolds checks that node holds exactly want in topic at offsets
// 0..len-1.
func requireTopicHolds(t *testing.T, node *testNode, topic string, want []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for off, v := range want {
		rec, err := node.log.Read(ctx, topic, uint64(off))
		require.NoError(t, err, "%s: Read(%q, %d)", node.id, topic, off)
		require.Equal(t, v, string(rec.GetValue()), "%s: Read(%q, %d)", node.id, topic, off)
		require.Equal(t, uint64(off), rec.GetOffset())
	}
	require.Eventually(t, func() bool {
		info, err := node.log.Topic(topic)
		return err == nil && info.NextOffset == uint64(len(want))
	}, waitTimeout, 5*time.Millisecond, "%s: topic %q does not end at %d", node.id, topic, len(want))
}

// topicContents reads all of topic on node.
func topicContents(t *testing.T, node *testNode, topic string) []string {
	t.Helper()
	info, err := node.log.Topic(topic)
	require.NoError(t, err)
	var out []string
	for off := info.LowestOffset; off < info.NextOffset; off++ {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		rec, err := node.log.Read(ctx, topic, off)
		cancel()
		require.NoError(t, err, "%s: Read(%q, %d)", node.id, topic, off)
		out = append(out, string(rec.GetValue()))
	}
	return out
}

// requireTopicMatches checks that the leader's topic holds want, in order,
// each value once or, when a write was retried across an election
// (at-least-once), more times in a row, and that node holds exactly what
// the leader holds.
func (c *testCluster) requireTopicMatches(node *testNode, topic string, want []string) {
	c.t.Helper()
	t, ok := c.t.(*testing.T)
	require.True(c.t, ok)
	got := topicContents(t, c.waitLeader(), topic)
	require.Equal(t, want, slices.Compact(slices.Clone(got)), "topic %q on the leader", topic)
	requireTopicHolds(t, node, topic, got)
}

func TestDistributedTopicAPI(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := context.Background()
	create := func(name string, cfg TopicConfig) error {
		return c.leaderDo(func(l *DistributedLog) error { return l.CreateTopic(ctx, name, cfg) })
	}
	del := func(name string) error {
		return c.leaderDo(func(l *DistributedLog) error { return l.DeleteTopic(ctx, name) })
	}
	appendTo := func(topic string, values ...string) (first uint64, err error) {
		batch := make([]*api.Record, len(values))
		for k, v := range values {
			batch[k] = &api.Record{Value: []byte(v)}
		}
		err = c.leaderDo(func(l *DistributedLog) (err error) {
			first, err = l.AppendBatch(ctx, topic, batch)
			return err
		})
		return first, err
	}

	require.NoError(t, create("orders", TopicConfig{}))
	require.NoError(t, create("orders", TopicConfig{}), "create is idempotent for the same config")
	// A topic with retention is one entry: no node ever has it without.
	leader := c.waitLeader()
	before := leader.log.raft.LastIndex()
	kept := TopicConfig{RetentionBytes: 1 << 20, RetentionAge: time.Hour}
	require.NoError(t, leader.log.CreateTopic(ctx, "kept", kept))
	require.Equal(t, before+1, leader.log.raft.LastIndex(), "Raft entries for a create with retention")
	for _, node := range c.nodes {
		require.Eventually(t, func() bool {
			info, err := node.log.Topic("kept")
			return err == nil && info.Config == kept
		}, waitTimeout, 5*time.Millisecond, "%s: topic kept with its retention", node.id)
	}
	require.NoError(t, leader.log.CreateTopic(ctx, "kept", kept), "and creating it again is idempotent")
	require.NoError(t, del("kept"))
	err := create("orders", TopicConfig{SegmentBytes: 4096})
	require.ErrorAs(t, err, new(api.TopicExistsError))
	require.ErrorIs(t, err, api.ErrTopicExists)
	for _, bad := range []string{"", ".", "..", "a/b", strings.Repeat("x", 250), "spaced name"} {
		require.ErrorAs(t, create(bad, TopicConfig{}), new(api.InvalidTopicNameError), "CreateTopic(%q)", bad)
	}
	require.ErrorIs(t, create("big", TopicConfig{MaxRecordBytes: 1 << 30}), ErrInvalidTopicConfig)
	follower := c.followers(c.waitLeader())[0]
	var notLeader api.ErrNotLeader
	require.ErrorAs(t, follower.log.CreateTopic(ctx, "x", TopicConfig{}), &notLeader)
	require.ErrorAs(t, follower.log.DeleteTopic(ctx, "orders"), &notLeader)
	// A follower may not have applied the whole of an existing topic's
	// configuration yet (retention comes in a second entry): it leaves
	// "exists with another configuration" to the leader.
	require.Eventually(t, func() bool { _, err := follower.log.Topic("orders"); return err == nil }, waitTimeout, 5*time.Millisecond)
	require.ErrorAs(t, follower.log.CreateTopic(ctx, "orders", TopicConfig{RetentionBytes: 4096}), &notLeader)

	// The book's API (no topic) is the default topic.
	_, err = appendTo("", "d0")
	require.NoError(t, err)
	first, err := appendTo("orders", "o0", "o1")
	require.NoError(t, err)
	// Topics have their own offsets: both start at 0.
	c.requireTopicMatches(follower, DefaultTopic, []string{"d0"})
	c.requireTopicMatches(follower, "orders", []string{"o0", "o1"})
	rec, err := follower.log.Read(ctx, "orders", first+1)
	require.NoError(t, err)
	require.Equal(t, &api.Record{Value: []byte("o1"), Offset: first + 1}, rec, "the client's view: value and offset only")

	_, err = appendTo("nope", "x")
	require.ErrorAs(t, err, new(api.TopicNotFoundError))
	start := time.Now()
	_, err = follower.log.Read(ctx, "nope", 0)
	require.ErrorIs(t, err, api.ErrTopicNotFound)
	require.Less(t, time.Since(start), waitTimeout, "a follower waits for an unknown topic at most ReadWaitTimeout")
	_, err = follower.log.Topic("nope")
	require.ErrorIs(t, err, api.ErrTopicNotFound)
	select {
	case <-follower.log.Appended("nope"):
	default:
		t.Fatal("Appended of an unknown topic is not closed")
	}

	infos := follower.log.Topics()
	require.Equal(t, []string{DefaultTopic, "orders"}, []string{infos[0].Name, infos[1].Name})
	require.GreaterOrEqual(t, infos[1].Records, uint64(2))
	require.Equal(t, 1, infos[1].Segments)
	require.Positive(t, infos[1].Bytes)

	// Deleting wakes readers waiting on the topic, on every node.
	waiting := follower.log.Appended("orders")
	require.ErrorIs(t, del(DefaultTopic), ErrDefaultTopic)
	require.NoError(t, del("orders"))
	select {
	case <-waiting:
	case <-time.After(waitTimeout):
		t.Fatal("a reader waiting on a deleted topic was not woken")
	}
	require.Eventually(t, func() bool {
		_, err := follower.log.Read(ctx, "orders", 0)
		return errors.Is(err, api.ErrTopicNotFound)
	}, waitTimeout, 5*time.Millisecond)
	require.ErrorIs(t, del("orders"), api.ErrTopicNotFound)
	require.Len(t, c.waitLeader().log.Topics(), 1)

	// A topic created through the leader can be read at once on a
	// follower: the read waits for the creation to be applied there.
	require.NoError(t, create("fresh", TopicConfig{}))
	_, err = appendTo("fresh", "f0")
	require.NoError(t, err)
	for _, node := range c.followers(c.waitLeader()) {
		rec, err := node.log.Read(ctx, "fresh", 0)
		require.NoError(t, err, node.id)
		require.Equal(t, "f0", string(rec.GetValue()))
	}
}

// Two topics written concurrently keep independent offsets on every node,
// across a full restart.
func TestDistributedTopicsConcurrentWritesAndRestart(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		cfg.Raft.SnapshotThreshold = 32
		cfg.Raft.SnapshotInterval = 20 * time.Millisecond
		cfg.Raft.TrailingLogs = 8
		cfg.Raft.TrailingBytes = -1 // a fixed count: these entries are small
	})
	c.createTopic("a")
	c.createTopic("b")
	const perWriter, writers = 40, 2
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for _, topic := range []string{"a", "b"} {
		for w := range writers {
			wg.Go(func() {
				for k := range perWriter {
					v := fmt.Sprintf("%s-%d-%d", topic, w, k)
					if err := c.appendRetrying(topic, v); err != nil {
						errs <- fmt.Errorf("append %s: %w", v, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Every node holds the same records at the same offsets in each topic.
	leader := c.waitLeader()
	want := map[string][]string{"a": topicContents(t, leader, "a"), "b": topicContents(t, leader, "b")}
	for topic, values := range want {
		require.GreaterOrEqual(t, len(values), perWriter*writers)
		for _, v := range values {
			require.True(t, strings.HasPrefix(v, topic+"-"), "topic %q holds %q", topic, v)
		}
		for _, node := range c.nodes {
			requireTopicHolds(t, node, topic, values)
		}
	}

	// A full restart (snapshots taken, then replay) keeps them all.
	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.start(i)
	}
	c.waitLeader()
	for topic, values := range want {
		for _, node := range c.nodes {
			requireTopicHolds(t, node, topic, values)
		}
	}
	c.appendTopic("a", "after")
	// A write retried across the elections of the restart may land twice
	// (at-least-once): every node holds the same number of copies.
	info, err := c.waitLeader().log.Topic("a")
	require.NoError(t, err)
	require.Greater(t, info.NextOffset, uint64(len(want["a"])))
	wantA := slices.Clone(want["a"])
	for range info.NextOffset - uint64(len(want["a"])) {
		wantA = append(wantA, "after")
	}
	for _, node := range c.nodes {
		requireTopicHolds(t, node, "a", wantA)
		requireTopicHolds(t, node, "b", want["b"])
	}
}

// A follower that fell behind a compaction catches up by InstallSnapshot
// and then holds every topic: those written, created and deleted while it
// was away included.
func TestDistributedTopicsCatchUpThroughSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		cfg.Raft.SnapshotThreshold = 16
		cfg.Raft.SnapshotInterval = 20 * time.Millisecond
		cfg.Raft.TrailingLogs = 4
		cfg.Raft.TrailingBytes = -1                  // a fixed count: these entries are small
		cfg.Log.Segment.MaxIndexBytes = 8 * entWidth // several sealed segments per topic
	})
	leader := c.waitLeader()
	c.createTopic("orders")
	c.createTopic("audit")
	wantDefault, wantOrders := values("d", 10), values("o", 10)
	c.appendValues(wantDefault...)
	c.appendTopic("orders", wantOrders...)
	c.appendTopic("audit", "a0")
	away := c.followers(leader)[0]
	awayIndex := slices.Index(c.nodes, away)
	c.requireTopicMatches(away, "orders", wantOrders)
	awayLast := away.log.Stats().LastIndex
	c.stop(awayIndex)

	// While it is away: more records, a new topic, a deleted one, and the
	// log is compacted past everything it has.
	more := values("o-away", 60)
	c.appendTopic("orders", more...)
	wantOrders = append(wantOrders, more...)
	c.createTopic("late")
	c.appendTopic("late", "l0", "l1")
	require.NoError(t, c.leaderDo(func(l *DistributedLog) error { return l.DeleteTopic(context.Background(), "audit") }))
	c.appendValues("d-away")
	wantDefault = append(wantDefault, "d-away")
	require.Eventually(t, func() bool {
		first, err := c.waitLeader().log.logStore.FirstIndex()
		return err == nil && first > awayLast+1
	}, waitTimeout, 10*time.Millisecond, "the leader never compacted its log")

	// The leader's snapshots link the segments instead of copying them.
	metas, err := c.waitLeader().log.snapshots.list()
	require.NoError(t, err)
	require.NotEmpty(t, metas)
	require.NotNil(t, metas[0].Parts, "the leader's snapshot is not in linked form")

	c.start(awayIndex)
	c.requireTopicMatches(away, DefaultTopic, wantDefault)
	c.requireTopicMatches(away, "orders", wantOrders)
	c.requireTopicMatches(away, "late", []string{"l0", "l1"})
	_, err = away.log.Topic("audit")
	require.ErrorIs(t, err, api.ErrTopicNotFound)
	require.GreaterOrEqual(t, away.log.fsm.restoreCount(), uint64(1), "the node caught up without installing a snapshot")
	c.appendTopic("orders", "after")
	for _, node := range c.nodes {
		c.requireTopicMatches(node, "orders", append(slices.Clone(wantOrders), "after"))
		c.requireTopicMatches(node, "late", []string{"l0", "l1"})
		require.Len(t, node.log.Topics(), 3)
	}
}

// testdata/v1-datadir is a single-node data directory of three records
// written by the previous release (commit 0e0b648). It is refused with one
// line saying what to do, and left unchanged.
func TestOldDataDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "v1-datadir"))))
	before := treeOf(t, dir)
	cfg := DistributedConfig{Logger: zaptest.NewLogger(t)}
	cfg.Raft.LocalID = "node-0"
	cfg.Raft.Bootstrap = true
	cfg.Raft.StreamLayer = NewStreamLayer(newTestListener(t), nil, nil)
	_, err := NewDistributedLog(dir, cfg)
	require.ErrorIs(t, err, ErrOldDataFormat)
	require.NotContains(t, err.Error(), "\n")
	require.Contains(t, err.Error(), dir)
	require.Contains(t, err.Error(), "empty data directory")
	require.Equal(t, before, treeOf(t, dir), "a refused data directory was changed")
}

// treeOf maps every file under dir to its contents.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files[path] = string(b)
		return err
	}))
	return files
}

// segmentBases returns the base offsets of topic's segments on node.
func segmentBases(t *testing.T, node *testNode, topic string) []uint64 {
	t.Helper()
	node.log.fsm.mu.RLock()
	defer node.log.fsm.mu.RUnlock()
	ts, ok := node.log.fsm.topics[topic]
	require.True(t, ok, "%s: no topic %q", node.id, topic)
	segs, err := ts.log.Segments()
	require.NoError(t, err)
	bases := make([]uint64, len(segs))
	for k, s := range segs {
		bases[k] = s.Base
	}
	return bases
}

// TestDistributedTopicSegmentMaxAge: a segment of a topic with a retention
// age is sealed once its records span TopicSegments.MaxAge, by the leader's
// timestamps, so every replica cuts its segments at the same offsets; a
// topic without one rolls by size only (its segments would otherwise pile
// up, each holding open files, for no retention to delete), until an
// AlterTopic gives it a retention age.
func TestDistributedTopicSegmentMaxAge(t *testing.T) {
	const maxAge = 150 * time.Millisecond
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		cfg.TopicSegments.MaxAge = maxAge
		// Room for every record the test writes: segments roll by age only.
		cfg.TopicSegments.MaxStoreBytes, cfg.TopicSegments.MaxIndexBytes = 1<<20, 12*4096
	})
	ctx := context.Background()
	retained := TopicConfig{RetentionAge: time.Hour}
	require.NoError(t, c.leaderDo(func(l *DistributedLog) error { return l.CreateTopic(ctx, "aging", retained) }))
	c.createTopic("plain")
	c.createTopic("later")
	values := map[string][]string{}
	add := func(topics ...string) { c.appendNumbered(values, topics...) }
	add("aging", "plain", "later")
	// Records keep coming until one is an age after the first: the leader
	// then starts a segment (a few records of 150 ms each fit otherwise).
	require.Eventually(t, func() bool {
		add("aging", "plain", "later")
		return len(segmentBases(t, c.waitLeader(), "aging")) >= 3
	}, waitTimeout, maxAge/3, "the topic's segments never aged")
	require.Equal(t, []uint64{0}, segmentBases(t, c.waitLeader(), "plain"), "a topic without a retention age rolled by age")
	require.Equal(t, []uint64{0}, segmentBases(t, c.waitLeader(), "later"))

	require.NoError(t, c.leaderDo(func(l *DistributedLog) error { return l.AlterTopic(ctx, "later", retained) }))
	require.Eventually(t, func() bool {
		add("later")
		return len(segmentBases(t, c.waitLeader(), "later")) >= 2
	}, waitTimeout, maxAge/3, "a retention age given by AlterTopic did not age the topic's segments")

	leader := c.waitLeader()
	for _, topic := range []string{"aging", "plain", "later"} {
		want := segmentBases(t, leader, topic)
		for _, node := range c.nodes {
			requireTopicHolds(t, node, topic, values[topic])
			require.Equal(t, want, segmentBases(t, node, topic), "%s cut other segments of %q than the leader %s", node.id, topic, leader.id)
		}
	}
}

// TestDistributedTopicSegmentAge: a topic's own SegmentAge (Kafka's
// segment.ms) rolls its segments by age whether or not it has a retention
// age, and over the node's TopicSegments.MaxAge; every replica cuts the
// same segments. AlterTopic gives a topic one, and takes it away, at one
// log position on every replica. TopicInfo.Effective shows the age in
// effect and the node's defaults.
func TestDistributedTopicSegmentAge(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		// The node's age is never reached here: only the topics' own roll.
		cfg.TopicSegments.MaxAge = time.Hour
		cfg.TopicSegments.MaxStoreBytes, cfg.TopicSegments.MaxIndexBytes = 1<<20, 12*4096
	})
	ctx := context.Background()
	create := func(name string, cfg TopicConfig) error {
		return c.leaderDo(func(l *DistributedLog) error { return l.CreateTopic(ctx, name, cfg) })
	}
	alter := func(name string, cfg TopicConfig) error {
		return c.leaderDo(func(l *DistributedLog) error { return l.AlterTopic(ctx, name, cfg) })
	}
	const age = MinTopicSegmentAge
	require.NoError(t, create("own", TopicConfig{SegmentAge: age}))
	require.NoError(t, create("own", TopicConfig{SegmentAge: age}), "create is idempotent for the same config")
	require.ErrorAs(t, create("own", TopicConfig{}), new(api.TopicExistsError))
	require.NoError(t, create("retained", TopicConfig{RetentionAge: time.Hour, SegmentAge: age}))
	require.NoError(t, create("node-age", TopicConfig{RetentionAge: time.Hour}))
	c.createTopic("plain")
	for _, tiny := range []time.Duration{time.Millisecond, age - 1, -time.Second} {
		err := create("tiny", TopicConfig{SegmentAge: tiny})
		require.ErrorIs(t, err, ErrInvalidTopicConfig, "CreateTopic(SegmentAge %v)", tiny)
		require.ErrorContains(t, err, "at least 1s")
		require.ErrorIs(t, alter("plain", TopicConfig{SegmentAge: tiny}), ErrInvalidTopicConfig, "AlterTopic(SegmentAge %v)", tiny)
	}

	leader := c.waitLeader()
	limit := leader.log.config.Log.MaxRecordBytes
	wantEffective := map[string]TopicConfig{
		"own":      {MaxRecordBytes: limit, SegmentBytes: 1 << 20, SegmentAge: age},
		"retained": {MaxRecordBytes: limit, SegmentBytes: 1 << 20, SegmentAge: age, RetentionAge: time.Hour},
		"node-age": {MaxRecordBytes: limit, SegmentBytes: 1 << 20, SegmentAge: time.Hour, RetentionAge: time.Hour},
		"plain":    {MaxRecordBytes: limit, SegmentBytes: 1 << 20},
	}
	for _, node := range c.nodes {
		for name, want := range wantEffective {
			require.Eventually(t, func() bool {
				info, err := node.log.Topic(name)
				return err == nil && info.Effective == want
			}, waitTimeout, 5*time.Millisecond, "%s: Topic(%q).Effective, want %+v", node.id, name, want)
		}
	}
	info, err := leader.log.Topic("own")
	require.NoError(t, err)
	require.Equal(t, TopicConfig{SegmentAge: age}, info.Config, "the topic's own config keeps 0 for the defaults")

	values := map[string][]string{}
	add := func(topics ...string) { c.appendNumbered(values, topics...) }
	all := []string{"own", "retained", "node-age", "plain"}
	add(all...)
	require.Eventually(t, func() bool {
		add(all...)
		leader := c.waitLeader()
		return len(segmentBases(t, leader, "own")) >= 3 && len(segmentBases(t, leader, "retained")) >= 3
	}, waitTimeout, age/10, "the topics' own segment age never rolled their segments")
	require.Equal(t, []uint64{0}, segmentBases(t, c.waitLeader(), "node-age"), "rolled by the node's age, not reached")
	require.Equal(t, []uint64{0}, segmentBases(t, c.waitLeader(), "plain"), "a topic without an age rolled")

	// "plain" gets an age, "own" loses its own (and, without a retention
	// age, rolls by size only). Once "plain" has started two segments
	// after the alter, more than an age has passed with records coming to
	// "own": it would have rolled by then.
	require.NoError(t, alter("plain", TopicConfig{SegmentAge: age}))
	require.NoError(t, alter("own", TopicConfig{}))
	ownBases := segmentBases(t, c.waitLeader(), "own")
	plainBefore := len(segmentBases(t, c.waitLeader(), "plain"))
	require.Eventually(t, func() bool {
		add("plain", "own")
		return len(segmentBases(t, c.waitLeader(), "plain")) >= plainBefore+2
	}, waitTimeout, age/10, "a segment age given by AlterTopic did not roll the topic's segments")
	require.Equal(t, ownBases, segmentBases(t, c.waitLeader(), "own"), "a segment age taken away by AlterTopic still rolled")

	leader = c.waitLeader()
	for _, topic := range all {
		want := segmentBases(t, leader, topic)
		for _, node := range c.nodes {
			c.requireTopicMatches(node, topic, values[topic])
			require.Equal(t, want, segmentBases(t, node, topic), "%s cut other segments of %q than the leader %s", node.id, topic, leader.id)
		}
	}
	for _, node := range c.nodes {
		info, err := node.log.Topic("own")
		require.NoError(t, err)
		require.Zero(t, info.Effective.SegmentAge, "%s: own", node.id)
		info, err = node.log.Topic("plain")
		require.NoError(t, err)
		require.Equal(t, age, info.Effective.SegmentAge, "%s: plain", node.id)
	}
}

func TestTopicSegmentConfigDefaults(t *testing.T) {
	var c DistributedConfig
	c.Raft.LocalID, c.Raft.StreamLayer = "n", NewStreamLayer(newTestListener(t), nil, nil)
	got, err := c.withDefaults()
	require.NoError(t, err)
	require.Equal(t, TopicSegmentConfig{MaxStoreBytes: DefaultTopicSegmentBytes,
		MaxIndexBytes: DefaultTopicSegmentIndexBytes, MaxAge: DefaultTopicSegmentMaxAge}, got.TopicSegments)
	require.Equal(t, uint64(storage.DefaultMaxStoreBytes), got.Log.Segment.MaxStoreBytes, "the Raft log's segments")

	// Sizes given for the node's logs apply to the topics too (tests use
	// small ones); a negative age turns the roll by age off.
	c.Log.Segment.MaxStoreBytes, c.Log.Segment.MaxIndexBytes = 4096, 120
	c.TopicSegments.MaxAge = -1
	got, err = c.withDefaults()
	require.NoError(t, err)
	require.Equal(t, TopicSegmentConfig{MaxStoreBytes: 4096, MaxIndexBytes: 120}, got.TopicSegments)

	c.TopicSegments.MaxIndexBytes = 5
	_, err = c.withDefaults()
	require.ErrorIs(t, err, ErrInvalidConfig)
}
