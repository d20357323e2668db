package distlog

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// cachedIndexes lists the indexes the cache holds, oldest first.
func cachedIndexes(c *logCache) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []uint64
	for _, l := range c.entries {
		out = append(out, l.Index)
	}
	return out
}

func bigEntries(first, last uint64, size int) []*raft.Log {
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, size)})
	}
	return logs
}

// The cache keeps the newest entries within its count and byte bounds,
// serves them from memory, and reads the rest from the store.
func TestLogCacheBoundsEntriesAndBytes(t *testing.T) {
	store := newTestLogStore(t, t.TempDir())
	c := newLogCache(store, 4, 3000)
	require.NoError(t, c.StoreLogs(bigEntries(1, 3, 1000)))
	require.Equal(t, []uint64{1, 2, 3}, cachedIndexes(c))
	require.NoError(t, c.StoreLogs(bigEntries(4, 5, 1000)))
	require.Equal(t, []uint64{3, 4, 5}, cachedIndexes(c), "more bytes than the bound were kept")
	require.NoError(t, c.StoreLogs(bigEntries(6, 12, 10)))
	require.Equal(t, []uint64{9, 10, 11, 12}, cachedIndexes(c), "more entries than the bound were kept")
	// One entry larger than the bound stays, alone.
	require.NoError(t, c.StoreLog(bigEntries(13, 13, 5000)[0]))
	require.Equal(t, []uint64{13}, cachedIndexes(c))

	var got raft.Log
	for i := uint64(1); i <= 13; i++ {
		require.NoError(t, c.GetLog(i, &got), "entry %d", i)
		require.Equal(t, i, got.Index)
		require.Equal(t, byte(i), got.Data[0])
	}
	// An entry served from memory is the stored one, not one the store
	// would have decoded again.
	c.mu.Lock()
	c.entries[0].Data = []byte("from the cache")
	c.mu.Unlock()
	require.NoError(t, c.GetLog(13, &got))
	require.Equal(t, "from the cache", string(got.Data))
}

// Deleting a range empties the cache, and entries that do not follow the
// cached ones (a store cut and rewritten) replace them.
func TestLogCacheFollowsDeletes(t *testing.T) {
	store := newTestLogStore(t, t.TempDir())
	c := newLogCache(store, 16, 1<<20)
	require.NoError(t, c.StoreLogs(testEntries(1, 8, 1)))
	require.NoError(t, c.DeleteRange(6, 8))
	require.Empty(t, cachedIndexes(c))
	require.NoError(t, c.StoreLogs(testEntries(6, 7, 2)))
	require.Equal(t, []uint64{6, 7}, cachedIndexes(c))
	var got raft.Log
	require.NoError(t, c.GetLog(7, &got))
	require.Equal(t, uint64(2), got.Term)
	require.NoError(t, c.GetLog(3, &got))
	require.Equal(t, uint64(1), got.Term)
	last, err := c.LastIndex()
	require.NoError(t, err)
	require.Equal(t, uint64(7), last)
}
