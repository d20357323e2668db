package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Capture describes a point-in-time copy of a Log made of hard links to its
// store files (see LinkSegments): the records Lowest .. Next-1, in the
// Segments' store files, each read up to its captured Size.
type Capture struct {
	// Epoch is the log's Epoch at the capture.
	Epoch        uint64
	Lowest, Next uint64
	// Segments are in offset order; the last is the active one, the
	// others are sealed.
	Segments []CapturedSegment

	// activeLink is the path of the active segment's link; sealedDir is
	// where the sealed ones are, which linkedSealed says got new links.
	activeLink   string
	sealedDir    string
	linkedSealed bool
	// log and seq: the captured log, and its last write batch then.
	log *Log
	seq uint64
}

// Sync makes the captured bytes durable: it fsyncs the active segment's
// store file (through its link: the same file, so also whatever was
// appended since) and, when the capture linked sealed segments, sealedDir
// (sealed segments were fsynced when they were sealed). The caller fsyncs
// the active link's directory. Sync is separate from LinkSegments so that
// a capture taken where writes wait (Raft's state machine goroutine) is
// made durable after they have resumed.
//
// A log whose records were durable when it was captured (an idle topic)
// costs no fsync, and one made durable here counts as such for its next
// capture and Log.Sync's store.
func (c Capture) Sync() error {
	// The captured sealed segments: durable, and named, before the
	// capture is (see sealsync.go).
	if n := len(c.Segments); n > 0 {
		if err := c.log.drainThrough(c.Segments[n-1].Base); err != nil {
			return err
		}
	}
	if !c.log.storeSyncedThrough(c.seq) {
		f, err := os.Open(c.activeLink)
		if err != nil {
			return fmt.Errorf("storage: capture: %w", err)
		}
		err = datasync(f)
		if closeErr := f.Close(); err == nil {
			err = closeErr
		}
		if err != nil {
			return fmt.Errorf("storage: capture: fsync %s: %w", c.activeLink, err)
		}
		// Every write through seq is in the file just fsynced or in a
		// segment sealed since (fsynced at its roll).
		c.log.markStoreSynced(c.seq)
	}
	if c.linkedSealed {
		return syncDir(c.sealedDir)
	}
	return nil
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

// ParseStoreFileName returns the base offset a store file name stands for,
// or false. A prefix ending in '-' is skipped (see LinkSegments).
func ParseStoreFileName(name string) (uint64, bool) {
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		name = name[i+1:]
	}
	base, ok := parseSegmentFileName(name)
	return base, ok && filepath.Ext(name) == storeExt
}

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

// LinkSegments captures the log at this instant with hard links and no
// copy: the store file of every sealed segment is linked into sealedDir
// (unless an earlier LinkSegments into the same sealedDir in the same
// Epoch linked it: a sealed file never changes, so each is linked once)
// and the active one's into activeDir, named activePrefix +
// StoreFileName(base) (ParseStoreFileName reads the base after the
// prefix's last '-'). Both directories must exist, on the log's file
// system; sealedDir should be named after the Epoch. LinkSegments writes
// buffered records to the files but fsyncs nothing: the capture is durable
// once Capture.Sync returned and the caller fsynced activeDir (a node
// captures every topic's active segment into one directory and fsyncs it
// once, not once per topic).
//
// The links stay valid whatever the Log does next: sealed store files are
// never written again, the active one only grows (the capture reads it up
// to its captured Size), and anything that rewrites or recreates segments
// (TruncateFrom, Reset, ResetTo, Restore) unlinks the Log's names, not
// the links, and changes the Epoch first.
func (l *Log) LinkSegments(sealedDir, activeDir, activePrefix string) (Capture, error) {
	c, linkedSealed, err := l.linkSegments(sealedDir, activeDir, activePrefix)
	if err != nil {
		return Capture{}, err
	}
	c.sealedDir, c.linkedSealed = sealedDir, linkedSealed
	return c, nil
}

// storeSyncedThrough reports whether the records of write batches up to
// seq are durable (the index aside).
func (l *Log) storeSyncedThrough(seq uint64) bool {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	return l.syncedSeq >= seq
}

// markStoreSynced records that the records of write batches up to seq are
// durable.
func (l *Log) markStoreSynced(seq uint64) {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.syncedSeq = max(l.syncedSeq, seq)
}

func (l *Log) linkSegments(sealedDir, activeDir, activePrefix string) (Capture, bool, error) {
	l.appendMu.Lock() // no append may land between a flush and its link
	defer l.appendMu.Unlock()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return Capture{}, false, ErrClosed
	}
	if !l.pooled || l.pooledDir != sealedDir {
		l.pooled, l.pooledDir = false, sealedDir
	}
	// appendMu keeps writeSeq still: every write through seq is captured.
	c := Capture{Epoch: l.epoch, Lowest: l.segments[0].baseOffset, Next: l.active.nextOffset.Load(), log: l, seq: l.writeSeq.Load()}
	linkedSealed := false
	for _, s := range l.segments {
		if err := s.store.Flush(); err != nil {
			return Capture{}, false, err
		}
		c.Segments = append(c.Segments, CapturedSegment{Base: s.baseOffset, Size: s.store.Size()})
		name := StoreFileName(s.baseOffset)
		if s == l.active {
			c.activeLink = filepath.Join(activeDir, activePrefix+name)
			if err := os.Link(s.store.filePath(), c.activeLink); err != nil {
				return Capture{}, false, fmt.Errorf("storage: link segment %d: %w", s.baseOffset, err)
			}
			continue
		}
		if l.pooled && s.baseOffset <= l.pooledThrough {
			continue
		}
		err := os.Link(s.store.filePath(), filepath.Join(sealedDir, name))
		if err != nil && !errors.Is(err, os.ErrExist) {
			return Capture{}, false, fmt.Errorf("storage: link segment %d: %w", s.baseOffset, err)
		}
		linkedSealed = linkedSealed || err == nil
		l.pooled, l.pooledThrough = true, s.baseOffset
	}
	return c, linkedSealed, nil
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

// epochFileName is the file holding a Log's epoch.
const epochFileName = "EPOCH"

// Epoch names the log's current set of segment files: a segment file of
// a given base holds the same bytes (or a prefix of them, for the active
// one) for as long as Epoch returns the same value. It changes, durably,
// before TruncateFrom, Reset, ResetTo or Restore rewrite or recreate
// segments, so a hard link to a sealed segment named by its base and the
// epoch never names different data.
func (l *Log) Epoch() uint64 {
	l.appendMu.Lock()
	defer l.appendMu.Unlock()
	return l.epoch
}

func (l *Log) loadEpoch() error {
	b, err := os.ReadFile(filepath.Join(l.dir, epochFileName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		l.epoch = 0
		return nil
	case err != nil:
		return fmt.Errorf("storage: read epoch: %w", err)
	}
	l.epoch, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("storage: %s: %w", filepath.Join(l.dir, epochFileName), err)
	}
	return nil
}

// bumpEpochLocked makes the next epoch durable. Caller holds appendMu.
func (l *Log) bumpEpochLocked() error {
	path := filepath.Join(l.dir, epochFileName)
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(strconv.FormatUint(l.epoch+1, 10)+"\n"), 0o644)
	if err == nil {
		var f *os.File
		if f, err = os.Open(tmp); err == nil {
			err = errors.Join(f.Sync(), f.Close())
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(l.dir)
	}
	if err != nil {
		return fmt.Errorf("storage: write epoch: %w", err)
	}
	l.epoch++
	l.pooled = false
	return nil
}
