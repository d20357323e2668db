package storage

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// A Reader stream is a header followed by the log's store frames, exactly
// as they are on disk:
//
//	header: [8-byte magic "DLOGSNP2"][8-byte lowest offset][8-byte next offset][4-byte CRC32-C of the 24 before]
//	frames: [4-byte length][4-byte CRC32-C][payload] ..., offsets lowest .. next-1 (the store files' frames, without their headers)
//
// The header lets Restore rebuild an empty log at the right offset and tell
// a complete stream from a truncated one.
const (
	snapshotMagic       = "DLOGSNP2"
	snapshotHeaderWidth = len(snapshotMagic) + 8 + 8 + crcWidth
)

// StreamHeaderBytes is the length of a Reader stream's header: a stream
// of the segments of a log is this plus each store file's size less
// SegmentHeaderBytes.
const StreamHeaderBytes = 8 + 8 + 8 + 4

// SegmentHeaderBytes is the length of a store file's header.
const SegmentHeaderBytes = 6 + 2 + 8 + 4 + 4

// The exported lengths are the layouts' lengths (a compile error if not:
// a constant array length cannot be negative).
var (
	_ [StreamHeaderBytes - snapshotHeaderWidth]struct{}
	_ [snapshotHeaderWidth - StreamHeaderBytes]struct{}
	_ [SegmentHeaderBytes - segmentHeaderWidth]struct{}
	_ [segmentHeaderWidth - SegmentHeaderBytes]struct{}
)

// Reader returns the whole log, as it is at the call, as a stream that
// Restore rebuilds (offsets kept): the records present at the instant of
// the call and no others, even while appends continue (a point-in-time
// snapshot for Raft). Truncate, Reset and ResetTo do not disturb a stream
// being read (it reads its own handles on the files); a TruncateFrom that
// cuts into its records makes it fail with ErrReaderInvalidated.
//
// The stream holds one open file per segment until it reaches each
// segment's end; the returned value also implements io.Closer to release
// them early.
func (l *Log) Reader() io.Reader {
	l.appendMu.Lock() // no append may land between the flush and the capture
	defer l.appendMu.Unlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return &snapshotReader{err: ErrClosed}
	}
	r := &snapshotReader{log: l, truncations: l.truncations.Load()}
	lowest, next := l.segments[0].baseOffset, l.active.nextOffset.Load()
	r.header = streamHeader(lowest, next)
	for _, s := range l.segments {
		if err := s.store.Flush(); err != nil {
			return r.fail(err)
		}
		size := s.store.Size()
		if size <= uint64(segmentHeaderWidth) {
			continue
		}
		f, err := os.Open(s.store.filePath())
		if err != nil {
			return r.fail(fmt.Errorf("storage: Reader: %w", err))
		}
		r.parts = append(r.parts, snapshotPart{file: f, read: int64(segmentHeaderWidth), size: int64(size)})
	}
	return r
}

// streamHeader is the header of a Reader stream of the records lowest ..
// next-1.
func streamHeader(lowest, next uint64) [snapshotHeaderWidth]byte {
	var header [snapshotHeaderWidth]byte
	copy(header[:], snapshotMagic)
	binary.BigEndian.PutUint64(header[8:], lowest)
	binary.BigEndian.PutUint64(header[16:], next)
	binary.BigEndian.PutUint32(header[24:], frameChecksum(header[:24], nil))
	return header
}

// snapshotReader is the stream Reader returns. It is not safe for
// concurrent use (no io.Reader is).
type snapshotReader struct {
	log         *Log
	truncations uint64 // Log.truncations when the stream was captured

	header     [snapshotHeaderWidth]byte
	headerRead int
	parts      []snapshotPart
	err        error // sticky
}

// snapshotPart is the captured extent of one segment's store: its frames
// are the bytes from read (at first the end of the header) to size.
type snapshotPart struct {
	file *os.File
	size int64
	read int64
}

func (r *snapshotReader) fail(err error) *snapshotReader {
	r.err = err
	r.closeFiles()
	return r
}

// Read implements io.Reader.
func (r *snapshotReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.headerRead < len(r.header) {
		n := copy(p, r.header[r.headerRead:])
		r.headerRead += n
		return n, nil
	}
	for len(r.parts) > 0 && r.parts[0].read == r.parts[0].size {
		if err := r.parts[0].file.Close(); err != nil {
			r.fail(fmt.Errorf("storage: Reader: %w", err))
			return 0, r.err
		}
		r.parts = r.parts[1:]
	}
	if len(r.parts) == 0 {
		r.err = io.EOF
		return 0, io.EOF
	}
	part := &r.parts[0]
	want := min(int64(len(p)), part.size-part.read)
	n, err := part.file.ReadAt(p[:want], part.read)
	part.read += int64(n)
	// Checked after the read: a TruncateFrom bumps the counter before it
	// touches a file, so bytes read before an unchanged counter are the
	// captured ones.
	if r.log != nil && r.log.truncations.Load() != r.truncations {
		r.fail(ErrReaderInvalidated)
		return 0, r.err
	}
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == want) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.fail(fmt.Errorf("storage: Reader: %s: %w", part.file.Name(), err))
		return n, r.err
	}
	return n, nil
}

// Close releases the files the stream still holds. It is idempotent.
func (r *snapshotReader) Close() error {
	if r.err == nil {
		r.err = errors.New("storage: Reader: closed")
	}
	return r.closeFiles()
}

func (r *snapshotReader) closeFiles() error {
	var errs []error
	for _, part := range r.parts {
		errs = append(errs, part.file.Close())
	}
	r.parts = nil
	return errors.Join(errs...)
}

// restoreChunkBytes is how many bytes of frames Restore gathers per write.
const restoreChunkBytes = 1 << 20

// Restore empties the log and rebuilds it from a stream that Reader
// produced, keeping the records' offsets. Every frame is checked (CRC,
// decoding, consecutive offsets) and the stream must hold exactly the
// records its header announces; otherwise Restore returns ErrBadSnapshot
// and the log holds a prefix of the stream. The result is fsynced when
// Restore returns nil.
func (l *Log) Restore(r io.Reader) error {
	l.removeMu.Lock()
	defer l.removeMu.Unlock()
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	if l.closed {
		return ErrClosed
	}
	br := bufio.NewReaderSize(r, 256<<10)
	var header [snapshotHeaderWidth]byte
	if _, err := io.ReadFull(br, header[:]); err != nil {
		return fmt.Errorf("%w: header: %w", ErrBadSnapshot, err)
	}
	if string(header[:8]) != snapshotMagic {
		return fmt.Errorf("%w: bad magic %q", ErrBadSnapshot, header[:8])
	}
	if got, want := frameChecksum(header[:24], nil), binary.BigEndian.Uint32(header[24:]); got != want {
		return fmt.Errorf("%w: header checksum %#08x, stored %#08x", ErrBadSnapshot, got, want)
	}
	lowest, next := binary.BigEndian.Uint64(header[8:]), binary.BigEndian.Uint64(header[16:])
	if next < lowest {
		return fmt.Errorf("%w: next offset %d below lowest %d", ErrBadSnapshot, next, lowest)
	}
	l.mu.Lock()
	err := l.resetToLocked(lowest)
	l.mu.Unlock()
	if err != nil {
		return err
	}

	maxPayload := l.config.MaxRecordBytes + recordFixedWidth
	buf, starts := l.scratch[:0], l.starts[:0]
	defer func() {
		if cap(buf) <= maxRetainedScratch {
			l.scratch, l.starts = buf[:0], starts[:0]
		}
	}()
	flush := func() error {
		if len(starts) == 0 {
			return nil
		}
		err := l.writeFramesLocked(buf, starts)
		buf, starts = buf[:0], starts[:0]
		l.writeSeq.Add(1)
		return err
	}
	expected := lowest
	for {
		start := len(buf)
		buf = append(buf, make([]byte, frameHeaderWidth)...)
		if _, err := io.ReadFull(br, buf[start:]); err != nil {
			if errors.Is(err, io.EOF) { // clean end between frames
				buf = buf[:start]
				break
			}
			return errors.Join(fmt.Errorf("%w: frame of offset %d: %w", ErrBadSnapshot, expected, err), flush())
		}
		n, _ := parseFrameHeader(buf[start:])
		if n > maxPayload {
			return errors.Join(fmt.Errorf("%w: offset %d: frame of %d bytes exceeds Config.MaxRecordBytes (%d)",
				ErrBadSnapshot, expected, n, l.config.MaxRecordBytes), flush())
		}
		buf = slices.Grow(buf, int(n))[:start+frameHeaderWidth+int(n)]
		if _, err := io.ReadFull(br, buf[start+frameHeaderWidth:]); err != nil {
			return errors.Join(fmt.Errorf("%w: frame of offset %d: %w", ErrBadSnapshot, expected, err), flush())
		}
		header, payload := buf[start:start+frameHeaderWidth], buf[start+frameHeaderWidth:]
		if err := checkRestoredFrame(header, payload, expected); err != nil {
			buf = buf[:start]
			return errors.Join(fmt.Errorf("%w: offset %d: %w", ErrBadSnapshot, expected, err), flush())
		}
		starts = append(starts, uint64(start))
		expected++
		if len(buf) >= restoreChunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if expected != next {
		return fmt.Errorf("%w: stream ends at offset %d, header says %d", ErrBadSnapshot, expected, next)
	}
	if err := l.drainLocked(); err != nil {
		return err
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if err := l.syncLocked(true); err != nil {
		return err
	}
	l.notify()
	return nil
}

// checkRestoredFrame verifies a frame of a snapshot stream: checksum,
// decoding, and the offset it must hold.
func checkRestoredFrame(header, payload []byte, offset uint64) error {
	if err := checkFrame(header, payload); err != nil {
		return err
	}
	got, err := payloadOffset(payload)
	if err != nil {
		return err
	}
	if got != offset {
		return fmt.Errorf("%w: %d, want %d", errWrongOffset, got, offset)
	}
	return nil
}
