package distlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	api "github.com/proglog/proglog/api/v1"
	"google.golang.org/protobuf/proto"
)

// A store holds records as frames:
//
//	[8-byte big-endian payload length][4-byte big-endian CRC32-C][payload]
//
// The payload is the protobuf encoding of the api.Record, Offset included,
// so a frame can be checked against the offset it was read for. The CRC
// covers the length bytes and the payload: a flipped length is caught as
// surely as a flipped value.
const (
	lenWidth         = 8
	crcWidth         = 4
	frameHeaderWidth = lenWidth + crcWidth

	// maxRecordOverhead bounds what protobuf adds around a value: four
	// field tags, a length varint and three varints of at most 10 bytes.
	maxRecordOverhead = 64

	// maxRecordBytes is the largest Config.MaxRecordBytes accepted.
	maxRecordBytes = 1 << 30
)

// crc32cTable is the CRC32-C (Castagnoli) table. It is built once and only read: it is
// constant data, not mutable state.
var crc32cTable = crc32.MakeTable(crc32.Castagnoli)

// frameChecksum is the CRC32-C of a frame's length bytes and payload.
func frameChecksum(lenBytes, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(lenBytes, crc32cTable), crc32cTable, payload)
}

// appendFrame appends the frame of rec to buf. rec is only read.
func appendFrame(buf []byte, rec *api.Record) ([]byte, error) {
	start := len(buf)
	var header [frameHeaderWidth]byte
	buf = append(buf, header[:]...)
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, rec)
	if err != nil {
		return buf[:start], fmt.Errorf("distlog: encode record %d: %w", rec.GetOffset(), err)
	}
	payload := buf[start+frameHeaderWidth:]
	binary.BigEndian.PutUint64(buf[start:], uint64(len(payload)))
	binary.BigEndian.PutUint32(buf[start+lenWidth:], frameChecksum(buf[start:start+lenWidth], payload))
	return buf, nil
}

// parseFrameHeader returns the payload length and checksum in a header.
func parseFrameHeader(header []byte) (payloadLen uint64, checksum uint32) {
	return binary.BigEndian.Uint64(header[:lenWidth]), binary.BigEndian.Uint32(header[lenWidth:frameHeaderWidth])
}

// checkFrame verifies payload against the header it was read with.
func checkFrame(header, payload []byte) error {
	_, want := parseFrameHeader(header)
	if got := frameChecksum(header[:lenWidth], payload); got != want {
		return fmt.Errorf("%w: computed %#08x, stored %#08x", errBadChecksum, got, want)
	}
	return nil
}

// decodeRecord decodes a verified payload.
func decodeRecord(payload []byte) (*api.Record, error) {
	rec := new(api.Record)
	if err := proto.Unmarshal(payload, rec); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadPayload, err)
	}
	return rec, nil
}
