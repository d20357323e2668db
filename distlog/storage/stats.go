package storage

// Read-only accessors for metrics.

// SegmentCount returns the number of segments of the log, or ErrClosed
// after Close.
func (l *Log) SegmentCount() (int, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	return len(l.segments), nil
}

// SyncDir fsyncs a directory, making file creations, renames and removals
// in it durable.
func SyncDir(dir string) error { return syncDir(dir) }
