package storage

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
)

// requireBatch checks that batch is what ReadBatch(start, maxRecords,
// maxBytes) must return from a log whose records are those Read returns,
// ending at next: the records from start on, each equal to Read's, within
// the limits (the first whatever its size), and no shorter than the limits
// and the log's end allow.
func requireBatch(t *testing.T, l *Log, batch []Record, start, next uint64, maxRecords int, maxBytes uint64) {
	t.Helper()
	require.NotEmpty(t, batch, "ReadBatch(%d, %d, %d) returned no record", start, maxRecords, maxBytes)
	require.LessOrEqual(t, len(batch), max(1, maxRecords), "ReadBatch(%d, %d, %d) records", start, maxRecords, maxBytes)
	var bytes uint64
	for k, rec := range batch {
		off := start + uint64(k)
		want, err := l.Read(off)
		require.NoError(t, err, "Read(%d)", off)
		require.Equal(t, *want, rec, "ReadBatch(%d, %d, %d)[%d]", start, maxRecords, maxBytes, k)
		bytes += uint64(len(rec.Value))
	}
	if len(batch) > 1 {
		require.LessOrEqual(t, bytes, maxBytes, "ReadBatch(%d, %d, %d) value bytes", start, maxRecords, maxBytes)
	}
	end := start + uint64(len(batch))
	if len(batch) < max(1, maxRecords) && end < next {
		nextRec, err := l.Read(end)
		require.NoError(t, err)
		require.Greater(t, bytes+uint64(len(nextRec.Value)), maxBytes,
			"ReadBatch(%d, %d, %d) stopped at %d with room for the next record", start, maxRecords, maxBytes, end)
	}
}

func TestReadBatchMatchesRead(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), smallSegments)
	const n = 120
	appendStorageRecords(t, l, n)
	require.Greater(t, len(l.segments), 10, "the test needs many segment boundaries")
	limits := []struct {
		maxRecords int
		maxBytes   uint64
	}{
		{1, 1 << 20},
		{0, 1 << 20}, // less than 1 reads one
		{7, 1 << 20},
		{1000, 1 << 20},
		{1000, 0}, // one record whatever its size
		{1000, 40},
		{1000, 100},
		{50, 333},
	}
	for _, lim := range limits {
		t.Run(fmt.Sprintf("records=%d/bytes=%d", lim.maxRecords, lim.maxBytes), func(t *testing.T) {
			for start := uint64(0); start < n; start++ {
				batch, err := l.ReadBatch(start, lim.maxRecords, lim.maxBytes)
				require.NoError(t, err, "ReadBatch(%d)", start)
				requireBatch(t, l, batch, start, n, lim.maxRecords, lim.maxBytes)
			}
		})
	}
	t.Run("whole log in order", func(t *testing.T) {
		var got []Record
		for off := uint64(0); off < n; {
			batch, err := l.ReadBatch(off, 17, 1<<20)
			require.NoError(t, err)
			got = append(got, batch...)
			off += uint64(len(batch))
		}
		require.Len(t, got, n)
		for k, rec := range got {
			require.Equal(t, uint64(k), rec.Offset)
			require.Equal(t, storageValue(uint64(k)), rec.Value)
		}
	})
}

func TestReadBatchOutOfRange(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), fiveRecordSegments)
	batch, err := l.ReadBatch(0, 10, 1<<20)
	var oor api.ErrOffsetOutOfRange
	require.ErrorAs(t, err, &oor, "ReadBatch(0) of an empty log = %v", batch)

	appendStorageRecords(t, l, 23)
	for _, off := range []uint64{23, 24, 1 << 40} {
		batch, err := l.ReadBatch(off, 10, 1<<20)
		require.ErrorAs(t, err, &oor, "ReadBatch(%d) = %v, want out of range", off, batch)
		require.Equal(t, off, oor.Offset)
	}

	// After retention removes the first segments, reads below the new
	// lowest offset are out of range and reads from it start there.
	require.NoError(t, l.Truncate(12))
	lowest, err := l.LowestOffset()
	require.NoError(t, err)
	require.Equal(t, uint64(10), lowest)
	for _, off := range []uint64{0, 9} {
		batch, err := l.ReadBatch(off, 10, 1<<20)
		require.ErrorAs(t, err, &oor, "ReadBatch(%d) after Truncate = %v, want out of range", off, batch)
	}
	for start := lowest; start < 23; start++ {
		batch, err := l.ReadBatch(start, 100, 1<<20)
		require.NoError(t, err)
		require.Len(t, batch, int(23-start), "ReadBatch(%d) after Truncate", start)
		requireBatch(t, l, batch, start, 23, 100, 1<<20)
	}
}

func TestReadBatchLargeRecordAlone(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), nil)
	values := [][]byte{[]byte("small"), make([]byte, 64<<10), []byte("after")}
	for _, v := range values {
		_, err := l.Append(&Record{Value: v})
		require.NoError(t, err)
	}
	// The 64 KiB record does not fit a 1 KiB budget: it ends the batch
	// after a smaller record, and comes alone when it is the first.
	batch, err := l.ReadBatch(0, 10, 1<<10)
	require.NoError(t, err)
	require.Len(t, batch, 1)
	batch, err = l.ReadBatch(1, 10, 1<<10)
	require.NoError(t, err)
	require.Len(t, batch, 1)
	require.Equal(t, values[1], batch[0].Value)
	batch, err = l.ReadBatch(1, 10, 1<<20)
	require.NoError(t, err)
	require.Len(t, batch, 2)
	require.Equal(t, values[2], batch[1].Value)
}

func TestReadBatchCorruption(t *testing.T) {
	dir := buildCorruptLog(t)
	// Flip a byte of record 7's value (segment 5): a clean Close lets the
	// log open without scanning, so the read finds it.
	mutateFile(t, segmentPath(dir, 5, storeExt), flipAt(framePos(t, 7)+frameOverhead+2))
	l := openStorageLog(t, dir, fiveRecordSegments)

	// Records before the bad one come back, without an error; the batch
	// ends before it.
	batch, err := l.ReadBatch(3, 100, 1<<20)
	require.NoError(t, err)
	require.Len(t, batch, 4, "ReadBatch(3) with record 7 corrupt")
	require.Equal(t, uint64(6), batch[3].Offset)

	// From the bad record, the error names it.
	batch, err = l.ReadBatch(7, 100, 1<<20)
	var ce *CorruptionError
	require.ErrorAs(t, err, &ce, "ReadBatch(7) = %v, want a CorruptionError", batch)
	require.Equal(t, uint64(7), ce.Offset)
	require.Equal(t, uint64(5), ce.Segment)
	require.Nil(t, batch)

	// After it, the log reads on across the segments.
	batch, err = l.ReadBatch(8, 100, 1<<20)
	require.NoError(t, err)
	require.Len(t, batch, corruptRecords-8)
	for k, rec := range batch {
		require.Equal(t, corruptValue(uint64(8+k)), rec.Value)
	}
}

// TestReadBatchWhileAppending reads the log in batches while it grows
// (and rolls segments): every record comes once, in order, whole.
func TestReadBatchWhileAppending(t *testing.T) {
	l := openStorageLog(t, t.TempDir(), smallSegments)
	const n = 2000
	var wg sync.WaitGroup
	wg.Go(func() {
		for off := range uint64(n) {
			if _, err := l.Append(&Record{Value: storageValue(off)}); err != nil {
				t.Errorf("Append(%d): %v", off, err)
				return
			}
		}
	})
	for off := uint64(0); off < n; {
		changed := l.Appended()
		batch, err := l.ReadBatch(off, 64, 1<<20)
		var oor api.ErrOffsetOutOfRange
		if len(batch) == 0 {
			require.ErrorAs(t, err, &oor)
			<-changed
			continue
		}
		require.NoError(t, err)
		for _, rec := range batch {
			require.Equal(t, off, rec.Offset)
			require.Equal(t, storageValue(off), rec.Value, "value of %d", off)
			off++
		}
	}
	wg.Wait()
}
