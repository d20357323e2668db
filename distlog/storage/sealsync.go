package storage

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// Background sealing (Config.SyncSealedInBackground).
//
// Recovery trusts every segment but the last to be whole on disk: damage
// there is corruption, not a crash (see rollLocked). By default a roll
// keeps that true by fsyncing the segment it seals before it creates the
// next one, on the appender's goroutine. With background sealing the roll
// fsyncs nothing. It seals the segment (marked unsynced) and creates the
// next one under pending names (ending in pendingSuffix), which recovery
// does not take for segments: at open they are deleted. (Usually the roll
// creates nothing either: it takes a spare pair of files the goroutine
// made ahead, as "spare-N.store.pending" and "spare-N.index.pending",
// since creating files waits for the file system's journal.) A goroutine
// of the Log then, in segment order, fsyncs each
// unsynced segment and only then renames the segment after it to its real
// name, fsyncing the directory after each rename. So at every instant,
// and in whatever the disk holds after a power failure, a segment with a
// real name is preceded only by durable segments: the invariant recovery
// relies on is kept, and what a crash can lose is the records of pending
// segments (and the tail of the last real one), as the tail of the active
// segment could always be lost.
//
// Whatever claims records durable first finishes that work itself (drain):
// Sync (so a caller that records its progress after Sync, such as the
// state machine's metadata table, never claims records a crash could take
// from the log), Capture.Sync (a snapshot's sealed segments, linked by
// LinkSegments, are durable before the snapshot is), TruncateFrom,
// ResetTo, Restore and Close. Truncate detaches no segment that is
// unsynced or pending, so a pending segment is only ever renamed after
// its predecessor is durable or durably removed.
//
// A failed fsync or rename is final (after a failed fsync, the kernel may
// have dropped the pages it could not write): the log's later rolls, Syncs,
// Capture.Syncs and drains return the error, and the segments after the
// one that failed keep their pending names, so recovery drops them rather
// than trust a segment before them that may not be whole.

// pendingSuffix ends the file names of a segment created by a roll of a
// log with Config.SyncSealedInBackground, until the segment before it is
// durable.
const pendingSuffix = ".pending"

// spareNamePrefix starts the names of spare segment files (see makeSpare).
const spareNamePrefix = "spare-"

// sealSyncer runs background sealing: a roll pokes it, and it starts a
// goroutine that drains (see drainLocked), makes the next spare and
// releases the older segments' indexes (see releaseIndexesLocked), until
// no roll poked it meanwhile, then ends; an idle log has no goroutine (a
// node may hold thousands of topics).
type sealSyncer struct {
	log *Log

	mu      sync.Mutex
	running bool  // a goroutine is draining
	again   bool  // poked while one ran: it drains once more
	stopped bool  // halted: no goroutine starts again
	err     error // the first failure; see failed
	// spare is a segment's files made ahead by the goroutine for the next
	// roll to take (nil: none ready), under pending names with no base in
	// them; spares counts them, to name them.
	spare  *segment
	spares uint64
	wg     sync.WaitGroup
}

// poke has the log's sealed segments made durable, by a goroutine.
func (s *sealSyncer) poke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
	case s.running:
		s.again = true
	default:
		s.running = true
		s.wg.Add(1)
		go s.run()
	}
}

// run drains until it was not poked during its last drain.
func (s *sealSyncer) run() {
	defer s.wg.Done()
	l := s.log
	for {
		err := l.drainSteps()
		if err != nil {
			// Reported by the log's next roll, Sync, Capture.Sync and
			// Close; logged here too, since that may be a while.
			l.logger.Error("background sealing failed", zap.Error(err))
		} else if err := s.makeSpare(); err != nil {
			// The next roll creates its segment's files itself.
			l.logger.Warn("cannot make the next segment's files ahead", zap.Error(err))
		}
		l.mu.Lock()
		if !l.closed {
			l.releaseIndexesLocked()
		}
		l.mu.Unlock()
		s.mu.Lock()
		if !s.again || s.stopped {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.again = false
		s.mu.Unlock()
	}
}

// makeSpare makes the files of the next roll's segment, unless they are
// ready: creating two files (and growing the index) takes the file
// system's journal, a millisecond or more while it commits, which a roll
// would otherwise wait for on the appender's goroutine.
func (s *sealSyncer) makeSpare() error {
	s.mu.Lock()
	if s.spare != nil || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.spares++
	n := s.spares
	s.mu.Unlock()
	l := s.log
	name := filepath.Join(l.dir, fmt.Sprintf("%s%d", spareNamePrefix, n))
	spare := &segment{pending: true}
	var err error
	if spare.store, err = openStore(name + storeExt + pendingSuffix); err != nil {
		return err
	}
	if spare.index, err = openIndex(name+indexExt+pendingSuffix, l.config.Segment.MaxIndexBytes); err != nil {
		return errors.Join(err, spare.store.file.Close(), removeSpareFiles(spare))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.spare != nil {
		return errors.Join(spare.discard(), removeSpareFiles(spare))
	}
	s.spare = spare
	return nil
}

// takeSpare returns the spare segment files and forgets them, or nil.
func (s *sealSyncer) takeSpare() *segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	spare := s.spare
	s.spare = nil
	return spare
}

// removeSpareFiles deletes a spare's files (its index may be nil: not
// made).
func removeSpareFiles(spare *segment) error {
	paths := []string{spare.store.filePath()}
	if spare.index != nil {
		paths = append(paths, spare.index.filePath())
	}
	var errs []error
	for _, path := range paths {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// adoptSpare makes spare (see makeSpare) the new, empty segment at base:
// it writes the header over the store's first bytes. No file is created.
// As createSegment does, it first removes any file of that base left
// behind (none, unless a removal failed), which the rename of the spare
// would replace anyway, but a crash before it would leave.
func (l *Log) adoptSpare(spare *segment, base uint64) (*segment, error) {
	for _, ext := range []string{storeExt, indexExt} {
		if err := os.Remove(segmentFilePath(l.dir, base, ext, false)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("storage: segment %d: %w", base, err)
		}
	}
	s := spare
	s.baseOffset = base
	s.maxStoreBytes = l.config.Segment.MaxStoreBytes
	s.logger = l.config.Logger
	s.store.writeback = true
	// Durable with the segment's fsync, as a created store's header is.
	if _, err := s.store.file.WriteAt(segmentHeader(base), 0); err != nil {
		return nil, fmt.Errorf("segment %d: write header: %w", base, err)
	}
	s.store.setEnd(uint64(segmentHeaderWidth))
	s.index.setEntries(0)
	s.nextOffset.Store(base)
	return s, nil
}

// halt stops background sealing and waits for its goroutine, if one runs,
// to return; it closes and deletes the spare files. Idempotent. What is
// left to do is left to drainLocked.
func (s *sealSyncer) halt() error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	if spare := s.takeSpare(); spare != nil {
		return errors.Join(spare.discard(), removeSpareFiles(spare))
	}
	return nil
}

// halted reports whether halt was called.
func (s *sealSyncer) halted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// failed returns the error that stopped background sealing, if any.
func (s *sealSyncer) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fail records err as final (the first one is kept) and returns the error
// recorded.
func (s *sealSyncer) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = fmt.Errorf("storage: background sealing stopped: %w", err)
	}
	return s.err
}

// drainSteps is drainLocked taking removeMu for one step at a time, so
// that a Truncate or a Sync need not wait for a log that keeps rolling.
func (l *Log) drainSteps() error {
	for {
		if l.sealer.halted() {
			return nil // Close finishes the work
		}
		l.removeMu.Lock()
		renamed, err := l.sealStepLocked(math.MaxUint64)
		l.removeMu.Unlock()
		if err != nil || !renamed {
			return err
		}
	}
}

// drainThrough makes the sealed segments up to the one of base durable,
// and the pending ones up to it named (see drainLocked): what a capture
// whose last segment is at base holds. The segments after it, which a
// log that keeps rolling keeps making, are left to the goroutine.
func (l *Log) drainThrough(base uint64) error {
	if l.sealer == nil {
		return nil
	}
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	for {
		renamed, err := l.sealStepLocked(base)
		if err != nil || !renamed {
			return err
		}
	}
}

// drainLocked does what the background goroutine would: it fsyncs every
// unsynced sealed segment and renames every pending one, in order, and
// returns once none is left (or with the final error). Caller holds
// removeMu, and not mu.
func (l *Log) drainLocked() error {
	if l.sealer == nil {
		return nil
	}
	for {
		renamed, err := l.sealStepLocked(math.MaxUint64)
		if err != nil || !renamed {
			return err
		}
	}
}

// sealStepLocked fsyncs the unsynced segments before the first pending
// one (all of them when none is pending) and renames that pending one,
// then fsyncs the directory; segments with a base above through are left
// alone. It reports whether a segment was renamed (there may be more to
// do). Caller holds removeMu, and not mu.
func (l *Log) sealStepLocked(through uint64) (renamed bool, err error) {
	if err := l.sealer.failed(); err != nil {
		return false, err
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return false, nil
	}
	var unsynced []*segment
	var pending *segment
	for _, s := range l.segments {
		if s.baseOffset > through {
			break
		}
		if s.pending {
			pending = s
			break
		}
		if s.unsynced.Load() {
			unsynced = append(unsynced, s)
		}
	}
	l.mu.RUnlock()
	// removeMu keeps these segments in the log and their files open: only
	// Truncate, TruncateFrom, ResetTo, Restore and Close remove or close
	// segments, and they hold it. Only the store needs fsyncing: recovery
	// rebuilds an index that disagrees with its store.
	for _, s := range unsynced {
		if l.sealHook != nil {
			l.sealHook(s.baseOffset)
		}
		if err := s.store.Sync(); err != nil {
			return false, l.sealer.fail(err)
		}
		s.unsynced.Store(false)
		l.sealSyncs.Add(1)
	}
	if pending == nil {
		return false, nil
	}
	// The segments before it are durable, and so must their names be
	// before this one gets its own (a created segment marks the directory
	// dirty; so does each rename).
	if err := l.syncDirIfDirty(); err != nil {
		return false, l.sealer.fail(err)
	}
	l.mu.Lock()
	err = pending.unpend(l.dir)
	l.mu.Unlock()
	if err != nil {
		return false, l.sealer.fail(err)
	}
	l.markDirDirty()
	if err := l.syncDirIfDirty(); err != nil {
		return false, l.sealer.fail(err)
	}
	return true, nil
}

// markDirDirty notes that segment files were created or renamed since the
// directory's last fsync.
func (l *Log) markDirDirty() {
	l.dirMu.Lock()
	l.dirDirty = true
	l.dirMu.Unlock()
}

// unpend renames the segment's pending files in dir to their real names,
// the store first (were the index's rename lost, recovery would rebuild
// it). Caller holds the Log's mu exclusively: readers open and link the
// files by path under mu.
func (s *segment) unpend(dir string) error {
	for _, f := range []struct {
		name *atomic.Pointer[string]
		ext  string
	}{{&s.store.path, storeExt}, {&s.index.path, indexExt}} {
		from := *f.name.Load()
		to := filepath.Join(dir, segmentFileName(s.baseOffset, f.ext))
		if from == to {
			continue // renamed by an earlier, failed, call
		}
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("storage: segment %d: %w", s.baseOffset, err)
		}
		f.name.Store(&to)
	}
	s.pending = false
	return nil
}

// isPendingFileName reports whether name is a pending name: a segment
// file's, or a spare's (see makeSpare).
func isPendingFileName(name string) bool {
	return strings.HasSuffix(name, pendingSuffix)
}

// removePendingFiles deletes the files in dir with pending names (see
// pendingSuffix): segments whose predecessor was not known durable when
// the log stopped, and spares (which a roll may have taken for a segment:
// a spare's name does not tell). Their records are not counted durable by
// anyone (Sync, Capture.Sync and Close finish the renames first); a
// snapshot that linked one keeps its own link. It reports whether it
// deleted anything.
func removePendingFiles(dir string, entries []os.DirEntry, logger *zap.Logger) (bool, error) {
	removed := 0
	for _, e := range entries {
		if !isPendingFileName(e.Name()) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("storage: remove %s: %w", e.Name(), err)
		}
		removed++
	}
	if removed == 0 {
		return false, nil
	}
	logger.Warn("removed segment files a crash left before the segment ahead of them was durable", zap.Int("files", removed))
	return true, syncDir(dir)
}
