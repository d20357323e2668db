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

// SegmentStat describes one segment: its records Base .. Next-1 and the
// size of its store file.
type SegmentStat struct {
	Base, Next uint64
	Bytes      uint64
}

// Segments describes the log's segments in offset order; the last is the
// active one. For retention: whole sealed segments are what can go.
func (l *Log) Segments() ([]SegmentStat, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	out := make([]SegmentStat, 0, len(l.segments))
	for _, s := range l.segments {
		out = append(out, SegmentStat{Base: s.baseOffset, Next: s.nextOffset.Load(), Bytes: s.store.Size()})
	}
	return out, nil
}
