package distlog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

const testMaxRecordBytes = 1024

// newTestFSM opens the state machine in dir, with segments of 8 records.
func newTestFSM(t *testing.T, dir string) *fsm {
	t.Helper()
	var c storage.Config
	c.MaxRecordBytes = testMaxRecordBytes
	c.Segment.MaxIndexBytes = 8 * 12
	snapshots, err := NewSnapshotStore(filepath.Join(dir, "snapshots"), 1, zaptest.NewLogger(t))
	require.NoError(t, err)
	f, err := newFSM(dir, c, snapshots, zaptest.NewLogger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// appendEntry is a committed append entry at index of values to topic.
func appendEntry(index uint64, topic string, values ...string) *raft.Log {
	vs := make([][]byte, len(values))
	for k, v := range values {
		vs[k] = []byte(v)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeAppend(topic, 1000+int64(index), vs)}
}

// entry is an append entry to DefaultTopic.
func entry(index uint64, values ...string) *raft.Log {
	return appendEntry(index, DefaultTopic, values...)
}

func createEntry(index uint64, name string) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeCreateTopic(name, TopicConfig{})}
}

func deleteEntry(index uint64, name string) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeDeleteTopic(name)}
}

func requireResult(t *testing.T, got any, first uint64, count int) {
	t.Helper()
	res, ok := got.(applyResult)
	require.True(t, ok, "response %T, want applyResult", got)
	require.NoError(t, res.err)
	require.False(t, res.skipped, "response skipped, want applied")
	require.Equal(t, first, res.first, "first offset = %d, want %d", res.first, first)
	require.Equal(t, count, res.count)
}

func requireOK(t *testing.T, got any) {
	t.Helper()
	res, ok := got.(applyResult)
	require.True(t, ok, "response %T, want applyResult", got)
	require.NoError(t, res.err)
	require.False(t, res.skipped, "response skipped, want applied")
}

func requireSkipped(t *testing.T, got any) {
	t.Helper()
	res, ok := got.(applyResult)
	require.True(t, ok, "response %T, want applyResult", got)
	require.NoError(t, res.err)
	require.True(t, res.skipped, "response %+v, want skipped", res)
}

// requireValues checks that topic holds exactly want from offset 0.
func requireValues(t *testing.T, f *fsm, topic string, want ...string) {
	t.Helper()
	ts, ok := f.lookup(topic)
	require.True(t, ok, "topic %q missing", topic)
	require.Equal(t, uint64(len(want)), ts.log.NextOffset(), "topic %q NextOffset", topic)
	for off, v := range want {
		rec, err := ts.log.Read(uint64(off))
		require.NoError(t, err, "Read(%q, %d)", topic, off)
		require.Equal(t, v, string(rec.Value), "Read(%q, %d) = %q, want %q", topic, off, rec.Value, v)
	}
}

func TestFSMApply(t *testing.T) {
	f := newTestFSM(t, t.TempDir())

	requireResult(t, f.Apply(entry(3, "a")), 0, 1)
	// Non-command entries are not the FSM's business; a batch goes in one
	// write per topic with each entry's own offsets.
	responses := f.ApplyBatch([]*raft.Log{
		{Index: 4, Type: raft.LogConfiguration},
		entry(5, "b", "c", "d"),
		entry(6, "e"),
	})
	require.Len(t, responses, 3)
	require.Nil(t, responses[0])
	requireResult(t, responses[1], 1, 3)
	requireResult(t, responses[2], 4, 1)
	requireValues(t, f, DefaultTopic, "a", "b", "c", "d", "e")

	// Each record remembers the entry and position that produced it, and
	// the leader's timestamp.
	ts, _ := f.lookup(DefaultTopic)
	for off, want := range []struct {
		index uint64
		pos   uint32
	}{{3, 0}, {5, 0}, {5, 1}, {5, 2}, {6, 0}} {
		rec, err := ts.log.Read(uint64(off))
		require.NoError(t, err)
		require.Equal(t, want.index, rec.EntryIndex, "Read(%d).EntryIndex", off)
		require.Equal(t, want.pos, rec.BatchPos, "Read(%d).BatchPos", off)
		require.Equal(t, 1000+int64(want.index), rec.Timestamp, "Read(%d).Timestamp", off)
	}
}

func TestFSMTopicsKeepTheirOwnOffsets(t *testing.T) {
	f := newTestFSM(t, t.TempDir())
	requireOK(t, f.Apply(createEntry(2, "orders")))
	// One batch interleaving two topics and a creation: each topic gets
	// its own offsets, in entry order.
	responses := f.ApplyBatch([]*raft.Log{
		appendEntry(3, "orders", "o0", "o1"),
		entry(4, "d0"),
		appendEntry(5, "orders", "o2"),
		createEntry(6, "audit"),
		appendEntry(7, "audit", "a0"),
		appendEntry(8, "missing", "x"),
		entry(9, "d1"),
	})
	requireResult(t, responses[0], 0, 2)
	requireResult(t, responses[1], 0, 1)
	requireResult(t, responses[2], 2, 1)
	requireOK(t, responses[3])
	requireResult(t, responses[4], 0, 1)
	res := responses[5].(applyResult)
	require.ErrorAs(t, res.err, new(api.TopicNotFoundError))
	requireResult(t, responses[6], 1, 1)
	requireValues(t, f, "orders", "o0", "o1", "o2")
	requireValues(t, f, "audit", "a0")
	requireValues(t, f, DefaultTopic, "d0", "d1")

	infos := f.topicInfos()
	require.Len(t, infos, 3)
	require.Equal(t, []string{"audit", DefaultTopic, "orders"}, []string{infos[0].Name, infos[1].Name, infos[2].Name})
	require.Equal(t, uint64(3), infos[2].NextOffset)
	require.Equal(t, uint64(3), infos[2].Records)
}

func TestFSMCreateAndDeleteTopic(t *testing.T) {
	dir := t.TempDir()
	f := newTestFSM(t, dir)
	requireOK(t, f.Apply(createEntry(2, "t")))
	// Idempotent for the same config, refused for another.
	requireOK(t, f.Apply(createEntry(3, "t")))
	other := &raft.Log{Index: 4, Type: raft.LogCommand, Data: encodeCreateTopic("t", TopicConfig{SegmentBytes: 4096})}
	require.ErrorAs(t, f.Apply(other).(applyResult).err, new(api.TopicExistsError))
	bad := &raft.Log{Index: 5, Type: raft.LogCommand, Data: encodeCreateTopic("../x", TopicConfig{})}
	require.ErrorAs(t, f.Apply(bad).(applyResult).err, new(api.InvalidTopicNameError))

	requireResult(t, f.Apply(appendEntry(6, "t", "v")), 0, 1)
	ts, _ := f.lookup("t")
	appended := ts.log.Appended()
	require.ErrorIs(t, f.Apply(deleteEntry(7, DefaultTopic)).(applyResult).err, ErrDefaultTopic)
	requireOK(t, f.Apply(deleteEntry(8, "t")))
	<-appended // deletion wakes waiting readers
	_, ok := f.lookup("t")
	require.False(t, ok)
	_, err := os.Stat(f.topicDir(2))
	require.ErrorIs(t, err, os.ErrNotExist, "a deleted topic's files are removed")
	require.ErrorAs(t, f.Apply(deleteEntry(9, "t")).(applyResult).err, new(api.TopicNotFoundError))

	// Created again: a new, empty topic in a directory of its own.
	requireOK(t, f.Apply(createEntry(10, "t")))
	requireResult(t, f.Apply(appendEntry(11, "t", "w")), 0, 1)
	requireValues(t, f, "t", "w")
}

func TestFSMSkipsEntriesAppliedBeforeARestart(t *testing.T) {
	dir := t.TempDir()
	f := newTestFSM(t, dir)
	entries := []*raft.Log{
		entry(2, "a", "b"), createEntry(3, "t"), appendEntry(4, "t", "t0"), entry(5, "c"),
		appendEntry(6, "t", "t1", "t2"), createEntry(7, "gone"), appendEntry(8, "gone", "g"), deleteEntry(9, "gone"),
		createEntry(10, "gone"), // created again, still empty
	}
	for _, e := range entries {
		res := f.Apply(e).(applyResult)
		require.NoError(t, res.err, "entry %d", e.Index)
	}
	require.NoError(t, f.Close())

	// Raft replays every committed entry after a restart (here without a
	// snapshot, from the first): the FSM must not apply them twice, in any
	// topic, nor append to "gone" what went to its earlier incarnation.
	f = newTestFSM(t, dir)
	for _, e := range entries {
		requireSkipped(t, f.Apply(e))
	}
	requireResult(t, f.Apply(entry(11, "d")), 3, 1)
	requireResult(t, f.Apply(appendEntry(12, "t", "t3")), 3, 1)
	requireValues(t, f, DefaultTopic, "a", "b", "c", "d")
	requireValues(t, f, "t", "t0", "t1", "t2", "t3")
	requireValues(t, f, "gone")
}

func TestFSMCompletesABatchCutShortByACrash(t *testing.T) {
	dir := t.TempDir()
	f := newTestFSM(t, dir)
	requireOK(t, f.Apply(createEntry(1, "t")))
	f.Apply(appendEntry(2, "t", "a"))
	// A crash left only the first two records of entry 4's batch (the
	// topic's log keeps a prefix of a torn batch write).
	ts, _ := f.lookup("t")
	_, err := ts.log.AppendBatch([]*storage.Record{
		{Value: []byte("b0"), Term: 1, EntryIndex: 4, BatchPos: 0},
		{Value: []byte("b1"), Term: 1, EntryIndex: 4, BatchPos: 1},
	})
	require.NoError(t, err)
	require.NoError(t, f.Close())

	f = newTestFSM(t, dir)
	requireSkipped(t, f.Apply(appendEntry(2, "t", "a")))
	// The replayed entry 4 adds the missing records and reports the batch's
	// own first offset.
	requireResult(t, f.Apply(appendEntry(4, "t", "b0", "b1", "b2", "b3")), 1, 4)
	requireValues(t, f, "t", "a", "b0", "b1", "b2", "b3")
	requireResult(t, f.Apply(appendEntry(5, "t", "c")), 5, 1)
	ts, _ = f.lookup("t")
	rec, err := ts.log.Read(4)
	require.NoError(t, err)
	require.Equal(t, uint64(4), rec.EntryIndex)
	require.Equal(t, uint64(1), rec.Term)
	require.Equal(t, uint32(3), rec.BatchPos)
}

func TestFSMApplyErrorsReachTheCaller(t *testing.T) {
	tests := []struct {
		name    string
		entry   *raft.Log
		wantErr error
	}{
		{name: "record too large", entry: entry(2, "ok", string(make([]byte, testMaxRecordBytes+1))), wantErr: ErrRecordTooLarge},
		{name: "empty data", entry: &raft.Log{Index: 2, Type: raft.LogCommand}, wantErr: ErrBadCommand},
		{name: "truncated batch", entry: &raft.Log{Index: 2, Type: raft.LogCommand, Data: entry(2, "abc").Data[:14]}, wantErr: ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(t, t.TempDir())
			requireResult(t, f.Apply(entry(1, "first")), 0, 1)
			res, ok := f.Apply(tt.entry).(applyResult)
			require.True(t, ok)
			require.ErrorIs(t, res.err, tt.wantErr)
			// Nothing of the refused batch is appended; the FSM goes on.
			requireValues(t, f, DefaultTopic, "first")
			requireResult(t, f.Apply(entry(3, "next")), 1, 1)
		})
	}
}

// A command of an unknown version or kind stops the state machine: it
// applies nothing after it (skipping it would diverge from the nodes that
// know it), refuses snapshots, and says why; a restart with a release that
// knows it replays from there.
func TestFSMStopsAtAnUnknownCommand(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"the previous release's append-batch (version 1)", []byte{1, 1, 1, 'x'}},
		{"a newer version", []byte{commandVersion + 1, kindAppend}},
		{"an unknown kind", []byte{commandVersion, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := newTestFSM(t, dir)
			requireResult(t, f.Apply(entry(1, "a")), 0, 1)
			responses := f.ApplyBatch([]*raft.Log{
				entry(2, "b"),
				{Index: 3, Term: 1, Type: raft.LogCommand, Data: tt.data},
				entry(4, "c"),
				createEntry(5, "t"),
			})
			requireResult(t, responses[0], 1, 1)
			for _, r := range responses[1:] {
				res := r.(applyResult)
				require.ErrorIs(t, res.err, ErrFSMFailed)
			}
			require.ErrorIs(t, responses[1].(applyResult).err, ErrUnknownCommand)
			require.ErrorIs(t, f.Err(), ErrUnknownCommand)
			require.Contains(t, f.Err().Error(), "raft index 3")
			requireResult(t, responses[0], 1, 1)
			requireValues(t, f, DefaultTopic, "a", "b")
			_, ok := f.lookup("t")
			require.False(t, ok, "nothing after the unknown command is applied")
			_, err := f.Snapshot()
			require.ErrorIs(t, err, ErrFSMFailed)
			res := f.Apply(entry(6, "d")).(applyResult)
			require.ErrorIs(t, res.err, ErrFSMFailed)
		})
	}
}

func TestFSMStopsAfterAStorageError(t *testing.T) {
	f := newTestFSM(t, t.TempDir())
	requireResult(t, f.Apply(entry(1, "a")), 0, 1)
	ts, _ := f.lookup(DefaultTopic)
	require.NoError(t, ts.log.Close()) // every write now fails

	res, ok := f.Apply(entry(2, "b")).(applyResult)
	require.True(t, ok)
	require.ErrorIs(t, res.err, ErrFSMFailed)
	require.ErrorIs(t, res.err, storage.ErrClosed)
	// Later entries are refused too, and so are snapshots, so Raft keeps
	// the entries for a restart to replay.
	res, ok = f.Apply(entry(3, "c")).(applyResult)
	require.True(t, ok)
	require.ErrorIs(t, res.err, ErrFSMFailed)
	_, err := f.Snapshot()
	require.ErrorIs(t, err, ErrFSMFailed)
	require.Error(t, f.Err())
}

// snapshotBytes persists snap into a store other than SnapshotStore (the
// stream is written out) and returns the stream.
func snapshotBytes(t *testing.T, snap raft.FSMSnapshot) []byte {
	t.Helper()
	defer snap.Release()
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
	require.NoError(t, err)
	require.NoError(t, snap.Persist(sink))
	require.NoError(t, sink.Close())
	_, rc, err := store.Open(sink.ID())
	require.NoError(t, err)
	defer func() { _ = rc.Close() }()
	data, err := io.ReadAll(rc)
	require.NoError(t, err)
	return data
}

// linkedSnapshotBytes persists snap into a SnapshotStore (links, no copy)
// and returns the stream the store produces from them.
func linkedSnapshotBytes(t *testing.T, f *fsm, snap raft.FSMSnapshot) []byte {
	t.Helper()
	defer snap.Release()
	store := f.snapshots
	sink, err := store.Create(1, 1, 1, raft.Configuration{}, 1, nil)
	require.NoError(t, err)
	require.NoError(t, snap.Persist(sink))
	require.NoError(t, sink.Close())
	meta, rc, err := store.Open(sink.ID())
	require.NoError(t, err)
	defer func() { _ = rc.Close() }()
	data, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.Equal(t, meta.Size, int64(len(data)), "meta.Size")
	return data
}

func TestFSMSnapshotIsPointInTime(t *testing.T) {
	for _, linked := range []bool{false, true} {
		t.Run(fmt.Sprintf("linked=%v", linked), func(t *testing.T) {
			f := newTestFSM(t, t.TempDir())
			requireOK(t, f.Apply(createEntry(1, "t")))
			var want, wantT []string
			for i := uint64(2); i <= 21; i++ {
				v := fmt.Sprintf("r%d", i)
				want = append(want, v)
				wantT = append(wantT, "t"+v)
				f.ApplyBatch([]*raft.Log{entry(i*2, v), appendEntry(i*2+1, "t", "t"+v)})
			}
			snap, err := f.Snapshot()
			require.NoError(t, err)
			// Appends continue between Snapshot and Persist (Raft persists
			// on another goroutine while the FSM goes on applying), and a
			// topic is deleted.
			for i := uint64(22); i <= 40; i++ {
				f.Apply(entry(i*2, fmt.Sprintf("r%d", i)))
			}
			requireOK(t, f.Apply(deleteEntry(100, "t")))
			var data []byte
			if linked {
				data = linkedSnapshotBytes(t, f, snap)
			} else {
				data = snapshotBytes(t, snap)
			}

			rf := newTestFSM(t, t.TempDir())
			require.NoError(t, rf.Restore(io.NopCloser(bytes.NewReader(data))))
			requireValues(t, rf, DefaultTopic, want...)
			requireValues(t, rf, "t", wantT...)
			require.Equal(t, uint64(2), rf.restoreCount())
			// The restored FSM goes on from the snapshot: entries after it
			// are applied, those in it are not.
			requireSkipped(t, rf.Apply(entry(42, "r21")))
			requireSkipped(t, rf.Apply(createEntry(1, "t")))
			requireResult(t, rf.Apply(entry(44, "r22")), 20, 1)
		})
	}
}

func TestFSMRestore(t *testing.T) {
	// The snapshot: topic "t" created at 1, entries 2..11 one record each
	// to the default topic.
	source := newTestFSM(t, t.TempDir())
	requireOK(t, source.Apply(createEntry(1, "t")))
	for i := uint64(2); i <= 11; i++ {
		source.Apply(entry(i, fmt.Sprintf("r%d", i)))
	}
	snap, err := source.Snapshot()
	require.NoError(t, err)
	data := snapshotBytes(t, snap)
	var want []string
	for i := 2; i <= 11; i++ {
		want = append(want, fmt.Sprintf("r%d", i))
	}

	tests := []struct {
		name        string
		local       func(f *fsm) // what the local state holds before the restore
		wantRebuild uint64       // topics rebuilt from the stream
		wantValues  []string
	}{
		{name: "empty local state", local: func(*fsm) {}, wantRebuild: 2, wantValues: want},
		{name: "local state behind the snapshot", local: func(f *fsm) {
			f.Apply(createEntry(1, "t"))
			for i := uint64(2); i <= 4; i++ {
				f.Apply(entry(i, fmt.Sprintf("r%d", i)))
			}
		}, wantRebuild: 1, wantValues: want},
		{name: "local state equal to the snapshot (restart)", local: func(f *fsm) {
			f.Apply(createEntry(1, "t"))
			for i := uint64(2); i <= 11; i++ {
				f.Apply(entry(i, fmt.Sprintf("r%d", i)))
			}
		}, wantRebuild: 0, wantValues: want},
		{name: "local state ahead of the snapshot (restart)", local: func(f *fsm) {
			f.Apply(createEntry(1, "t"))
			for i := uint64(2); i <= 13; i++ {
				f.Apply(entry(i, fmt.Sprintf("r%d", i)))
			}
			f.Apply(createEntry(14, "later"))
		}, wantRebuild: 0, wantValues: append(append([]string(nil), want...), "r12", "r13")},
		{name: "local state from another history", local: func(f *fsm) {
			for i := uint64(1); i <= 12; i++ {
				f.Apply(entry(i+100, fmt.Sprintf("x%d", i)))
			}
		}, wantRebuild: 2, wantValues: want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(t, t.TempDir())
			tt.local(f)
			require.NoError(t, f.Restore(io.NopCloser(bytes.NewReader(data))))
			require.Equal(t, tt.wantRebuild, f.restoreCount(), "topics rebuilt")
			requireValues(t, f, DefaultTopic, tt.wantValues...)
			requireValues(t, f, "t")
			_, ok := f.lookup("later")
			require.False(t, ok, "a topic the snapshot does not have is removed (its creation is replayed)")
			require.NoError(t, f.Close())
			// The restored state is what the node reopens.
			f = newTestFSM(t, f.dir)
			requireValues(t, f, DefaultTopic, tt.wantValues...)
			require.Len(t, f.topicInfos(), 2)
		})
	}
}

func TestFSMRestoreRejectsGarbage(t *testing.T) {
	f := newTestFSM(t, t.TempDir())
	err := f.Restore(io.NopCloser(bytes.NewReader([]byte("not a snapshot at all, not at all"))))
	require.ErrorIs(t, err, ErrBadSnapshot)
}

// A capture's staging directory is made ahead, when the previous snapshot
// is released, not while appends wait on the state machine.
func TestFSMSnapshotStagesAhead(t *testing.T) {
	f := newTestFSM(t, t.TempDir())
	requireOK(t, f.Apply(entry(2, "r2")))
	snap, err := f.Snapshot()
	require.NoError(t, err)
	snapshotBytes(t, snap) // persists and releases it
	f.mu.Lock()
	spare := f.spareStage
	f.mu.Unlock()
	require.NotEmpty(t, spare, "no staging directory made after the release")
	require.DirExists(t, spare)

	requireOK(t, f.Apply(entry(3, "r3")))
	next, err := f.Snapshot()
	require.NoError(t, err)
	require.Equal(t, spare, next.(*fsmSnapshot).dir, "the capture did not take the spare")
	next.Release()
}
