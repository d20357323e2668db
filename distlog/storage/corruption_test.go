package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
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

// Damage in a sealed segment (any but the last) is not a crash's torn
// tail: a roll makes a segment durable before anything is written after
// it. NewLog refuses the log with a *CorruptionError naming the file and
// position, and changes no file, where it used to cut the segment and
// remove every later one (records that were acknowledged).
func TestCorruptionInASealedSegmentRefusesTheLog(t *testing.T) {
	tests := []struct {
		name string
		// checkAll sets Config.CheckSealedOnOpen.
		checkAll bool
		damage   func(t *testing.T, dir string)
		segment  uint64 // the segment the error names
		position uint64 // and the position in it
		offset   uint64
		cause    error
	}{
		{
			name: "a torn frame (a lost index makes recovery scan)",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 10, storeExt), cutTo(framePos(t, 12)+5))
				mutateFile(t, segmentPath(dir, 10, indexExt), cutTo(0))
			},
			segment: 10, position: framePos(t, 12), offset: 12, cause: errShortFrame,
		},
		{
			name: "a flipped byte in the last frame",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 5, storeExt), flipAt(framePos(t, 9)+frameHeaderWidth+recordFixedWidth+1))
			},
			segment: 5, position: framePos(t, 9), offset: 9, cause: errBadChecksum,
		},
		{
			name: "a flipped byte mid-segment, index lost",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 5, storeExt), flipAt(framePos(t, 7)+frameHeaderWidth+recordFixedWidth+1))
				require.NoError(t, os.Remove(segmentPath(dir, 5, indexExt)))
			},
			segment: 5, position: framePos(t, 7), offset: 7, cause: errBadChecksum,
		},
		{
			name:     "a flipped byte mid-segment, found by CheckSealedOnOpen",
			checkAll: true,
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 15, storeExt), flipAt(framePos(t, 16)+frameHeaderWidth+recordFixedWidth+1))
			},
			segment: 15, position: framePos(t, 16), offset: 16, cause: errBadChecksum,
		},
		{
			name:     "a flipped length, found by CheckSealedOnOpen",
			checkAll: true,
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 0, storeExt), flipAt(framePos(t, 2)+lenWidth-1))
			},
			segment: 0, position: framePos(t, 2), offset: 2,
		},
		{
			name: "a valid frame of another offset, found by CheckSealedOnOpen", checkAll: true,
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 5, storeExt), func(b []byte) []byte {
					copy(b[framePos(t, 8):], corruptFrame(t, 6))
					return b
				})
			},
			segment: 5, position: framePos(t, 8), offset: 8, cause: errWrongOffset,
		},
		{
			name: "the last frames cut off at a frame boundary",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 10, storeExt), cutTo(framePos(t, 13)))
			},
			segment: 10, position: framePos(t, 13), offset: 13, cause: errMissingRecords,
		},
		{
			name: "an emptied store",
			damage: func(t *testing.T, dir string) {
				mutateFile(t, segmentPath(dir, 15, storeExt), cutTo(0))
			},
			segment: 15, position: 0, offset: 15, cause: errNoHeader,
		},
		{
			name:    "a missing segment",
			damage:  func(t *testing.T, dir string) { require.NoError(t, os.Remove(segmentPath(dir, 10, storeExt))) },
			segment: 10, position: 0, offset: 10, cause: errNoHeader, // the index alone is left
		},
		{
			name: "a missing segment, index too",
			damage: func(t *testing.T, dir string) {
				require.NoError(t, os.Remove(segmentPath(dir, 10, storeExt)))
				require.NoError(t, os.Remove(segmentPath(dir, 10, indexExt)))
			},
			segment: 5, position: framePos(t, 9) + uint64(len(corruptFrame(t, 9))), offset: 10, cause: errMissingRecords,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := buildCorruptLog(t)
			tt.damage(t, dir)
			before := storeFiles(t, dir)
			c := Config{CheckSealedOnOpen: tt.checkAll, Logger: zaptest.NewLogger(t)}
			fiveRecordSegments(&c)
			l, err := NewLog(dir, c)
			if err == nil {
				require.NoError(t, l.Close())
			}
			require.ErrorIs(t, err, ErrCorrupt)
			var ce *CorruptionError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, segmentPath(dir, tt.segment, storeExt), ce.Path, "%v", err)
			require.Equal(t, tt.segment, ce.Segment, "%v", err)
			require.Equal(t, tt.position, ce.Position, "%v", err)
			require.Equal(t, tt.offset, ce.Offset, "%v", err)
			if tt.cause != nil {
				require.ErrorIs(t, err, tt.cause)
			}
			require.Contains(t, err.Error(), ce.Path)
			after := storeFiles(t, dir)
			if tt.name == "a missing segment" {
				// Opening created the missing store file, empty; nothing
				// else changed.
				require.Equal(t, "0 bytes", after[segmentFileName(10, storeExt)])
				delete(after, segmentFileName(10, storeExt))
			}
			require.Equal(t, before, after, "a refused log's records were changed")
		})
	}
}

// Damage in the active (last) segment is what a crash mid-write leaves:
// it is still cut, and the log reopens and takes appends. So is the zero
// tail of a preallocated active segment (no record reached it).
func TestCorruptionInTheActiveSegmentIsCut(t *testing.T) {
	for _, checkAll := range []bool{false, true} {
		t.Run(fmt.Sprint("CheckSealedOnOpen=", checkAll), func(t *testing.T) {
			dir := buildCorruptLog(t)
			mutateFile(t, segmentPath(dir, 20, storeExt), cutTo(framePos(t, 21)+11))
			mutateFile(t, segmentPath(dir, 20, indexExt), func(b []byte) []byte { return append(b, make([]byte, 64)...) })
			l := openStorageLog(t, dir, func(c *Config) { fiveRecordSegments(c); c.CheckSealedOnOpen = checkAll })
			wantRecords(t, l, 21, nil)
			off, err := l.Append(&Record{Value: corruptValue(21)})
			require.NoError(t, err)
			require.Equal(t, uint64(21), off)
			require.NoError(t, l.Close())
			l = openStorageLog(t, dir, func(c *Config) { fiveRecordSegments(c); c.CheckSealedOnOpen = checkAll })
			wantRecords(t, l, 22, nil)
		})
	}
}

// storeFiles returns the size and SHA-256 of each store file in dir (index
// files are derived from them: recovery may rewrite those).
func storeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for name, content := range readFiles(t, dir) {
		if filepath.Ext(name) == storeExt {
			files[name] = fmt.Sprintf("%d bytes", len(content))
			if len(content) > 0 {
				files[name] += fmt.Sprintf(", sha256 %x", sha256.Sum256([]byte(content)))
			}
		}
	}
	return files
}

// CheckFrames passes a store file's frames through unchanged and stops at
// the first one that fails, after handing out those before it, with a
// *CorruptionError naming the file, position and offset.
func TestCheckFrames(t *testing.T) {
	dir := buildCorruptLog(t)
	path := segmentPath(dir, 5, storeExt)
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	frames := file[segmentHeaderWidth:]
	const hw = uint64(segmentHeaderWidth)
	check := func(b []byte) ([]byte, error) {
		return io.ReadAll(CheckFrames(bytes.NewReader(b), path, 5, uint64(len(b))))
	}

	got, err := check(frames)
	require.NoError(t, err)
	require.Equal(t, frames, got)

	tests := []struct {
		name   string
		damage func([]byte) []byte
		offset uint64
		cause  error
	}{
		{"a flipped value byte", flipAt(framePos(t, 7) - hw + frameHeaderWidth + recordFixedWidth + 1), 7, errBadChecksum},
		{"a cut last frame", cutTo(framePos(t, 9) - hw + 10), 9, errShortFrame},
		{"a frame of another offset", func(b []byte) []byte {
			copy(b[framePos(t, 8)-hw:], corruptFrame(t, 6))
			return b
		}, 8, errWrongOffset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			damaged := tt.damage(bytes.Clone(frames))
			got, err := check(damaged)
			require.ErrorIs(t, err, tt.cause)
			var ce *CorruptionError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, CorruptionError{Segment: 5, Offset: tt.offset, Path: path, Position: framePos(t, tt.offset)},
				CorruptionError{Segment: ce.Segment, Offset: ce.Offset, Path: ce.Path, Position: ce.Position})
			require.Equal(t, frames[:framePos(t, tt.offset)-hw], got, "the frames before the damage")
		})
	}
}
