package storage

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// storeBufferBytes is the store's write buffer. AppendBatch encodes a whole
// batch before writing, so the buffer mostly coalesces single Appends.
const storeBufferBytes = 64 << 10

// store is a segment's file of frames: appends go through a write buffer;
// reads use pread (ReadAt) and take no lock unless they reach bytes still in
// the buffer, in which case they flush it first.
type store struct {
	path string
	file *os.File

	// mu guards buf and serialises appends with flushes and truncation.
	// It is never held across an fsync.
	mu  sync.Mutex
	buf *bufio.Writer

	// size is the store's logical length: every appended byte, flushed or
	// not. Written under mu.
	size atomic.Uint64
	// flushed is how many bytes have reached the file and can be read with
	// pread without taking mu. Written under mu.
	flushed atomic.Uint64
}

// openStore opens or creates the store at path.
func openStore(path string) (*store, error) {
	// O_APPEND: writes go to the end even after a TruncateFrom shortened
	// the file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: open store: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("storage: stat store: %w", err), f.Close())
	}
	s := &store{path: path, file: f, buf: bufio.NewWriterSize(f, storeBufferBytes)}
	s.size.Store(uint64(fi.Size()))
	s.flushed.Store(uint64(fi.Size()))
	return s, nil
}

// Size returns the store's logical size in bytes.
func (s *store) Size() uint64 { return s.size.Load() }

// Append writes p (one or more whole frames) at the end of the store and
// returns the position of its first byte. The bytes are buffered: ReadAt
// sees them at once, the file after the next flush.
func (s *store) Append(p []byte) (pos uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pos = s.size.Load()
	n, err := s.buf.Write(p)
	s.size.Add(uint64(n))
	if err != nil {
		return pos, fmt.Errorf("storage: write %s: %w", s.path, err)
	}
	return pos, nil
}

// ReadAt reads len(p) bytes at off, flushing the write buffer first when
// they are not all in the file yet.
func (s *store) ReadAt(p []byte, off int64) (int, error) {
	if uint64(off)+uint64(len(p)) > s.flushed.Load() {
		if err := s.Flush(); err != nil {
			return 0, err
		}
	}
	return s.file.ReadAt(p, off)
}

// Read returns the payload of the frame at pos after checking its length
// and checksum. frameLen, when not 0, is the frame's length as the index
// implies it (the distance to the next frame): the frame is then read with
// one pread instead of two. A frame that fails is reported with
// errShortFrame or errBadChecksum; an I/O failure with its own error.
func (s *store) Read(pos, frameLen uint64) ([]byte, error) {
	size := s.size.Load()
	if pos > size || size-pos < frameHeaderWidth {
		return nil, errShortFrame
	}
	if frameLen >= frameHeaderWidth && frameLen <= size-pos {
		frame := make([]byte, frameLen)
		if _, err := s.ReadAt(frame, int64(pos)); err != nil {
			return nil, fmt.Errorf("storage: read %s at %d: %w", s.path, pos, err)
		}
		if n, _ := parseFrameHeader(frame); n == frameLen-frameHeaderWidth {
			if err := checkFrame(frame[:frameHeaderWidth], frame[frameHeaderWidth:]); err != nil {
				return nil, err
			}
			return frame[frameHeaderWidth:], nil
		}
		// The header disagrees with the index: let the header decide, and
		// the checksum judge it.
	}
	var header [frameHeaderWidth]byte
	if _, err := s.ReadAt(header[:], int64(pos)); err != nil {
		return nil, fmt.Errorf("storage: read %s at %d: %w", s.path, pos, err)
	}
	n, _ := parseFrameHeader(header[:])
	if n > size-pos-frameHeaderWidth {
		return nil, fmt.Errorf("%w: length %d at position %d, store is %d bytes", errShortFrame, n, pos, size)
	}
	payload := make([]byte, n)
	if _, err := s.ReadAt(payload, int64(pos+frameHeaderWidth)); err != nil {
		return nil, fmt.Errorf("storage: read %s at %d: %w", s.path, pos, err)
	}
	if err := checkFrame(header[:], payload); err != nil {
		return nil, err
	}
	return payload, nil
}

// Flush writes the buffer to the file.
func (s *store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *store) flushLocked() error {
	if err := s.buf.Flush(); err != nil {
		return fmt.Errorf("storage: flush %s: %w", s.path, err)
	}
	s.flushed.Store(s.size.Load())
	return nil
}

// Sync flushes the buffer and fsyncs the file. The fsync runs without mu so
// that appends continue while it waits on the disk.
func (s *store) Sync() error {
	if err := s.Flush(); err != nil {
		return err
	}
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("storage: fsync %s: %w", s.path, err)
	}
	return nil
}

// Truncate cuts the store to size bytes and fsyncs it.
//
// When the cut is at or below what reached the file, the buffered bytes,
// all past the cut, are dropped instead of written. That is also how a
// store recovers from a failed flush (a full disk): bufio.Writer keeps a
// write error for good and fails every later write with it, and only
// Reset clears it; the caller cuts the log back to before the failed
// append, and the bytes that did reach the file are truncated away.
func (s *store) Truncate(size uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if size <= s.flushed.Load() {
		s.buf.Reset(s.file)
	} else if err := s.flushLocked(); err != nil {
		return err
	}
	if err := s.file.Truncate(int64(size)); err != nil {
		return fmt.Errorf("storage: truncate %s to %d: %w", s.path, size, err)
	}
	s.size.Store(size)
	s.flushed.Store(size)
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("storage: fsync %s: %w", s.path, err)
	}
	return nil
}

// Close flushes, fsyncs and closes the file.
func (s *store) Close() error {
	err := s.Sync()
	return errors.Join(err, s.file.Close())
}

// sectionReader reads the bytes from start up to end of the file,
// bypassing the buffer; used by recovery, which runs before any append.
func (s *store) sectionReader(start, end uint64) io.Reader {
	return io.NewSectionReader(s.file, int64(start), int64(end-start))
}
