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

	_, ok := idx.Read(0)
	require.False(t, ok, "Read on an empty index")
	require.NoError(t, idx.Write(0, 0))
	require.False(t, idx.IsMaxed())
	require.NoError(t, idx.Write(1, 40))
	require.True(t, idx.IsMaxed())
	require.ErrorIs(t, idx.Write(2, 80), errIndexFull)
	pos, ok := idx.Read(1)
	require.True(t, ok)
	require.Equal(t, uint64(40), pos)
	_, ok = idx.Read(2)
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
	pos, ok := idx.Read(4)
	require.True(t, ok)
	require.Equal(t, uint64(120), pos)
	require.NoError(t, idx.Close())
}
