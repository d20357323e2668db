package storage

import (
	"fmt"
	"slices"
	"sort"

	api "github.com/proglog/proglog/api/v1"
)

// frameOverhead is what a frame adds to its record's value: the frame
// header and the payload's fixed fields.
const frameOverhead = frameHeaderWidth + recordFixedWidth

// ReadBatch returns the records from offset on, in order: at most
// maxRecords of them (less than 1 reads one), and no more than maxBytes of
// values in all, except that the first record is returned whatever its
// size. It stops at the end of the log and never waits for more.
//
// It is the sequential reader for consumers that are behind: it takes the
// log's read lock once per call, not once per record, looks the first
// offset up in the index, and then reads each segment's frames with one
// pread of the bytes the limits allow and decodes them in memory, each
// checked against its checksum and its offset as Read checks one. The
// returned records' values share one buffer per segment read; they belong
// to the caller.
//
// An offset the log does not hold is api.ErrOffsetOutOfRange. A frame that
// fails validation is a *CorruptionError when it is the first one asked
// for; after valid records the batch ends before it (the next call, from
// its offset, reports it).
func (l *Log) ReadBatch(offset uint64, maxRecords int, maxBytes uint64) ([]Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	// The last segment whose base is at most offset.
	k := sort.Search(len(l.segments), func(k int) bool { return l.segments[k].baseOffset > offset }) - 1
	if k < 0 || offset >= l.segments[k].nextOffset.Load() {
		return nil, api.ErrOffsetOutOfRange{Offset: offset}
	}
	b := batchRead{next: offset, maxRecords: max(1, maxRecords), maxBytes: maxBytes}
	// Segments are contiguous: when one is read to its end, the next
	// record is at the next one's base.
	for ; k < len(l.segments) && !b.full; k++ {
		s := l.segments[k]
		if err := s.readBatch(&b); err != nil {
			if len(b.records) > 0 {
				break
			}
			return nil, err
		}
		if b.next < s.nextOffset.Load() {
			break // stopped inside the segment: a limit, or a bad frame after good ones
		}
	}
	return b.records, nil
}

// batchRead is the state of one ReadBatch: where it is, its limits and
// what it has read.
type batchRead struct {
	// next is the offset of the next record to read.
	next       uint64
	maxRecords int
	maxBytes   uint64
	// bytes is the sum of the values read so far.
	bytes   uint64
	records []Record
	// full is set once a limit stops the batch.
	full bool
}

// readBatch reads records of the segment from b.next on into b, up to b's
// limits or the segment's end: the frames in one pread of as many bytes as
// the limits allow, decoded and checked in memory. A record too large for
// what is left of the byte limit ends the batch, unless it is the batch's
// first: that one is read alone, whatever its size.
func (s *segment) readBatch(b *batchRead) error {
	next := s.nextOffset.Load()
	if b.next < s.baseOffset || b.next >= next {
		return nil
	}
	pos, ok, err := s.index.Read(b.next - s.baseOffset)
	if err != nil {
		return fmt.Errorf("storage: read offset %d in segment %d: %w", b.next, s.baseOffset, err)
	}
	if !ok {
		return api.ErrOffsetOutOfRange{Offset: b.next}
	}
	corrupt := func(off, at uint64, err error) error {
		return &CorruptionError{Segment: s.baseOffset, Offset: off, Path: s.store.filePath(), Position: at, Err: err}
	}
	// The bytes of the wanted records: up to the index entry of the first
	// record not wanted, or the store's end (which covers every record
	// below next); and no more than the byte limit allows, the values left
	// in it plus each wanted record's framing.
	wanted := min(uint64(b.maxRecords-len(b.records)), next-b.next)
	end, ok, err := s.index.Read(b.next - s.baseOffset + wanted)
	if err != nil {
		return fmt.Errorf("storage: read offset %d in segment %d: %w", b.next, s.baseOffset, err)
	}
	if !ok || end <= pos {
		end = s.store.Size()
	}
	budget := end - pos
	if framing, values := wanted*frameOverhead, b.maxBytes-min(b.maxBytes, b.bytes); framing < budget && values < budget-framing {
		budget = framing + values
	}
	chunk := make([]byte, budget)
	if _, err := s.store.ReadAt(chunk, int64(pos)); err != nil {
		return fmt.Errorf("storage: read offset %d in segment %d: %w", b.next, s.baseOffset, err)
	}
	for b.next < next && len(b.records) < b.maxRecords {
		if len(chunk) < frameHeaderWidth {
			break
		}
		n, _ := parseFrameHeader(chunk)
		if n < recordFixedWidth {
			return corrupt(b.next, pos, fmt.Errorf("%w: %d bytes, the fixed part alone takes %d", errBadPayload, n, recordFixedWidth))
		}
		if value := n - recordFixedWidth; len(b.records) > 0 && b.bytes+value > b.maxBytes {
			b.full = true
			return nil
		}
		if uint64(len(chunk))-frameHeaderWidth < n {
			if len(b.records) > 0 {
				// Only a value larger than the byte budget leaves its frame
				// outside the chunk: the limit is reached.
				b.full = true
				return nil
			}
			// The batch's first record, larger than the byte budget.
			rec, err := s.Read(b.next)
			if err != nil {
				return err
			}
			b.add(*rec)
			b.full = true
			return nil
		}
		frame := chunk[: frameHeaderWidth+n : frameHeaderWidth+n]
		if err := checkFrame(frame[:frameHeaderWidth], frame[frameHeaderWidth:]); err != nil {
			return corrupt(b.next, pos, err)
		}
		var rec Record
		if err := decodeRecordTo(&rec, frame[frameHeaderWidth:]); err != nil {
			return corrupt(b.next, pos, err)
		}
		if rec.Offset != b.next {
			return corrupt(b.next, pos, fmt.Errorf("%w: %d", errWrongOffset, rec.Offset))
		}
		if len(b.records) == cap(b.records) {
			// Room for as many more records like this one as the chunk
			// can hold, so that a batch grows its slice about once.
			b.records = slices.Grow(b.records, int(min(wanted, uint64(len(chunk)/len(frame))+1)))
		}
		b.add(rec)
		chunk = chunk[len(frame):]
		pos += uint64(len(frame))
	}
	if len(b.records) == b.maxRecords {
		b.full = true
	}
	return nil
}

// add appends rec to the batch.
func (b *batchRead) add(rec Record) {
	b.records = append(b.records, rec)
	b.bytes += uint64(len(rec.Value))
	b.next++
}
