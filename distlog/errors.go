package distlog

import (
	"errors"
	"fmt"

	api "github.com/proglog/proglog/api/v1"
)

// The sentinels a client can meet through the server wrap api/v1's
// client-facing sentinels, so the server (which does not import this
// package) knows them by errors.Is and picks their codes itself: a closed
// log is api.ErrLogClosed (Unavailable: retry elsewhere), bad input is
// api.ErrRecordTooLarge or api.ErrNoRecord (InvalidArgument).

// ErrClosed is returned by every Log method called after Close. It wraps
// api.ErrLogClosed.
var ErrClosed = fmt.Errorf("distlog: %w", api.ErrLogClosed)

// ErrRecordTooLarge is returned by Append and AppendBatch when a record's
// value is longer than Config.MaxRecordBytes. Nothing is written and the log
// stays usable. It wraps api.ErrRecordTooLarge.
var ErrRecordTooLarge = fmt.Errorf("distlog: %w", api.ErrRecordTooLarge)

// ErrNilRecord is returned by Append and AppendBatch when given a nil record.
// It wraps api.ErrNoRecord.
var ErrNilRecord = fmt.Errorf("distlog: nil record: %w", api.ErrNoRecord)

// ErrCorrupt matches (with errors.Is) every *CorruptionError.
var ErrCorrupt = errors.New("distlog: corrupt record")

// ErrInvalidConfig is wrapped by the error NewLog returns for a Config it
// cannot use; the message names the field and its value.
var ErrInvalidConfig = errors.New("distlog: invalid config")

// ErrLocked is returned by NewLog when another Log (in this process or
// another) holds the directory open.
var ErrLocked = errors.New("distlog: directory is in use by another Log")

// ErrBadSnapshot is returned by Restore when the stream is not one that
// Reader produced, is truncated, or fails its checksums.
var ErrBadSnapshot = errors.New("distlog: invalid snapshot stream")

// ErrReaderInvalidated is returned by a Reader stream when TruncateFrom cut
// the records it was reading from under it; the stream is not point-in-time
// any more and must be abandoned.
var ErrReaderInvalidated = errors.New("distlog: log was truncated while a Reader was open")

// CorruptionError reports a record that failed validation on read: a bad
// frame length, a CRC32-C mismatch, a payload that does not decode, or a
// record whose stored offset is not the one asked for. Its data is never
// returned. It matches ErrCorrupt with errors.Is.
type CorruptionError struct {
	// Segment is the base offset of the segment holding the record.
	Segment uint64
	// Offset is the offset that was being read.
	Offset uint64
	// Path is the store file and Position the byte position of the frame.
	Path     string
	Position uint64
	// Err says what was wrong with the frame.
	Err error
}

// Error implements error.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("distlog: corrupt record at offset %d in segment %d (%s, position %d): %v",
		e.Offset, e.Segment, e.Path, e.Position, e.Err)
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
)
