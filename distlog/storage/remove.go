package storage

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"go.uber.org/zap"
)

// Front truncation (Truncate: retention, and the Raft log's compaction
// after each snapshot) removes whole sealed segments in two steps:
//
//  1. Under appendMu and mu, the segments go from the list: from then on
//     no reader finds them and no append waits for them. Readers only
//     reach a segment through the list, under mu (shared), so none holds
//     one once the list has changed under mu held exclusively.
//  2. Under removeMu alone, their files go, lowest segment first, with a
//     directory fsync after each (see removeSegmentLocked: a crash part-way
//     must leave the log contiguous). Appends, rolls, reads and syncs go on
//     meanwhile; whatever else changes the segment list wholesale
//     (TruncateFrom, ResetTo, Restore, Close) takes removeMu first and
//     waits.
//
// A detached segment is closed without the flush, cut and fsyncs of Close
// (segment.discard): its files are about to go, and were a crash to undo
// their removal, recovery would find them as any crash after their roll
// leaves them (every sealed segment is durable from its roll on). Before
// this, each removed segment cost three fsyncs (store, index, directory),
// all under the lock appends take.

// Truncate removes the segments all of whose records are below lowest,
// oldest first. It never removes the active segment, so records at or
// above lowest are all kept and some below it may be. The log stops
// showing the removed records before Truncate deletes their files, and
// appends and reads do not wait for the deletion; the deletion is durable
// when Truncate returns. After an error, the segments are gone from the log
// and the files it could not delete are deleted by the next Truncate,
// TruncateFrom into the first segment, ResetTo or Restore (or are found
// again, below the lowest segment, when the log is next opened).
func (l *Log) Truncate(lowest uint64) error {
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	detached, err := l.detachBelow(lowest)
	if err != nil {
		return err
	}
	if len(detached) > 0 {
		l.notify()
	}
	if len(detached) == 0 && len(l.unremoved) == 0 {
		return nil
	}
	err = l.removeDetachedLocked(detached)
	l.logger.Info("truncated log", zap.Uint64("lowest", lowest), zap.Int("segments_removed", len(detached)), zap.Error(err))
	return err
}

// detachBelow takes the sealed segments all of whose records are below
// lowest off the list and returns them, oldest first.
func (l *Log) detachBelow(lowest uint64) ([]*segment, error) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	n := 0
	for _, s := range l.segments {
		// Nor one that background sealing has not made durable yet, nor
		// one after it: the segment after it may only get its real name
		// once it is durable or durably removed (see sealsync.go).
		if s == l.active || s.nextOffset.Load() > lowest || s.unsynced.Load() || s.pending {
			break
		}
		n++
	}
	detached := slices.Clone(l.segments[:n])
	l.segments = slices.Delete(l.segments, 0, n)
	return detached, nil
}

// removeDetachedLocked deletes the files of l.unremoved and then of
// detached (segments taken off the list, all below the lowest segment
// left in it, oldest first), each deletion durable before the next
// begins. When one fails, it and the segments after it are closed and
// kept in l.unremoved, so that no later segment's files are deleted before
// its. Caller holds removeMu (and not appendMu or mu).
func (l *Log) removeDetachedLocked(detached []*segment) error {
	segs := slices.Concat(l.unremoved, detached)
	l.unremoved = nil
	for k, s := range segs {
		if err := l.removeSegmentFiles(s); err != nil {
			for _, rest := range segs[k:] {
				l.discardSegment(rest)
			}
			l.unremoved = segs[k:]
			return err
		}
	}
	return nil
}

// removeUnremovedLocked deletes the files an earlier removal left (see
// removeDetachedLocked). Caller holds removeMu.
func (l *Log) removeUnremovedLocked() error {
	if len(l.unremoved) == 0 {
		return nil
	}
	return l.removeDetachedLocked(nil)
}

// removeSegmentFiles closes a detached segment (without syncing it) and
// deletes its files, the index first, then fsyncs the directory.
func (l *Log) removeSegmentFiles(s *segment) error {
	if l.removeHook != nil {
		if err := l.removeHook(s.baseOffset); err != nil {
			return err
		}
	}
	l.discardSegment(s)
	for _, path := range []string{s.index.filePath(), s.store.filePath()} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("storage: remove segment %d: %w", s.baseOffset, err)
		}
	}
	return syncDir(l.dir)
}

// discardSegment closes a detached segment's files, logging a failure: the
// files are being deleted, so a failed close loses nothing (and the
// deletion is what the caller reports on).
func (l *Log) discardSegment(s *segment) {
	if err := s.discard(); err != nil {
		l.logger.Warn("closing a removed segment", zap.Uint64("segment", s.baseOffset), zap.Error(err))
	}
}

// discard closes the segment's files as they are, for a segment whose
// files are being deleted: no flush (a sealed segment's store has no
// buffer), no msync, no cut of the index and no fsync. It is idempotent.
func (s *segment) discard() error {
	if s.discarded {
		return nil
	}
	s.discarded = true
	var errs []error
	if s.index.mmap != nil {
		if err := s.index.mmap.UnsafeUnmap(); err != nil {
			errs = append(errs, fmt.Errorf("storage: unmap %s: %w", s.index.filePath(), err))
		}
		s.index.mmap = nil
	}
	return errors.Join(append(errs, s.index.file.Close(), s.store.file.Close())...)
}
