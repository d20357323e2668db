package storage

import "go.uber.org/zap"

// What a sealed segment keeps while the Log is open: its store's file
// descriptor and, for the Config.MappedSealedIndexes newest sealed
// segments only, its index's map. Its store's write buffer goes when it is
// sealed (store.Seal), and the older indexes are released (index.release),
// so a log's memory does not grow with the number of its segments.

// releaseIndexesLocked releases the index maps of the sealed segments older
// than the Config.MappedSealedIndexes newest. A failure is logged, not
// returned: the index then stays mapped (or, if only its cut failed, is
// read with pread from a file with a zero tail), and reads are right either
// way. Caller holds mu exclusively (or is load, before anyone else can
// read).
func (l *Log) releaseIndexesLocked() {
	keep := max(0, l.config.MappedSealedIndexes)
	for _, s := range l.segments[:max(0, len(l.segments)-1-keep)] {
		if !s.index.mapped() {
			continue
		}
		if err := s.index.release(); err != nil {
			l.logger.Warn("could not release a sealed segment's index", zap.Uint64("segment", s.baseOffset), zap.Error(err))
		}
	}
}

// activateLocked makes the last segment, a sealed one TruncateFrom made
// active again, ready for appends: its index mapped. Caller holds mu
// exclusively.
func (l *Log) activateLocked() error {
	return l.active.index.remap()
}
