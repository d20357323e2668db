package storage

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by every Log method called after Close.
var ErrClosed = errors.New("storage: log is closed")

// ErrRecordTooLarge is returned by Append and AppendBatch when a record's
// value is longer than Config.MaxRecordBytes. Nothing is written and the log
// stays usable.
var ErrRecordTooLarge = errors.New("storage: record too large")

// ErrNilRecord is returned by Append and AppendBatch when given a nil record.
var ErrNilRecord = errors.New("storage: nil record")

// ErrCorrupt matches (with errors.Is) every *CorruptionError: a record
// that fails validation on read, and damage NewLog finds in a sealed
// segment (see CorruptionError).
var ErrCorrupt = errors.New("storage: corrupt data")

// ErrInvalidConfig is wrapped by the error NewLog returns for a Config it
// cannot use; the message names the field and its value.
var ErrInvalidConfig = errors.New("storage: invalid config")

// ErrLocked is returned by NewLog when another Log (in this process or
// another) holds the directory open.
var ErrLocked = errors.New("storage: directory is in use by another Log")

// ErrBadSnapshot is returned by Restore when the stream is not one that
// Reader produced, is truncated, or fails its checksums.
var ErrBadSnapshot = errors.New("storage: invalid snapshot stream")

// ErrReaderInvalidated is returned by a Reader stream when TruncateFrom cut
// the records it was reading from under it; the stream is not point-in-time
// any more and must be abandoned.
var ErrReaderInvalidated = errors.New("storage: log was truncated while a Reader was open")

// ErrUnsupportedFormat is returned by NewLog for a segment written in a
// format this release does not read (format 1, from proglog before data
// model v2, or a newer one). Nothing is read from it or changed in it.
var ErrUnsupportedFormat = errors.New("storage: unsupported segment format")

// ErrBadSegmentHeader is returned by NewLog for a store file whose header is
// neither a header of any known format nor the zeroes of a segment whose
// creation never reached the disk. The file is left as it is.
var ErrBadSegmentHeader = errors.New("storage: bad segment header")

// CorruptionError reports data that failed validation: a bad frame
// length, a CRC32-C mismatch, a payload that does not decode, or a record
// whose stored offset is not the one expected. Read returns it for a record
// (its data is never returned). NewLog returns it, and opens nothing, for
// damage in a sealed segment (any segment but the last): a missing header,
// a frame that fails, or records missing between it and the next segment.
// Recovery cuts only the last segment's torn tail, where a crash mid-write
// leaves one; a sealed segment was durable before anything was written
// after it, so cutting it would drop records that were acknowledged. It
// matches ErrCorrupt with errors.Is.
type CorruptionError struct {
	// Segment is the base offset of the damaged segment.
	Segment uint64
	// Offset is the offset of the record that was being read, or that
	// recovery expected where the damage is.
	Offset uint64
	// Path is the store file and Position the byte position of the damage
	// in it (of the frame that fails).
	Path     string
	Position uint64
	// Err says what was wrong.
	Err error
}

// Error implements error.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("storage: corrupt data in %s at position %d (offset %d, segment %d): %v",
		e.Path, e.Position, e.Offset, e.Segment, e.Err)
}

// Unwrap returns the cause.
func (e *CorruptionError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

// Frame-level causes, wrapped in CorruptionError or seen by recovery.
var (
	errShortFrame  = errors.New("frame extends past the end of the store")
	errBadChecksum = errors.New("CRC32-C mismatch")
	errBadPayload  = errors.New("payload does not decode as a record")
	errWrongOffset = errors.New("record holds a different offset")
	// Damage only recovery finds, in a sealed segment.
	errNoHeader       = errors.New("sealed segment has no header")
	errMissingRecords = errors.New("records missing between segments")
)
