package storage

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The captured files, read as a Reader stream, are exactly what Reader
// returned at the same instant, however the log changes afterwards.
func TestLinkSegments(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, filepath.Join(dir, "log"), fiveRecordSegments)
	appendStorageRecords(t, l, 12) // segments 0, 5, 10 (active)
	sealed, active := filepath.Join(dir, "sealed"), filepath.Join(dir, "active")
	require.NoError(t, os.Mkdir(sealed, 0o755))
	require.NoError(t, os.Mkdir(active, 0o755))

	want := readAll(t, l.Reader())
	c, err := l.LinkSegments(sealed, active, "")
	require.NoError(t, err)
	require.Equal(t, uint64(0), c.Lowest)
	require.Equal(t, uint64(12), c.Next)
	require.Len(t, c.Segments, 3)
	require.Equal(t, uint64(len(want)), c.StreamBytes())
	requireLinked(t, sealed, StoreFileName(0), StoreFileName(5))
	requireLinked(t, active, StoreFileName(10))

	// The log goes on: the capture does not change.
	appendStorageRecords(t, l, 5)
	require.Equal(t, want, captureStream(t, c, sealed, active))

	// A second capture links only the segments sealed since the first
	// (segment 0's link is moved aside: it is not made again).
	require.NoError(t, os.Mkdir(filepath.Join(dir, "keep"), 0o755))
	require.NoError(t, os.Rename(filepath.Join(sealed, StoreFileName(0)), filepath.Join(dir, "keep", StoreFileName(0))))
	active2 := filepath.Join(dir, "active2")
	require.NoError(t, os.Mkdir(active2, 0o755))
	c2, err := l.LinkSegments(sealed, active2, "topic-")
	requireLinked(t, active2, "topic-"+StoreFileName(15))
	base, ok := ParseStoreFileName("topic-" + StoreFileName(15))
	require.True(t, ok)
	require.Equal(t, uint64(15), base)
	require.NoError(t, err)
	requireLinked(t, sealed, StoreFileName(10), StoreFileName(5))
	_, err = os.Stat(filepath.Join(sealed, StoreFileName(0)))
	require.ErrorIs(t, err, os.ErrNotExist, "a sealed segment was linked twice")
	require.Equal(t, c.Epoch, c2.Epoch)

	// Anything that rewrites segments changes the epoch, durably.
	epoch := l.Epoch()
	require.NoError(t, l.TruncateFrom(16))
	require.Greater(t, l.Epoch(), epoch)
	epoch = l.Epoch()
	require.NoError(t, l.Restore(bytes.NewReader(want)))
	require.Greater(t, l.Epoch(), epoch)
	epoch = l.Epoch()
	require.NoError(t, l.Close())
	l = openStorageLog(t, filepath.Join(dir, "log"), fiveRecordSegments)
	require.Equal(t, epoch, l.Epoch())
	require.NoError(t, l.Reset())
	require.Greater(t, l.Epoch(), epoch)
	// The first capture still reads what it captured.
	require.Equal(t, want, captureStream(t, c, sealed, active))
}

func requireLinked(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, name := range names {
		_, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err, "%s not linked in %s", name, dir)
	}
}

// captureStream builds the Reader stream of c from its links (segment 0's
// may have been moved to keep, beside sealed).
func captureStream(t *testing.T, c Capture, sealed, active string) []byte {
	t.Helper()
	out := append([]byte(nil), c.StreamHeader()...)
	for k, s := range c.Segments {
		dir := sealed
		if k == len(c.Segments)-1 {
			dir = active
		}
		f, err := os.Open(filepath.Join(dir, StoreFileName(s.Base)))
		if err != nil && k == 0 {
			f, err = os.Open(filepath.Join(filepath.Dir(sealed), "keep", StoreFileName(s.Base)))
		}
		require.NoError(t, err)
		b, err := io.ReadAll(io.NewSectionReader(f, SegmentHeaderBytes, int64(s.Size)-SegmentHeaderBytes))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		out = append(out, b...)
	}
	return out
}

// Recovery that cuts records changes the epoch: a segment of the same base
// may come to hold other bytes.
func TestRecoveryCutChangesEpoch(t *testing.T) {
	dir := t.TempDir()
	l := openStorageLog(t, dir, fiveRecordSegments)
	appendStorageRecords(t, l, 12)
	epoch := l.Epoch()
	require.NoError(t, l.Close())
	l = openStorageLog(t, dir, fiveRecordSegments)
	require.Equal(t, epoch, l.Epoch(), "a clean reopen keeps the epoch")
	require.NoError(t, l.Close())
	// Recovery cuts only the active segment (10).
	mutateFile(t, segmentPath(dir, 10, storeExt), func(b []byte) []byte { return b[:len(b)-3] })
	l = openStorageLog(t, dir, fiveRecordSegments)
	require.Equal(t, uint64(11), l.NextOffset(), "recovery cut segment 10")
	require.Greater(t, l.Epoch(), epoch)
}
