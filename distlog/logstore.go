package distlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
	"go.uber.org/zap"
)

// logStore is Raft's log store: a storage.Log whose record offsets are Raft
// indexes. Each entry is one record:
//
//	Offset = Index, EntryIndex = Index, Term = Term, Timestamp = AppendedAt (Unix ns, 0 if unset),
//	Value  = [1 byte envelope version = 2][1 byte Raft LogType][1 byte flags]
//	         [uvarint length + Extensions, if flags&2]
//	         [Data: the rest]
//
// (Envelope version 1, in format-1 segments, carried the type in the
// record and AppendedAt in the value; such a store is refused when opened.)
//
// The store cannot hold gaps (offsets are dense), so it implements
// raft.MonotonicLogStore: after a snapshot install Raft empties it, and the
// next StoreLogs starts it again at the index it is given.
//
// Raft deletes a prefix after each snapshot, but the Log only drops whole
// segments; the entries of the first remaining segment that fall inside the
// deleted range are hidden behind the logical first index, which is kept in
// the file "first-index" (written atomically, before the segments are cut)
// so it survives a restart.
//
// Raft stores from its main loop and compacts (deletes a prefix) from its
// snapshot goroutine. An append at the end takes only mu; a prefix delete
// holds deleteMu throughout and mu only to look and to publish, so that
// the first-index file's fsyncs and the removal of segments never hold an
// append up. Everything else that changes the store (a reset, a cut
// suffix: Raft's rare paths) takes deleteMu and then mu, so that while a
// prefix delete runs the store only grows and the first index it persists
// stays right. GetLog, FirstIndex and LastIndex take no lock.
type logStore struct {
	dir    string
	log    *storage.Log
	logger *zap.Logger

	// deleteMu serialises DeleteRange and every change to the store other
	// than an append at its end; guards floor. Taken before mu.
	deleteMu sync.Mutex
	// mu serialises the store's writes (appends, and the changes made
	// under deleteMu) and the changes to first.
	mu sync.Mutex
	// first is the logical first index, 0 when the store is empty. Written
	// under mu; read without it.
	first atomic.Uint64
	// floor is the value in the first-index file (0: no file). Guarded by
	// deleteMu.
	floor uint64

	// deleteHook, when set (tests only), is called by DeleteRange before
	// it writes the floor of a prefix it deletes.
	deleteHook func()
}

var (
	_ raft.LogStore          = (*logStore)(nil)
	_ raft.MonotonicLogStore = (*logStore)(nil)
)

const (
	logEntryVersion         = 2
	logEntryHasExtensions   = 2
	logStoreSegmentsDirName = "segments"
	logStoreFloorFileName   = "first-index"
	// logEntryOverhead bounds the envelope around an entry's Data, given
	// Extensions of at most maxLogExtensionBytes.
	maxLogExtensionBytes = 64 << 10
	logEntryOverhead     = 3 + binary.MaxVarintLen64 + maxLogExtensionBytes
)

// ErrLogStoreGap is returned by DeleteRange when asked to delete entries in
// the middle of the store, which would leave a gap it cannot hold. Raft only
// ever deletes a prefix (compaction) or a suffix (a diverged tail).
var ErrLogStoreGap = errors.New("distlog: log store cannot delete a range in its middle")

// newLogStore opens (or creates) the Raft log store in dir. c configures
// its segments; c.MaxRecordBytes must leave room for the largest entry.
func newLogStore(dir string, c storage.Config) (*logStore, error) {
	c.Segment.InitialOffset = 1 // Raft's first index
	c.SyncOnAppend = true       // Raft counts an entry once StoreLogs returns
	// (and that fsync covers a sealed segment: nothing to do in the
	// background)
	c.SyncSealedInBackground = false
	// Every StoreLogs fsyncs: writing into preallocated space spares each
	// fsync a change of file size (see storage.Config.Segment.Preallocate).
	c.Segment.Preallocate = true
	// And into space written with zeroes beforehand (off the append path),
	// so that an fsync has no block allocation to commit either: 12 KB
	// appends (an entry of 100 records of 100 bytes) fsync in about 60%
	// of the time on ext4 (see storage.Config.Segment.ZeroFill).
	c.Segment.ZeroFill = true
	// Raft cannot skip an entry it fails to read (it stops the node), and
	// its log is short (compacted after each snapshot): every sealed
	// segment is checked at open, so damage anywhere in them refuses the
	// store (storage.ErrCorrupt) instead of failing a read later.
	c.CheckSealedOnOpen = true
	log, err := storage.NewLog(filepath.Join(dir, logStoreSegmentsDirName), c)
	if err != nil {
		return nil, err
	}
	s := &logStore{dir: dir, log: log, logger: c.Logger}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	if err := s.load(); err != nil {
		return nil, errors.Join(err, log.Close())
	}
	return s, nil
}

// load works out the logical first index from the segments and the
// first-index file.
func (s *logStore) load() error {
	data, err := os.ReadFile(filepath.Join(s.dir, logStoreFloorFileName))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("distlog: log store: %w", err)
	default:
		s.floor, err = strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			return fmt.Errorf("distlog: log store: %s: %w", logStoreFloorFileName, err)
		}
	}
	lowest, err := s.log.LowestOffset()
	if err != nil {
		return err
	}
	first := max(lowest, s.floor)
	if first >= s.log.NextOffset() {
		first = 0 // empty
	}
	s.first.Store(first)
	return nil
}

// setFloorLocked records the logical first index durably: write a
// temporary file, fsync it, rename it over the old one, fsync the directory.
// Caller holds deleteMu.
func (s *logStore) setFloorLocked(floor uint64) error {
	path := filepath.Join(s.dir, logStoreFloorFileName)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("distlog: log store: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(floor, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("distlog: log store: write %s: %w", logStoreFloorFileName, err)
	}
	if err := storage.SyncDir(s.dir); err != nil {
		return err
	}
	s.floor = floor
	return nil
}

// resetLocked empties the store so that the next entry stored is index
// next. Caller holds deleteMu and mu.
func (s *logStore) resetLocked(next uint64) error {
	if s.floor > next {
		// A floor above the new start would hide the entries to come.
		if err := s.setFloorLocked(next); err != nil {
			return err
		}
	}
	s.first.Store(0)
	return s.log.ResetTo(next)
}

// IsMonotonic implements raft.MonotonicLogStore: the store cannot hold gaps.
func (s *logStore) IsMonotonic() bool { return true }

// FirstIndex implements raft.LogStore; 0 when the store is empty.
func (s *logStore) FirstIndex() (uint64, error) {
	return s.first.Load(), nil
}

// LastIndex implements raft.LogStore; 0 when the store is empty.
func (s *logStore) LastIndex() (uint64, error) {
	if s.first.Load() == 0 {
		return 0, nil
	}
	return s.log.NextOffset() - 1, nil
}

// GetLog implements raft.LogStore: raft.ErrLogNotFound for an index the
// store does not hold.
func (s *logStore) GetLog(index uint64, out *raft.Log) error {
	first := s.first.Load()
	if first == 0 || index < first {
		return raft.ErrLogNotFound
	}
	rec, err := s.log.Read(index)
	if err != nil {
		var outOfRange api.ErrOffsetOutOfRange
		if errors.As(err, &outOfRange) {
			return raft.ErrLogNotFound
		}
		return fmt.Errorf("distlog: log store: get %d: %w", index, err)
	}
	if err := decodeLogEntry(rec, out); err != nil {
		return fmt.Errorf("distlog: log store: get %d: %w", index, err)
	}
	return nil
}

// StoreLog implements raft.LogStore.
func (s *logStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs implements raft.LogStore. The entries must have consecutive
// indexes. They are written at the indexes they carry: into an empty store
// at any index; after the last entry as usual; over existing entries by
// first removing those from the batch's first index on (Raft deletes a
// conflicting suffix itself before it stores, so this is a safeguard); and
// past a gap by emptying the store first (the store cannot hold a gap, and
// Raft only leaves one after a snapshot covers everything before it). The
// batch is durable, with one write and one fsync, when StoreLogs returns.
func (s *logStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	records := make([]*storage.Record, len(logs))
	for k, l := range logs {
		if l == nil {
			return fmt.Errorf("distlog: log store: entry %d of %d is nil", k, len(logs))
		}
		if k > 0 && l.Index != logs[k-1].Index+1 {
			return fmt.Errorf("distlog: log store: entries not consecutive: index %d after %d", l.Index, logs[k-1].Index)
		}
		if l.Index == 0 {
			return fmt.Errorf("distlog: log store: index 0 is not a Raft index")
		}
		var err error
		if records[k], err = encodeLogEntry(l); err != nil {
			return err
		}
	}
	start, end := logs[0].Index, logs[len(logs)-1].Index
	s.mu.Lock()
	if start == s.log.NextOffset() {
		// At the end (or the start of an empty store there): Raft's
		// usual case, which a compaction does not hold up.
		err := s.appendLocked(records, start, end)
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	s.deleteMu.Lock()
	defer s.deleteMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	first, next := s.first.Load(), s.log.NextOffset()
	switch {
	case first == 0 || start < first || start > next:
		if start > next && first != 0 {
			s.logger.Warn("raft log store: gap before stored entries; emptying the store",
				zap.Uint64("next", next), zap.Uint64("stored_from", start))
		}
		if start != next || first != 0 {
			if err := s.resetLocked(start); err != nil {
				return err
			}
		}
	case start < next:
		s.logger.Warn("raft log store: overwriting entries", zap.Uint64("from", start), zap.Uint64("last", next-1))
		if err := s.log.TruncateFrom(start); err != nil {
			return err
		}
	}
	return s.appendLocked(records, start, end)
}

// appendLocked appends the records of entries start..end at the store's
// end, which is start. Caller holds mu.
func (s *logStore) appendLocked(records []*storage.Record, start, end uint64) error {
	got, err := s.log.AppendBatch(records)
	if err != nil {
		return fmt.Errorf("distlog: log store: store %d..%d: %w", start, end, err)
	}
	if got != start {
		return fmt.Errorf("distlog: log store: stored at %d, want %d", got, start)
	}
	if s.first.Load() == 0 {
		s.first.Store(start)
	}
	return nil
}

// DeleteRange implements raft.LogStore: it deletes exactly the entries
// min..max (inclusive) that the store holds. A suffix is cut in place; a
// prefix moves the logical first index (durably) and removes the segments
// that fall entirely below it; the whole store empties it (the next entry
// may then be stored at any index). Deleting from the middle is refused with
// ErrLogStoreGap.
func (s *logStore) DeleteRange(minIndex, maxIndex uint64) error {
	s.deleteMu.Lock()
	defer s.deleteMu.Unlock()
	s.mu.Lock()
	first := s.first.Load()
	if first == 0 || minIndex > maxIndex {
		s.mu.Unlock()
		return nil
	}
	last := s.log.NextOffset() - 1
	if maxIndex < first || minIndex > last {
		s.mu.Unlock()
		return nil
	}
	lo, hi := max(minIndex, first), min(maxIndex, last)
	var err error
	switch {
	case lo == first && hi == last:
		// Everything goes. Keep counting from where we were, so LastIndex
		// stays monotonic until Raft stores again.
		err = s.resetLocked(last + 1)
	case hi == last:
		err = s.log.TruncateFrom(lo)
	case lo == first:
		s.mu.Unlock()
		return s.deletePrefixLocked(hi)
	default:
		err = fmt.Errorf("%w: delete %d..%d of %d..%d", ErrLogStoreGap, minIndex, maxIndex, first, last)
	}
	s.mu.Unlock()
	return err
}

// deletePrefixLocked deletes the entries from the first index through hi,
// which is below the last: Raft's compaction after a snapshot. It holds
// appends up only while it publishes the new first index: while it holds
// deleteMu nothing but appends changes the store, so entries first..hi stay
// the store's first ones. Caller holds deleteMu, not mu.
func (s *logStore) deletePrefixLocked(hi uint64) error {
	if s.deleteHook != nil {
		s.deleteHook()
	}
	// The floor goes first: a crash before the segments are cut leaves
	// entries that are hidden, never entries that reappear.
	if err := s.setFloorLocked(hi + 1); err != nil {
		return err
	}
	s.mu.Lock()
	s.first.Store(hi + 1)
	s.mu.Unlock()
	// Segments are taken out of the log at once and their files deleted
	// while appends go on (see storage.Log.Truncate).
	return s.log.Truncate(hi + 1)
}

// Close closes the store.
func (s *logStore) Close() error {
	return s.log.Close()
}

// encodeLogEntry encodes a Raft entry as a log-store record.
func encodeLogEntry(l *raft.Log) (*storage.Record, error) {
	if len(l.Extensions) > maxLogExtensionBytes {
		return nil, fmt.Errorf("distlog: log store: entry %d has %d bytes of extensions, at most %d",
			l.Index, len(l.Extensions), maxLogExtensionBytes)
	}
	var flags byte
	size := 3 + len(l.Data)
	if len(l.Extensions) > 0 {
		flags |= logEntryHasExtensions
		size += binary.MaxVarintLen64 + len(l.Extensions)
	}
	value := make([]byte, 0, size)
	value = append(value, logEntryVersion, byte(l.Type), flags)
	if flags&logEntryHasExtensions != 0 {
		value = binary.AppendUvarint(value, uint64(len(l.Extensions)))
		value = append(value, l.Extensions...)
	}
	value = append(value, l.Data...)
	rec := &storage.Record{Value: value, Offset: l.Index, EntryIndex: l.Index, Term: l.Term}
	if !l.AppendedAt.IsZero() {
		rec.Timestamp = l.AppendedAt.UnixNano()
	}
	return rec, nil
}

// errBadLogEntry marks a log-store record whose envelope does not decode.
var errBadLogEntry = errors.New("malformed raft entry envelope")

// decodeLogEntry decodes a log-store record into out. Data and Extensions
// alias the record's value (which Log.Read hands to its caller) and are nil
// when empty.
func decodeLogEntry(rec *storage.Record, out *raft.Log) error {
	value := rec.Value
	if len(value) < 3 || value[0] != logEntryVersion {
		return fmt.Errorf("%w: version or length", errBadLogEntry)
	}
	flags, rest := value[2], value[3:]
	entry := raft.Log{Index: rec.Offset, Term: rec.Term, Type: raft.LogType(value[1])}
	if rec.Timestamp != 0 {
		entry.AppendedAt = time.Unix(0, rec.Timestamp)
	}
	if flags&logEntryHasExtensions != 0 {
		n, width := binary.Uvarint(rest)
		if width <= 0 || n > uint64(len(rest)-width) {
			return fmt.Errorf("%w: bad Extensions length", errBadLogEntry)
		}
		rest = rest[width:]
		entry.Extensions = rest[:n:n]
		rest = rest[n:]
	}
	if len(rest) > 0 {
		entry.Data = rest
	}
	*out = entry
	return nil
}
