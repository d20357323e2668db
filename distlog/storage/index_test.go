package storage

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.index")
	// 2.5 entries: room for two; the half entry is never written.
	const maxBytes = 2*entWidth + 6
	idx, err := openIndex(path, maxBytes)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(maxBytes), fi.Size(), "grown on open")

	_, ok, err := idx.Read(0)
	require.NoError(t, err)
	require.False(t, ok, "Read on an empty index")
	require.NoError(t, idx.Write(0, 0))
	require.False(t, idx.IsMaxed())
	require.NoError(t, idx.Write(1, 40))
	require.True(t, idx.IsMaxed())
	require.ErrorIs(t, idx.Write(2, 80), errIndexFull)
	pos, ok, err := idx.Read(1)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(40), pos)
	_, ok, err = idx.Read(2)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, idx.Close())

	fi, err = os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(2*entWidth), fi.Size(), "cut to its entries on Close")

	idx, err = openIndex(path, maxBytes)
	require.NoError(t, err)
	n, last := idx.consistentEntries(0, 100)
	require.Equal(t, uint64(2), n)
	require.Equal(t, uint64(40), last)
	n, _ = idx.consistentEntries(0, 40)
	require.Equal(t, uint64(1), n, "entries at or past the end of the store do not count")
	require.NoError(t, idx.Close())
}

// An index file larger than MaxIndexBytes (written with a larger setting)
// keeps all its entries and is simply full.
func TestIndexLargerThanLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.index")
	idx, err := openIndex(path, 10*entWidth)
	require.NoError(t, err)
	for k := range uint64(5) {
		require.NoError(t, idx.Write(k, k*30))
	}
	require.NoError(t, idx.Close())

	idx, err = openIndex(path, 2*entWidth)
	require.NoError(t, err)
	n, _ := idx.consistentEntries(0, 1000)
	require.Equal(t, uint64(5), n)
	idx.setEntries(n)
	require.True(t, idx.IsMaxed())
	pos, ok, err := idx.Read(4)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(120), pos)
	require.NoError(t, idx.Close())
}

// A released index (a sealed segment's) is unmapped and cut to its entries,
// reads them with pread exactly as through the map, takes no more entries,
// and after remap takes them again.
func TestIndexReleaseAndRemap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.index")
	const maxBytes = 10 * entWidth
	idx, err := openIndex(path, maxBytes)
	require.NoError(t, err)
	for k := range uint64(4) {
		require.NoError(t, idx.Write(k, 24+k*50))
	}
	type span struct {
		pos, next uint64
		n         int
	}
	spans := func() []span {
		var out []span
		for rel := range uint64(6) {
			pos, next, n, err := idx.ReadSpan(rel)
			require.NoError(t, err)
			out = append(out, span{pos, next, n})
		}
		return out
	}
	mapped := spans()
	require.Equal(t, span{24, 74, 2}, mapped[0])
	require.Equal(t, span{174, 0, 1}, mapped[3], "the last entry has no next")
	require.Equal(t, span{0, 0, 0}, mapped[4])

	require.NoError(t, idx.release())
	require.False(t, idx.mapped())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(4*entWidth), fi.Size(), "cut to its entries when released")
	require.Equal(t, mapped, spans(), "pread reads what the map did")
	pos, ok, err := idx.Read(2)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(124), pos)
	require.ErrorIs(t, idx.Write(4, 224), errIndexReleased)
	require.NoError(t, idx.Sync(), "a released index syncs its file")
	require.NoError(t, idx.release(), "releasing twice is a no-op")

	require.NoError(t, idx.remap())
	require.True(t, idx.mapped())
	require.NoError(t, idx.Write(4, 224))
	pos, ok, err = idx.Read(4)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(224), pos)
	require.NoError(t, idx.release())
	require.NoError(t, idx.Close(), "a released index closes")

	idx, err = openIndex(path, maxBytes)
	require.NoError(t, err)
	n, last := idx.consistentEntries(24, 1000)
	require.Equal(t, uint64(5), n, "entries written before a release survive Close and reopen")
	require.Equal(t, uint64(224), last)
	require.NoError(t, idx.Close())
}

// Entries cut by setEntries (TruncateFrom) are zeroed in the file, however
// the index got them: written, rebuilt, or found at open, and after a
// release and remap; the never-written part of a grown file is not read.
func TestIndexSetEntriesZeroesCutEntries(t *testing.T) {
	requireZeroPast := func(t *testing.T, path string, n int) {
		t.Helper()
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		for k, c := range b[n*entWidth:] {
			require.Zero(t, c, "byte %d of %s, past %d entries", n*entWidth+k, path, n)
		}
	}
	const maxBytes = 100 * entWidth
	path := filepath.Join(t.TempDir(), "test.index")
	idx, err := openIndex(path, maxBytes)
	require.NoError(t, err)
	require.Zero(t, idx.dirtyEnd, "a new file has nothing to clear")
	for k := range uint64(5) {
		require.NoError(t, idx.Write(k, 24+k*10))
	}
	idx.setEntries(2)
	requireZeroPast(t, path, 2)

	require.NoError(t, idx.rebuild([]uint64{24, 34, 44, 54, 64, 74}))
	idx.setEntries(3)
	requireZeroPast(t, path, 3)

	require.NoError(t, idx.release())
	require.NoError(t, idx.remap())
	for k := uint64(3); k < 7; k++ {
		require.NoError(t, idx.Write(k, 24+k*10))
	}
	idx.setEntries(4)
	requireZeroPast(t, path, 4)
	for k := uint64(4); k < 9; k++ {
		require.NoError(t, idx.Write(k, 24+k*10))
	}
	// A crash: the file keeps its grown size and its entries.
	require.NoError(t, idx.mmap.UnsafeUnmap())
	require.NoError(t, idx.file.Close())

	idx, err = openIndex(path, maxBytes)
	require.NoError(t, err)
	n, _ := idx.consistentEntries(24, 1000)
	require.Equal(t, uint64(9), n)
	idx.setEntries(1)
	requireZeroPast(t, path, 1)
	require.NoError(t, idx.Close())
}
