package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	api "github.com/proglog/proglog/api/v1"
	"go.uber.org/zap"
)

const (
	storeExt = ".store"
	indexExt = ".index"
)

// segmentFileName is the name of a segment's file: the base offset in 20
// zero-padded digits, so names sort in offset order.
func segmentFileName(base uint64, ext string) string {
	return fmt.Sprintf("%020d%s", base, ext)
}

// parseSegmentFileName returns the base offset a store or index file name
// stands for, or false for any other name.
func parseSegmentFileName(name string) (uint64, bool) {
	ext := filepath.Ext(name)
	if ext != storeExt && ext != indexExt {
		return 0, false
	}
	base, err := strconv.ParseUint(strings.TrimSuffix(name, ext), 10, 64)
	if err != nil || segmentFileName(base, ext) != name {
		return 0, false
	}
	return base, true
}

// segment is one store and its index, holding the records from baseOffset
// up to (not including) nextOffset.
type segment struct {
	baseOffset uint64
	// nextOffset is the offset of the next record; advanced (by the single
	// appender) after the records' index entries are written, so a reader
	// that sees an offset below it finds the entry.
	nextOffset atomic.Uint64

	store         *store
	index         *index
	maxStoreBytes uint64
	// firstTimestamp caches the Timestamp of the segment's first record
	// for the roll by age; 0 until fits first needs it. Only the appender
	// (under the Log's appendMu) uses it. A segment never loses its first
	// record while it exists (a cut before it removes the whole segment),
	// so the cache stays right.
	firstTimestamp int64
	// logger is the Log's; log() adds the segment. (A logger per segment
	// made with With kept an encoder buffer each: ~1 KB a segment, for
	// the few lines recovery may log.)
	logger *zap.Logger
	// cut is set when opening cut records off the store (recovery of a
	// torn tail, or a header that never reached the disk).
	cut bool
	// discarded is set when the segment's files were closed for removal
	// (see discard). Used by the remover only.
	discarded bool
	// pending is set while the segment's files have their pending names
	// (see sealsync.go). Guarded by the Log's mu.
	pending bool
	// unsynced is set while the segment is sealed but not yet fsynced by
	// background sealing (see sealsync.go).
	unsynced atomic.Bool
}

// openSegment opens (creating when absent) the segment at base in dir and
// recovers it. The active segment (sealed false) is cut to its longest
// valid prefix of records: a crash mid-write legitimately leaves a torn
// tail there. A sealed segment is never cut: the Log made it durable before
// it wrote anything after it (see Log.rollLocked), so a frame that fails
// there is damage, not a crash, and cutting it would drop records that were
// acknowledged; its open fails with a *CorruptionError instead. With
// c.CheckSealedOnOpen every frame of a sealed segment is checked; otherwise
// only where recovery looks (the last frame, or all of them when the index
// disagrees with the store).
func openSegment(dir string, base uint64, c Config, sealed bool) (*segment, error) {
	return openSegmentFiles(dir, base, c, sealed, false)
}

// openSegmentFiles is openSegment of the segment's files under their
// pending names when pending (see sealsync.go).
func openSegmentFiles(dir string, base uint64, c Config, sealed, pending bool) (*segment, error) {
	s, err := newSegmentStore(dir, base, c, pending)
	if err != nil {
		return nil, err
	}
	s.store.writeback = !c.SyncOnAppend
	if err := s.checkHeader(sealed); err != nil {
		return nil, errors.Join(fmt.Errorf("segment %d: %w", base, err), s.store.Close())
	}
	if err := s.openIndexFile(dir, c); err != nil {
		return nil, err
	}
	if err := s.recover(sealed, sealed && c.CheckSealedOnOpen); err != nil {
		return nil, errors.Join(fmt.Errorf("segment %d: recover: %w", base, err), s.abandon())
	}
	return s, nil
}

// log is the segment's logger.
func (s *segment) log() *zap.Logger { return s.logger.With(zap.Uint64("segment", s.baseOffset)) }

// segmentFilePath is the path of the segment file of base with ext in dir,
// under its pending name when pending (see sealsync.go).
func segmentFilePath(dir string, base uint64, ext string, pending bool) string {
	path := filepath.Join(dir, segmentFileName(base, ext))
	if pending {
		path += pendingSuffix
	}
	return path
}

// newSegmentStore makes the segment at base with its store file open
// (created when absent; under its pending name when pending); the caller
// checks or writes the header and opens the index (openIndexFile).
func newSegmentStore(dir string, base uint64, c Config, pending bool) (*segment, error) {
	s := &segment{
		baseOffset:    base,
		maxStoreBytes: c.Segment.MaxStoreBytes,
		logger:        c.Logger,
		pending:       pending,
	}
	var err error
	if s.store, err = openStore(segmentFilePath(dir, base, storeExt, pending)); err != nil {
		return nil, fmt.Errorf("segment %d: %w", base, err)
	}
	return s, nil
}

// openIndexFile opens the segment's index; when it fails, it closes the
// store too.
func (s *segment) openIndexFile(dir string, c Config) error {
	var err error
	if s.index, err = openIndex(segmentFilePath(dir, s.baseOffset, indexExt, s.pending), c.Segment.MaxIndexBytes); err != nil {
		return errors.Join(fmt.Errorf("segment %d: %w", s.baseOffset, err), s.store.Close())
	}
	return nil
}

// createSegment makes a new, empty segment at base, first removing any
// files left there (a segment whose removal was interrupted must not come
// back with stale records), preallocated if c.Segment.Preallocate. When
// spares is not nil and has a spare store file ready, that file becomes
// the store (see spare.go); otherwise the store is created (and
// preallocated with fallocate). When pending, the files get their pending
// names (see sealsync.go; spares is then nil).
func createSegment(dir string, base uint64, c Config, spares *spareFiles, pending bool) (*segment, error) {
	for _, ext := range []string{storeExt, indexExt} {
		for _, path := range []string{segmentFilePath(dir, base, ext, false), segmentFilePath(dir, base, ext, true)} {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("storage: segment %d: %w", base, err)
			}
		}
	}
	if spares != nil && !pending {
		taken, err := spares.take(filepath.Join(dir, segmentFileName(base, storeExt)))
		switch {
		case err != nil:
			// Handled by creating the store the ordinary way.
			c.Logger.Warn("cannot use the spare segment file; creating one", zap.Uint64("segment", base), zap.Error(err))
		case taken:
			return adoptSpareSegment(dir, base, c)
		}
	}
	s, err := openSegmentFiles(dir, base, c, false, pending)
	if err != nil {
		return nil, err
	}
	if c.Segment.Preallocate {
		if err := s.store.preallocate(c.Segment.MaxStoreBytes); err != nil {
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// adoptSpareSegment opens the new segment at base whose store file is a
// spare just renamed into place (zeroes, MaxStoreBytes of them): it writes
// the header over the first bytes and starts the records after it. No
// recovery is needed: the file holds nothing else.
func adoptSpareSegment(dir string, base uint64, c Config) (*segment, error) {
	s, err := newSegmentStore(dir, base, c, false)
	if err != nil {
		return nil, err
	}
	// Durable with the segment's first synced append, as a created
	// store's header is.
	if _, err := s.store.file.WriteAt(segmentHeader(base), 0); err != nil {
		return nil, errors.Join(fmt.Errorf("segment %d: write header: %w", base, err), s.store.Close())
	}
	s.store.setEnd(uint64(segmentHeaderWidth))
	if err := s.openIndexFile(dir, c); err != nil {
		return nil, err
	}
	s.index.setEntries(0)
	s.nextOffset.Store(base)
	return s, nil
}

// syncData makes the segment's records durable: its store only. The index
// is not synced: recovery rebuilds it from the store when the two disagree
// (see recover), so it need not reach the disk with every batch.
func (s *segment) syncData() error {
	return s.store.Sync()
}

// segmentHeader returns the header of a format-2 store file of the segment
// at base.
func segmentHeader(base uint64) []byte {
	header := make([]byte, 0, segmentHeaderWidth)
	header = append(header, segmentMagic...)
	header = binary.BigEndian.AppendUint16(header, FormatVersion)
	header = binary.BigEndian.AppendUint64(header, base)
	header = append(header, 0, 0, 0, 0)
	return binary.BigEndian.AppendUint32(header, crc32.Checksum(header, crc32cTable))
}

// checkHeader makes sure the store file is a format-2 store of this
// segment. A new file, or one whose header never reached the disk (shorter
// than a header, or a header of zeroes: a segment created just before a
// crash, which cannot hold a record that reached the disk after it), gets
// a fresh header. A file of another format is refused with
// ErrUnsupportedFormat, anything else with ErrBadSegmentHeader; neither is
// read or changed. A sealed segment's header was made durable with its
// records, so a missing one there is corruption (*CorruptionError), and the
// file is not changed either.
func (s *segment) checkHeader(sealed bool) error {
	want := segmentHeader(s.baseOffset)
	size := s.store.Size()
	got := make([]byte, min(size, uint64(segmentHeaderWidth)))
	if _, err := s.store.ReadAt(got, 0); err != nil {
		return fmt.Errorf("storage: read header of %s: %w", s.store.filePath(), err)
	}
	switch {
	case bytes.Equal(got, want):
		return nil
	case isFormat1Store(s.store):
		return fmt.Errorf("%w: %s is format 1", ErrUnsupportedFormat, s.store.filePath())
	case len(got) >= len(segmentMagic)+2 && string(got[:len(segmentMagic)]) == segmentMagic:
		if v := binary.BigEndian.Uint16(got[len(segmentMagic):]); v != FormatVersion {
			return fmt.Errorf("%w: %s is format %d, this release reads format %d", ErrUnsupportedFormat, s.store.filePath(), v, FormatVersion)
		}
		if len(got) == segmentHeaderWidth {
			return fmt.Errorf("%w: %s: header %x, want %x", ErrBadSegmentHeader, s.store.filePath(), got, want)
		}
	case !slices.ContainsFunc(got, func(b byte) bool { return b != 0 }):
	case len(got) < len(want) && bytes.HasPrefix(want, got): // torn before the version
	default:
		return fmt.Errorf("%w: %s: header %x, want %x", ErrBadSegmentHeader, s.store.filePath(), got, want)
	}
	// A short prefix of the header, or zeroes: the segment's creation did
	// not reach the disk, and no record after it can have.
	if size > 0 && !bytes.HasPrefix(want, got) && slices.ContainsFunc(got, func(b byte) bool { return b != 0 }) {
		return fmt.Errorf("%w: %s: header %x, want %x", ErrBadSegmentHeader, s.store.filePath(), got, want)
	}
	if sealed {
		return s.corruptAt(0, s.baseOffset, fmt.Errorf("%w (%d bytes in the file)", errNoHeader, size))
	}
	if size > 0 {
		s.log().Warn("segment header never reached the disk; starting the segment empty",
			zap.String("path", s.store.filePath()), zap.Uint64("store_bytes", size))
		if err := s.store.Truncate(0); err != nil {
			return err
		}
		s.cut = true
	}
	if _, err := s.store.Append(want); err != nil {
		return err
	}
	return s.store.Flush()
}

// isFormat1Store reports whether the store starts with a whole, valid
// format-1 frame: [8-byte length][4-byte CRC32-C over length and payload]
// [payload].
func isFormat1Store(st *store) bool {
	const v1HeaderWidth = 12
	size := st.Size()
	var header [v1HeaderWidth]byte
	if size < v1HeaderWidth {
		return false
	}
	if _, err := st.ReadAt(header[:], 0); err != nil {
		return false
	}
	n := binary.BigEndian.Uint64(header[:8])
	if n > size-v1HeaderWidth || n > maxRecordBytes+64 {
		return false
	}
	payload := make([]byte, n)
	if _, err := st.ReadAt(payload, v1HeaderWidth); err != nil {
		return false
	}
	return frameChecksum(header[:8], payload) == binary.BigEndian.Uint32(header[8:])
}

// recover makes the index agree with the store and the store end on a whole
// valid frame. The cheap path, taken after a clean Close, checks only the
// last indexed frame; anything else rescans the store. A store whose file
// is longer than its records (preallocated, and not closed cleanly) is
// always rescanned: after a power failure its tail may hold a hole of
// zeroes before a frame that did reach the disk, which the index would
// step over; the scan stops at the hole and cuts what follows it. A sealed
// segment is never cut (see openSegment), and with checkAll it is always
// rescanned.
func (s *segment) recover(sealed, checkAll bool) error {
	if checkAll {
		return s.rebuild(true)
	}
	storeSize := s.store.Size()
	n, lastPos := s.index.consistentEntries(uint64(segmentHeaderWidth), storeSize)
	if n == 0 && storeSize == uint64(segmentHeaderWidth) {
		s.index.setEntries(0)
		s.nextOffset.Store(s.baseOffset)
		return nil
	}
	if n > 0 {
		if end, ok := s.checkFrameAt(lastPos, s.baseOffset+n-1); ok && end == storeSize {
			s.index.setEntries(n)
			s.nextOffset.Store(s.baseOffset + n)
			return nil
		}
	}
	return s.rebuild(sealed)
}

// checkFrameAt reports whether a valid frame for offset off is at pos, and
// where it ends.
func (s *segment) checkFrameAt(pos, off uint64) (end uint64, ok bool) {
	payload, err := s.store.Read(pos, 0)
	if err != nil {
		return 0, false
	}
	got, err := payloadOffset(payload)
	if err != nil || got != off {
		return 0, false
	}
	return pos + frameHeaderWidth + uint64(len(payload)), true
}

// scan reads the store's frames from the header on and returns the
// positions of the longest run of valid frames holding consecutive offsets
// from baseOffset, where that run ends, and why the scan stopped there
// when that is before the end of the store. Used by recovery only, before
// any append.
func (s *segment) scan() (positions []uint64, end uint64, reason, err error) {
	storeSize := s.store.Size()
	r := bufio.NewReaderSize(s.store.sectionReader(uint64(segmentHeaderWidth), storeSize), 256<<10)
	var (
		pos     = uint64(segmentHeaderWidth)
		header  [frameHeaderWidth]byte
		payload []byte
	)
	for {
		if storeSize-pos < frameHeaderWidth {
			if storeSize > pos {
				reason = fmt.Errorf("%w: %d bytes left, a frame header takes %d", errShortFrame, storeSize-pos, frameHeaderWidth)
			}
			return positions, pos, reason, nil
		}
		if _, err := io.ReadFull(r, header[:]); err != nil {
			return nil, 0, nil, fmt.Errorf("storage: read %s: %w", s.store.filePath(), err)
		}
		n, _ := parseFrameHeader(header[:])
		if n > storeSize-pos-frameHeaderWidth {
			reason = fmt.Errorf("%w: length %d, %d bytes left", errShortFrame, n, storeSize-pos-frameHeaderWidth)
			return positions, pos, reason, nil
		}
		if uint64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return nil, 0, nil, fmt.Errorf("storage: read %s: %w", s.store.filePath(), err)
		}
		if reason = checkFrame(header[:], payload); reason != nil {
			return positions, pos, reason, nil
		}
		off, err := payloadOffset(payload)
		if err != nil {
			return positions, pos, err, nil
		}
		if want := s.baseOffset + uint64(len(positions)); off != want {
			return positions, pos, fmt.Errorf("%w: %d, want %d", errWrongOffset, off, want), nil
		}
		positions = append(positions, pos)
		pos += frameHeaderWidth + n
	}
}

// rebuild scans the whole store, keeps the longest run of valid frames
// holding consecutive offsets from baseOffset and makes the index hold
// them. What follows the run is cut, unless it is a preallocated tail of
// zeroes (no record reached it) or the segment is sealed: a sealed segment
// is then corrupt, and left as it is.
func (s *segment) rebuild(sealed bool) error {
	storeSize := s.store.Size()
	positions, pos, reason, err := s.scan()
	if err != nil {
		return err
	}
	zeroTail := false
	if pos < storeSize {
		if zeroTail, err = s.store.zeroFrom(pos); err != nil {
			return err
		}
	}
	switch {
	case pos < storeSize && !zeroTail && sealed:
		return s.corruptAt(pos, s.baseOffset+uint64(len(positions)), reason)
	case pos < storeSize && !zeroTail:
		s.log().Warn("truncating store after its last valid record",
			zap.String("path", s.store.filePath()), zap.Uint64("valid_bytes", pos),
			zap.Uint64("store_bytes", storeSize), zap.Int("records", len(positions)), zap.Error(reason))
		if err := s.store.Truncate(pos); err != nil {
			return err
		}
		s.cut = true
	case zeroTail:
		// A preallocated tail that no record reached: the records end
		// here, nothing was cut.
		s.store.setEnd(pos)
	}
	n := uint64(len(positions))
	if s.index.holds(positions) {
		s.index.setEntries(n)
	} else {
		if err := s.index.rebuild(positions); err != nil {
			return err
		}
		s.log().Info("rebuilt index from store", zap.String("path", s.index.filePath()), zap.Uint64("records", n))
	}
	s.nextOffset.Store(s.baseOffset + n)
	return nil
}

// corruptAt is the error for damage found by recovery at byte pos of the
// store, where the record of offset off should be.
func (s *segment) corruptAt(pos, off uint64, reason error) error {
	return &CorruptionError{Segment: s.baseOffset, Offset: off, Path: s.store.filePath(), Position: pos, Err: reason}
}

// Len returns the number of records in the segment.
func (s *segment) Len() uint64 { return s.nextOffset.Load() - s.baseOffset }

// IsMaxed reports whether the segment takes no more records.
func (s *segment) IsMaxed() bool {
	return s.index.IsMaxed() || s.store.Size() >= s.maxStoreBytes
}

// frameEnd returns where frame k of frames ends: the next frame's start,
// or the end of frames.
func frameEnd(frames []byte, starts []uint64, k int) uint64 {
	if k+1 < len(starts) {
		return starts[k+1]
	}
	return uint64(len(frames))
}

// fits returns how many of the frames (frame k starts at starts[k] in
// frames) the segment takes. An empty segment takes a first frame of any
// size: a record larger than MaxStoreBytes gets a segment of its own. With
// maxAge (nanoseconds; 0: none), it takes no frame stamped maxAge or more
// after its first record (see Config.Segment.MaxAge).
func (s *segment) fits(frames []byte, starts []uint64, maxAge int64) int {
	if len(starts) == 0 {
		return 0
	}
	storeSize := s.store.Size()
	room := (s.index.limit - min(s.index.limit, s.index.size.Load())) / entWidth
	empty := storeSize == uint64(segmentHeaderWidth)
	var first int64
	if maxAge > 0 {
		first = s.firstRecordTimestamp()
	}
	n := 0
	for n < len(starts) && uint64(n) < room {
		chunk := frameEnd(frames, starts, n) - starts[0]
		if storeSize+chunk > s.maxStoreBytes && !(empty && n == 0) {
			break
		}
		if maxAge > 0 {
			ts := frameTimestamp(frames, starts[n])
			if first == 0 {
				first = ts
			} else if ts != 0 && ts-first >= maxAge && !(empty && n == 0) {
				break
			}
		}
		n++
	}
	return n
}

// firstRecordTimestamp is the Timestamp of the segment's first record, 0
// when the segment is empty, or its first record has none or cannot be
// read (the segment then rolls by size only, and reads of that record
// report the damage).
func (s *segment) firstRecordTimestamp() int64 {
	if s.firstTimestamp != 0 || s.Len() == 0 {
		return s.firstTimestamp
	}
	if r, err := s.Read(s.baseOffset); err == nil {
		s.firstTimestamp = r.Timestamp
	}
	return s.firstTimestamp
}

// appendFrames writes frames[starts[0]:], already encoded with offsets
// nextOffset, nextOffset+1, ..., as one store write; frame k starts at
// starts[k]. The caller checked with fits that they fit.
func (s *segment) appendFrames(frames []byte, starts []uint64) error {
	pos, err := s.store.Append(frames[starts[0]:])
	if err != nil {
		return err
	}
	rel := s.Len()
	for k, start := range starts {
		if err := s.index.Write(rel+uint64(k), pos+start-starts[0]); err != nil {
			return fmt.Errorf("storage: segment %d: %w", s.baseOffset, err)
		}
	}
	s.nextOffset.Add(uint64(len(starts)))
	return nil
}

// Read returns the record at off, verified; api.ErrOffsetOutOfRange when
// the segment does not hold it; *CorruptionError when it fails validation.
func (s *segment) Read(off uint64) (*Record, error) {
	if off < s.baseOffset || off >= s.nextOffset.Load() {
		return nil, api.ErrOffsetOutOfRange{Offset: off}
	}
	pos, next, n, err := s.index.ReadSpan(off - s.baseOffset)
	switch {
	case err != nil:
		return nil, fmt.Errorf("storage: read offset %d in segment %d: %w", off, s.baseOffset, err)
	case n == 0:
		return nil, api.ErrOffsetOutOfRange{Offset: off}
	}
	corrupt := func(err error) error {
		return &CorruptionError{Segment: s.baseOffset, Offset: off, Path: s.store.filePath(), Position: pos, Err: err}
	}
	var frameLen uint64 // known from the next entry, except for the last record
	if n == 2 && next > pos {
		frameLen = next - pos
	}
	payload, err := s.store.Read(pos, frameLen)
	switch {
	case errors.Is(err, errShortFrame) || errors.Is(err, errBadChecksum):
		return nil, corrupt(err)
	case err != nil:
		return nil, fmt.Errorf("storage: read offset %d in segment %d: %w", off, s.baseOffset, err)
	}
	rec, err := decodeRecord(payload)
	if err != nil {
		return nil, corrupt(err)
	}
	if rec.Offset != off {
		return nil, corrupt(fmt.Errorf("%w: %d", errWrongOffset, rec.Offset))
	}
	return rec, nil
}

// TruncateFrom removes the records at and after off (baseOffset <= off <
// nextOffset), fsyncing store and index.
func (s *segment) TruncateFrom(off uint64) error {
	pos, ok, err := s.index.Read(off - s.baseOffset)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("storage: segment %d: no index entry for offset %d", s.baseOffset, off)
	}
	// Store first: if the process dies between the two steps, the index
	// entries beyond the cut point past the end of the store, and
	// recovery drops them. The other order would leave whole, valid frames
	// past the index, and recovery would bring the removed records back.
	if err := s.store.Truncate(pos); err != nil {
		return err
	}
	s.index.setEntries(off - s.baseOffset)
	s.nextOffset.Store(off)
	return s.index.Sync()
}

// Sync flushes and fsyncs the store and msyncs the index.
func (s *segment) Sync() error {
	if err := s.store.Sync(); err != nil {
		return err
	}
	return s.index.Sync()
}

// Close closes the store (flushed and fsynced) and then the index (cut to
// its entries): if the process dies between the two, the index is the one
// left to rebuild.
func (s *segment) Close() error {
	return errors.Join(s.store.Close(), s.index.Close())
}

// abandon closes the segment's files as they are, without the flush, cut
// or sync of Close: a log that recovery refuses is left as it was found
// (an index grown to be mapped is cut back to its size; recovery may have
// rewritten its entries). Used by recovery only, before any append.
func (s *segment) abandon() error {
	var errs []error
	if s.index.mmap != nil {
		if err := s.index.mmap.UnsafeUnmap(); err != nil {
			errs = append(errs, fmt.Errorf("storage: unmap %s: %w", s.index.filePath(), err))
		}
		s.index.mmap = nil
	}
	if err := s.index.file.Truncate(int64(s.index.openedSize)); err != nil {
		errs = append(errs, fmt.Errorf("storage: truncate %s: %w", s.index.filePath(), err))
	}
	return errors.Join(append(errs, s.index.file.Close(), s.store.file.Close())...)
}

// Remove closes the segment and deletes its files.
func (s *segment) Remove() error {
	errs := []error{s.Close()}
	for _, path := range []string{s.index.filePath(), s.store.filePath()} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("storage: remove segment %d: %w", s.baseOffset, err))
		}
	}
	return errors.Join(errs...)
}
