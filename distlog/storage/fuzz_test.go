package storage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
)

const fuzzRecords = 14

func fuzzConfig(c *Config) {
	c.Segment.MaxStoreBytes = 120
	c.Segment.MaxIndexBytes = 4*entWidth + 5
}

// FuzzLogRecovery damages the files of a small log as its input says
// (4 bytes an operation: file, kind, position, value) and checks that
// reopening never panics; either refuses the log (damage in a sealed
// segment, or a damaged header) without changing a store file, or never
// returns a record that was not written (a damaged record reads as a
// *CorruptionError, or is cut from the active segment), never drops a
// sealed segment's records, keeps offsets contiguous, and leaves a log that
// takes and returns new records and whose Reader stream Restore either
// takes or rejects as ErrBadSnapshot.
//
// The seed corpus is in testdata/fuzz/FuzzLogRecovery; `go test` runs it,
// `go test -fuzz=FuzzLogRecovery ./distlog/storage` explores further.
func FuzzLogRecovery(f *testing.F) {
	f.Fuzz(func(t *testing.T, damage []byte) {
		dir := t.TempDir()
		l := openStorageLog(t, dir, fuzzConfig)
		for off := range uint64(fuzzRecords) {
			_, err := l.Append(&Record{Value: storageValue(off)})
			require.NoError(t, err)
		}
		require.NoError(t, l.Close())

		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		var files []string
		for _, e := range entries {
			if _, ok := parseSegmentFileName(e.Name()); ok {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
		slices.Sort(files)
		lastBase, _ := parseSegmentFileName(filepath.Base(files[len(files)-1]))
		headerDamaged := false // a flipped or overwritten byte in a store's header
		for ops := 0; len(damage) >= 4 && ops < 8; ops, damage = ops+1, damage[4:] {
			path, kind, at, value := files[int(damage[0])%len(files)], damage[1]%5, int(damage[2]), damage[3]
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			if len(b) > 0 && (kind == 0 || kind == 4) && at%len(b) < segmentHeaderWidth && filepath.Ext(path) == storeExt {
				headerDamaged = true
			}
			switch kind {
			case 0: // flip bits
				if len(b) > 0 {
					b[at%len(b)] ^= value | 1
				}
			case 1: // cut
				b = b[:at%(len(b)+1)]
			case 2: // garbage tail
				b = append(b, slices.Repeat([]byte{byte(at)}, int(value%32)+1)...)
			case 3: // zero tail, as a crash leaves an index
				b = append(b, make([]byte, int(value)%64)...)
			case 4: // overwrite a byte
				if len(b) > 0 {
					b[at%len(b)] = value
				}
			}
			require.NoError(t, os.WriteFile(path, b, 0o644))
		}

		// Damage the last segment's recovery can take for a crash's torn
		// tail is cut; anything else is refused, changing no store file: a
		// damaged header (ErrBadSegmentHeader, ErrUnsupportedFormat, unless
		// the damage left a valid one), and damage in a sealed segment
		// (ErrCorrupt, naming a store file other than the last).
		before := storeFiles(t, dir)
		c := Config{Logger: zaptest.NewLogger(t)}
		fuzzConfig(&c)
		l, err = NewLog(dir, c)
		if err != nil {
			var ce *CorruptionError
			switch {
			case errors.As(err, &ce):
				require.NotEqual(t, segmentPath(dir, lastBase, storeExt), ce.Path, "the active segment is cut, not refused: %v", err)
			case headerDamaged && errors.Is(err, ErrUnsupportedFormat):
			default:
				require.True(t, headerDamaged, "%v", err)
				require.ErrorIs(t, err, ErrBadSegmentHeader)
			}
			require.Equal(t, before, storeFiles(t, dir), "a refused log's records were changed")
			return
		}
		t.Cleanup(func() { _ = l.Close() })
		lowest, err := l.LowestOffset()
		require.NoError(t, err)
		next := l.NextOffset()
		require.LessOrEqual(t, lowest, next)
		require.LessOrEqual(t, next, uint64(fuzzRecords), "records appeared that were never written")
		require.GreaterOrEqual(t, next, lastBase, "recovery dropped records of a sealed segment")
		for off := lowest; off < next; off++ {
			rec, err := l.Read(off)
			if err != nil {
				require.ErrorIs(t, err, ErrCorrupt, "Read(%d)", off)
				continue
			}
			require.Equal(t, off, rec.Offset, "Read(%d).Offset", off)
			require.Equal(t, storageValue(off), rec.Value, "Read(%d) returned a record that was not written", off)
		}

		other := openStorageLog(t, t.TempDir(), fuzzConfig)
		if err := other.Restore(l.Reader()); err != nil {
			require.ErrorIs(t, err, ErrBadSnapshot)
		} else {
			require.Equal(t, next, other.NextOffset())
		}

		off, err := l.Append(&Record{Value: []byte("after")})
		require.NoError(t, err)
		require.Equal(t, next, off)
		rec, err := l.Read(off)
		require.NoError(t, err)
		require.Equal(t, []byte("after"), rec.Value)
	})
}
