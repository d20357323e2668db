package storage

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// removalWait bounds how long the removal tests wait for something that
// should happen at once: a deadline for a failing test, not a
// synchronisation.
const removalWait = 20 * time.Second

// heldRemovals makes l's segment removals stop before each segment's files
// go: entered receives the segment's base, and the removal waits until
// release is called (once for all; also at the end of the test).
func heldRemovals(t *testing.T, l *Log) (entered <-chan uint64, release func()) {
	t.Helper()
	ch := make(chan uint64, 64)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	l.removeHook = func(base uint64) error {
		ch <- base
		<-gate
		return nil
	}
	return ch, release
}

// receive returns the next value from ch, failing the test if none comes
// within removalWait.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(removalWait):
		t.Fatalf("%s: nothing after %v", what, removalWait)
		panic("unreachable")
	}
}

// segmentFilesPresent reports which of the bases have a store or index
// file in dir.
func segmentFilesPresent(t *testing.T, dir string, bases ...uint64) []uint64 {
	t.Helper()
	var present []uint64
	for _, base := range bases {
		for _, ext := range []string{storeExt, indexExt} {
			_, err := os.Stat(filepath.Join(dir, segmentFileName(base, ext)))
			if err == nil {
				present = append(present, base)
				break
			}
			require.True(t, errors.Is(err, os.ErrNotExist), "stat segment %d: %v", base, err)
		}
	}
	return present
}

// Truncate removes segment files outside the append lock: while a removal
// is held, appends, reads and syncs go on, and the log already shows the
// truncated range as gone. Truncate returns once the files are gone, and
// Close waits for a removal in progress.
func TestTruncateDoesNotBlockAppends(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, func(c *Config) {
		fiveRecordSegments(c)
		c.SyncOnAppend = true
	})
	appendStorageRecords(t, l, 50) // segments 0, 5, ..., 45
	entered, release := heldRemovals(t, l)

	truncated := make(chan error, 1)
	go func() { truncated <- l.Truncate(30) }()
	require.Equal(t, uint64(0), receive(t, entered, "removal of segment 0"))

	// Segment 0's removal is held: the log goes on.
	appended := make(chan error, 1)
	go func() {
		batch := make([]*Record, 12)
		for k := range batch {
			batch[k] = &Record{Value: storageValue(50 + uint64(k))}
		}
		_, err := l.AppendBatch(batch) // rolls twice, and fsyncs
		appended <- err
	}()
	require.NoError(t, receive(t, appended, "AppendBatch while a segment removal is held"))
	requireStorageRecords(t, l, 30, 62)
	requireReadBatchAll(t, l, 30, 62)
	require.NoError(t, l.Sync())
	require.Len(t, segmentFilesPresent(t, dir, 0, 5, 10, 15, 20, 25), 6, "no file removed yet")

	// Close waits for the removal: when it returns, every removed
	// segment's files are gone.
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	release()
	require.NoError(t, receive(t, truncated, "Truncate"))
	require.NoError(t, receive(t, closed, "Close"))
	require.Empty(t, segmentFilesPresent(t, dir, 0, 5, 10, 15, 20, 25), "files of removed segments")

	l = openStorageLog(t, dir, fiveRecordSegments)
	requireStorageRecords(t, l, 30, 62)
}

// A removal that fails part-way deletes no segment after the one that
// failed (the log on disk stays contiguous), and the next Truncate or
// ResetTo deletes what it left.
func TestTruncateFailureKeepsTheLogContiguous(t *testing.T) {
	for _, tc := range []struct {
		name  string
		retry func(*Log) error
	}{
		{"next Truncate", func(l *Log) error { return l.Truncate(25) }},
		{"ResetTo", func(l *Log) error { return l.ResetTo(100) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openStorageLog(t, dir, fiveRecordSegments)
			appendStorageRecords(t, l, 33) // segments 0, 5, ..., 30
			errRemove := errors.New("injected removal failure")
			l.removeHook = func(base uint64) error {
				if base == 5 {
					return errRemove
				}
				return nil
			}
			require.ErrorIs(t, l.Truncate(20), errRemove)
			requireStorageRecords(t, l, 20, 33) // gone from the log all the same
			require.Equal(t, []uint64{5, 10, 15, 20}, segmentFilesPresent(t, dir, 0, 5, 10, 15, 20))

			// Reopened as it is, the log holds the segments left behind.
			require.NoError(t, l.Close())
			l = openStorageLog(t, dir, fiveRecordSegments)
			requireStorageRecords(t, l, 5, 33)
			require.NoError(t, l.Truncate(20))
			require.Equal(t, []uint64{20}, segmentFilesPresent(t, dir, 0, 5, 10, 15, 20))
			requireStorageRecords(t, l, 20, 33)
			require.NoError(t, l.Close())

			// Without a reopen: the next removal deletes them first.
			dir = t.TempDir()
			l = openStorageLog(t, dir, fiveRecordSegments)
			appendStorageRecords(t, l, 33)
			failing := true
			l.removeHook = func(base uint64) error {
				if base == 5 && failing {
					return errRemove
				}
				return nil
			}
			require.ErrorIs(t, l.Truncate(20), errRemove)
			failing = false
			require.NoError(t, tc.retry(l))
			require.Empty(t, segmentFilesPresent(t, dir, 0, 5, 10, 15))
			require.NoError(t, l.Close())
			l = openStorageLog(t, dir, fiveRecordSegments)
			lowest, err := l.LowestOffset()
			require.NoError(t, err)
			requireStorageRecords(t, l, lowest, l.NextOffset())
		})
	}
}
