package distlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"go.uber.org/zap"
)

// A Raft command entry's Data is one of these, told apart by its first byte.
//
//	append batch: [1 byte cmdAppendBatch][uvarint count][count × (uvarint length, value bytes)]
//
// The values are the records' values only: offsets are assigned by the state
// machine, and every node assigns the same ones because it applies the same
// entries in the same order.
const (
	cmdAppendBatch byte = 1
	// batchFramingBytes is the most an append-batch command of one record
	// adds to its value: the type byte and two uvarints.
	batchFramingBytes = 1 + 2*binary.MaxVarintLen64
)

// ErrBadCommand is returned (through the Apply response) for a Raft entry
// whose data is not a command this version understands. Every node decodes
// the same bytes, so every node refuses it alike and nothing is appended.
var ErrBadCommand = errors.New("distlog: malformed raft command")

// ErrFSMFailed is returned for every entry once a write to the data log
// failed. The state machine then stops applying (fail-stop) rather than
// assign offsets that the other nodes would not, and refuses snapshots, so
// Raft keeps every entry after the last record written; a restart of the
// node replays them.
var ErrFSMFailed = errors.New("distlog: state machine stopped after a storage error; restart the node")

// encodeAppendBatch encodes records' values as an append-batch command.
func encodeAppendBatch(records []*api.Record) []byte {
	size := 1 + binary.MaxVarintLen64
	for _, r := range records {
		size += binary.MaxVarintLen64 + len(r.GetValue())
	}
	buf := make([]byte, 0, size)
	buf = append(buf, cmdAppendBatch)
	buf = binary.AppendUvarint(buf, uint64(len(records)))
	for _, r := range records {
		buf = binary.AppendUvarint(buf, uint64(len(r.GetValue())))
		buf = append(buf, r.GetValue()...)
	}
	return buf
}

// appendBatchSize is the encoded size of an append-batch command holding
// values of these lengths, computed without encoding it.
func appendBatchSize(records []*api.Record) uint64 {
	size := uint64(1 + uvarintLen(uint64(len(records))))
	for _, r := range records {
		n := uint64(len(r.GetValue()))
		size += uint64(uvarintLen(n)) + n
	}
	return size
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// decodeAppendBatch decodes an append-batch command. The values alias data.
func decodeAppendBatch(data []byte) ([][]byte, error) {
	if len(data) == 0 || data[0] != cmdAppendBatch {
		return nil, fmt.Errorf("%w: unknown command type", ErrBadCommand)
	}
	rest := data[1:]
	count, n := binary.Uvarint(rest)
	if n <= 0 {
		return nil, fmt.Errorf("%w: bad record count", ErrBadCommand)
	}
	rest = rest[n:]
	// Each value takes at least its one-byte length: a count beyond that
	// is a lie, and must not size an allocation.
	if count == 0 || count > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: record count %d with %d bytes left", ErrBadCommand, count, len(rest))
	}
	values := make([][]byte, 0, count)
	for i := uint64(0); i < count; i++ {
		length, n := binary.Uvarint(rest)
		if n <= 0 || length > uint64(len(rest)-n) {
			return nil, fmt.Errorf("%w: record %d of %d: bad length", ErrBadCommand, i, count)
		}
		rest = rest[n:]
		values = append(values, rest[:length:length])
		rest = rest[length:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, len(rest))
	}
	return values, nil
}

// applyResult is the response of one applied command entry.
type applyResult struct {
	first uint64 // offset of the batch's first record
	count int    // records in the batch
	err   error
	// skipped is true for an entry the data log already held entirely
	// (Raft replaying it after a restart); first and count are then not
	// known. Nobody waits for such an entry: it was applied by an earlier
	// run of the process.
	skipped bool
}

// fsm is Raft's state machine: it applies committed append-batch entries to
// the data log.
//
// Restart safety: every record the fsm appends carries, in the data log, the
// Raft index of the entry that produced it (Record.RaftIndex) and its position in
// that entry's batch (Record.Type). The data log is the only durable state of
// the fsm, so "what has been applied" is written atomically with the data:
// on open the fsm reads its last record, and when Raft replays entries after
// a restart the fsm skips those it already holds and completes a batch that a
// crash cut short.
//
// Apply, ApplyBatch, Snapshot and Restore run on Raft's single FSM
// goroutine; mu only makes the progress fields readable by others.
type fsm struct {
	log            *Log
	logger         *zap.Logger
	maxRecordBytes uint64

	mu sync.Mutex
	// lastIndex is the Raft index of the entry that produced the last
	// record of the data log (0: the log is empty); lastPos is that
	// record's position in the entry's batch.
	lastIndex uint64
	lastPos   uint32
	// failed is set by a failed write to the data log; see ErrFSMFailed.
	failed error
	// restores counts snapshots restored into the data log (not the ones
	// skipped because the log already held them).
	restores uint64
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

// newFSM returns the state machine over log, resuming after the log's last
// record.
func newFSM(log *Log, maxRecordBytes uint64, logger *zap.Logger) (*fsm, error) {
	f := &fsm{log: log, logger: logger, maxRecordBytes: maxRecordBytes}
	if err := f.loadProgress(); err != nil {
		return nil, err
	}
	return f, nil
}

// loadProgress reads the Raft index and batch position of the data log's
// last record.
func (f *fsm) loadProgress() error {
	lowest, err := f.log.LowestOffset()
	if err != nil {
		return fmt.Errorf("distlog: fsm: %w", err)
	}
	next := f.log.NextOffset()
	f.mu.Lock()
	defer f.mu.Unlock()
	if next == lowest {
		f.lastIndex, f.lastPos = 0, 0
		return nil
	}
	last, err := f.log.Read(next - 1)
	if err != nil {
		return fmt.Errorf("distlog: fsm: read last record %d: %w", next-1, err)
	}
	f.lastIndex, f.lastPos = last.GetRaftIndex(), last.GetType()
	return nil
}

// progress returns the Raft index and batch position of the last record.
func (f *fsm) progress() (lastIndex uint64, lastPos uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastIndex, f.lastPos
}

// restoreCount returns how many snapshots were restored into the data log.
func (f *fsm) restoreCount() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores
}

// Err returns the storage error that stopped the fsm, or nil.
func (f *fsm) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// pendingEntry is a command entry of a batch whose records are being
// appended.
type pendingEntry struct {
	response int    // index of its response
	records  int    // index of its first new record in the batch's records
	skip     uint32 // records of its batch already in the log before this apply
	count    int    // records in its batch
}

// ApplyBatch implements raft.BatchingFSM: the records of every command entry
// in logs are appended with one write to the data log.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	responses := make([]any, len(logs))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		for i := range logs {
			responses[i] = applyResult{err: fmt.Errorf("%w: %w", ErrFSMFailed, f.failed)}
		}
		return responses
	}
	var (
		records []*api.Record
		pending []pendingEntry
	)
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue // configuration changes: Raft keeps those itself
		}
		values, err := decodeAppendBatch(l.Data)
		if err != nil {
			responses[i] = applyResult{err: fmt.Errorf("raft index %d: %w", l.Index, err)}
			continue
		}
		if err := f.checkSizes(values); err != nil {
			responses[i] = applyResult{err: err}
			continue
		}
		var skip uint32
		switch {
		case l.Index < f.lastIndex:
			responses[i] = applyResult{skipped: true}
			continue
		case l.Index == f.lastIndex:
			// The log holds records 0..lastPos of this batch: complete it.
			skip = f.lastPos + 1
			if int(skip) >= len(values) {
				responses[i] = applyResult{skipped: true}
				continue
			}
			f.logger.Warn("completing a batch cut short by a crash",
				zap.Uint64("raft_index", l.Index), zap.Uint32("had", skip), zap.Int("batch", len(values)))
		}
		pending = append(pending, pendingEntry{response: i, records: len(records), skip: skip, count: len(values)})
		for pos := int(skip); pos < len(values); pos++ {
			records = append(records, &api.Record{Value: values[pos], Term: l.Term, RaftIndex: l.Index, Type: uint32(pos)})
		}
	}
	if len(records) == 0 {
		return responses
	}
	first, err := f.log.AppendBatch(records)
	if err != nil {
		// The data log may now hold a prefix of records: it is behind the
		// entries Raft counts as applied. Stop here; see ErrFSMFailed.
		f.failed = err
		f.logger.Error("data log append failed; state machine stopped until restart", zap.Error(err))
		for _, p := range pending {
			responses[p.response] = applyResult{err: fmt.Errorf("%w: %w", ErrFSMFailed, err)}
		}
		return responses
	}
	for _, p := range pending {
		responses[p.response] = applyResult{first: first + uint64(p.records) - uint64(p.skip), count: p.count}
	}
	last := records[len(records)-1]
	f.lastIndex, f.lastPos = last.RaftIndex, last.Type
	return responses
}

// checkSizes refuses a batch holding a value over the record limit, as the
// data log would; refusing it here keeps the whole batch out.
func (f *fsm) checkSizes(values [][]byte) error {
	for k, v := range values {
		if n := uint64(len(v)); n > f.maxRecordBytes {
			return fmt.Errorf("%w: record %d of %d has %d bytes, Config.MaxRecordBytes is %d",
				ErrRecordTooLarge, k, len(values), n, f.maxRecordBytes)
		}
	}
	return nil
}

// An fsm snapshot stream is a header, then the data log's Reader stream:
//
//	[8-byte magic "PLGFSM01"][8-byte lastIndex][4-byte lastPos][8-byte next offset][4-byte CRC32-C of the 28 before]
//	[Log.Reader stream]
//
// lastIndex/lastPos identify the snapshot's last record (lastIndex 0: it
// has none) and next offset is the data log's NextOffset at the snapshot, so
// Restore can tell whether the local data log already holds the snapshot
// and skip rebuilding it.
const (
	fsmSnapshotMagic       = "PLGFSM01"
	fsmSnapshotHeaderWidth = 8 + 8 + 4 + 8 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type fsmSnapshotHeader struct {
	lastIndex  uint64
	lastPos    uint32
	nextOffset uint64
}

func (h fsmSnapshotHeader) encode() []byte {
	buf := make([]byte, fsmSnapshotHeaderWidth)
	copy(buf, fsmSnapshotMagic)
	binary.BigEndian.PutUint64(buf[8:], h.lastIndex)
	binary.BigEndian.PutUint32(buf[16:], h.lastPos)
	binary.BigEndian.PutUint64(buf[20:], h.nextOffset)
	binary.BigEndian.PutUint32(buf[28:], crc32.Checksum(buf[:28], castagnoli))
	return buf
}

func decodeFSMSnapshotHeader(buf []byte) (fsmSnapshotHeader, error) {
	if len(buf) != fsmSnapshotHeaderWidth || string(buf[:8]) != fsmSnapshotMagic {
		return fsmSnapshotHeader{}, fmt.Errorf("%w: not a distlog fsm snapshot", ErrBadSnapshot)
	}
	if got, want := crc32.Checksum(buf[:28], castagnoli), binary.BigEndian.Uint32(buf[28:]); got != want {
		return fsmSnapshotHeader{}, fmt.Errorf("%w: fsm header checksum %#08x, stored %#08x", ErrBadSnapshot, got, want)
	}
	return fsmSnapshotHeader{
		lastIndex:  binary.BigEndian.Uint64(buf[8:]),
		lastPos:    binary.BigEndian.Uint32(buf[16:]),
		nextOffset: binary.BigEndian.Uint64(buf[20:]),
	}, nil
}

// Snapshot implements raft.FSM. It runs on the FSM goroutine, so no record is
// appended between the header and the capture of the data log: the snapshot
// holds exactly the records up to the last applied entry, even though
// Persist runs while appends continue.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		return nil, fmt.Errorf("%w: %w", ErrFSMFailed, f.failed)
	}
	header := fsmSnapshotHeader{lastIndex: f.lastIndex, lastPos: f.lastPos, nextOffset: f.log.NextOffset()}
	return &fsmSnapshot{header: header, reader: f.log.Reader()}, nil
}

// Restore implements raft.FSM. When the data log already holds every record
// of the snapshot (Raft restores its latest snapshot at every start, and the
// data log survived the restart), nothing is rebuilt: the records after the
// snapshot are skipped when Raft replays their entries. Otherwise the data
// log is rebuilt from the stream.
func (f *fsm) Restore(rc io.ReadCloser) (err error) {
	defer func() { err = errors.Join(err, rc.Close()) }()
	br := bufio.NewReader(rc)
	buf := make([]byte, fsmSnapshotHeaderWidth)
	if _, err := io.ReadFull(br, buf); err != nil {
		return fmt.Errorf("%w: fsm header: %w", ErrBadSnapshot, err)
	}
	header, err := decodeFSMSnapshotHeader(buf)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed == nil && f.holdsLocked(header) {
		f.logger.Info("data log already holds the snapshot; not rebuilding it",
			zap.Uint64("snapshot_last_index", header.lastIndex), zap.Uint64("local_last_index", f.lastIndex))
		return nil
	}
	if err := f.log.Restore(br); err != nil {
		f.failed = err
		return fmt.Errorf("distlog: fsm restore: %w", err)
	}
	if next := f.log.NextOffset(); next != header.nextOffset {
		f.failed = fmt.Errorf("%w: restored log ends at %d, header says %d", ErrBadSnapshot, next, header.nextOffset)
		return f.failed
	}
	f.failed = nil
	f.lastIndex, f.lastPos = header.lastIndex, header.lastPos
	f.restores++
	f.logger.Info("restored data log from snapshot",
		zap.Uint64("last_index", header.lastIndex), zap.Uint64("next_offset", header.nextOffset))
	return nil
}

// holdsLocked reports whether the data log already holds every record of a
// snapshot with header h: committed history is the same on every node, so
// the log holds the snapshot when its record at the snapshot's last offset
// came from the same Raft entry and batch position. Caller holds mu.
func (f *fsm) holdsLocked(h fsmSnapshotHeader) bool {
	if h.lastIndex == 0 {
		// The snapshot holds no record: any record here came from a later
		// entry.
		return true
	}
	if h.lastIndex > f.lastIndex || f.log.NextOffset() < h.nextOffset || h.nextOffset == 0 {
		return false
	}
	rec, err := f.log.Read(h.nextOffset - 1)
	if err != nil {
		return false
	}
	return rec.GetRaftIndex() == h.lastIndex && rec.GetType() == h.lastPos
}

// fsmSnapshot is a point-in-time capture of the data log.
type fsmSnapshot struct {
	header fsmSnapshotHeader
	reader io.Reader
}

// Persist implements raft.FSMSnapshot.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.header.encode()); err != nil {
		return errors.Join(fmt.Errorf("distlog: write snapshot: %w", err), sink.Cancel())
	}
	if _, err := io.Copy(sink, s.reader); err != nil {
		return errors.Join(fmt.Errorf("distlog: write snapshot: %w", err), sink.Cancel())
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("distlog: close snapshot: %w", err)
	}
	return nil
}

// Release implements raft.FSMSnapshot: it releases the files the capture
// still holds.
func (s *fsmSnapshot) Release() {
	if c, ok := s.reader.(io.Closer); ok {
		_ = c.Close() // nothing to do about a close error of a read-only file
	}
}
