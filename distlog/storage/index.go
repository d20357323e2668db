package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"

	"github.com/tysonmote/gommap"
)

// An index file is a memory-mapped array of entries
//
//	[4-byte big-endian offset relative to the segment's base][8-byte big-endian store position]
//
// grown to Config.Segment.MaxIndexBytes when opened (so appends never remap)
// and cut back to its entries on Close. After a crash it is still at its
// grown size with a zero tail; recovery counts the entries that are
// consistent (entry i has relative offset i, positions rise) and checks them
// against the store.
//
// The index of a sealed segment may be released (see release): unmapped and
// cut back to its entries, which are then read with pread. The Log keeps the
// maps of its newest segments only, so that the memory its indexes hold
// does not grow with the number of segments.
const (
	offWidth = 4
	posWidth = 8
	entWidth = offWidth + posWidth

	// maxIndexBytes bounds Config.Segment.MaxIndexBytes: 64 Mi entries.
	maxIndexBytes = entWidth << 26
)

var (
	errIndexFull     = errors.New("storage: index is full")
	errIndexReleased = errors.New("storage: index of a sealed segment takes no entries")
)

// index maps a segment's relative offsets to store positions.
//
// Entries below size are immutable while readers may be looking at them:
// the appender writes an entry past size, then publishes it by advancing
// size; only TruncateFrom, under the Log's exclusive lock, rewrites or zeroes
// entries.
type index struct {
	// path is the file's name (see store.path).
	path atomic.Pointer[string]
	file *os.File
	// mmap is the file's map; nil once released (or closed): the entries
	// are then read with pread. Set and cleared only where no reader can
	// be using it: at open, and under the Log's exclusive lock.
	mmap gommap.MMap

	// size is the byte length of the valid entries, a multiple of entWidth.
	size atomic.Uint64
	// limit is how many bytes of entries may be written:
	// Config.Segment.MaxIndexBytes rounded down to whole entries.
	limit uint64
	// openedSize is the file's size when it was opened, before it was
	// grown to be mapped.
	openedSize uint64
	// dirtyEnd bounds the bytes that may not be zero: past it the file was
	// grown (fallocate, or truncation) and nothing was written there since, so
	// clearTail need not read it (reading a map's page of a sparse file
	// makes it resident: 196 KiB per index at the default size). Written
	// by Write (the appender), rebuild, clearTail and release, which the
	// Log never runs at the same time.
	dirtyEnd uint64
}

// openIndex opens or creates the index at path and maps it, grown to at
// least maxBytes. Its size is 0 until recovery sets it.
func openIndex(path string, maxBytes uint64) (*index, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: open index: %w", err)
	}
	idx := &index{file: f, limit: maxBytes / entWidth * entWidth}
	idx.path.Store(&path)
	fi, err := f.Stat()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("storage: stat index: %w", err), f.Close())
	}
	idx.openedSize = uint64(fi.Size())
	idx.dirtyEnd = idx.openedSize
	// A file larger than maxBytes (written with a larger limit) is mapped
	// whole so that none of its entries is lost; the segment is then full.
	if err := idx.mapAtLeast(max(uint64(fi.Size()), maxBytes)); err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return idx, nil
}

// mapAtLeast (re)maps the file with at least n bytes, growing the file.
func (i *index) mapAtLeast(n uint64) error {
	if i.mmap != nil {
		if uint64(len(i.mmap)) >= n {
			return nil
		}
		if err := i.mmap.UnsafeUnmap(); err != nil {
			return fmt.Errorf("storage: unmap %s: %w", i.filePath(), err)
		}
		i.mmap = nil
	}
	fi, err := i.file.Stat()
	if err != nil {
		return fmt.Errorf("storage: stat %s: %w", i.filePath(), err)
	}
	if size := fi.Size(); uint64(size) < n {
		// Allocate the blocks now (fallocate), not at the first write
		// through the map to each page: on a full disk that write cannot
		// return an error, the process dies of SIGBUS (test/chaos's
		// disk-full fault did once nothing else read the grown map).
		// Where the file system cannot preallocate, the file is grown
		// sparse.
		ok, err := preallocateFile(i.file, size, int64(n)-size)
		if err != nil {
			return fmt.Errorf("storage: grow %s to %d: %w", i.filePath(), n, err)
		}
		if !ok {
			if err := i.file.Truncate(int64(n)); err != nil {
				return fmt.Errorf("storage: grow %s to %d: %w", i.filePath(), n, err)
			}
		}
	} else {
		n = uint64(fi.Size())
	}
	m, err := gommap.Map(i.file.Fd(), gommap.PROT_READ|gommap.PROT_WRITE, gommap.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("storage: mmap %s: %w", i.filePath(), err)
	}
	i.mmap = m
	return nil
}

// Entries returns the number of valid entries.
func (i *index) Entries() uint64 { return i.size.Load() / entWidth }

// IsMaxed reports whether another entry would pass the limit.
func (i *index) IsMaxed() bool { return i.size.Load()+entWidth > i.limit }

// Read returns the store position of relative offset rel; ok is false
// when the index does not hold it. Only a released index's pread can fail.
func (i *index) Read(rel uint64) (pos uint64, ok bool, err error) {
	pos, _, n, err := i.readSpan(rel, 1)
	return pos, n == 1, err
}

// ReadSpan returns the store positions of relative offsets rel and rel+1:
// n is how many of the two the index holds (next is 0 when not 2). One
// pread for both when the index is released.
func (i *index) ReadSpan(rel uint64) (pos, next uint64, n int, err error) {
	return i.readSpan(rel, 2)
}

// readSpan returns the positions of up to want (1 or 2) entries from rel,
// and how many of them the index holds.
func (i *index) readSpan(rel uint64, want uint64) (pos, next uint64, n int, err error) {
	entries := i.Entries()
	if rel >= entries {
		return 0, 0, 0, nil
	}
	want = min(want, entries-rel)
	at := rel * entWidth
	var buf [2 * entWidth]byte
	ents := buf[:want*entWidth]
	if i.mmap != nil {
		copy(ents, i.mmap[at:])
	} else if _, err := i.file.ReadAt(ents, int64(at)); err != nil {
		return 0, 0, 0, fmt.Errorf("storage: read %s at %d: %w", i.filePath(), at, err)
	}
	pos = binary.BigEndian.Uint64(ents[offWidth:entWidth])
	if want == 2 {
		next = binary.BigEndian.Uint64(ents[entWidth+offWidth:])
	}
	return pos, next, int(want), nil
}

// Write appends the entry (rel, pos). rel must be Entries().
func (i *index) Write(rel, pos uint64) error {
	if i.mmap == nil {
		return errIndexReleased
	}
	size := i.size.Load()
	if size+entWidth > i.limit || size+entWidth > uint64(len(i.mmap)) {
		return errIndexFull
	}
	i.dirtyEnd = max(i.dirtyEnd, size+entWidth)
	binary.BigEndian.PutUint32(i.mmap[size:size+offWidth], uint32(rel))
	binary.BigEndian.PutUint64(i.mmap[size+offWidth:size+entWidth], pos)
	i.size.Store(size + entWidth) // publishes the entry to readers
	return nil
}

// consistentEntries counts the leading entries that can be real: entry k
// has relative offset k and a position at least firstPos, above the
// previous one and below storeSize. It returns their count and the last
// one's position.
func (i *index) consistentEntries(firstPos, storeSize uint64) (n, lastPos uint64) {
	for at := uint64(0); at+entWidth <= uint64(len(i.mmap)); at += entWidth {
		rel := uint64(binary.BigEndian.Uint32(i.mmap[at : at+offWidth]))
		pos := binary.BigEndian.Uint64(i.mmap[at+offWidth : at+entWidth])
		if rel != n || pos < firstPos || pos >= storeSize || (n > 0 && pos <= lastPos) || n > 0xFFFFFFFF {
			break
		}
		n, lastPos = n+1, pos
	}
	return n, lastPos
}

// holds reports whether the map's first entries are exactly positions
// (entry k = (k, positions[k])). Used by recovery only.
func (i *index) holds(positions []uint64) bool {
	if uint64(len(positions))*entWidth > uint64(len(i.mmap)) {
		return false
	}
	for k, pos := range positions {
		at := uint64(k) * entWidth
		if uint64(binary.BigEndian.Uint32(i.mmap[at:at+offWidth])) != uint64(k) ||
			binary.BigEndian.Uint64(i.mmap[at+offWidth:at+entWidth]) != pos {
			return false
		}
	}
	return true
}

// rebuild replaces the entries with positions (entry k = (k, positions[k])),
// zeroes the rest of the map and syncs it. Used by recovery only.
func (i *index) rebuild(positions []uint64) error {
	if err := i.mapAtLeast(uint64(len(positions)) * entWidth); err != nil {
		return err
	}
	for k, pos := range positions {
		at := uint64(k) * entWidth
		binary.BigEndian.PutUint32(i.mmap[at:at+offWidth], uint32(k))
		binary.BigEndian.PutUint64(i.mmap[at+offWidth:at+entWidth], pos)
	}
	i.size.Store(uint64(len(positions)) * entWidth)
	i.dirtyEnd = max(i.dirtyEnd, i.size.Load())
	i.clearTail()
	return i.Sync()
}

// setEntries declares the first n entries valid and zeroes the rest of the
// map, so that stale entries can never be taken for real ones after a crash.
func (i *index) setEntries(n uint64) {
	i.size.Store(n * entWidth)
	i.clearTail()
}

// clearTail zeroes the map past size, writing only when something there is
// not zero (to keep sparse files sparse).
func (i *index) clearTail() {
	size := i.size.Load()
	end := min(uint64(len(i.mmap)), i.dirtyEnd)
	if end <= size {
		return
	}
	tail := i.mmap[size:end]
	i.dirtyEnd = size
	first := slices.IndexFunc(tail, func(b byte) bool { return b != 0 })
	if first < 0 {
		return
	}
	last := len(tail) - 1
	for tail[last] == 0 {
		last--
	}
	clear(tail[first : last+1])
}

// Sync writes the mapped pages to disk (a released index's file with
// fsync: its pages were written through the map it had).
func (i *index) Sync() error {
	if i.mmap == nil {
		if err := i.file.Sync(); err != nil {
			return fmt.Errorf("storage: fsync %s: %w", i.filePath(), err)
		}
		return nil
	}
	if err := i.mmap.Sync(gommap.MS_SYNC); err != nil {
		return fmt.Errorf("storage: msync %s: %w", i.filePath(), err)
	}
	return nil
}

// mapped reports whether the index is mapped (not released).
func (i *index) mapped() bool { return i.mmap != nil }

// release unmaps the index of a sealed segment and cuts its file to its
// entries; Read then preads them, and Write refuses. The pages written
// through the map stay in the page cache for the next Sync to write. The
// caller makes sure no reader is using the map (it holds the Log's lock
// exclusively). A failed cut leaves a longer file with a zero tail, which
// recovery ignores.
func (i *index) release() error {
	if i.mmap == nil {
		return nil
	}
	if err := i.mmap.UnsafeUnmap(); err != nil {
		return fmt.Errorf("storage: unmap %s: %w", i.filePath(), err)
	}
	i.mmap = nil
	if err := i.file.Truncate(int64(i.size.Load())); err != nil {
		return fmt.Errorf("storage: truncate %s: %w", i.filePath(), err)
	}
	i.dirtyEnd = min(i.dirtyEnd, i.size.Load())
	return nil
}

// remap maps a released index again, grown to its limit, for a sealed
// segment that takes appends again (TruncateFrom cut the segments after
// it). The caller holds the Log's lock exclusively.
func (i *index) remap() error {
	if i.mmap != nil {
		return nil
	}
	return i.mapAtLeast(max(i.limit, i.size.Load()))
}

// Close syncs and unmaps the index, cuts the file to its entries and closes
// it.
func (i *index) Close() error {
	var errs []error
	if i.mmap != nil {
		errs = append(errs, i.Sync())
		if err := i.mmap.UnsafeUnmap(); err != nil {
			errs = append(errs, fmt.Errorf("storage: unmap %s: %w", i.filePath(), err))
		}
		i.mmap = nil
	}
	if err := i.file.Truncate(int64(i.size.Load())); err != nil {
		errs = append(errs, fmt.Errorf("storage: truncate %s: %w", i.filePath(), err))
	}
	if err := i.file.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("storage: fsync %s: %w", i.filePath(), err))
	}
	errs = append(errs, i.file.Close())
	return errors.Join(errs...)
}

// filePath is the index file's name.
func (i *index) filePath() string { return *i.path.Load() }
