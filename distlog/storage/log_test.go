package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

// openStorageLog opens a Log in dir with a test logger, closing it at the
// end of the test (Close is idempotent, so tests may close it first).
func openStorageLog(t testing.TB, dir string, configure func(*Config)) *Log {
	t.Helper()
	var c Config
	c.Logger = zaptest.NewLogger(t)
	if configure != nil {
		configure(&c)
	}
	l, err := NewLog(dir, c)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l
}

// storageValue is the value the tests write at offset off: it names the
// offset and has a length that varies with it.
func storageValue(off uint64) []byte {
	v := fmt.Appendf(nil, "record-%d|", off)
	for i := uint64(0); i < off%37; i++ {
		v = append(v, byte('a'+i%26))
	}
	return v
}

// appendStorageRecords appends n records with storageValue values and
// checks their offsets.
func appendStorageRecords(t testing.TB, l *Log, n int) {
	t.Helper()
	for range n {
		want := l.NextOffset()
		got, err := l.Append(&Record{Value: storageValue(want)})
		require.NoError(t, err)
		require.Equal(t, want, got, "Append offset")
	}
}

// requireStorageRecords checks that the log holds exactly offsets
// [lowest, next) with storageValue values.
func requireStorageRecords(t testing.TB, l *Log, lowest, next uint64) {
	t.Helper()
	gotLowest, err := l.LowestOffset()
	require.NoError(t, err)
	require.Equal(t, lowest, gotLowest, "LowestOffset")
	require.Equal(t, next, l.NextOffset(), "NextOffset")
	for off := lowest; off < next; off++ {
		rec, err := l.Read(off)
		require.NoError(t, err, "Read(%d)", off)
		require.Equal(t, off, rec.Offset, "Read(%d).Offset", off)
		require.Equal(t, storageValue(off), rec.Value, "Read(%d).Value", off)
	}
	requireOutOfRange(t, l, next)
	if lowest > 0 {
		requireOutOfRange(t, l, lowest-1)
	}
}

func requireOutOfRange(t testing.TB, l *Log, off uint64) {
	t.Helper()
	rec, err := l.Read(off)
	var oor api.ErrOffsetOutOfRange
	require.ErrorAs(t, err, &oor, "Read(%d) = %v, want out of range", off, rec)
	require.Equal(t, off, oor.Offset)
}

// smallSegments makes segments of a few records each, cut by the store
// size or the index, whichever fills first.
func smallSegments(c *Config) {
	c.Segment.MaxStoreBytes = 200
	c.Segment.MaxIndexBytes = 5 * entWidth
}

// fiveRecordSegments makes segments of exactly five records: bases 0, 5, 10...
func fiveRecordSegments(c *Config) {
	c.Segment.MaxIndexBytes = 5 * entWidth
}

func TestLogAppendRead(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), smallSegments)
	in := &Record{Value: []byte("hello world"), Term: 3, BatchPos: 2, EntryIndex: 9}
	for want := uint64(0); want < 30; want++ {
		off, err := l.Append(in)
		require.NoError(t, err)
		require.Equal(t, want, off)
		got, err := l.Read(off)
		require.NoError(t, err)
		require.Equal(t, in.Value, got.Value)
		require.Equal(t, off, got.Offset)
		require.Equal(t, in.Term, got.Term)
		require.Equal(t, in.EntryIndex, got.EntryIndex)
		require.Equal(t, in.BatchPos, got.BatchPos)
	}
	require.Equal(t, uint64(0), in.Offset, "Append must not mutate its record")
	highest, err := l.HighestOffset()
	require.NoError(t, err)
	require.Equal(t, uint64(29), highest)
	require.Greater(t, len(l.segments), 3, "small segments should have rolled")
}

func TestLogOutOfRange(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), nil)
	requireOutOfRange(t, l, 0)
	appendStorageRecords(t, l, 3)
	requireOutOfRange(t, l, 3)
	requireOutOfRange(t, l, 1<<62)
	var err error = api.ErrOffsetOutOfRange{Offset: 3}
	require.Contains(t, err.Error(), "3")
}

func TestLogEmpty(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) { c.Segment.InitialOffset = 10 })
	lowest, err := l.LowestOffset()
	require.NoError(t, err)
	highest, err := l.HighestOffset()
	require.NoError(t, err)
	require.Equal(t, uint64(10), lowest)
	require.Equal(t, uint64(9), highest, "HighestOffset is NextOffset-1")
	require.Equal(t, uint64(10), l.NextOffset())
	off, err := l.Append(&Record{Value: []byte("x")})
	require.NoError(t, err)
	require.Equal(t, uint64(10), off)

	l0 := openStorageLog(t, t.TempDir(), nil)
	highest, err = l0.HighestOffset()
	require.NoError(t, err)
	require.Equal(t, uint64(0), highest, "HighestOffset of an empty log at 0")
}

func TestLogReopenExisting(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, smallSegments)
	appendStorageRecords(t, l, 25)
	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "Close is idempotent")
	_, err := l.Read(0)
	require.ErrorIs(t, err, ErrClosed)
	_, err = l.Append(&Record{})
	require.ErrorIs(t, err, ErrClosed)

	l = openStorageLog(t, dir, smallSegments)
	requireStorageRecords(t, l, 0, 25)
	appendStorageRecords(t, l, 5)
	requireStorageRecords(t, l, 0, 30)

	// Index files are cut to their entries on Close.
	require.NoError(t, l.Close())
	for _, s := range l.segments {
		fi, err := os.Stat(s.index.filePath())
		require.NoError(t, err)
		require.Equal(t, int64(s.Len()*entWidth), fi.Size(), "size of %s", s.index.filePath())
	}
}

func TestLogReopenEmptyAtInitialOffset(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, nil)
	require.NoError(t, l.ResetTo(100))
	require.NoError(t, l.Close())
	// The offset survives a reopen with no records: it is in the file name.
	l = openStorageLog(t, dir, nil)
	require.Equal(t, uint64(100), l.NextOffset())
}

func TestLogDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	openStorageLog(t, dir, nil)
	_, err := NewLog(dir, Config{})
	require.ErrorIs(t, err, ErrLocked)
}

func TestLogConfigValidation(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*Config)
	}{
		{"index smaller than one entry", func(c *Config) { c.Segment.MaxIndexBytes = entWidth - 1 }},
		{"index too large", func(c *Config) { c.Segment.MaxIndexBytes = maxIndexBytes + 1 }},
		{"record limit too large", func(c *Config) { c.MaxRecordBytes = maxRecordBytes + 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			tt.configure(&c)
			_, err := NewLog(t.TempDir(), c)
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

// Any MaxIndexBytes of at least one entry works, multiples of the entry
// width or not; the book's 1024 filled its index before IsMaxed noticed.
func TestLogAnyMaxIndexBytes(t *testing.T) {
	for _, maxIndex := range []uint64{12, 13, 23, 24, 25, 35, 1000, 1024} {
		t.Run(fmt.Sprint(maxIndex), func(t *testing.T) {
			dir := t.TempDir()
			configure := func(c *Config) { c.Segment.MaxIndexBytes = maxIndex }
			l := openStorageLog(t, dir, configure)
			perSegment := maxIndex / entWidth
			n := 3*perSegment + 2 // at least three full segments and a partial one
			appendStorageRecords(t, l, int(n))
			requireStorageRecords(t, l, 0, n)
			for _, s := range l.segments {
				require.LessOrEqual(t, s.Len(), perSegment, "segment %d", s.baseOffset)
			}
			require.Len(t, l.segments, int((n+perSegment-1)/perSegment))
			require.NoError(t, l.Close())
			l = openStorageLog(t, dir, configure)
			requireStorageRecords(t, l, 0, n)
		})
	}
}

func TestLogMaxStoreBytes(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) {
		c.Segment.MaxStoreBytes = 1000
		c.MaxRecordBytes = 4000
	})
	appendStorageRecords(t, l, 40)
	_, err := l.Append(&Record{Value: bytes.Repeat([]byte{'x'}, 3000)})
	require.NoError(t, err, "a record larger than MaxStoreBytes gets a segment of its own")
	for _, s := range l.segments[:len(l.segments)-1] {
		if s.Len() > 1 {
			require.LessOrEqual(t, s.store.Size(), uint64(1000), "segment %d", s.baseOffset)
		}
	}
	rec, err := l.Read(40)
	require.NoError(t, err)
	require.Len(t, rec.Value, 3000)
}

func TestLogRecordTooLarge(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) { c.MaxRecordBytes = 100 })
	appendStorageRecords(t, l, 2)
	_, err := l.Append(&Record{Value: make([]byte, 101)})
	require.ErrorIs(t, err, ErrRecordTooLarge)
	require.Contains(t, err.Error(), "101")

	_, err = l.AppendBatch([]*Record{{Value: []byte("ok")}, {Value: make([]byte, 101)}})
	require.ErrorIs(t, err, ErrRecordTooLarge)
	require.Equal(t, uint64(2), l.NextOffset(), "a refused batch writes nothing")

	_, err = l.Append(nil)
	require.ErrorIs(t, err, ErrNilRecord)

	off, err := l.Append(&Record{Value: make([]byte, 100)})
	require.NoError(t, err, "the log stays usable")
	require.Equal(t, uint64(2), off)
	for off := range uint64(2) {
		rec, err := l.Read(off)
		require.NoError(t, err)
		require.Equal(t, storageValue(off), rec.Value)
	}
}

func TestLogAppendDoesNotMutate(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), nil)
	appendStorageRecords(t, l, 3)
	in := &Record{Value: []byte("v"), Offset: 77, Term: 5, BatchPos: 1}
	before := *in
	off, err := l.Append(in)
	require.NoError(t, err)
	require.Equal(t, uint64(3), off, "the record's Offset is ignored")
	require.Equal(t, before, *in, "Append changed its record")
	batch := []*Record{{Value: []byte("a"), Offset: 9}, {Value: []byte("b")}}
	_, err = l.AppendBatch(batch)
	require.NoError(t, err)
	require.Equal(t, uint64(9), batch[0].Offset)
	require.Equal(t, uint64(0), batch[1].Offset)
}

func TestLogAppendBatch(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), smallSegments)
	appendStorageRecords(t, l, 3)
	var batch []*Record
	for off := uint64(3); off < 40; off++ {
		batch = append(batch, &Record{Value: storageValue(off)})
	}
	first, err := l.AppendBatch(batch)
	require.NoError(t, err)
	require.Equal(t, uint64(3), first)
	requireStorageRecords(t, l, 0, 40)

	first, err = l.AppendBatch(nil)
	require.NoError(t, err)
	require.Equal(t, uint64(40), first, "an empty batch returns the next offset")
}

func TestLogTruncate(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), fiveRecordSegments)
	appendStorageRecords(t, l, 23)
	require.Equal(t, uint64(5), l.segments[1].baseOffset)

	require.NoError(t, l.Truncate(7)) // removes [0,5), keeps [5,10) which holds 7
	requireStorageRecords(t, l, 5, 23)
	require.NoError(t, l.Truncate(10))
	requireStorageRecords(t, l, 10, 23)

	// Never removes the active segment, even when all its records are below.
	require.NoError(t, l.Truncate(1000))
	requireStorageRecords(t, l, 20, 23)
	require.Len(t, l.segments, 1)
	appendStorageRecords(t, l, 4)
	requireStorageRecords(t, l, 20, 27)
}

func TestLogTruncateFrom(t *testing.T) {
	tests := []struct {
		name       string
		from       uint64
		wantLowest uint64
		wantNext   uint64
	}{
		{"inside the active segment", 21, 0, 21},
		{"at the active segment's base", 20, 0, 20},
		{"inside an older segment", 12, 0, 12},
		{"at an older segment's base", 10, 0, 10},
		{"inside the first segment", 3, 0, 3},
		{"at the lowest offset empties the log", 0, 0, 0},
		{"at the next offset changes nothing", 23, 0, 23},
		{"past the end changes nothing", 99, 0, 23},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openStorageLog(t, dir, fiveRecordSegments)
			appendStorageRecords(t, l, 23)
			require.NoError(t, l.TruncateFrom(tt.from))
			requireStorageRecords(t, l, tt.wantLowest, tt.wantNext)
			// Appends continue at the cut, with new values.
			appendStorageRecords(t, l, 7)
			requireStorageRecords(t, l, tt.wantLowest, tt.wantNext+7)
			// And it all survives a reopen: the removed records do not
			// come back.
			require.NoError(t, l.Close())
			l = openStorageLog(t, dir, fiveRecordSegments)
			requireStorageRecords(t, l, tt.wantLowest, tt.wantNext+7)
		})
	}
}

func TestLogTruncateFromBelowLowest(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), fiveRecordSegments)
	appendStorageRecords(t, l, 23)
	require.NoError(t, l.Truncate(12))
	requireStorageRecords(t, l, 10, 23)
	require.NoError(t, l.TruncateFrom(4))
	requireStorageRecords(t, l, 4, 4)
}

func TestLogResetTo(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, smallSegments)
	appendStorageRecords(t, l, 12)
	require.NoError(t, l.ResetTo(1000))
	requireStorageRecords(t, l, 1000, 1000)
	appendStorageRecords(t, l, 3)
	require.NoError(t, l.Close())
	l = openStorageLog(t, dir, smallSegments)
	requireStorageRecords(t, l, 1000, 1003)
}

func TestLogReset(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) {
		smallSegments(c)
		c.Segment.InitialOffset = 1
	})
	appendStorageRecords(t, l, 12)
	require.NoError(t, l.Reset())
	requireStorageRecords(t, l, 1, 1)
	appendStorageRecords(t, l, 2)
	requireStorageRecords(t, l, 1, 3)
}

func TestLogRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l := openStorageLog(t, dir, nil)
	appendStorageRecords(t, l, 3)
	require.NoError(t, l.Remove())
	_, err := os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = l.Read(0)
	require.ErrorIs(t, err, ErrClosed)
}

func TestLogClosedErrors(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), nil)
	appendStorageRecords(t, l, 2)
	require.NoError(t, l.Close())
	calls := map[string]func() error{
		"Append":        func() error { _, err := l.Append(&Record{}); return err },
		"AppendBatch":   func() error { _, err := l.AppendBatch([]*Record{{}}); return err },
		"Read":          func() error { _, err := l.Read(0); return err },
		"LowestOffset":  func() error { _, err := l.LowestOffset(); return err },
		"HighestOffset": func() error { _, err := l.HighestOffset(); return err },
		"Truncate":      func() error { return l.Truncate(1) },
		"TruncateFrom":  func() error { return l.TruncateFrom(1) },
		"Reset":         l.Reset,
		"ResetTo":       func() error { return l.ResetTo(5) },
		"Sync":          l.Sync,
		"Restore":       func() error { return l.Restore(bytes.NewReader(nil)) },
		"Reader":        func() error { _, err := io.ReadAll(l.Reader()); return err },
	}
	for name, call := range calls {
		require.ErrorIs(t, call(), ErrClosed, name)
	}
	require.Equal(t, uint64(2), l.NextOffset(), "NextOffset after Close")
}

// waitClosed fails the test unless ch is closed within a few seconds.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Appended channel not closed", what)
	}
}

func requireOpen(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: Appended channel closed with no change", what)
	default:
	}
}

func TestLogAppended(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), fiveRecordSegments)
	appendStorageRecords(t, l, 3)

	// The consumer's pattern: take the channel, read, wait.
	ch := l.Appended()
	requireOutOfRange(t, l, 3)
	requireOpen(t, ch, "before the append")
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(&Record{Value: storageValue(3)})
		done <- err
	}()
	waitClosed(t, ch, "Append")
	require.NoError(t, <-done)
	rec, err := l.Read(3)
	require.NoError(t, err)
	require.Equal(t, storageValue(3), rec.Value)

	changes := []struct {
		name   string
		change func() error
	}{
		{"AppendBatch", func() error {
			batch := make([]*Record, 10)
			for k := range batch {
				batch[k] = &Record{Value: []byte("batch")}
			}
			_, err := l.AppendBatch(batch)
			return err
		}},
		{"Truncate", func() error { return l.Truncate(5) }},
		{"TruncateFrom", func() error { return l.TruncateFrom(2) }},
		{"ResetTo", func() error { return l.ResetTo(9) }},
		{"Restore", func() error { return l.Restore(l.Reader()) }},
		{"Close", l.Close},
	}
	for _, c := range changes {
		ch := l.Appended()
		requireOpen(t, ch, c.name)
		require.NoError(t, c.change(), c.name)
		waitClosed(t, ch, c.name)
	}
	waitClosed(t, l.Appended(), "after Close")
}

// TestLogReferenceModel runs random operations against the log and a tiny
// model of its offset arithmetic (a map and two counters), reopening now and
// then, and compares them after every step.
func TestLogReferenceModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	configure := func(c *Config) {
		c.Segment.MaxStoreBytes = 150
		c.Segment.MaxIndexBytes = 4*entWidth + 5
	}
	l := openStorageLog(t, dir, configure)

	model := map[uint64][]byte{}
	var lowest, next uint64
	check := func(step int, op string) {
		t.Helper()
		gotLowest, err := l.LowestOffset()
		require.NoError(t, err)
		require.Equal(t, lowest, gotLowest, "step %d (%s): LowestOffset", step, op)
		require.Equal(t, next, l.NextOffset(), "step %d (%s): NextOffset", step, op)
		for off := lowest; off < next; off++ {
			rec, err := l.Read(off)
			require.NoError(t, err, "step %d (%s): Read(%d)", step, op, off)
			require.Equal(t, model[off], rec.Value, "step %d (%s): Read(%d)", step, op, off)
		}
		requireOutOfRange(t, l, next)
	}
	for step := range 300 {
		var op string
		switch k := rng.IntN(100); {
		case k < 45:
			op = "Append"
			v := fmt.Appendf(nil, "v%d-%d", step, rng.Uint64())
			off, err := l.Append(&Record{Value: v})
			require.NoError(t, err)
			require.Equal(t, next, off)
			model[off] = v
			next++
		case k < 60:
			op = "AppendBatch"
			var batch []*Record
			for j := range rng.IntN(12) {
				batch = append(batch, &Record{Value: fmt.Appendf(nil, "b%d-%d", step, j)})
			}
			first, err := l.AppendBatch(batch)
			require.NoError(t, err)
			require.Equal(t, next, first)
			for _, r := range batch {
				model[next] = r.Value
				next++
			}
		case k < 70:
			op = "Truncate"
			at := lowest + rng.Uint64N(next-lowest+3)
			require.NoError(t, l.Truncate(at))
			// Whole segments only: the new lowest is between the old one
			// and at, and never past the active segment.
			got, err := l.LowestOffset()
			require.NoError(t, err)
			require.GreaterOrEqual(t, got, lowest)
			require.LessOrEqual(t, got, max(lowest, min(at, next)))
			lowest = got
		case k < 82:
			op = "TruncateFrom"
			at := lowest + rng.Uint64N(next-lowest+3)
			if rng.IntN(10) == 0 && lowest > 0 {
				at = rng.Uint64N(lowest)
			}
			require.NoError(t, l.TruncateFrom(at))
			if at < next {
				next = at
			}
			lowest = min(lowest, next)
		case k < 85:
			op = "ResetTo"
			at := rng.Uint64N(2 * (next + 1))
			require.NoError(t, l.ResetTo(at))
			lowest, next = at, at
		case k < 92:
			op = "Restore"
			other := openStorageLog(t, t.TempDir(), configure)
			require.NoError(t, other.Restore(l.Reader()))
			require.NoError(t, l.Close())
			l = other
		default:
			op = "reopen"
			require.NoError(t, l.Close())
			l = openStorageLog(t, l.dir, configure)
		}
		for off := range model {
			if off < lowest || off >= next {
				delete(model, off)
			}
		}
		check(step, op)
	}
}

func TestCorruptionErrorMatching(t *testing.T) {
	var err error = fmt.Errorf("wrapped: %w", &CorruptionError{Segment: 5, Offset: 7, Err: errBadChecksum})
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorIs(t, err, errBadChecksum)
	var ce *CorruptionError
	require.True(t, errors.As(err, &ce))
	require.Equal(t, uint64(7), ce.Offset)
	require.Contains(t, err.Error(), "offset 7, segment 5")
}

// TestLogMaxAge: with Segment.MaxAge, a record stamped MaxAge or more after
// its segment's first record starts a new segment, in single appends, inside
// a batch, and after a reopen (the first record's stamp is read back); a
// zero stamp never rolls; without MaxAge the same records share a segment.
func TestLogMaxAge(t *testing.T) {
	const hour = int64(time.Hour)
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC).UnixNano()
	stamped := func(ts ...int64) []*Record {
		out := make([]*Record, len(ts))
		for k, s := range ts {
			out[k] = &Record{Value: []byte("v"), Timestamp: s}
		}
		return out
	}
	bases := func(l *Log) []uint64 {
		segs, err := l.Segments()
		require.NoError(t, err)
		var out []uint64
		for _, s := range segs {
			out = append(out, s.Base)
		}
		return out
	}
	dir := t.TempDir()
	l := openStorageLog(t, dir, func(c *Config) { c.Segment.MaxAge = time.Hour })
	for _, r := range stamped(t0, t0+hour/2, 0, t0+hour-1) {
		_, err := l.Append(r)
		require.NoError(t, err)
	}
	require.Equal(t, []uint64{0}, bases(l), "records within the hour share the segment")
	_, err := l.Append(stamped(t0 + hour)[0])
	require.NoError(t, err)
	require.Equal(t, []uint64{0, 4}, bases(l), "a record an hour after the first starts a segment")

	// A batch is split where the age is reached.
	_, err = l.AppendBatch(stamped(t0+hour+1, t0+2*hour-1, t0+2*hour, t0+2*hour+1))
	require.NoError(t, err)
	require.Equal(t, []uint64{0, 4, 7}, bases(l))

	// After a reopen the active segment's first stamp is read back.
	require.NoError(t, l.Close())
	l = openStorageLog(t, dir, func(c *Config) { c.Segment.MaxAge = time.Hour })
	_, err = l.Append(stamped(t0 + 3*hour - 1)[0])
	require.NoError(t, err)
	require.Equal(t, []uint64{0, 4, 7}, bases(l))
	_, err = l.Append(stamped(t0 + 3*hour)[0])
	require.NoError(t, err)
	require.Equal(t, []uint64{0, 4, 7, 10}, bases(l))
	requireRecordCount(t, l, 11)

	// Without MaxAge, age does not matter, until SetSegmentMaxAge: the
	// active segment's age then counts from its first record.
	plain := openStorageLog(t, t.TempDir(), nil)
	_, err = plain.AppendBatch(stamped(t0, t0+hour, t0+100*hour))
	require.NoError(t, err)
	require.Equal(t, []uint64{0}, bases(plain))
	plain.SetSegmentMaxAge(time.Hour)
	_, err = plain.Append(stamped(t0 + 100*hour)[0])
	require.NoError(t, err)
	require.Equal(t, []uint64{0, 3}, bases(plain))
}

// requireRecordCount checks that the log holds n records from offset 0,
// each readable.
func requireRecordCount(t *testing.T, l *Log, n uint64) {
	t.Helper()
	require.Equal(t, n, l.NextOffset())
	for off := range n {
		_, err := l.Read(off)
		require.NoError(t, err, "offset %d", off)
	}
}
