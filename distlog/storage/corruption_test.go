package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The corruption tests build a closed log of 23 records with equal-length
// values in five-record segments (bases 0, 5, 10, 15, 20), damage its files
// on purpose, reopen it, and expect either recovery to a valid prefix or a
// *CorruptionError naming the segment and offset, never wrong data.
const corruptRecords = 23

func corruptValue(off uint64) []byte { return fmt.Appendf(nil, "value-%06d", off) }

func corruptFrame(t testing.TB, off uint64) []byte {
	t.Helper()
	frame := appendFrame(nil, &Record{Value: corruptValue(off)}, off)
	return frame
}

// framePos returns where the frame of off starts in its segment's store.
func framePos(t testing.TB, off uint64) uint64 {
	t.Helper()
	pos := uint64(segmentHeaderWidth)
	for o := off / 5 * 5; o < off; o++ {
		pos += uint64(len(corruptFrame(t, o)))
	}
	return pos
}

func segmentPath(dir string, base uint64, ext string) string {
	return filepath.Join(dir, segmentFileName(base, ext))
}

func buildCorruptLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l := openStorageLog(t, dir, fiveRecordSegments)
	for off := range uint64(corruptRecords) {
		_, err := l.Append(&Record{Value: corruptValue(off)})
		require.NoError(t, err)
	}
	require.NoError(t, l.Close())
	return dir
}

func mutateFile(t *testing.T, path string, mutate func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b = nil
	} else {
		require.NoError(t, err)
	}
	require.NoError(t, os.WriteFile(path, mutate(b), 0o644))
}

func flipAt(pos uint64) func([]byte) []byte {
	return func(b []byte) []byte { b[pos] ^= 0x5a; return b }
}

func cutTo(size uint64) func([]byte) []byte {
	return func(b []byte) []byte { return b[:size] }
}

// wantCorrupt checks that reading off fails with a CorruptionError for it.
func wantCorrupt(t *testing.T, l *Log, off, segment uint64) {
	t.Helper()
	rec, err := l.Read(off)
	var ce *CorruptionError
	require.ErrorAs(t, err, &ce, "Read(%d) = %v, want a CorruptionError", off, rec)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Equal(t, off, ce.Offset)
	require.Equal(t, segment, ce.Segment)
	require.Nil(t, rec)
}

// wantRecords checks the log holds [0, next) intact except for offsets in
// corrupt (segment base by offset), which must fail as corrupt.
func wantRecords(t *testing.T, l *Log, next uint64, corrupt map[uint64]uint64) {
	t.Helper()
	require.Equal(t, next, l.NextOffset(), "NextOffset")
	for off := range next {
		if segment, ok := corrupt[off]; ok {
			wantCorrupt(t, l, off, segment)
			continue
		}
		rec, err := l.Read(off)
		require.NoError(t, err, "Read(%d)", off)
		require.Equal(t, corruptValue(off), rec.Value, "Read(%d)", off)
	}
	requireOutOfRange(t, l, next)
}

func TestCorruption(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		next    uint64            // NextOffset after recovery
		corrupt map[uint64]uint64 // offsets that must read as corrupt → their segment
	}{
		{
			name: "garbage after the last frame is cut",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 20, storeExt), func(b []byte) []byte {
					return append(b, bytes.Repeat([]byte{0xAB}, 40)...)
				})
			},
			next: corruptRecords,
		},
		{
			name: "zeros after the last frame are cut",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 20, storeExt), func(b []byte) []byte { return append(b, make([]byte, 4096)...) })
			},
			next: corruptRecords,
		},
		{
			name: "a torn last frame is cut",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 20, storeExt), cutTo(framePos(t, 22)+15))
			},
			next: 22,
		},
		{
			name: "a torn frame header is cut",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 20, storeExt), cutTo(framePos(t, 22)+5))
			},
			next: 22,
		},
		{
			name: "index entries past the end of the store (buffered writes lost) are dropped",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 20, storeExt), cutTo(framePos(t, 21)))
			},
			next: 21,
		},
		{
			name: "index at its grown size with a zero tail (a crash) is read to its entries",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 20, indexExt), func(b []byte) []byte { return append(b, make([]byte, 24+7)...) })
			},
			next: corruptRecords,
		},
		{
			name:   "a missing index is rebuilt",
			damage: func(t *testing.T, dir string) { require.NoError(t, os.Remove(segmentPath(dir, 10, indexExt))) },
			next:   corruptRecords,
		},
		{
			name: "an index of garbage is rebuilt",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 5, indexExt), func(b []byte) []byte { return bytes.Repeat([]byte{0xC3}, len(b)) })
			},
			next: corruptRecords,
		},
		{
			name: "an index whose positions go backwards is rebuilt",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 5, indexExt), func(b []byte) []byte {
					binary.BigEndian.PutUint64(b[2*entWidth+offWidth:], framePos(t, 5))
					return b
				})
			},
			next: corruptRecords,
		},
		{
			name: "an index entry pointing into the middle of a frame reads as corrupt",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 5, indexExt), func(b []byte) []byte {
					binary.BigEndian.PutUint64(b[2*entWidth+offWidth:], framePos(t, 7)+1)
					return b
				})
			},
			next:    corruptRecords,
			corrupt: map[uint64]uint64{7: 5},
		},
		{
			name: "a flipped value byte in a sealed segment reads as corrupt",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 5, storeExt), flipAt(framePos(t, 7)+frameHeaderWidth+recordFixedWidth+2))
			},
			next:    corruptRecords,
			corrupt: map[uint64]uint64{7: 5},
		},
		{
			name: "a flipped checksum reads as corrupt",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 10, storeExt), flipAt(framePos(t, 10)+lenWidth+1))
			},
			next:    corruptRecords,
			corrupt: map[uint64]uint64{10: 10},
		},
		{
			name: "a flipped length reads as corrupt",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 15, storeExt), flipAt(framePos(t, 16)+lenWidth-1))
			},
			next:    corruptRecords,
			corrupt: map[uint64]uint64{16: 15},
		},
		{
			name: "a flipped byte in the active segment's middle reads as corrupt",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 20, storeExt), flipAt(framePos(t, 21)+18))
			},
			next:    corruptRecords,
			corrupt: map[uint64]uint64{21: 20},
		},
		{
			name: "a flipped byte in the last record is cut by recovery",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 20, storeExt), flipAt(framePos(t, 22)+18))
			},
			next: 22,
		},
		{
			name: "a valid frame holding another offset reads as corrupt",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 5, storeExt), func(b []byte) []byte {
					// Offsets 5..9 encode to frames of the same length.
					copy(b[framePos(t, 8):], corruptFrame(t, 6))
					return b
				})
			},
			next:    corruptRecords,
			corrupt: map[uint64]uint64{8: 5},
		},
		{
			name: "segments after a torn one are dropped: the log reopens to a prefix",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 10, storeExt), cutTo(framePos(t, 12)+3))
				mutateFile(t, segmentPath(dir, 10, indexExt), cutTo(0))
			},
			next: 12,
		},
		{
			name: "an emptied store in the middle drops the segments after it",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 15, storeExt), cutTo(0))
			},
			next: 15,
		},
		{
			name: "files that are not segments are ignored",
			damage: func(t *testing.T, dir string) {
				for _, name := range []string{"5.store", "junk.index", "00000000000000000099.tmp", "notes.txt"} {
					require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o644))
				}
			},
			next: corruptRecords,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := buildCorruptLog(t)
			tt.damage(t, dir)
			l := openStorageLog(t, dir, fiveRecordSegments)
			wantRecords(t, l, tt.next, tt.corrupt)

			// The log stays usable: the next append gets the next offset,
			// and what recovery kept survives another reopen.
			off, err := l.Append(&Record{Value: corruptValue(tt.next)})
			require.NoError(t, err)
			require.Equal(t, tt.next, off)
			require.NoError(t, l.Close())
			l = openStorageLog(t, dir, fiveRecordSegments)
			wantRecords(t, l, tt.next+1, tt.corrupt)
		})
	}
}

// A gap removes the later segments' files, not just ignores them.
func TestCorruptionGapRemovesFiles(t *testing.T) {
	dir := buildCorruptLog(t)
	mutateFile(t, segmentPath(dir, 10, storeExt), cutTo(framePos(t, 11)))
	l := openStorageLog(t, dir, fiveRecordSegments)
	require.Equal(t, uint64(11), l.NextOffset())
	for _, base := range []uint64{15, 20} {
		for _, ext := range []string{storeExt, indexExt} {
			_, err := os.Stat(segmentPath(dir, base, ext))
			require.ErrorIs(t, err, os.ErrNotExist, "segment %d %s", base, ext)
		}
	}
}
