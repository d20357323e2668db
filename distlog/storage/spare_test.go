package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// zeroFillConfig is preallocConfig with zero-filled spare store files.
func zeroFillConfig(c *Config) {
	preallocConfig(c)
	c.Segment.ZeroFill = true
}

// waitForSpare waits until l has a spare store file ready.
func waitForSpare(t *testing.T, l *Log) {
	t.Helper()
	require.Eventually(t, func() bool {
		l.spares.mu.Lock()
		defer l.spares.mu.Unlock()
		return l.spares.ready
	}, 10*time.Second, time.Millisecond, "no spare store file was written")
}

// inodeOf returns the inode number of the file at path.
func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	st, ok := fi.Sys().(*syscall.Stat_t)
	require.True(t, ok, "no Stat_t for %s", path)
	return st.Ino
}

// rollOntoSpare appends to l (opened with zeroFillConfig in dir) until a
// roll takes the spare store file, and returns the new segment's base. It
// checks that the segment's store is the spare file, renamed.
func rollOntoSpare(t *testing.T, dir string, l *Log) uint64 {
	t.Helper()
	waitForSpare(t, l)
	spare := inodeOf(t, filepath.Join(dir, spareFileName))
	segments := len(l.segments)
	for len(l.segments) == segments {
		appendStorageRecords(t, l, 1)
	}
	base := l.active.baseOffset
	require.Equal(t, spare, inodeOf(t, segmentPath(dir, base, storeExt)), "the new segment's store is not the spare file")
	return base
}

// framePosInSegment returns where the frame of offset off starts in the
// store of the segment at base in dir.
func framePosInSegment(t *testing.T, dir string, base, off uint64) uint64 {
	t.Helper()
	data, err := os.ReadFile(segmentPath(dir, base, storeExt))
	require.NoError(t, err)
	pos := uint64(segmentHeaderWidth)
	for k := base; k < off; k++ {
		n, _ := parseFrameHeader(data[pos:])
		pos += frameHeaderWidth + n
	}
	return pos
}

// TestZeroFillRollTakesTheSpare: with ZeroFill, a roll makes the new
// segment's store of the spare file (MaxStoreBytes long: its header, the
// records, zeroes), a new spare is written for the next roll, every record
// reads back, and Close removes the spare.
func TestZeroFillRollTakesTheSpare(t *testing.T) {
	dir, _ := preallocatedLog(t, 0) // skips where the file system cannot preallocate
	l := openStorageLog(t, filepath.Join(dir, "zf"), zeroFillConfig)
	dir = filepath.Join(dir, "zf")
	appendStorageRecords(t, l, 3)
	base := rollOntoSpare(t, dir, l)
	taken := inodeOf(t, segmentPath(dir, base, storeExt))
	appendStorageRecords(t, l, 2)
	next := l.NextOffset()
	require.Equal(t, uint64(4<<10), fileSize(t, segmentPath(dir, base, storeExt)))
	data, err := os.ReadFile(segmentPath(dir, base, storeExt))
	require.NoError(t, err)
	require.Equal(t, segmentHeader(base), data[:segmentHeaderWidth], "header")
	end := l.active.store.Size()
	require.Equal(t, make([]byte, len(data)-int(end)), data[end:], "bytes past the records")
	requireStorageRecords(t, l, 0, next)

	waitForSpare(t, l)
	require.NotEqual(t, taken, inodeOf(t, filepath.Join(dir, spareFileName)), "no new spare after the roll")
	second := rollOntoSpare(t, dir, l)
	require.Greater(t, second, base)
	requireStorageRecords(t, l, 0, l.NextOffset())

	require.NoError(t, l.Close())
	_, err = os.Stat(filepath.Join(dir, spareFileName))
	require.True(t, errors.Is(err, os.ErrNotExist), "spare file after Close: %v", err)
	require.NoError(t, l.Close(), "second Close")
}

// TestZeroFilledSegmentCrash: a segment made from a spare file recovers
// as a preallocated one does, from the files as a crash leaves them (the
// spare file among them, here overwritten with garbage, which must not
// end up in a segment): every record back when nothing was torn; a torn
// last frame cut; records from a hole of zeroes on cut. Appends then go
// on, into zeroes.
func TestZeroFilledSegmentCrash(t *testing.T) {
	tests := []struct {
		name string
		// damage changes the crash image of the store of the segment at
		// base, whose records end at end; it returns how many records of
		// the log survive.
		damage func(t *testing.T, dir, image string, base, end, next uint64) uint64
	}{
		{"intact", func(_ *testing.T, _, _ string, _, _, next uint64) uint64 { return next }},
		{"torn last frame", func(t *testing.T, _, image string, base, end, next uint64) uint64 {
			frame := appendFrame(nil, &Record{Value: storageValue(next)}, next)
			mutateFile(t, segmentPath(image, base, storeExt), func(b []byte) []byte {
				copy(b[end:], frame[:len(frame)/2])
				return b
			})
			return next
		}},
		{"hole", func(t *testing.T, dir, image string, base, _, next uint64) uint64 {
			hole := base + 2
			from, to := framePosInSegment(t, dir, base, hole), framePosInSegment(t, dir, base, hole+1)
			mutateFile(t, segmentPath(image, base, storeExt), func(b []byte) []byte {
				clear(b[from:to])
				return b
			})
			return hole
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, _ := preallocatedLog(t, 0)
			dir := filepath.Join(root, "zf")
			l := openStorageLog(t, dir, zeroFillConfig)
			appendStorageRecords(t, l, 3)
			base := rollOntoSpare(t, dir, l)
			appendStorageRecords(t, l, 4)
			require.Equal(t, base, l.active.baseOffset, "the test's records must stay in one segment")
			next, end := l.NextOffset(), l.active.store.Size()

			image := crashImage(t, dir)
			want := tt.damage(t, dir, image, base, end, next)
			garbage := bytes.Repeat([]byte{0xff}, 4<<10)
			require.NoError(t, os.WriteFile(filepath.Join(image, spareFileName), garbage, 0o644))

			r := openStorageLog(t, image, zeroFillConfig)
			requireStorageRecords(t, r, 0, want)
			requireOutOfRange(t, r, want)
			appendStorageRecords(t, r, 2)
			requireStorageRecords(t, r, 0, want+2)
			// The next roll takes a new spare, never the garbage.
			nextBase := rollOntoSpare(t, image, r)
			data, err := os.ReadFile(segmentPath(image, nextBase, storeExt))
			require.NoError(t, err)
			end = r.active.store.Size()
			require.Equal(t, make([]byte, len(data)-int(end)), data[end:], "bytes past the records")
			requireStorageRecords(t, r, 0, r.NextOffset())
		})
	}
}
