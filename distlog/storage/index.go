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
const (
	offWidth = 4
	posWidth = 8
	entWidth = offWidth + posWidth

	// maxIndexBytes bounds Config.Segment.MaxIndexBytes: 64 Mi entries.
	maxIndexBytes = entWidth << 26
)

var errIndexFull = errors.New("storage: index is full")

// index maps a segment's relative offsets to store positions.
//
// Entries below size are immutable while readers may be looking at them:
// the appender writes an entry past size, then publishes it by advancing
// size; only TruncateFrom, under the Log's exclusive lock, rewrites or zeroes
// entries.
type index struct {
	path string
	file *os.File
	mmap gommap.MMap

	// size is the byte length of the valid entries, a multiple of entWidth.
	size atomic.Uint64
	// limit is how many bytes of entries may be written:
	// Config.Segment.MaxIndexBytes rounded down to whole entries.
	limit uint64
}

// openIndex opens or creates the index at path and maps it, grown to at
// least maxBytes. Its size is 0 until recovery sets it.
func openIndex(path string, maxBytes uint64) (*index, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("storage: open index: %w", err)
	}
	idx := &index{path: path, file: f, limit: maxBytes / entWidth * entWidth}
	fi, err := f.Stat()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("storage: stat index: %w", err), f.Close())
	}
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
			return fmt.Errorf("storage: unmap %s: %w", i.path, err)
		}
		i.mmap = nil
	}
	fi, err := i.file.Stat()
	if err != nil {
		return fmt.Errorf("storage: stat %s: %w", i.path, err)
	}
	if uint64(fi.Size()) < n {
		if err := i.file.Truncate(int64(n)); err != nil {
			return fmt.Errorf("storage: grow %s to %d: %w", i.path, n, err)
		}
	} else {
		n = uint64(fi.Size())
	}
	m, err := gommap.Map(i.file.Fd(), gommap.PROT_READ|gommap.PROT_WRITE, gommap.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("storage: mmap %s: %w", i.path, err)
	}
	i.mmap = m
	return nil
}

// Entries returns the number of valid entries.
func (i *index) Entries() uint64 { return i.size.Load() / entWidth }

// IsMaxed reports whether another entry would pass the limit.
func (i *index) IsMaxed() bool { return i.size.Load()+entWidth > i.limit }

// Read returns the store position of relative offset rel.
func (i *index) Read(rel uint64) (pos uint64, ok bool) {
	if rel >= i.Entries() {
		return 0, false
	}
	at := rel * entWidth
	return binary.BigEndian.Uint64(i.mmap[at+offWidth : at+entWidth]), true
}

// Write appends the entry (rel, pos). rel must be Entries().
func (i *index) Write(rel, pos uint64) error {
	size := i.size.Load()
	if size+entWidth > i.limit || size+entWidth > uint64(len(i.mmap)) {
		return errIndexFull
	}
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
	tail := i.mmap[i.size.Load():]
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

// Sync writes the mapped pages to disk.
func (i *index) Sync() error {
	if err := i.mmap.Sync(gommap.MS_SYNC); err != nil {
		return fmt.Errorf("storage: msync %s: %w", i.path, err)
	}
	return nil
}

// Close syncs and unmaps the index, cuts the file to its entries and closes
// it.
func (i *index) Close() error {
	var errs []error
	if i.mmap != nil {
		errs = append(errs, i.Sync())
		if err := i.mmap.UnsafeUnmap(); err != nil {
			errs = append(errs, fmt.Errorf("storage: unmap %s: %w", i.path, err))
		}
		i.mmap = nil
	}
	if err := i.file.Truncate(int64(i.size.Load())); err != nil {
		errs = append(errs, fmt.Errorf("storage: truncate %s: %w", i.path, err))
	}
	if err := i.file.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("storage: fsync %s: %w", i.path, err))
	}
	errs = append(errs, i.file.Close())
	return errors.Join(errs...)
}
