package storage

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// preallocConfig gives preallocated segments of 4 KiB that fsync every
// append, as the Raft log store uses them.
func preallocConfig(c *Config) {
	c.Segment.MaxStoreBytes = 4 << 10
	c.Segment.Preallocate = true
	c.SyncOnAppend = true
}

// crashImage copies the files of an open log into a new directory: what a
// machine would find on its disk had it died at that moment after the
// last fsync (the index too, which a power failure could lose; recovery
// must not need it).
func crashImage(t *testing.T, dir string) string {
	t.Helper()
	image := t.TempDir()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(image, e.Name()), data, 0o644))
	}
	return image
}

func fileSize(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return uint64(fi.Size())
}

// preallocatedLog opens a log with preallocConfig and n records, and skips
// the test when the file system does not preallocate.
func preallocatedLog(t *testing.T, n int) (string, *Log) {
	t.Helper()
	dir := t.TempDir()
	l := openStorageLog(t, dir, preallocConfig)
	appendStorageRecords(t, l, n)
	if fileSize(t, segmentPath(dir, 0, storeExt)) != 4<<10 {
		t.Skip("the file system of the test directory does not preallocate")
	}
	return dir, l
}

// TestPreallocatedCrashKeepsRecords: a preallocated store that was not
// closed ends in zeroes; recovery takes them for space no record reached
// (every record back, nothing counted as cut: the epoch stays) and appends
// go on where the records end.
func TestPreallocatedCrashKeepsRecords(t *testing.T) {
	dir, l := preallocatedLog(t, 5)
	epoch := l.Epoch()
	image := crashImage(t, dir)
	r := openStorageLog(t, image, preallocConfig)
	requireStorageRecords(t, r, 0, 5)
	require.Equal(t, epoch, r.Epoch(), "recovery of a zero tail changed the epoch: it cut records")
	appendStorageRecords(t, r, 3)
	requireStorageRecords(t, r, 0, 8)
}

// TestPreallocatedCrashCutsTornTail: a frame torn in preallocated space
// (its first bytes written, the rest still zeroes) is cut, and the
// epoch changes.
func TestPreallocatedCrashCutsTornTail(t *testing.T) {
	dir, l := preallocatedLog(t, 5)
	epoch := l.Epoch()
	image := crashImage(t, dir)
	path := segmentPath(image, 0, storeExt)
	frame := appendFrame(nil, &Record{Value: storageValue(5)}, 5)
	end := l.segments[0].store.Size()
	mutateFile(t, path, func(b []byte) []byte {
		copy(b[end:], frame[:len(frame)/2])
		return b
	})
	r := openStorageLog(t, image, preallocConfig)
	requireStorageRecords(t, r, 0, 5)
	require.NotEqual(t, epoch, r.Epoch(), "a cut must change the epoch")
	appendStorageRecords(t, r, 1)
	requireStorageRecords(t, r, 0, 6)
}

// TestPreallocatedCrashCutsAtAHole: after a power failure, a frame may have
// reached the disk while one before it did not (zeroes in its place). The
// index points past the hole; recovery must not believe it: the records
// from the hole on are cut, none reads as corrupt.
func TestPreallocatedCrashCutsAtAHole(t *testing.T) {
	dir, _ := preallocatedLog(t, 5)
	image := crashImage(t, dir)
	from, to := framePosIn(t, dir, 3), framePosIn(t, dir, 4)
	mutateFile(t, segmentPath(image, 0, storeExt), func(b []byte) []byte {
		clear(b[from:to])
		return b
	})
	r := openStorageLog(t, image, preallocConfig)
	requireStorageRecords(t, r, 0, 3)
	requireOutOfRange(t, r, 3)
}

// TestPreallocatedTruncateFromStaysCut: records removed by TruncateFrom
// must not come back from the preallocated space after a crash.
func TestPreallocatedTruncateFromStaysCut(t *testing.T) {
	dir, l := preallocatedLog(t, 5)
	require.NoError(t, l.TruncateFrom(2))
	image := crashImage(t, dir)
	r := openStorageLog(t, image, preallocConfig)
	requireStorageRecords(t, r, 0, 2)
	appendStorageRecords(t, r, 2)
	requireStorageRecords(t, r, 0, 4)
}

// TestPreallocatedFilesHoldOnlyRecords: a sealed segment's file and, after
// Close, the active one's hold just their records.
func TestPreallocatedFilesHoldOnlyRecords(t *testing.T) {
	dir := t.TempDir()
	l, err := NewLog(dir, func() Config { var c Config; preallocConfig(&c); return c }())
	require.NoError(t, err)
	for len(l.segments) < 3 {
		appendStorageRecords(t, l, 10)
	}
	sizes := map[uint64]uint64{}
	for _, s := range l.segments {
		sizes[s.baseOffset] = s.store.Size()
	}
	next := l.NextOffset()
	sealed := l.segments[0]
	require.Equal(t, sizes[sealed.baseOffset], fileSize(t, segmentPath(dir, sealed.baseOffset, storeExt)), "sealed segment")
	require.NoError(t, l.Close())
	for base, size := range sizes {
		require.Equal(t, size, fileSize(t, segmentPath(dir, base, storeExt)), "segment %d after Close", base)
	}
	r := openStorageLog(t, dir, preallocConfig)
	requireStorageRecords(t, r, 0, next)
}

// framePosIn returns where the frame of offset off starts in the first
// segment of the open log in dir.
func framePosIn(t *testing.T, dir string, off uint64) uint64 {
	t.Helper()
	data, err := os.ReadFile(segmentPath(dir, 0, storeExt))
	require.NoError(t, err)
	pos := uint64(segmentHeaderWidth)
	for k := uint64(0); k < off; k++ {
		n, _ := parseFrameHeader(data[pos:])
		pos += frameHeaderWidth + n
	}
	return pos
}
