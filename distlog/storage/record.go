package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record is one record of a Log, as the Log stores it. A Log assigns
// Offset; every other field is the appender's and is stored as given.
//
// The replication fields say which Raft entry wrote the record. distlog's
// state machine uses them to apply every entry exactly once across restarts
// (a record of entry EntryIndex at BatchPos tells it how far it got), and
// its Raft log store keeps each entry's term there. A Log that is not
// replicated leaves them zero.
type Record struct {
	// Value is the record's payload.
	Value []byte
	// Offset is the record's position in its Log; set by the Log.
	Offset uint64
	// Timestamp is when the record was appended, in Unix nanoseconds, as
	// the appender stamped it (distlog: the Raft leader, once per batch, so
	// every replica stores the same bytes). 0 when unknown.
	Timestamp int64
	// Term is the Raft term of the entry that wrote the record.
	Term uint64
	// EntryIndex is the Raft index of the entry that wrote the record.
	EntryIndex uint64
	// BatchPos is the record's position in that entry's batch of records.
	BatchPos uint32
}

// A store file starts with a segment header, then holds records as frames:
//
//	header: [6 bytes "PLGSEG"][2-byte format version][8-byte base offset][4 bytes zero][4-byte CRC32-C of the 20 before]
//	frame:  [4-byte big-endian payload length][4-byte big-endian CRC32-C][payload]
//	payload (format 2): [8-byte offset][8-byte timestamp][8-byte term][8-byte entry index][4-byte batch position][value]
//
// All integers are big-endian. The payload holds the record's offset, so a
// frame can be checked against the offset it was read for. The CRC covers
// the length bytes and the payload: a flipped length is caught as surely as
// a flipped value. Format 1 (proglog before data model v2) had no header,
// 8-byte lengths and a protobuf api.Record payload; it is recognised and
// refused (ErrUnsupportedFormat), never read.
const (
	// FormatVersion is the segment format this package writes and reads.
	FormatVersion = 2

	segmentMagic       = "PLGSEG"
	segmentHeaderWidth = len(segmentMagic) + 2 + 8 + 4 + crcWidth

	lenWidth         = 4
	crcWidth         = 4
	frameHeaderWidth = lenWidth + crcWidth

	// recordFixedWidth is the payload's fixed part before the value.
	recordFixedWidth = 8 + 8 + 8 + 8 + 4

	// maxRecordBytes is the largest Config.MaxRecordBytes accepted; a
	// payload must fit the 4-byte length.
	maxRecordBytes = 1 << 30
)

// crc32cTable is the CRC32-C (Castagnoli) table. It is built once and only read: it is
// constant data, not mutable state.
var crc32cTable = crc32.MakeTable(crc32.Castagnoli)

// frameChecksum is the CRC32-C of a frame's length bytes and payload.
func frameChecksum(lenBytes, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(lenBytes, crc32cTable), crc32cTable, payload)
}

// appendFrame appends the frame of rec, stored at offset, to buf. rec is
// only read (its Offset field is ignored).
func appendFrame(buf []byte, rec *Record, offset uint64) []byte {
	start := len(buf)
	payloadLen := recordFixedWidth + len(rec.Value)
	buf = binary.BigEndian.AppendUint32(buf, uint32(payloadLen))
	buf = append(buf, 0, 0, 0, 0) // checksum, below
	buf = binary.BigEndian.AppendUint64(buf, offset)
	buf = binary.BigEndian.AppendUint64(buf, uint64(rec.Timestamp))
	buf = binary.BigEndian.AppendUint64(buf, rec.Term)
	buf = binary.BigEndian.AppendUint64(buf, rec.EntryIndex)
	buf = binary.BigEndian.AppendUint32(buf, rec.BatchPos)
	buf = append(buf, rec.Value...)
	binary.BigEndian.PutUint32(buf[start+lenWidth:], frameChecksum(buf[start:start+lenWidth], buf[start+frameHeaderWidth:]))
	return buf
}

// parseFrameHeader returns the payload length and checksum in a header.
func parseFrameHeader(header []byte) (payloadLen uint64, checksum uint32) {
	return uint64(binary.BigEndian.Uint32(header[:lenWidth])), binary.BigEndian.Uint32(header[lenWidth:frameHeaderWidth])
}

// frameTimestamp is the Timestamp of the frame that starts at start in
// frames (encoded by appendFrame).
func frameTimestamp(frames []byte, start uint64) int64 {
	at := start + frameHeaderWidth + 8
	return int64(binary.BigEndian.Uint64(frames[at : at+8]))
}

// checkFrame verifies payload against the header it was read with.
func checkFrame(header, payload []byte) error {
	_, want := parseFrameHeader(header)
	if got := frameChecksum(header[:lenWidth], payload); got != want {
		return fmt.Errorf("%w: computed %#08x, stored %#08x", errBadChecksum, got, want)
	}
	return nil
}

// payloadOffset returns the offset stored in a verified payload.
func payloadOffset(payload []byte) (uint64, error) {
	if len(payload) < recordFixedWidth {
		return 0, fmt.Errorf("%w: %d bytes, the fixed part alone takes %d", errBadPayload, len(payload), recordFixedWidth)
	}
	return binary.BigEndian.Uint64(payload), nil
}

// decodeRecord decodes a verified payload. The value aliases payload.
func decodeRecord(payload []byte) (*Record, error) {
	rec := new(Record)
	if err := decodeRecordTo(rec, payload); err != nil {
		return nil, err
	}
	return rec, nil
}

// decodeRecordTo decodes a verified payload into rec. The value aliases
// payload.
func decodeRecordTo(rec *Record, payload []byte) error {
	if len(payload) < recordFixedWidth {
		return fmt.Errorf("%w: %d bytes, the fixed part alone takes %d", errBadPayload, len(payload), recordFixedWidth)
	}
	*rec = Record{
		Offset:     binary.BigEndian.Uint64(payload[0:]),
		Timestamp:  int64(binary.BigEndian.Uint64(payload[8:])),
		Term:       binary.BigEndian.Uint64(payload[16:]),
		EntryIndex: binary.BigEndian.Uint64(payload[24:]),
		BatchPos:   binary.BigEndian.Uint32(payload[32:]),
	}
	if len(payload) > recordFixedWidth {
		rec.Value = payload[recordFixedWidth:len(payload):len(payload)]
	}
	return nil
}
