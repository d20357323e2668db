package distlog

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
)

// holdSlots takes every in-flight slot of d's group commit, as entries in
// Raft would, so that appends queue; release lets the proposer go on.
func holdSlots(t *testing.T, d *DistributedLog) (release func()) {
	t.Helper()
	for range cap(d.commits.slots) {
		d.commits.slots <- struct{}{}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			for range cap(d.commits.slots) {
				<-d.commits.slots
			}
		})
	}
	t.Cleanup(release)
	return release
}

// queued returns how many appends wait in d's group-commit queue.
func queued(d *DistributedLog) int {
	d.commits.mu.Lock()
	defer d.commits.mu.Unlock()
	return len(d.commits.queue)
}

func recordsOf(values ...string) []*api.Record {
	out := make([]*api.Record, len(values))
	for k, v := range values {
		out[k] = &api.Record{Value: []byte(v)}
	}
	return out
}

// Appends queued while Raft is busy go into one entry per topic; each
// caller gets its own outcome: plain appends their offsets, an idempotent
// producer's retry inside the entry its original offsets, a sequence gap
// an error for that call alone, a call whose context ended while queued
// nothing appended. Every node holds the same records.
func TestGroupCommitCoalescesQueuedAppends(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.waitLeader()
	ctx := context.Background()
	require.NoError(t, leader.log.CreateTopic(ctx, "other", TopicConfig{}))
	_, err := leader.log.AppendProduced(ctx, "", []api.ProducerBatch{{ProducerID: 9, Sequence: 1, Records: recordsOf("q1")}})
	require.NoError(t, err)
	base := leader.log.fsm.appliedIndex()

	release := holdSlots(t, leader.log)
	start := func(topic string, calls ...api.ProducerBatch) *AppendFuture {
		t.Helper()
		f, err := leader.log.StartAppend(ctx, topic, calls)
		require.NoError(t, err)
		return f
	}
	plain := start("", api.ProducerBatch{Records: recordsOf("a", "b")})
	p1 := start("", api.ProducerBatch{ProducerID: 7, Sequence: 1, Records: recordsOf("p1")})
	other := start("other", api.ProducerBatch{Records: recordsOf("o1")})
	gap := start("", api.ProducerBatch{ProducerID: 9, Sequence: 3, Records: recordsOf("gap")})
	p1Retry := start("", api.ProducerBatch{ProducerID: 7, Sequence: 1, Records: recordsOf("p1")})
	cancelled, cancel := context.WithCancel(ctx)
	dropped, err := leader.log.StartAppend(cancelled, "", []api.ProducerBatch{{Records: recordsOf("dropped")}})
	require.NoError(t, err)
	cancel()
	p2 := start("", api.ProducerBatch{ProducerID: 7, Sequence: 2, Records: recordsOf("p2")},
		api.ProducerBatch{Records: recordsOf("c")})
	// A synchronous append queues behind them.
	var batchFirst uint64
	var batchErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		batchFirst, batchErr = leader.log.AppendBatch(ctx, "", recordsOf("d", "e"))
	}()
	require.Eventually(t, func() bool { return queued(leader.log) == 8 }, waitTimeout, time.Millisecond)
	release()

	result := func(f *AppendFuture) []api.ProducerResult {
		t.Helper()
		rs, err := f.Result()
		require.NoError(t, err)
		return rs
	}
	require.Equal(t, []api.ProducerResult{{First: 1, Count: 2}}, result(plain))
	require.Equal(t, []api.ProducerResult{{First: 3, Count: 1}}, result(p1))
	require.Equal(t, []api.ProducerResult{{First: 0, Count: 1}}, result(other))
	gapResult := result(gap)
	var seqErr api.SequenceError
	require.ErrorAs(t, gapResult[0].Err, &seqErr)
	require.Equal(t, uint64(2), seqErr.Expected)
	require.Equal(t, []api.ProducerResult{{First: 3, Count: 1, Duplicate: true}}, result(p1Retry))
	_, err = dropped.Result()
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []api.ProducerResult{{First: 4, Count: 1}, {First: 5, Count: 1}}, result(p2))
	<-done
	require.NoError(t, batchErr)
	require.Equal(t, uint64(6), batchFirst)

	// One entry for the default topic, one for "other", right after base.
	want := []string{"q1", "a", "b", "p1", "p2", "c", "d", "e"}
	for _, node := range c.nodes {
		requireHolds(t, node, want)
	}
	topic, ok := leader.log.fsm.lookup(DefaultTopic)
	require.True(t, ok)
	entries := map[uint64]bool{}
	for off := uint64(1); off < uint64(len(want)); off++ {
		rec, err := topic.log.Read(off)
		require.NoError(t, err)
		entries[rec.EntryIndex] = true
	}
	require.Len(t, entries, 1, "entries of the coalesced records: %v", entries)
	for index := range entries {
		require.Greater(t, index, base)
	}

	// A retry in a later entry still gets the original offsets.
	rs, err := leader.log.AppendProduced(ctx, "", []api.ProducerBatch{{ProducerID: 7, Sequence: 2, Records: recordsOf("p2")}})
	require.NoError(t, err)
	require.Equal(t, []api.ProducerResult{{First: 4, Count: 1, Duplicate: true}}, rs)
}

// Many writers at once, plain and idempotent: every call gets offsets that
// hold its own values, each writer's offsets grow in the order it wrote,
// no offset is given twice, and every node holds the same log.
func TestGroupCommitConcurrentWriters(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.waitLeader()
	ctx := context.Background()
	const writers, calls = 16, 30
	type written struct {
		value  string
		offset uint64
	}
	got := make([][]written, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range calls {
				v := fmt.Sprintf("w%d-%d", w, k)
				var first uint64
				var err error
				if w%2 == 0 {
					first, err = leader.log.AppendBatch(ctx, "", recordsOf(v))
				} else {
					var rs []api.ProducerResult
					rs, err = leader.log.AppendProduced(ctx, "", []api.ProducerBatch{
						{ProducerID: uint64(100 + w), Sequence: uint64(k + 1), Records: recordsOf(v)}})
					if err == nil {
						first, err = rs[0].First, rs[0].Err
					}
				}
				if err != nil {
					t.Errorf("writer %d call %d: %v", w, k, err)
					return
				}
				got[w] = append(got[w], written{v, first})
			}
		}()
	}
	wg.Wait()
	require.False(t, t.Failed())
	all := make([]string, writers*calls)
	seen := map[uint64]string{}
	for w := range writers {
		for k, wr := range got[w] {
			require.NotContains(t, seen, wr.offset, "offset %d given to %q and %q", wr.offset, seen[wr.offset], wr.value)
			seen[wr.offset] = wr.value
			require.Less(t, wr.offset, uint64(len(all)))
			all[wr.offset] = wr.value
			if k > 0 {
				require.Greater(t, wr.offset, got[w][k-1].offset, "writer %d's offsets out of order", w)
			}
		}
	}
	for _, node := range c.nodes {
		requireHolds(t, node, all)
	}
}

// Closing the log fails what is still queued with ErrClosed and refuses
// new appends; nothing waits forever.
func TestGroupCommitCloseFailsQueuedAppends(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	log := c.waitLeader().log
	holdSlots(t, log)
	f, err := log.StartAppend(context.Background(), "", []api.ProducerBatch{{Records: recordsOf("x")}})
	require.NoError(t, err)
	c.stop(0)
	_, err = f.Result()
	require.ErrorIs(t, err, ErrClosed)
	_, err = log.StartAppend(context.Background(), "", []api.ProducerBatch{{Records: recordsOf("y")}})
	require.ErrorIs(t, err, ErrClosed)
}

// A synchronous append whose context ends while it is queued returns the
// context's error and is never appended.
func TestGroupCommitWithdrawsACancelledAppend(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	leader := c.waitLeader()
	release := holdSlots(t, leader.log)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := leader.log.AppendBatch(ctx, "", recordsOf("never"))
		errc <- err
	}()
	require.Eventually(t, func() bool { return queued(leader.log) == 1 }, waitTimeout, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	require.Equal(t, 0, queued(leader.log))
	release()
	first, err := leader.log.AppendBatch(context.Background(), "", recordsOf("after"))
	require.NoError(t, err)
	require.Equal(t, uint64(0), first)
}

// Every append is a producer-append entry now, most without a producer.
// The metadata table is written at a topic change with its applied index,
// and producer-append entries at or below it are not applied again after
// a restart: the topics' records must reach the disk before the table,
// producers or not. The restarted FSM opens a copy of the files of the
// first one, taken while it is open (a crash: what it still buffers is
// lost).
func TestFSMPlainProducerAppendsSurviveACrashAfterATableWrite(t *testing.T) {
	dir := t.TempDir()
	f := newTestFSM(t, dir)
	entries := []*raft.Log{
		producedEntry(1, DefaultTopic, 10, testLimits, call{0, 0, []string{"a", "b"}}, call{0, 0, []string{"c"}}),
		createEntry(2, "t"),
	}
	for _, e := range entries {
		requireOK(t, f.Apply(e))
	}
	crashed := newTestFSM(t, copyTree(t, dir))
	for _, e := range entries {
		res, ok := crashed.Apply(e).(applyResult)
		require.True(t, ok)
		require.NoError(t, res.err)
	}
	requireValues(t, crashed, DefaultTopic, "a", "b", "c")
}

// copyTree copies the files under dir to a new directory, as they are on
// disk now.
func copyTree(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	require.NoError(t, err)
	return dst
}

// lingerCommitter is a group committer with no Raft behind it, for
// testing linger alone.
func lingerCommitter(linger time.Duration, maxCalls int) *groupCommitter {
	d := &DistributedLog{config: DistributedConfig{MaxBatchBytes: 1 << 20,
		GroupCommit: GroupCommitConfig{MaxInFlight: 1, MaxCalls: maxCalls, Linger: linger}}}
	return newGroupCommitter(d)
}

// enqueueCalls queues n plain calls of one record each.
func enqueueCalls(t *testing.T, g *groupCommitter, n int) {
	t.Helper()
	for range n {
		call := &appendCall{ctx: context.Background(), runs: []producerRun{{records: 1}}, values: [][]byte{[]byte("v")},
			bytes: callBytes(1, []int{1}), future: &AppendFuture{done: make(chan struct{})}}
		require.NoError(t, g.enqueue(call))
	}
}

// Once a slot frees, the proposer waits for the writers of the entry that
// just finished (as many produce calls as it had) on top of what is queued, but
// no longer than Linger, and never for a full entry; each entry is waited
// for once.
func TestGroupCommitLingersForTheLastEntrysWriters(t *testing.T) {
	never := make(chan struct{})
	t.Run("the target is what is queued plus the last entry's calls, once", func(t *testing.T) {
		g := lingerCommitter(time.Hour, 100)
		g.lastRuns = 3
		enqueueCalls(t, g, 1) // queued while the last entry was in Raft
		want, ok := g.lingerTarget()
		require.True(t, ok, "lingerTarget after an entry of 3 calls: no wait")
		require.Equal(t, 4, want, "lingerTarget")
		_, ok = g.lingerTarget()
		require.False(t, ok, "a second lingerTarget for the same entry: waits, want no wait")
	})
	t.Run("waits until the target is queued", func(t *testing.T) {
		g := lingerCommitter(time.Hour, 100)
		enqueueCalls(t, g, 1)
		done := make(chan bool, 1)
		go func() { done <- g.waitGathered(4, never) }()
		enqueueCalls(t, g, 2)
		require.Never(t, func() bool { return len(done) > 0 }, 100*time.Millisecond, time.Millisecond,
			"waitGathered(4) returned with 3 calls queued")
		enqueueCalls(t, g, 1)
		select {
		case ok := <-done:
			require.True(t, ok, "waitGathered = false, want true")
		case <-time.After(waitTimeout):
			t.Fatal("waitGathered(4) did not return once 4 calls were queued")
		}
	})
	t.Run("a call counts once whatever its records", func(t *testing.T) {
		// A coalescing client's next batch may hold fewer records than
		// its last: it is still the writer coming back.
		g := lingerCommitter(time.Hour, 100)
		values := [][]byte{[]byte("a"), []byte("b")}
		require.NoError(t, g.enqueue(&appendCall{ctx: context.Background(), runs: []producerRun{{records: 2}}, values: values,
			bytes: callBytes(1, []int{1, 1}), future: &AppendFuture{done: make(chan struct{})}}))
		require.True(t, g.waitGathered(1, never), "waitGathered(1) with one two-record call queued = false, want true")
		g.lastRuns = 1
		want, ok := g.lingerTarget()
		require.True(t, ok)
		require.Equal(t, 2, want, "lingerTarget with one call queued after an entry of one call")
	})
	t.Run("nothing to wait for", func(t *testing.T) {
		g := lingerCommitter(time.Hour, 100)
		require.True(t, g.linger(never), "linger after no entry = false, want true")
	})
	t.Run("a full entry goes at once", func(t *testing.T) {
		g := lingerCommitter(time.Hour, 3)
		g.lastRuns = 10
		enqueueCalls(t, g, 3)
		require.True(t, g.linger(never), "linger with MaxCalls queued = false, want true")
	})
	t.Run("gives up after Linger", func(t *testing.T) {
		g := lingerCommitter(time.Millisecond, 100)
		g.lastRuns = 5
		enqueueCalls(t, g, 1)
		require.True(t, g.linger(never), "linger = false, want true")
	})
	t.Run("never waits when disabled", func(t *testing.T) {
		g := lingerCommitter(-1, 100)
		g.lastRuns = 5
		_, ok := g.lingerTarget()
		require.False(t, ok, "lingerTarget with Linger < 0: waits, want no wait")
	})
	t.Run("closing ends the wait", func(t *testing.T) {
		g := lingerCommitter(time.Hour, 100)
		g.lastRuns = 5
		closed := make(chan struct{})
		close(closed)
		require.False(t, g.linger(closed), "linger after close = true, want false")
	})
}
