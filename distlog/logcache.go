package distlog

import (
	"sync"

	"github.com/hashicorp/raft"
)

// logCache keeps the most recent Raft entries in memory in front of the
// log store, so that replicating them to followers and applying them does
// not read them back from the segments. It is raft.LogCache bounded by
// bytes as well as by count: raft's holds a fixed number of entries,
// and an entry here holds one call's records or every call that queued up
// (up to MaxBatchBytes), so 512 of them were 22 MB with batches of 100
// records and could be gigabytes with large ones.
type logCache struct {
	store *logStore

	mu sync.Mutex
	// entries hold consecutive indexes, oldest first; bytes is the sum of
	// their Data and Extensions.
	entries              []*raft.Log
	bytes                int
	maxEntries, maxBytes int
}

var (
	_ raft.LogStore          = (*logCache)(nil)
	_ raft.MonotonicLogStore = (*logCache)(nil)
)

// Bounds of the Raft entry cache.
const (
	logCacheEntries = 512
	logCacheBytes   = 4 << 20
)

func newLogCache(store *logStore, maxEntries, maxBytes int) *logCache {
	return &logCache{store: store, maxEntries: maxEntries, maxBytes: maxBytes}
}

// IsMonotonic implements raft.MonotonicLogStore, as the store does.
func (c *logCache) IsMonotonic() bool { return c.store.IsMonotonic() }

// FirstIndex implements raft.LogStore.
func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex implements raft.LogStore.
func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// GetLog implements raft.LogStore: from memory when the entry is cached.
func (c *logCache) GetLog(index uint64, out *raft.Log) error {
	c.mu.Lock()
	if n := len(c.entries); n > 0 {
		first := c.entries[0].Index
		if index >= first && index-first < uint64(n) {
			*out = *c.entries[index-first]
			c.mu.Unlock()
			return nil
		}
	}
	c.mu.Unlock()
	return c.store.GetLog(index, out)
}

// StoreLog implements raft.LogStore.
func (c *logCache) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore: the entries are cached once stored.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		if n := len(c.entries); n > 0 && c.entries[n-1].Index+1 != l.Index {
			c.clearLocked() // not the next index: the store was cut or reset
		}
		c.entries = append(c.entries, l)
		c.bytes += entryBytes(l)
	}
	evict := 0
	for evict < len(c.entries)-1 && (c.bytes > c.maxBytes || len(c.entries)-evict > c.maxEntries) {
		c.bytes -= entryBytes(c.entries[evict])
		c.entries[evict] = nil
		evict++
	}
	if evict > 0 {
		// Copied down rather than resliced, so the array does not creep.
		c.entries = append(c.entries[:0], c.entries[evict:]...)
	}
	return nil
}

// DeleteRange implements raft.LogStore; it empties the cache, as raft's
// does.
func (c *logCache) DeleteRange(minIndex, maxIndex uint64) error {
	c.mu.Lock()
	c.clearLocked()
	c.mu.Unlock()
	return c.store.DeleteRange(minIndex, maxIndex)
}

func (c *logCache) clearLocked() {
	clear(c.entries)
	c.entries = c.entries[:0]
	c.bytes = 0
}

// entryBytes is what an entry holds in memory beyond its fixed fields.
func entryBytes(l *raft.Log) int { return len(l.Data) + len(l.Extensions) }
