package distlog

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

const testMaxRecordBytes = 1024

func newTestDataLog(t *testing.T, dir string) *Log {
	t.Helper()
	var c Config
	c.MaxRecordBytes = testMaxRecordBytes
	c.Segment.MaxIndexBytes = 8 * entWidth
	c.Logger = zaptest.NewLogger(t)
	l, err := NewLog(dir, c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func newTestFSM(t *testing.T, l *Log) *fsm {
	t.Helper()
	f, err := newFSM(l, testMaxRecordBytes, zaptest.NewLogger(t))
	require.NoError(t, err)
	return f
}

// command is a committed command entry at index holding values.
func command(index uint64, values ...string) *raft.Log {
	records := make([]*api.Record, len(values))
	for k, v := range values {
		records[k] = &api.Record{Value: []byte(v)}
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeAppendBatch(records)}
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

func requireSkipped(t *testing.T, got any) {
	t.Helper()
	res, ok := got.(applyResult)
	require.True(t, ok, "response %T, want applyResult", got)
	require.NoError(t, res.err)
	require.True(t, res.skipped, "response %+v, want skipped", res)
}

// requireValues checks that the data log holds exactly want from offset 0.
func requireValues(t *testing.T, l *Log, want ...string) {
	t.Helper()
	require.Equal(t, uint64(len(want)), l.NextOffset(), "NextOffset")
	for off, v := range want {
		rec, err := l.Read(uint64(off))
		require.NoError(t, err, "Read(%d)", off)
		require.Equal(t, v, string(rec.GetValue()), "Read(%d) = %q, want %q", off, rec.GetValue(), v)
	}
}

func TestFSMApply(t *testing.T) {
	l := newTestDataLog(t, t.TempDir())
	f := newTestFSM(t, l)

	requireResult(t, f.Apply(command(3, "a")), 0, 1)
	// Non-command entries are not the FSM's business; a batch goes in one
	// write with each entry's own offsets.
	responses := f.ApplyBatch([]*raft.Log{
		{Index: 4, Type: raft.LogConfiguration},
		command(5, "b", "c", "d"),
		command(6, "e"),
	})
	require.Len(t, responses, 3)
	require.Nil(t, responses[0])
	requireResult(t, responses[1], 1, 3)
	requireResult(t, responses[2], 4, 1)
	requireValues(t, l, "a", "b", "c", "d", "e")

	// Each record remembers the entry and position that produced it.
	for off, want := range []struct {
		index uint64
		pos   uint32
	}{{3, 0}, {5, 0}, {5, 1}, {5, 2}, {6, 0}} {
		rec, err := l.Read(uint64(off))
		require.NoError(t, err)
		require.Equal(t, want.index, rec.GetRaftIndex(), "Read(%d).RaftIndex", off)
		require.Equal(t, want.pos, rec.GetType(), "Read(%d).Type (batch position)", off)
	}
}

func TestFSMApplyErrorsReachTheCaller(t *testing.T) {
	tests := []struct {
		name    string
		entry   *raft.Log
		wantErr error
	}{
		{name: "record too large", entry: command(2, "ok", string(make([]byte, testMaxRecordBytes+1))), wantErr: ErrRecordTooLarge},
		{name: "unknown command", entry: &raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{99}}, wantErr: ErrBadCommand},
		{name: "empty data", entry: &raft.Log{Index: 2, Type: raft.LogCommand}, wantErr: ErrBadCommand},
		{name: "truncated batch", entry: &raft.Log{Index: 2, Type: raft.LogCommand, Data: command(2, "abc").Data[:4]}, wantErr: ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestDataLog(t, t.TempDir())
			f := newTestFSM(t, l)
			requireResult(t, f.Apply(command(1, "first")), 0, 1)
			res, ok := f.Apply(tt.entry).(applyResult)
			require.True(t, ok)
			require.ErrorIs(t, res.err, tt.wantErr)
			// Nothing of the refused batch is appended; the FSM goes on.
			requireValues(t, l, "first")
			requireResult(t, f.Apply(command(3, "next")), 1, 1)
		})
	}
}

func TestFSMSkipsEntriesAppliedBeforeARestart(t *testing.T) {
	dir := t.TempDir()
	l := newTestDataLog(t, dir)
	f := newTestFSM(t, l)
	entries := []*raft.Log{command(2, "a", "b"), command(3, "c"), command(5, "d", "e", "f")}
	for _, e := range entries {
		f.Apply(e)
	}
	require.NoError(t, l.Close())

	// Raft replays every committed entry after a restart (here without a
	// snapshot, from the first): the FSM must not append them twice.
	l = newTestDataLog(t, dir)
	f = newTestFSM(t, l)
	for _, e := range entries {
		requireSkipped(t, f.Apply(e))
	}
	requireResult(t, f.Apply(command(7, "g")), 6, 1)
	requireValues(t, l, "a", "b", "c", "d", "e", "f", "g")
}

func TestFSMCompletesABatchCutShortByACrash(t *testing.T) {
	dir := t.TempDir()
	l := newTestDataLog(t, dir)
	f := newTestFSM(t, l)
	f.Apply(command(2, "a"))
	// A crash left only the first two records of entry 4's batch (the data
	// log keeps a prefix of a torn batch write).
	_, err := l.AppendBatch([]*api.Record{
		{Value: []byte("b0"), Term: 1, RaftIndex: 4, Type: 0},
		{Value: []byte("b1"), Term: 1, RaftIndex: 4, Type: 1},
	})
	require.NoError(t, err)
	require.NoError(t, l.Close())

	l = newTestDataLog(t, dir)
	f = newTestFSM(t, l)
	requireSkipped(t, f.Apply(command(2, "a")))
	// The replayed entry 4 adds the missing records and reports the batch's
	// own first offset.
	requireResult(t, f.Apply(command(4, "b0", "b1", "b2", "b3")), 1, 4)
	requireValues(t, l, "a", "b0", "b1", "b2", "b3")
	requireResult(t, f.Apply(command(5, "c")), 5, 1)
	rec, err := l.Read(4)
	require.NoError(t, err)
	require.Equal(t, uint64(4), rec.GetRaftIndex())
	require.Equal(t, uint64(1), rec.GetTerm())
	require.Equal(t, uint32(3), rec.GetType())
}

// snapshotBytes takes a snapshot of f and persists it into memory.
func snapshotBytes(t *testing.T, snap raft.FSMSnapshot) []byte {
	t.Helper()
	defer snap.Release()
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, 1, 1, raft.Configuration{}, 1, nil)
	require.NoError(t, err)
	require.NoError(t, snap.Persist(sink))
	_, rc, err := store.Open(sink.ID())
	require.NoError(t, err)
	defer func() { _ = rc.Close() }()
	data, err := io.ReadAll(rc)
	require.NoError(t, err)
	return data
}

func TestFSMSnapshotIsPointInTime(t *testing.T) {
	l := newTestDataLog(t, t.TempDir())
	f := newTestFSM(t, l)
	var want []string
	for i := uint64(1); i <= 20; i++ {
		v := fmt.Sprintf("r%d", i)
		want = append(want, v)
		f.Apply(command(i, v))
	}
	snap, err := f.Snapshot()
	require.NoError(t, err)
	// Appends continue between Snapshot and Persist (Raft persists on
	// another goroutine while the FSM goes on applying).
	for i := uint64(21); i <= 40; i++ {
		f.Apply(command(i, fmt.Sprintf("r%d", i)))
	}
	data := snapshotBytes(t, snap)

	restored := newTestDataLog(t, t.TempDir())
	rf := newTestFSM(t, restored)
	require.NoError(t, rf.Restore(io.NopCloser(bytes.NewReader(data))))
	requireValues(t, restored, want...)
	lastIndex, lastPos := rf.progress()
	require.Equal(t, uint64(20), lastIndex)
	require.Equal(t, uint32(0), lastPos)
	require.Equal(t, uint64(1), rf.restoreCount())
	// The restored FSM goes on from the snapshot: entry 21 is applied, 20 is not.
	requireSkipped(t, rf.Apply(command(20, "r20")))
	requireResult(t, rf.Apply(command(21, "r21")), 20, 1)
}

func TestFSMRestore(t *testing.T) {
	// The snapshot: entries 1..10, one record each.
	source := newTestDataLog(t, t.TempDir())
	sf := newTestFSM(t, source)
	for i := uint64(1); i <= 10; i++ {
		sf.Apply(command(i, fmt.Sprintf("r%d", i)))
	}
	snap, err := sf.Snapshot()
	require.NoError(t, err)
	data := snapshotBytes(t, snap)
	var want []string
	for i := 1; i <= 10; i++ {
		want = append(want, fmt.Sprintf("r%d", i))
	}

	tests := []struct {
		name        string
		local       func(f *fsm) // what the local data log holds before the restore
		wantRebuild bool
		wantValues  []string
	}{
		{name: "empty local log", local: func(*fsm) {}, wantRebuild: true, wantValues: want},
		{name: "local log behind the snapshot", local: func(f *fsm) {
			for i := uint64(1); i <= 4; i++ {
				f.Apply(command(i, fmt.Sprintf("r%d", i)))
			}
		}, wantRebuild: true, wantValues: want},
		{name: "local log equal to the snapshot (restart)", local: func(f *fsm) {
			for i := uint64(1); i <= 10; i++ {
				f.Apply(command(i, fmt.Sprintf("r%d", i)))
			}
		}, wantRebuild: false, wantValues: want},
		{name: "local log ahead of the snapshot (restart)", local: func(f *fsm) {
			for i := uint64(1); i <= 12; i++ {
				f.Apply(command(i, fmt.Sprintf("r%d", i)))
			}
		}, wantRebuild: false, wantValues: append(append([]string(nil), want...), "r11", "r12")},
		{name: "local log from another history", local: func(f *fsm) {
			for i := uint64(1); i <= 12; i++ {
				f.Apply(command(i+100, fmt.Sprintf("x%d", i)))
			}
		}, wantRebuild: true, wantValues: want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestDataLog(t, t.TempDir())
			f := newTestFSM(t, l)
			tt.local(f)
			require.NoError(t, f.Restore(io.NopCloser(bytes.NewReader(data))))
			require.Equal(t, tt.wantRebuild, f.restoreCount() == 1, "rebuilt = %v, want %v", f.restoreCount() == 1, tt.wantRebuild)
			requireValues(t, l, tt.wantValues...)
		})
	}
}

func TestFSMRestoreRejectsGarbage(t *testing.T) {
	l := newTestDataLog(t, t.TempDir())
	f := newTestFSM(t, l)
	err := f.Restore(io.NopCloser(bytes.NewReader([]byte("not a snapshot at all, not at all"))))
	require.ErrorIs(t, err, ErrBadSnapshot)
}

func TestFSMStopsAfterAStorageError(t *testing.T) {
	l := newTestDataLog(t, t.TempDir())
	f := newTestFSM(t, l)
	requireResult(t, f.Apply(command(1, "a")), 0, 1)
	require.NoError(t, l.Close()) // every write now fails

	res, ok := f.Apply(command(2, "b")).(applyResult)
	require.True(t, ok)
	require.ErrorIs(t, res.err, ErrFSMFailed)
	require.ErrorIs(t, res.err, ErrClosed)
	// Later entries are refused too, and so are snapshots, so Raft keeps
	// the entries for a restart to replay.
	res, ok = f.Apply(command(3, "c")).(applyResult)
	require.True(t, ok)
	require.ErrorIs(t, res.err, ErrFSMFailed)
	_, err := f.Snapshot()
	require.ErrorIs(t, err, ErrFSMFailed)
	require.Error(t, f.Err())
}

func TestAppendBatchCommandRoundTrip(t *testing.T) {
	records := []*api.Record{{Value: []byte("a")}, {Value: nil}, {Value: bytes.Repeat([]byte("x"), 300)}}
	data := encodeAppendBatch(records)
	require.Equal(t, uint64(len(data)), appendBatchSize(records))
	values, err := decodeAppendBatch(data)
	require.NoError(t, err)
	require.Len(t, values, 3)
	for k, r := range records {
		require.Equal(t, len(r.GetValue()), len(values[k]))
		require.Equal(t, string(r.GetValue()), string(values[k]))
	}
}

func FuzzDecodeAppendBatch(f *testing.F) {
	f.Add(encodeAppendBatch([]*api.Record{{Value: []byte("a")}, {Value: []byte("bc")}}))
	f.Add([]byte{cmdAppendBatch, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		values, err := decodeAppendBatch(data)
		if err != nil {
			return
		}
		// Whatever decodes survives a round trip (the bytes may differ:
		// varints have non-minimal spellings).
		records := make([]*api.Record, len(values))
		for k, v := range values {
			records[k] = &api.Record{Value: v}
		}
		again, err := decodeAppendBatch(encodeAppendBatch(records))
		require.NoError(t, err)
		require.Equal(t, len(values), len(again))
		for k := range values {
			require.Equal(t, string(values[k]), string(again[k]))
		}
	})
}
