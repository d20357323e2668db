package storage

import (
	"fmt"
	"os"
	"path/filepath"
)

// Capture describes a point-in-time copy of a Log made of hard links to its
// store files (see LinkSegments): the records Lowest .. Next-1, in the
// Segments' store files, each read up to its captured Size.
type Capture struct {
	Lowest, Next uint64
	Segments     []CapturedSegment
}

// CapturedSegment is one store file of a Capture.
type CapturedSegment struct {
	// Base is the segment's base offset; the file is StoreFileName(Base).
	Base uint64
	// Size is how many bytes of the file, header included, the capture
	// holds. The file may be longer (appends after the capture).
	Size uint64
}

// StoreFileName is the name of the store file of the segment at base.
func StoreFileName(base uint64) string { return segmentFileName(base, storeExt) }

// StreamHeader returns the header of the Reader stream of the captured
// records. The stream is that header, then each captured file's bytes from
// SegmentHeaderBytes to its Size: StreamBytes in all.
func (c Capture) StreamHeader() []byte {
	header := streamHeader(c.Lowest, c.Next)
	return header[:]
}

// StreamBytes is the length of the Reader stream of the captured records.
func (c Capture) StreamBytes() uint64 {
	n := uint64(snapshotHeaderWidth)
	for _, s := range c.Segments {
		n += s.Size - min(s.Size, uint64(segmentHeaderWidth))
	}
	return n
}

// LinkSegments hard-links the store file of every segment into dir (which
// must exist, on the same file system) and returns what the links hold at
// this instant: no record is copied, so it costs one link per segment
// whatever the log's size. The captured bytes are durable (fsynced) when
// it returns.
//
// The links stay valid whatever the Log does next: sealed store files are
// never written again, the active one only grows (the capture reads it up
// to its captured Size), and removing or resetting segments unlinks the
// Log's names, not dir's. The one exception is TruncateFrom, which cuts
// the active file in place: a Log whose captures must stay valid must not
// be truncated from an offset below a capture's Next (distlog's topic logs
// never are).
func (l *Log) LinkSegments(dir string) (Capture, error) {
	c, err := l.linkSegments(dir)
	if err != nil {
		return Capture{}, err
	}
	if err := l.Sync(); err != nil {
		return Capture{}, err
	}
	return c, nil
}

func (l *Log) linkSegments(dir string) (Capture, error) {
	l.appendMu.Lock() // no append may land between a flush and its link
	defer l.appendMu.Unlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return Capture{}, ErrClosed
	}
	c := Capture{Lowest: l.segments[0].baseOffset, Next: l.active.nextOffset.Load()}
	for _, s := range l.segments {
		if err := s.store.Flush(); err != nil {
			return Capture{}, err
		}
		if err := os.Link(s.store.path, filepath.Join(dir, StoreFileName(s.baseOffset))); err != nil {
			return Capture{}, fmt.Errorf("storage: link segment %d: %w", s.baseOffset, err)
		}
		c.Segments = append(c.Segments, CapturedSegment{Base: s.baseOffset, Size: s.store.Size()})
	}
	return c, nil
}

// Bytes returns the total size of the log's store files, or ErrClosed
// after Close.
func (l *Log) Bytes() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	var n uint64
	for _, s := range l.segments {
		n += s.store.Size()
	}
	return n, nil
}
