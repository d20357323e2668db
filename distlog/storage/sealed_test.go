package storage

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireSealedReleased checks what each segment of l holds: the active
// one and the keep newest sealed ones a mapped index; every older one a
// released index whose file is cut to its entries; no sealed one a write
// buffer.
func requireSealedReleased(t *testing.T, l *Log, keep int) {
	t.Helper()
	l.mu.RLock()
	defer l.mu.RUnlock()
	for k, s := range l.segments {
		sealedNewer := len(l.segments) - 1 - k // sealed segments after this one, the active one counted
		if s == l.active {
			require.True(t, s.index.mapped(), "active segment %d: index mapped", s.baseOffset)
			continue
		}
		s.store.mu.Lock()
		buffered := s.store.buf != nil
		s.store.mu.Unlock()
		require.False(t, buffered, "sealed segment %d keeps a write buffer", s.baseOffset)
		require.Equal(t, sealedNewer <= keep, s.index.mapped(), "segment %d (%d newer): index mapped", s.baseOffset, sealedNewer)
		if !s.index.mapped() {
			fi, err := os.Stat(s.index.filePath())
			require.NoError(t, err)
			require.Equal(t, int64(s.Len()*entWidth), fi.Size(), "released index of segment %d: file cut to its entries", s.baseOffset)
		}
	}
}

// requireReadBatchAll reads the whole log with ReadBatch and checks every
// record against storageValue.
func requireReadBatchAll(t *testing.T, l *Log, lowest, next uint64) {
	t.Helper()
	for off := lowest; off < next; {
		batch, err := l.ReadBatch(off, 7, 1<<20)
		require.NoError(t, err, "ReadBatch(%d)", off)
		require.NotEmpty(t, batch)
		for _, rec := range batch {
			require.Equal(t, off, rec.Offset, "ReadBatch record offset")
			require.Equal(t, storageValue(off), rec.Value, "ReadBatch(%d) value", off)
			off++
		}
	}
}

// Sealed segments release their write buffer and, past the newest
// MappedSealedIndexes, their index map; their records read the same with
// Read and ReadBatch, before and after a reopen, whose load releases the
// same indexes.
func TestSealedSegmentsReleaseIndexes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mapped int // Config.MappedSealedIndexes
		keep   int // sealed segments that keep a map
	}{
		{name: "default", mapped: 0, keep: DefaultMappedSealedIndexes},
		{name: "none", mapped: -1, keep: 0},
		{name: "five", mapped: 5, keep: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			configure := func(c *Config) {
				fiveRecordSegments(c)
				c.MappedSealedIndexes = tc.mapped
			}
			l := openStorageLog(t, dir, configure)
			appendStorageRecords(t, l, 3)
			requireSealedReleased(t, l, tc.keep) // one segment: nothing sealed yet
			appendStorageRecords(t, l, 60)
			segments, err := l.SegmentCount()
			require.NoError(t, err)
			require.Equal(t, 13, segments)
			requireSealedReleased(t, l, tc.keep)
			requireStorageRecords(t, l, 0, 63)
			requireReadBatchAll(t, l, 0, 63)
			require.NoError(t, l.Sync(), "Sync with released indexes")
			require.NoError(t, l.Close())

			l = openStorageLog(t, dir, configure)
			requireSealedReleased(t, l, tc.keep)
			requireStorageRecords(t, l, 0, 63)
			requireReadBatchAll(t, l, 0, 63)
			appendStorageRecords(t, l, 12)
			requireSealedReleased(t, l, tc.keep)
			requireStorageRecords(t, l, 0, 75)
		})
	}
}

// TruncateFrom into a segment whose index was released makes it the
// active segment again: it takes appends, and they read back, before and
// after a reopen.
func TestTruncateFromIntoReleasedSegment(t *testing.T) {
	dir := t.TempDir()
	configure := func(c *Config) {
		fiveRecordSegments(c)
		c.MappedSealedIndexes = -1
	}
	l := openStorageLog(t, dir, configure)
	appendStorageRecords(t, l, 30)
	requireSealedReleased(t, l, 0)

	require.NoError(t, l.TruncateFrom(12)) // inside segment 10, released
	requireStorageRecords(t, l, 0, 12)
	appendStorageRecords(t, l, 11)
	requireSealedReleased(t, l, 0)
	requireStorageRecords(t, l, 0, 23)
	requireReadBatchAll(t, l, 0, 23)

	require.NoError(t, l.TruncateFrom(15)) // at a released segment's base: removes it whole
	requireStorageRecords(t, l, 0, 15)
	appendStorageRecords(t, l, 2)
	require.NoError(t, l.Close())

	l = openStorageLog(t, dir, configure)
	requireSealedReleased(t, l, 0)
	requireStorageRecords(t, l, 0, 17)
}

// Front truncation (retention) removes segments with released indexes.
func TestTruncateRemovesReleasedSegments(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), func(c *Config) {
		fiveRecordSegments(c)
		c.MappedSealedIndexes = -1
	})
	appendStorageRecords(t, l, 27)
	require.NoError(t, l.Truncate(10))
	requireStorageRecords(t, l, 10, 27)
	requireReadBatchAll(t, l, 10, 27)
	requireSealedReleased(t, l, 0)
}
