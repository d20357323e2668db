package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"go.uber.org/zap"
)

// lockFileName is the file a Log holds an exclusive flock on while open.
const lockFileName = "LOCK"

// maxRetainedScratch is the largest encoding buffer a Log keeps between
// appends; a larger batch's buffer is left to the garbage collector.
const maxRetainedScratch = 4 << 20

// Log is a segmented, append-only log of records on disk: a list of
// segments in offset order, the last of which (the active segment) takes
// appends. It is safe for concurrent use.
//
// Lock order: removeMu, appendMu, syncMu, mu; a store's mutex, dirMu and
// notifyMu are leaves.
type Log struct {
	dir    string
	config Config
	logger *zap.Logger
	lock   *os.File // holds the directory's flock

	// removeMu serialises the removals of segment files with each other
	// and with whatever must not overlap one: Truncate holds it while it
	// deletes the segments it detached from the list, without appendMu or
	// mu, so that appends and reads go on meanwhile (see remove.go);
	// TruncateFrom, ResetTo, Restore and Close take it first, so that
	// none of them recreates a base offset whose old files are still being
	// removed, or closes the log under a removal.
	removeMu sync.Mutex
	// unremoved are segments detached from the list (and closed) whose
	// files a failed removal left on disk, lowest first: the next removal
	// deletes them first. Guarded by removeMu.
	unremoved []*segment
	// removeHook, when set (tests only), is called before each detached
	// segment's files are deleted; an error fails that deletion.
	removeHook func(base uint64) error

	// sealer makes sealed segments durable off the appender's goroutine
	// (Config.SyncSealedInBackground; see sealsync.go); nil without it.
	// Set by NewLog.
	sealer *sealSyncer
	// sealSyncs counts the fsyncs of sealed segments made by background
	// sealing, for tests.
	sealSyncs atomic.Uint64
	// sealHook, when set (tests only), is called before background sealing
	// fsyncs a sealed segment.
	sealHook func(base uint64)

	// appendMu serialises appends and every change to the segment list
	// (roll, Truncate, TruncateFrom, Reset, ResetTo, Restore, Close).
	// Readers never take it.
	appendMu sync.Mutex
	// segmentMaxAge is Config.Segment.MaxAge in nanoseconds (0: none), as
	// SetSegmentMaxAge last set it; guarded by appendMu.
	segmentMaxAge int64
	// scratch and starts are the frame-encoding buffers; guarded by
	// appendMu.
	scratch []byte
	starts  []uint64

	// mu guards segments, active and closed. Read holds it shared for the
	// whole read, so readers run in parallel with each other and with
	// appends; only changes to the segment list take it exclusively.
	mu       sync.RWMutex
	segments []*segment
	active   *segment
	closed   bool

	// writeSeq counts write batches; syncedSeq is the highest batch known
	// to be on disk. Group commit: an appender whose batch another
	// appender's fsync already covered returns without its own.
	writeSeq  atomic.Uint64
	syncMu    sync.Mutex // serialises fsyncs of the active segment; guards syncedSeq and indexSynced*
	syncedSeq uint64
	// indexSyncedSeq is the write batch through which Sync made the store
	// and the index durable, valid once indexSynced: a Sync with no write
	// since costs no fsync (a node snapshots every topic, and writes its
	// metadata table after syncing every topic, most of them idle).
	// TruncateFrom and ResetTo count as writes.
	indexSyncedSeq uint64
	indexSynced    bool
	fsyncs         atomic.Uint64 // fsyncs made by syncThrough, for tests of group commit

	// dirDirty says segment files were created since the directory was
	// last fsynced: the next roll, Sync or SyncOnAppend append fsyncs it.
	// Guarded by dirMu.
	dirMu    sync.Mutex
	dirDirty bool
	// rollSyncs counts the fsyncs of segments sealed by a roll, for tests.
	rollSyncs atomic.Uint64

	// spares writes zero-filled store files for the next rolls
	// (Config.Segment.ZeroFill); nil without ZeroFill. Set by NewLog.
	spares *spareFiles

	// truncations is bumped before TruncateFrom cuts a file in place, so a
	// Reader stream can tell that bytes it captured may have changed.
	truncations atomic.Uint64

	// epoch names the log's current set of segment files (see Epoch); it
	// is in the file EPOCH. Guarded by appendMu.
	epoch uint64
	// pooledDir and pooledThrough remember the sealed segments LinkSegments
	// linked last: every sealed segment up to base pooledThrough is in
	// pooledDir (pooled false: none known). Guarded by appendMu.
	pooledDir     string
	pooledThrough uint64
	pooled        bool

	notifyMu sync.Mutex
	changed  chan struct{} // closed and replaced at every change; guarded by notifyMu
	taken    bool          // someone holds changed: the next change must close it; guarded by notifyMu
	stopped  bool          // Close closed changed for good; guarded by notifyMu
}

// NewLog opens the log in dir, creating dir and an empty log at
// c.Segment.InitialOffset when there is none, and recovering an existing
// one: an index that disagrees with its store is rebuilt from the store,
// and the last (active) segment is cut to its longest valid prefix of
// records, dropping the torn tail a crash mid-write leaves. Nothing else is
// ever cut: damage in a sealed segment (a frame that fails, a missing
// header, records missing before the next segment) fails NewLog with a
// *CorruptionError (errors.Is ErrCorrupt) naming the file and position, and
// changes nothing. A sealed segment was durable before any later record was
// written (see rollLocked), so no crash leaves it short; cutting it would
// drop records that were acknowledged, and with them every later segment.
// Files under pending names (see sealsync.go: segments created after a
// segment that was not durable yet) are deleted.
func NewLog(dir string, c Config) (*Log, error) {
	c, err := c.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		dir:     dir,
		config:  c,
		logger:  c.Logger.Named("storage").With(zap.String("dir", dir)),
		lock:    lock,
		changed: make(chan struct{}),

		segmentMaxAge: max(0, int64(c.Segment.MaxAge)),
	}
	l.config.Logger = l.logger
	if err := l.load(); err != nil {
		return nil, errors.Join(err, lock.Close())
	}
	if c.Segment.Preallocate && c.Segment.ZeroFill {
		if l.spares, err = startSpareFiles(dir, c.Segment.MaxStoreBytes, l.logger); err != nil {
			return nil, errors.Join(err, l.closeSegments(), lock.Close())
		}
	}
	if c.SyncSealedInBackground {
		l.sealer = &sealSyncer{log: l}
	}
	return l, nil
}

// stopSpares stops the spare-file writer, if there is one, and removes
// its spare file.
func (l *Log) stopSpares() error {
	if l.spares == nil {
		return nil
	}
	return l.spares.close()
}

// lockDir takes an exclusive, non-blocking flock on dir's lock file. The
// kernel drops it when the process dies, so a crash never leaves the
// directory locked.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		closeErr := f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.Join(fmt.Errorf("%w: %s", ErrLocked, dir), closeErr)
		}
		return nil, errors.Join(fmt.Errorf("storage: lock %s: %w", dir, err), closeErr)
	}
	return f, nil
}

// load opens the segments found in dir, or creates the first one.
func (l *Log) load() error {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("storage: read %s: %w", l.dir, err)
	}
	// Segments under pending names go (see sealsync.go). Their bases get
	// other files from now on: the epoch changes below, so that a link to
	// one, made by LinkSegments under the old epoch, is not taken for
	// what the log holds at that base later.
	droppedPending, err := removePendingFiles(l.dir, entries, l.logger)
	if err != nil {
		return err
	}
	var bases []uint64
	for _, e := range entries {
		if base, ok := parseSegmentFileName(e.Name()); ok && !e.IsDir() {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	bases = slices.Compact(bases)
	cut := droppedPending // recovery changed a segment's records
	for k, base := range bases {
		if n := len(l.segments); n > 0 && l.segments[n-1].nextOffset.Load() != base {
			// Records are missing between two segments: the earlier one
			// was sealed, and durable, before the later one was created.
			prev := l.segments[n-1]
			err := prev.corruptAt(prev.store.Size(), prev.nextOffset.Load(), fmt.Errorf(
				"%w: the segment's records end before offset %d, the next segment (%s) starts at %d",
				errMissingRecords, prev.nextOffset.Load(), segmentFileName(base, storeExt), base))
			return errors.Join(err, l.abandonSegments())
		}
		s, err := openSegment(l.dir, base, l.config, k < len(bases)-1)
		if err != nil {
			var corrupt *CorruptionError
			if errors.As(err, &corrupt) {
				err = corrupt // names its file and position already
			} else {
				err = fmt.Errorf("storage: %w", err)
			}
			return errors.Join(err, l.abandonSegments())
		}
		l.segments = append(l.segments, s)
		cut = cut || s.cut
	}
	if len(l.segments) == 0 {
		s, err := createSegment(l.dir, l.config.Segment.InitialOffset, l.config, nil, false)
		if err != nil {
			return err
		}
		l.segments = append(l.segments, s)
		if err := syncDir(l.dir); err != nil {
			return errors.Join(err, l.closeSegments())
		}
	}
	l.active = l.segments[len(l.segments)-1]
	l.releaseIndexesLocked()
	switch {
	case l.config.Segment.Preallocate && l.config.Segment.ZeroFill:
		// No spare is ready yet: the active segment's free space is
		// written with zeroes here, once per open (at most MaxStoreBytes).
		if err := l.active.store.zeroFill(l.config.Segment.MaxStoreBytes); err != nil {
			return errors.Join(err, l.closeSegments())
		}
	case l.config.Segment.Preallocate:
		if err := l.active.store.preallocate(l.config.Segment.MaxStoreBytes); err != nil {
			return errors.Join(err, l.closeSegments())
		}
	}
	if err := l.loadEpoch(); err != nil {
		return errors.Join(err, l.closeSegments())
	}
	if cut {
		// A segment of some base now holds other bytes than before the
		// crash: links made under the old epoch must not be taken for it.
		if err := l.bumpEpochLocked(); err != nil {
			return errors.Join(err, l.closeSegments())
		}
	}
	return nil
}

// abandonSegments closes the segments opened so far as they are (see
// segment.abandon): load refuses the log.
func (l *Log) abandonSegments() error {
	var errs []error
	for _, s := range l.segments {
		errs = append(errs, s.abandon())
	}
	l.segments, l.active = nil, nil
	return errors.Join(errs...)
}

func (l *Log) closeSegments() error {
	var errs []error
	for _, s := range l.segments {
		errs = append(errs, s.Close())
	}
	l.segments, l.active = nil, nil
	return errors.Join(errs...)
}

// syncDir fsyncs a directory, making file creations and removals in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("storage: open %s: %w", dir, err)
	}
	err = d.Sync()
	if closeErr := d.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("storage: fsync %s: %w", dir, err)
	}
	return nil
}

// Append adds record at the end of the log and returns its offset. The
// record's Offset field is ignored and record is not modified (the Log
// copies it). The record
// is readable when Append returns, and on disk too if Config.SyncOnAppend.
func (l *Log) Append(record *Record) (uint64, error) {
	return l.AppendBatch([]*Record{record})
}

// AppendBatch adds records at consecutive offsets, the first of which it
// returns, with one buffered write (more only when the batch crosses a
// segment boundary, each of which fsyncs the segment it seals) and, if
// Config.SyncOnAppend, one fsync: group commit.
// The records are not modified. Sizes are checked before anything is
// written: a batch with a record over Config.MaxRecordBytes is refused
// whole. An I/O error can leave a prefix of the batch in the log.
func (l *Log) AppendBatch(records []*Record) (uint64, error) {
	for k, r := range records {
		if r == nil {
			return 0, fmt.Errorf("%w: record %d of %d", ErrNilRecord, k, len(records))
		}
		if n := uint64(len(r.Value)); n > l.config.MaxRecordBytes {
			return 0, fmt.Errorf("%w: record %d of %d has %d bytes, Config.MaxRecordBytes is %d",
				ErrRecordTooLarge, k, len(records), n, l.config.MaxRecordBytes)
		}
	}
	l.appendMu.Lock()
	if l.closed {
		l.appendMu.Unlock()
		return 0, ErrClosed
	}
	first := l.active.nextOffset.Load()
	buf, starts := l.scratch[:0], l.starts[:0]
	for k, r := range records {
		starts = append(starts, uint64(len(buf)))
		buf = appendFrame(buf, r, first+uint64(k))
	}
	err := l.writeFramesLocked(buf, starts)
	if cap(buf) <= maxRetainedScratch {
		l.scratch, l.starts = buf[:0], starts[:0]
	}
	seq := l.writeSeq.Add(1)
	l.appendMu.Unlock()
	if len(records) > 0 {
		l.notify()
	}
	if err != nil {
		return 0, err
	}
	if l.config.SyncOnAppend {
		if err := l.syncThrough(seq); err != nil {
			return 0, err
		}
	}
	return first, nil
}

// SetSegmentMaxAge changes Config.Segment.MaxAge from the next append on,
// for the active segment too (its first record's age counts from that
// record's timestamp, whenever the setting came); 0 or less rolls by size
// only. For a log whose owner changes it at the same point of every
// replica's history (distlog: a topic's retention), so that replicas keep
// cutting the same segments.
func (l *Log) SetSegmentMaxAge(d time.Duration) {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	l.segmentMaxAge = max(0, int64(d))
}

// writeFramesLocked writes encoded frames (frame k starts at starts[k] in
// frames and holds the active segment's next offset plus k) into the active
// segment, rolling to new segments as they fill. Caller holds appendMu.
func (l *Log) writeFramesLocked(frames []byte, starts []uint64) error {
	for i := 0; i < len(starts); {
		n := l.active.fits(frames, starts[i:], l.segmentMaxAge)
		if n == 0 {
			if err := l.rollLocked(); err != nil {
				return err
			}
			continue
		}
		if err := l.active.appendFrames(frames[:frameEnd(frames, starts, i+n-1)], starts[i:i+n]); err != nil {
			return err
		}
		i += n
	}
	return nil
}

// rollLocked seals the active segment and starts a new one after it.
//
// The sealed segment is fsynced (and the directory, if a segment file was
// created since its last fsync) before the new segment exists: a sealed
// segment is whole on disk before any record is written after it, even
// without SyncOnAppend. That is what lets recovery take any damage in a
// sealed segment for corruption rather than a crash. Without it a power
// failure during a batch that crosses the roll could keep the new
// segment's records and lose the old one's unsynced tail, and recovery
// could not tell that gap from a failed disk. A SyncOnAppend log pays
// nothing for it (the batch's own fsync would have covered the old
// segment); any other log pays one fsync per MaxStoreBytes written, on
// the appender's goroutine unless Config.SyncSealedInBackground moves it
// to a goroutine of the Log (see sealsync.go, which keeps the invariant).
// Caller holds appendMu.
func (l *Log) rollLocked() error {
	old := l.active
	if err := old.store.Seal(); err != nil {
		return err
	}
	if l.sealer != nil {
		return l.rollPendingLocked(old)
	}
	if err := old.Sync(); err != nil {
		return err
	}
	l.rollSyncs.Add(1)
	if err := l.syncDirIfDirty(); err != nil {
		return err
	}
	s, err := createSegment(l.dir, old.nextOffset.Load(), l.config, l.spares, false)
	if err != nil {
		return err
	}
	l.markDirDirty()
	l.mu.Lock()
	l.segments = append(l.segments, s)
	l.active = s
	l.releaseIndexesLocked()
	l.mu.Unlock()
	return nil
}

// rollPendingLocked is rollLocked with background sealing (see
// sealsync.go): old, sealed, is left to the background goroutine to fsync,
// and the new segment gets pending names until it has. Nothing waits for
// the disk here. Caller holds appendMu.
func (l *Log) rollPendingLocked(old *segment) error {
	if err := l.sealer.failed(); err != nil {
		return err
	}
	var s *segment
	var err error
	if spare := l.sealer.takeSpare(); spare != nil {
		s, err = l.adoptSpare(spare, old.nextOffset.Load())
		if err != nil {
			err = errors.Join(err, spare.discard(), removeSpareFiles(spare))
		}
	} else {
		s, err = createSegment(l.dir, old.nextOffset.Load(), l.config, nil, true)
	}
	if err != nil {
		return err
	}
	l.mu.Lock()
	old.unsynced.Store(true)
	l.segments = append(l.segments, s)
	l.active = s
	l.mu.Unlock()
	// The goroutine releases the older indexes too (an unmap and a cut of
	// the file, which waits for the journal as a file creation does).
	l.sealer.poke()
	return nil
}

// syncThrough makes write batch seq durable, sharing one fsync among every
// appender waiting at the same time.
func (l *Log) syncThrough(seq uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.syncedSeq >= seq {
		return nil
	}
	// Every batch up to target is in the active segment or in a sealed
	// one (on disk since its roll).
	target := l.writeSeq.Load()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil // Close flushed and fsynced every segment
	}
	if err := l.syncLocked(false); err != nil {
		return err
	}
	l.fsyncs.Add(1)
	l.syncedSeq = target
	return nil
}

// syncLocked fsyncs the directory when segments were created since its
// last fsync, and the active segment: its store only unless withIndex
// (appends need only their records durable; the index is rebuilt from
// them after a power failure). Sealed segments were fsynced when they were
// sealed. Caller holds syncMu and mu (shared is enough).
func (l *Log) syncLocked(withIndex bool) error {
	if err := l.syncDirIfDirty(); err != nil {
		return err
	}
	if withIndex {
		return l.active.Sync()
	}
	return l.active.syncData()
}

// syncDirIfDirty fsyncs the directory if segment files were created since
// its last fsync.
func (l *Log) syncDirIfDirty() error {
	l.dirMu.Lock()
	dirty := l.dirDirty
	l.dirDirty = false
	l.dirMu.Unlock()
	if !dirty {
		return nil
	}
	if err := syncDir(l.dir); err != nil {
		l.dirMu.Lock()
		l.dirDirty = true
		l.dirMu.Unlock()
		return err
	}
	return nil
}

// removeSegmentLocked deletes a segment's files and makes the removal
// durable before the caller removes the next one: segments are removed
// from one end of the log, and were a later removal to reach the disk
// before an earlier one, recovery would find records missing between two
// segments and refuse the log as corrupt. Caller holds removeMu, appendMu
// and mu. (Truncate deletes segments outside appendMu and mu: see
// remove.go.)
func (l *Log) removeSegmentLocked(s *segment) error {
	if err := s.Remove(); err != nil {
		return err
	}
	return syncDir(l.dir)
}

// lockDrained takes removeMu and appendMu and finishes the background
// sealing (drainLocked), for what must see every sealed segment durable
// and named and no roll meanwhile. unlock releases both; the caller calls
// it also when err is not nil.
func (l *Log) lockDrained() (unlock func(), err error) {
	l.removeMu.Lock()
	l.appendMu.Lock()
	unlock = func() {
		l.appendMu.Unlock()
		l.removeMu.Unlock()
	}
	return unlock, l.drainLocked()
}

// Sync writes buffered records to the files and fsyncs them: the active
// segment's store and index (sealed segments were fsynced when sealed, or
// are fsynced here first with Config.SyncSealedInBackground).
// When nothing was written since the last Sync, it fsyncs nothing.
func (l *Log) Sync() error {
	if l.sealer != nil {
		// No roll between the drain and the fsync below: a segment it
		// sealed would hold records written before this call and be left
		// to the background.
		unlock, err := l.lockDrained()
		defer unlock()
		if err != nil {
			return err
		}
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	target := l.writeSeq.Load()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	if l.indexSynced && l.indexSyncedSeq == target && !l.dirIsDirty() {
		return nil
	}
	if err := l.syncLocked(true); err != nil {
		return err
	}
	l.syncedSeq = target
	l.indexSyncedSeq, l.indexSynced = target, true
	return nil
}

// dirIsDirty reports whether segment files were created since the
// directory's last fsync.
func (l *Log) dirIsDirty() bool {
	l.dirMu.Lock()
	defer l.dirMu.Unlock()
	return l.dirDirty
}

// Read returns the record at offset: api.ErrOffsetOutOfRange when the log
// does not hold it, *CorruptionError (errors.Is ErrCorrupt) when it fails
// validation. The returned record belongs to the caller.
func (l *Log) Read(offset uint64) (*Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	// The last segment whose base is at most offset.
	k := sort.Search(len(l.segments), func(k int) bool { return l.segments[k].baseOffset > offset }) - 1
	if k < 0 {
		return nil, api.ErrOffsetOutOfRange{Offset: offset}
	}
	return l.segments[k].Read(offset)
}

// LowestOffset returns the offset of the first record the log holds (or
// would hold, when empty).
func (l *Log) LowestOffset() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	return l.segments[0].baseOffset, nil
}

// HighestOffset returns the offset of the last record, as the book defines
// it: NextOffset()-1, or 0 when NextOffset() is 0. It cannot tell an empty
// log from a log holding only offset 0; NextOffset can.
func (l *Log) HighestOffset() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	next := l.active.nextOffset.Load()
	if next == 0 {
		return 0, nil
	}
	return next - 1, nil
}

// NextOffset returns the offset the next appended record will get.
// NextOffset() - LowestOffset() is the number of records in the log.
func (l *Log) NextOffset() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.active.nextOffset.Load()
}

// TruncateFrom removes every record at or after offset, cutting into a
// segment when offset falls inside one, so that NextOffset() == offset
// afterwards. An offset at or below LowestOffset() empties the log (the next
// record gets offset); one at or past NextOffset() changes nothing. Raft
// uses it to drop a follower's diverged suffix. The cut is durable
// (fsynced) when TruncateFrom returns.
func (l *Log) TruncateFrom(offset uint64) error {
	unlock, err := l.lockDrained()
	defer unlock()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if offset >= l.active.nextOffset.Load() {
		return nil
	}
	if offset <= l.segments[0].baseOffset {
		return l.resetToLocked(offset)
	}
	l.writeSeq.Add(1) // a change a later Sync must not skip
	l.truncations.Add(1)
	if err := l.bumpEpochLocked(); err != nil {
		return err
	}
	for err == nil {
		last := l.segments[len(l.segments)-1]
		if last.baseOffset < offset {
			break
		}
		// Newest first: an interrupted TruncateFrom leaves a prefix.
		err = l.removeSegmentLocked(last)
		l.segments = l.segments[:len(l.segments)-1]
	}
	l.active = l.segments[len(l.segments)-1]
	if err == nil {
		err = l.activateLocked()
	}
	if err == nil && l.active.nextOffset.Load() > offset {
		err = l.active.TruncateFrom(offset)
	}
	l.logger.Info("truncated log suffix", zap.Uint64("from", offset), zap.Error(err))
	l.notify()
	return err
}

// Reset empties the log: afterwards it is usable and the next record gets
// Config.Segment.InitialOffset.
func (l *Log) Reset() error {
	return l.ResetTo(l.config.Segment.InitialOffset)
}

// ResetTo empties the log so that the next record gets offset next (Raft
// calls it after installing a snapshot). Segments are removed oldest first,
// so a crash part-way leaves a valid suffix of the old log.
func (l *Log) ResetTo(next uint64) error {
	unlock, err := l.lockDrained()
	defer unlock()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return l.resetToLocked(next)
}

// resetToLocked removes every segment and starts an empty one at next.
// Caller holds removeMu, appendMu and mu.
func (l *Log) resetToLocked(next uint64) error {
	l.writeSeq.Add(1) // a change a later Sync must not skip
	if err := l.bumpEpochLocked(); err != nil {
		return err
	}
	// Lowest first: files an earlier removal left, then the log's.
	errs := []error{l.removeUnremovedLocked()}
	for _, s := range l.segments {
		errs = append(errs, l.removeSegmentLocked(s))
	}
	s, err := createSegment(l.dir, next, l.config, l.spares, false)
	if err != nil {
		// No segment to append to: the log cannot go on. Close it so that
		// every call reports ErrClosed. l.active stays (closed) so that
		// NextOffset has something to report.
		l.segments = nil
		l.closed = true
		l.stopNotify()
		return errors.Join(append(errs, err, l.stopSpares(), l.lock.Close())...)
	}
	l.segments, l.active = []*segment{s}, s
	errs = append(errs, syncDir(l.dir))
	l.logger.Info("reset log", zap.Uint64("next", next))
	l.notify()
	return errors.Join(errs...)
}

// Appended returns a channel that is closed at the log's next change: an
// append, a truncation, a reset, or Close. A consumer that found nothing to
// read takes the channel before the read that came back out of range, then
// waits on it: no polling, and no change can slip between the read and the
// wait.
func (l *Log) Appended() <-chan struct{} {
	l.notifyMu.Lock()
	defer l.notifyMu.Unlock()
	l.taken = true
	return l.changed
}

// notify wakes everyone waiting on Appended. A channel nobody has taken
// is kept: appends without consumers allocate nothing.
func (l *Log) notify() {
	l.notifyMu.Lock()
	defer l.notifyMu.Unlock()
	if l.stopped || !l.taken {
		return
	}
	close(l.changed)
	l.changed = make(chan struct{})
	l.taken = false
}

// stopNotify closes the Appended channel for good.
func (l *Log) stopNotify() {
	l.notifyMu.Lock()
	defer l.notifyMu.Unlock()
	if !l.stopped {
		l.stopped = true
		close(l.changed)
	}
}

// Close flushes, fsyncs and closes every segment and releases the
// directory. It is idempotent; every other method returns ErrClosed after
// it (NextOffset keeps returning the last value).
func (l *Log) Close() error {
	var haltErr error
	if l.sealer != nil {
		haltErr = l.sealer.halt() // it takes removeMu: not held here
	}
	l.removeMu.Lock() // a removal in progress ends first
	defer l.removeMu.Unlock()
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	// Sealed segments durable and pending ones named, so that the log
	// reopens with every record (Close fsyncs the rest).
	drainErr := l.drainLocked()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	errs := []error{haltErr, drainErr, l.stopSpares()}
	for _, s := range l.segments {
		errs = append(errs, s.Close())
	}
	errs = append(errs, l.lock.Close())
	l.stopNotify()
	return errors.Join(errs...)
}

// Remove closes the log and deletes its directory.
func (l *Log) Remove() error {
	err := l.Close()
	if rmErr := os.RemoveAll(l.dir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("storage: remove %s: %w", l.dir, rmErr))
	}
	return err
}
