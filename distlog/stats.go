package distlog

// Read-only accessors for metrics (issue 7). Stats, in distributed.go, has
// the Raft side; these add what only the storage engine knows.

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

// DataSegments returns the number of segments of the node's data log (the
// records clients read), or ErrClosed after Close.
func (d *DistributedLog) DataSegments() (int, error) {
	return d.log.SegmentCount()
}
