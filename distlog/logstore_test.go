package distlog

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/proglog/proglog/distlog/storage"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// newTestLogStore opens a log store in dir with tiny segments (4 entries
// each), so prefix deletes cut whole segments and leave hidden entries.
func newTestLogStore(t *testing.T, dir string) *logStore {
	t.Helper()
	var c storage.Config
	c.Segment.MaxIndexBytes = 4 * entWidth
	c.Logger = zaptest.NewLogger(t)
	s, err := newLogStore(dir, c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testEntries returns entries first..last with every field set.
func testEntries(first, last, term uint64) []*raft.Log {
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		l := &raft.Log{
			Index: i,
			Term:  term,
			Type:  raft.LogCommand,
			Data:  []byte(fmt.Sprintf("entry-%d-term-%d", i, term)),
		}
		switch i % 3 {
		case 0:
			l.Extensions = []byte{0xde, 0xad, byte(i)}
			l.AppendedAt = time.Unix(1700000000, int64(i)).UTC()
		case 1:
			l.Type = raft.LogConfiguration
			l.AppendedAt = time.Unix(1700000000, int64(i)).UTC()
		case 2:
			l.Type = raft.LogNoop
			l.Data = nil
		}
		logs = append(logs, l)
	}
	return logs
}

// requireEntry checks that the store holds want at want.Index.
func requireEntry(t *testing.T, s raft.LogStore, want *raft.Log) {
	t.Helper()
	var got raft.Log
	require.NoError(t, s.GetLog(want.Index, &got), "GetLog(%d)", want.Index)
	require.Equal(t, want.Index, got.Index)
	require.Equal(t, want.Term, got.Term, "GetLog(%d).Term", want.Index)
	require.Equal(t, want.Type, got.Type, "GetLog(%d).Type", want.Index)
	require.Equal(t, want.Data, got.Data, "GetLog(%d).Data", want.Index)
	require.Equal(t, want.Extensions, got.Extensions, "GetLog(%d).Extensions", want.Index)
	require.True(t, want.AppendedAt.Equal(got.AppendedAt), "GetLog(%d).AppendedAt = %v, want %v", want.Index, got.AppendedAt, want.AppendedAt)
}

// requireRange checks FirstIndex and LastIndex, and that exactly first..last
// can be read (an index on either side gives raft.ErrLogNotFound).
func requireRange(t *testing.T, s raft.LogStore, first, last uint64) {
	t.Helper()
	gotFirst, err := s.FirstIndex()
	require.NoError(t, err)
	gotLast, err := s.LastIndex()
	require.NoError(t, err)
	require.Equal(t, first, gotFirst, "FirstIndex() = %d, want %d", gotFirst, first)
	require.Equal(t, last, gotLast, "LastIndex() = %d, want %d", gotLast, last)
	var l raft.Log
	if first > 1 {
		require.ErrorIs(t, s.GetLog(first-1, &l), raft.ErrLogNotFound, "GetLog(%d) below FirstIndex", first-1)
	}
	require.ErrorIs(t, s.GetLog(last+1, &l), raft.ErrLogNotFound, "GetLog(%d) past LastIndex", last+1)
	if first == 0 {
		return
	}
	for i := first; i <= last; i++ {
		require.NoError(t, s.GetLog(i, &l), "GetLog(%d)", i)
		require.Equal(t, i, l.Index)
	}
}

func TestLogStoreEmpty(t *testing.T) {
	s := newTestLogStore(t, t.TempDir())
	requireRange(t, s, 0, 0)
	var l raft.Log
	require.ErrorIs(t, s.GetLog(1, &l), raft.ErrLogNotFound)
	require.True(t, s.IsMonotonic())
	require.NoError(t, s.DeleteRange(1, 10), "DeleteRange on an empty store")
}

func TestLogStoreStoreAndGet(t *testing.T) {
	s := newTestLogStore(t, t.TempDir())
	entries := testEntries(1, 10, 1)
	require.NoError(t, s.StoreLog(entries[0]))
	require.NoError(t, s.StoreLogs(entries[1:]))
	requireRange(t, s, 1, 10)
	for _, e := range entries {
		requireEntry(t, s, e)
	}
}

func TestLogStoreDeleteRange(t *testing.T) {
	tests := []struct {
		name             string
		min, max         uint64
		wantFirst        uint64
		wantLast         uint64
		wantErr          error
		storeNext        uint64 // if non-zero, store this index afterwards
		wantAfterStoreLo uint64
		wantAfterStoreHi uint64
	}{
		// Entries 1..10, four to a segment: segments at 1, 5, 9.
		{name: "prefix inside the first segment", min: 1, max: 2, wantFirst: 3, wantLast: 10},
		{name: "prefix of whole segments", min: 1, max: 8, wantFirst: 9, wantLast: 10},
		{name: "prefix cutting into a later segment", min: 1, max: 6, wantFirst: 7, wantLast: 10},
		{name: "prefix with min below the first index", min: 0, max: 3, wantFirst: 4, wantLast: 10},
		{name: "suffix inside the last segment", min: 10, max: 10, wantFirst: 1, wantLast: 9, storeNext: 10, wantAfterStoreLo: 1, wantAfterStoreHi: 10},
		{name: "suffix across segments", min: 4, max: 10, wantFirst: 1, wantLast: 3, storeNext: 4, wantAfterStoreLo: 1, wantAfterStoreHi: 4},
		{name: "suffix with max past the last index", min: 6, max: 100, wantFirst: 1, wantLast: 5},
		{name: "everything, then a store after a snapshot", min: 1, max: 10, wantFirst: 0, wantLast: 0, storeNext: 50, wantAfterStoreLo: 50, wantAfterStoreHi: 50},
		{name: "everything, then the next index", min: 1, max: 10, wantFirst: 0, wantLast: 0, storeNext: 11, wantAfterStoreLo: 11, wantAfterStoreHi: 11},
		{name: "range past the end", min: 11, max: 20, wantFirst: 1, wantLast: 10},
		{name: "empty range", min: 5, max: 4, wantFirst: 1, wantLast: 10},
		{name: "middle", min: 3, max: 5, wantFirst: 1, wantLast: 10, wantErr: ErrLogStoreGap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newTestLogStore(t, dir)
			entries := testEntries(1, 10, 1)
			require.NoError(t, s.StoreLogs(entries))

			err := s.DeleteRange(tt.min, tt.max)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			requireRange(t, s, tt.wantFirst, tt.wantLast)
			for _, e := range entries {
				if e.Index >= tt.wantFirst && e.Index <= tt.wantLast && tt.wantFirst != 0 {
					requireEntry(t, s, e)
				}
			}

			// The same range after a restart.
			require.NoError(t, s.Close())
			s = newTestLogStore(t, dir)
			requireRange(t, s, tt.wantFirst, tt.wantLast)

			if tt.storeNext != 0 {
				next := testEntries(tt.storeNext, tt.storeNext, 2)[0]
				require.NoError(t, s.StoreLogs([]*raft.Log{next}))
				requireRange(t, s, tt.wantAfterStoreLo, tt.wantAfterStoreHi)
				requireEntry(t, s, next)
			}
		})
	}
}

func TestLogStoreRepeatedCompactionAndRestart(t *testing.T) {
	// Raft's rhythm: store, snapshot, compact a prefix, keep storing;
	// FirstIndex must follow exactly, across restarts.
	dir := t.TempDir()
	s := newTestLogStore(t, dir)
	var next uint64 = 1
	for round := 0; round < 5; round++ {
		require.NoError(t, s.StoreLogs(testEntries(next, next+6, uint64(round+1))))
		next += 7
		last := next - 1
		first, err := s.FirstIndex()
		require.NoError(t, err)
		compactTo := last - 2
		require.NoError(t, s.DeleteRange(first, compactTo))
		requireRange(t, s, compactTo+1, last)
		require.NoError(t, s.Close())
		s = newTestLogStore(t, dir)
		requireRange(t, s, compactTo+1, last)
	}
}

func TestLogStoreStoreLogsHonoursIndexes(t *testing.T) {
	tests := []struct {
		name               string
		storeFrom          uint64
		storeTo            uint64
		wantFirst, wantLst uint64
	}{
		{name: "append after the last", storeFrom: 6, storeTo: 7, wantFirst: 1, wantLst: 7},
		{name: "overwrite a suffix", storeFrom: 4, storeTo: 4, wantFirst: 1, wantLst: 4},
		{name: "gap: store restarts at the index", storeFrom: 20, storeTo: 21, wantFirst: 20, wantLst: 21},
		{name: "before the first: store restarts at the index", storeFrom: 1, storeTo: 2, wantFirst: 1, wantLst: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newTestLogStore(t, dir)
			require.NoError(t, s.StoreLogs(testEntries(1, 5, 1)))
			if tt.storeFrom == 1 {
				require.NoError(t, s.DeleteRange(1, 2)) // first is 3 now
			}
			stored := testEntries(tt.storeFrom, tt.storeTo, 2)
			require.NoError(t, s.StoreLogs(stored))
			requireRange(t, s, tt.wantFirst, tt.wantLst)
			for _, e := range stored {
				requireEntry(t, s, e)
			}
			require.NoError(t, s.Close())
			s = newTestLogStore(t, dir)
			requireRange(t, s, tt.wantFirst, tt.wantLst)
		})
	}
}

func TestLogStoreRejectsBadBatches(t *testing.T) {
	s := newTestLogStore(t, t.TempDir())
	entries := testEntries(1, 3, 1)
	entries[2].Index = 5
	require.Error(t, s.StoreLogs(entries), "StoreLogs with a gap inside the batch")
	require.Error(t, s.StoreLogs([]*raft.Log{{Index: 0}}), "StoreLogs of index 0")
	requireRange(t, s, 0, 0)
	require.NoError(t, s.StoreLogs(nil))
}

func TestLogEntryEnvelopeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   raft.Log
	}{
		{name: "bare", in: raft.Log{Index: 1, Term: 1, Type: raft.LogNoop}},
		{name: "data only", in: raft.Log{Index: 2, Term: 3, Type: raft.LogCommand, Data: []byte("x")}},
		{name: "all fields", in: raft.Log{Index: 7, Term: 9, Type: raft.LogConfiguration, Data: []byte("cfg"),
			Extensions: []byte{1, 2, 3}, AppendedAt: time.Unix(1, 2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := encodeLogEntry(&tt.in)
			require.NoError(t, err)
			var out raft.Log
			require.NoError(t, decodeLogEntry(rec, &out))
			require.True(t, tt.in.AppendedAt.Equal(out.AppendedAt))
			out.AppendedAt = tt.in.AppendedAt
			require.Equal(t, tt.in, out)
		})
	}
}

func FuzzDecodeLogEntry(f *testing.F) {
	for _, l := range testEntries(1, 3, 1) {
		rec, err := encodeLogEntry(l)
		require.NoError(f, err)
		f.Add(rec.Value)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		rec, err := encodeLogEntry(&raft.Log{Index: 1, Data: value})
		require.NoError(t, err)
		var l raft.Log
		require.NoError(t, decodeLogEntry(rec, &l))
		require.Equal(t, len(value), len(l.Data))
		// Arbitrary envelopes never panic.
		rec.Value = value
		_ = decodeLogEntry(rec, &l)
	})
}

// compactionWait bounds the waits of the compaction tests: a deadline for
// a failing test, not a synchronisation.
const compactionWait = 20 * time.Second

// heldCompaction makes s's prefix deletes stop before they write the
// floor until release is called (once; also at the end of the test);
// entered is sent a value when one stops.
func heldCompaction(t *testing.T, s *logStore) (entered <-chan struct{}, release func()) {
	t.Helper()
	ch := make(chan struct{}, 8)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	s.deleteHook = func() {
		ch <- struct{}{}
		<-gate
	}
	return ch, release
}

// startHeldCompaction starts DeleteRange(min, max) in a goroutine and
// returns once it is held inside (see heldCompaction), with the channel its
// result comes on and the function that lets it go on.
func startHeldCompaction(t *testing.T, s *logStore, min, max uint64) (deleted <-chan error, release func()) {
	t.Helper()
	entered, release := heldCompaction(t, s)
	result := make(chan error, 1)
	go func() { result <- s.DeleteRange(min, max) }()
	within(t, entered, "DeleteRange")
	return result, release
}

// within waits for ch for at most compactionWait.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(compactionWait):
		t.Fatalf("%s: nothing after %v", what, compactionWait)
		panic("unreachable")
	}
}

// Raft compacts from its snapshot goroutine while its main loop stores:
// a prefix delete does not hold StoreLogs up while it persists the first
// index, and once it returns the deleted entries are gone (FirstIndex,
// GetLog, and after a restart).
func TestLogStoreCompactionDoesNotBlockStoreLogs(t *testing.T) {
	dir := t.TempDir()
	s := newTestLogStore(t, dir)
	require.NoError(t, s.StoreLogs(testEntries(1, 20, 1)))
	deleted, release := startHeldCompaction(t, s, 1, 12)

	stored := make(chan error, 1)
	go func() { stored <- s.StoreLogs(testEntries(21, 30, 1)) }()
	require.NoError(t, within(t, stored, "StoreLogs during a compaction"))
	last, err := s.LastIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(30), last)

	release()
	require.NoError(t, within(t, deleted, "DeleteRange"))
	requireRange(t, s, 13, 30)
	for _, e := range testEntries(13, 30, 1) {
		requireEntry(t, s, e)
	}
	require.NoError(t, s.Close())
	s = newTestLogStore(t, dir)
	requireRange(t, s, 13, 30)
}

// A StoreLogs that rewrites the store (here: over a suffix that reaches
// into the range a compaction deletes) does not overlap the compaction:
// the first index that the compaction persists never hides entries stored
// after it, now or after a restart.
func TestLogStoreRewriteWaitsForCompaction(t *testing.T) {
	dir := t.TempDir()
	s := newTestLogStore(t, dir)
	require.NoError(t, s.StoreLogs(testEntries(1, 20, 1)))
	deleted, release := startHeldCompaction(t, s, 1, 12)

	rewritten := testEntries(5, 6, 2)
	stored := make(chan error, 1)
	go func() { stored <- s.StoreLogs(rewritten) }()
	release()
	require.NoError(t, within(t, deleted, "DeleteRange"))
	require.NoError(t, within(t, stored, "StoreLogs"))
	// After the compaction (first index 13), a store at 5 restarts the
	// store there.
	requireRange(t, s, 5, 6)
	for _, e := range rewritten {
		requireEntry(t, s, e)
	}
	require.NoError(t, s.Close())
	s = newTestLogStore(t, dir)
	requireRange(t, s, 5, 6)
}
