package distlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	logger        *zap.Logger
}

// openSegment opens (creating when absent) the segment at base in dir and
// recovers it to its longest valid prefix of records.
func openSegment(dir string, base uint64, c Config) (*segment, error) {
	s := &segment{
		baseOffset:    base,
		maxStoreBytes: c.Segment.MaxStoreBytes,
		logger:        c.Logger.With(zap.Uint64("segment", base)),
	}
	var err error
	if s.store, err = openStore(filepath.Join(dir, segmentFileName(base, storeExt))); err != nil {
		return nil, fmt.Errorf("segment %d: %w", base, err)
	}
	if s.index, err = openIndex(filepath.Join(dir, segmentFileName(base, indexExt)), c.Segment.MaxIndexBytes); err != nil {
		return nil, errors.Join(fmt.Errorf("segment %d: %w", base, err), s.store.Close())
	}
	if err := s.recover(); err != nil {
		return nil, errors.Join(fmt.Errorf("segment %d: recover: %w", base, err), s.index.Close(), s.store.Close())
	}
	return s, nil
}

// createSegment makes a new, empty segment at base, first removing any
// files left there (a segment whose removal was interrupted must not come
// back with stale records).
func createSegment(dir string, base uint64, c Config) (*segment, error) {
	for _, ext := range []string{storeExt, indexExt} {
		if err := os.Remove(filepath.Join(dir, segmentFileName(base, ext))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("distlog: segment %d: %w", base, err)
		}
	}
	return openSegment(dir, base, c)
}

// recover makes the index agree with the store and the store end on a whole
// valid frame. The cheap path, taken after a clean Close, checks only the
// last indexed frame; anything else rescans the store.
func (s *segment) recover() error {
	storeSize := s.store.Size()
	n, lastPos := s.index.consistentEntries(storeSize)
	if n == 0 && storeSize == 0 {
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
	return s.rebuild()
}

// checkFrameAt reports whether a valid frame for offset off is at pos, and
// where it ends.
func (s *segment) checkFrameAt(pos, off uint64) (end uint64, ok bool) {
	payload, err := s.store.Read(pos, 0)
	if err != nil {
		return 0, false
	}
	rec, err := decodeRecord(payload)
	if err != nil || rec.GetOffset() != off {
		return 0, false
	}
	return pos + frameHeaderWidth + uint64(len(payload)), true
}

// rebuild scans the whole store, keeps the longest run of valid frames
// holding consecutive offsets from baseOffset, cuts the store after it and
// rewrites the index from it.
func (s *segment) rebuild() error {
	storeSize := s.store.Size()
	r := bufio.NewReaderSize(s.store.sectionReader(storeSize), 256<<10)
	var (
		positions []uint64
		pos       uint64
		header    [frameHeaderWidth]byte
		payload   []byte
		reason    error
	)
	for {
		if storeSize-pos < frameHeaderWidth {
			if storeSize > pos {
				reason = errShortFrame
			}
			break
		}
		if _, err := io.ReadFull(r, header[:]); err != nil {
			return fmt.Errorf("distlog: read %s: %w", s.store.path, err)
		}
		n, _ := parseFrameHeader(header[:])
		if n > storeSize-pos-frameHeaderWidth {
			reason = errShortFrame
			break
		}
		if uint64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return fmt.Errorf("distlog: read %s: %w", s.store.path, err)
		}
		if reason = checkFrame(header[:], payload); reason != nil {
			break
		}
		rec, err := decodeRecord(payload)
		if err != nil {
			reason = err
			break
		}
		if want := s.baseOffset + uint64(len(positions)); rec.GetOffset() != want {
			reason = fmt.Errorf("%w: %d, want %d", errWrongOffset, rec.GetOffset(), want)
			break
		}
		positions = append(positions, pos)
		pos += frameHeaderWidth + n
	}
	if pos < storeSize {
		s.logger.Warn("truncating store after its last valid record",
			zap.String("path", s.store.path), zap.Uint64("valid_bytes", pos),
			zap.Uint64("store_bytes", storeSize), zap.Int("records", len(positions)), zap.Error(reason))
		if err := s.store.Truncate(pos); err != nil {
			return err
		}
	} else {
		s.logger.Info("rebuilt index from store", zap.String("path", s.index.path), zap.Int("records", len(positions)))
	}
	if err := s.index.rebuild(positions); err != nil {
		return err
	}
	s.nextOffset.Store(s.baseOffset + uint64(len(positions)))
	return nil
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
// size: a record larger than MaxStoreBytes gets a segment of its own.
func (s *segment) fits(frames []byte, starts []uint64) int {
	if len(starts) == 0 {
		return 0
	}
	storeSize := s.store.Size()
	room := (s.index.limit - min(s.index.limit, s.index.size.Load())) / entWidth
	n := 0
	for n < len(starts) && uint64(n) < room {
		chunk := frameEnd(frames, starts, n) - starts[0]
		if storeSize+chunk > s.maxStoreBytes && !(storeSize == 0 && n == 0) {
			break
		}
		n++
	}
	return n
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
			return fmt.Errorf("distlog: segment %d: %w", s.baseOffset, err)
		}
	}
	s.nextOffset.Add(uint64(len(starts)))
	return nil
}

// Read returns the record at off, verified; api.ErrOffsetOutOfRange when
// the segment does not hold it; *CorruptionError when it fails validation.
func (s *segment) Read(off uint64) (*api.Record, error) {
	if off < s.baseOffset || off >= s.nextOffset.Load() {
		return nil, api.ErrOffsetOutOfRange{Offset: off}
	}
	pos, ok := s.index.Read(off - s.baseOffset)
	if !ok {
		return nil, api.ErrOffsetOutOfRange{Offset: off}
	}
	corrupt := func(err error) error {
		return &CorruptionError{Segment: s.baseOffset, Offset: off, Path: s.store.path, Position: pos, Err: err}
	}
	var frameLen uint64 // known from the next entry, except for the last record
	if next, ok := s.index.Read(off - s.baseOffset + 1); ok && next > pos {
		frameLen = next - pos
	}
	payload, err := s.store.Read(pos, frameLen)
	switch {
	case errors.Is(err, errShortFrame) || errors.Is(err, errBadChecksum):
		return nil, corrupt(err)
	case err != nil:
		return nil, fmt.Errorf("distlog: read offset %d in segment %d: %w", off, s.baseOffset, err)
	}
	rec, err := decodeRecord(payload)
	if err != nil {
		return nil, corrupt(err)
	}
	if rec.GetOffset() != off {
		return nil, corrupt(fmt.Errorf("%w: %d", errWrongOffset, rec.GetOffset()))
	}
	return rec, nil
}

// TruncateFrom removes the records at and after off (baseOffset <= off <
// nextOffset), fsyncing store and index.
func (s *segment) TruncateFrom(off uint64) error {
	pos, ok := s.index.Read(off - s.baseOffset)
	if !ok {
		return fmt.Errorf("distlog: segment %d: no index entry for offset %d", s.baseOffset, off)
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

// Remove closes the segment and deletes its files.
func (s *segment) Remove() error {
	errs := []error{s.Close()}
	for _, path := range []string{s.index.path, s.store.path} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("distlog: remove segment %d: %w", s.baseOffset, err))
		}
	}
	return errors.Join(errs...)
}
