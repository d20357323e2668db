package storage

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
)

// storeBufferBytes is the store's write buffer. AppendBatch encodes a whole
// batch before writing, so the buffer mostly coalesces single Appends.
const storeBufferBytes = 64 << 10

// writebackBytes is how many bytes a store that is not synced at every
// append (see store.writeback) lets reach the page cache before it asks
// the kernel to start writing them to disk. Without it, a whole segment of
// dirty pages waits for the fsync that seals it (Log.rollLocked) or for a
// snapshot's Sync, and that fsync then writes MaxStoreBytes at once: 2.5 ms
// (median, 1 MiB) on the state machine's goroutine of a Raft node, during
// which no entry is applied.
const writebackBytes = 256 << 10

// store is a segment's file of frames: appends go through a write buffer;
// reads use pread (ReadAt) and take no lock unless they reach bytes still in
// the buffer, in which case they flush it first.
//
// A store may be preallocated (see Config.Segment.Preallocate): its file is
// then longer than its records, the rest zeroes, and writes land at the
// store's logical end (pwrite) instead of the file's end. Writes into space
// the file already has change no file size, so the fdatasync that makes
// them durable has no size to commit with them. Zeroes cannot be taken for
// a record (a frame of zeroes fails its checksum, and its length is shorter
// than any record), so recovery finds the logical end where the valid
// frames stop and the zeroes begin.
type store struct {
	// path is the file's name; it changes only when a pending segment is
	// renamed (see sealsync.go), under the Log's mu held exclusively, and
	// is atomic so that error messages may read it anywhere.
	path atomic.Pointer[string]
	file *os.File

	// mu guards buf, out and fileSize, and serialises appends with
	// flushes and truncation. It is never held across an fsync.
	mu sync.Mutex
	// buf is the write buffer, nil until the first Append after the store
	// was opened or sealed: a log keeps every sealed segment's store open,
	// and storeBufferBytes of buffer for each would grow the process with
	// the log.
	buf *bufio.Writer
	// out writes the flushed bytes at the logical end of the file.
	out *io.OffsetWriter
	// fileSize is the file's length: size plus any preallocated tail.
	fileSize uint64

	// size is the store's logical length: every appended byte, flushed or
	// not. Written under mu.
	size atomic.Uint64
	// flushed is how many bytes have reached the file and can be read with
	// pread without taking mu. Written under mu.
	flushed atomic.Uint64

	// writeback makes Append start the kernel's writeback of every
	// writebackBytes written (startWriteback), so that the fsync that
	// seals the store has little left to write. Set for logs that do not
	// fsync every append; those that do have nothing dirty to spread.
	// Set before the first Append.
	writeback bool
	// writebackFrom is where the bytes start whose writeback was not
	// started yet. Guarded by mu.
	writebackFrom uint64
}

// openStore opens or creates the store at path. Its logical size is the
// file's until setEnd says otherwise (recovery of a preallocated file).
func openStore(path string) (*store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: open store: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("storage: stat store: %w", err), f.Close())
	}
	s := &store{file: f, fileSize: uint64(fi.Size())}
	s.path.Store(&path)
	s.out = io.NewOffsetWriter(f, fi.Size())
	s.size.Store(uint64(fi.Size()))
	s.flushed.Store(uint64(fi.Size()))
	return s, nil
}

// setEnd declares the store's records to end at end (at most the file's
// size): the bytes after it are a preallocated tail of zeroes. Used by
// recovery only, before any append.
func (s *store) setEnd(end uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = io.NewOffsetWriter(s.file, int64(end))
	s.buf = nil
	s.size.Store(end)
	s.flushed.Store(end)
}

// zeroFrom reports whether every byte of the file from pos to its end is
// zero: a preallocated tail no record reached. Used by recovery only.
func (s *store) zeroFrom(pos uint64) (bool, error) {
	s.mu.Lock()
	fileSize := s.fileSize
	s.mu.Unlock()
	if pos >= fileSize {
		return pos == fileSize, nil
	}
	buf := make([]byte, min(fileSize-pos, 256<<10))
	for pos < fileSize {
		chunk := buf[:min(uint64(len(buf)), fileSize-pos)]
		if _, err := s.file.ReadAt(chunk, int64(pos)); err != nil {
			return false, fmt.Errorf("storage: read %s at %d: %w", s.filePath(), pos, err)
		}
		if slices.ContainsFunc(chunk, func(b byte) bool { return b != 0 }) {
			return false, nil
		}
		pos += uint64(len(chunk))
	}
	return true, nil
}

// preallocate grows the file to n bytes of allocated zeroes, when it is
// shorter. A file system that cannot preallocate leaves the store as it
// was: appends then grow the file as they go, which is only slower.
func (s *store) preallocate(n uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= s.fileSize {
		return nil
	}
	ok, err := preallocateFile(s.file, int64(s.fileSize), int64(n-s.fileSize))
	if err != nil {
		return fmt.Errorf("storage: preallocate %s to %d bytes: %w", s.filePath(), n, err)
	}
	if ok {
		s.fileSize = n
	}
	return nil
}

// zeroFill writes zeroes from the store's logical end up to n bytes and
// fsyncs them, growing the file to n if shorter (see
// Config.Segment.ZeroFill: space written once costs a later fdatasync no
// allocation to commit). The bytes past the logical end hold no record, so
// nothing is lost. Used on the segment a log opens or creates, before any
// append.
func (s *store) zeroFill(n uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf != nil {
		if err := s.flushLocked(); err != nil {
			return err
		}
	}
	end := s.size.Load()
	if end >= n {
		return nil
	}
	zeroes := make([]byte, min(n-end, spareZeroChunk))
	for off := end; off < n; {
		chunk := zeroes[:min(uint64(len(zeroes)), n-off)]
		if _, err := s.file.WriteAt(chunk, int64(off)); err != nil {
			return fmt.Errorf("storage: zero-fill %s: %w", s.filePath(), err)
		}
		off += uint64(len(chunk))
	}
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("storage: zero-fill %s: fsync: %w", s.filePath(), err)
	}
	s.fileSize = max(s.fileSize, n)
	return nil
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
	if s.buf == nil {
		s.buf = bufio.NewWriterSize(s.out, storeBufferBytes)
	}
	n, err := s.buf.Write(p)
	s.size.Add(uint64(n))
	if end := s.size.Load(); end > s.fileSize {
		s.fileSize = end
	}
	if err != nil {
		return pos, fmt.Errorf("storage: write %s: %w", s.filePath(), err)
	}
	if s.writeback {
		// Bytes the buffer has passed on are in the file's pages.
		written := s.size.Load() - uint64(s.buf.Buffered())
		if written < s.writebackFrom {
			s.writebackFrom = written // cut by Truncate since
		}
		if written-s.writebackFrom >= writebackBytes {
			startWriteback(s.file, s.writebackFrom, written-s.writebackFrom)
			s.writebackFrom = written
		}
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
			return nil, fmt.Errorf("storage: read %s at %d: %w", s.filePath(), pos, err)
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
		return nil, fmt.Errorf("storage: read %s at %d: %w", s.filePath(), pos, err)
	}
	n, _ := parseFrameHeader(header[:])
	if n > size-pos-frameHeaderWidth {
		return nil, fmt.Errorf("%w: length %d at position %d, store is %d bytes", errShortFrame, n, pos, size)
	}
	payload := make([]byte, n)
	if _, err := s.ReadAt(payload, int64(pos+frameHeaderWidth)); err != nil {
		return nil, fmt.Errorf("storage: read %s at %d: %w", s.filePath(), pos, err)
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
	if s.buf == nil {
		return nil // nothing appended since the store was opened, sealed or cut
	}
	if err := s.buf.Flush(); err != nil {
		return fmt.Errorf("storage: flush %s: %w", s.filePath(), err)
	}
	s.flushed.Store(s.size.Load())
	return nil
}

// Sync flushes the buffer and makes the file's data durable with
// fdatasync (where there is one): what a read of the records needs, their
// bytes and the file's size, but not its modification time, so a write
// into preallocated space costs no metadata update. It runs without mu so
// that appends continue while it waits on the disk.
func (s *store) Sync() error {
	if err := s.Flush(); err != nil {
		return err
	}
	if err := datasync(s.file); err != nil {
		return fmt.Errorf("storage: fsync %s: %w", s.filePath(), err)
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
	if size > s.flushed.Load() {
		if err := s.flushLocked(); err != nil {
			return err
		}
	}
	// The file is cut at size even when it was preallocated: whatever
	// followed (records removed, or a torn tail) must not be found again
	// by a recovery that scans past the logical end.
	if err := s.file.Truncate(int64(size)); err != nil {
		return fmt.Errorf("storage: truncate %s to %d: %w", s.filePath(), size, err)
	}
	s.out = io.NewOffsetWriter(s.file, int64(size))
	s.buf = nil // the next Append makes a new one (a failed flush's error goes with it)
	s.fileSize = size
	s.size.Store(size)
	s.flushed.Store(size)
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("storage: fsync %s: %w", s.filePath(), err)
	}
	return nil
}

// Seal flushes and drops the write buffer and cuts the preallocated tail,
// if any, so the file of a segment that takes no more records holds just
// its records and the store keeps no buffer for it. The cut needs no fsync
// of its own: a recovery that finds the tail again takes it for what it
// is.
func (s *store) Seal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	s.buf = nil
	if size := s.size.Load(); s.fileSize > size {
		if err := s.file.Truncate(int64(size)); err != nil {
			return fmt.Errorf("storage: truncate %s to %d: %w", s.filePath(), size, err)
		}
		s.fileSize = size
	}
	return nil
}

// Close seals, fsyncs and closes the file.
func (s *store) Close() error {
	err := s.Seal()
	if err == nil {
		err = s.Sync()
	}
	return errors.Join(err, s.file.Close())
}

// sectionReader reads the bytes from start up to end of the file,
// bypassing the buffer; used by recovery, which runs before any append.
func (s *store) sectionReader(start, end uint64) io.Reader {
	return io.NewSectionReader(s.file, int64(start), int64(end-start))
}

// filePath is the store file's name.
func (s *store) filePath() string { return *s.path.Load() }
