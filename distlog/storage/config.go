package storage

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Defaults applied by NewLog to zero Config fields.
const (
	// DefaultMaxStoreBytes is the default Config.Segment.MaxStoreBytes.
	DefaultMaxStoreBytes = 1 << 20
	// DefaultMaxIndexBytes is the default Config.Segment.MaxIndexBytes:
	// room for 16384 entries, so that segments of small records are
	// usually cut by the store size rather than the index.
	DefaultMaxIndexBytes = entWidth * 16384
	// DefaultMaxRecordBytes is the default Config.MaxRecordBytes.
	DefaultMaxRecordBytes = 1 << 20
	// DefaultMappedSealedIndexes is the default Config.MappedSealedIndexes.
	DefaultMappedSealedIndexes = 2
)

// Config configures a Log. The zero value is usable: every zero field takes
// the default named in its comment.
type Config struct {
	Segment struct {
		// MaxStoreBytes is the store-file size, in bytes, past which a
		// segment takes no more records (a record larger than this gets a
		// segment of its own). Default DefaultMaxStoreBytes (1 MiB).
		MaxStoreBytes uint64
		// MaxIndexBytes is the index-file size, in bytes; a segment holds at
		// most MaxIndexBytes/12 records. Any value of at least 12 works, not
		// only multiples of the 12-byte entry. Default DefaultMaxIndexBytes.
		MaxIndexBytes uint64
		// Preallocate makes each new store file MaxStoreBytes long when it
		// is created (fallocate; zeroes past the records), so appends write
		// into space the file has and an fsync commits no change of file
		// size with them. Meant for a log that fsyncs every append
		// (SyncOnAppend): the Raft log store sets it. A sealed segment's
		// file is cut back to its records. Default false.
		Preallocate bool
		// ZeroFill, with Preallocate, makes the store files of the
		// segments a roll creates zero-filled (written with zeroes and
		// fsynced, by a goroutine of the Log, ahead of the roll) rather
		// than only allocated: the first write into fallocated space costs
		// the fdatasync after it a journal commit that space written once
		// does not (see spare.go). The Log keeps one spare file of
		// MaxStoreBytes in its directory; NewLog writes the zeroes into the
		// active segment itself (the first segment of a new log, or the
		// free space of the last one). The Raft log store sets it. Default
		// false.
		ZeroFill bool
		// MaxAge, when positive, rolls a segment by time as well as size:
		// a segment takes no record whose Timestamp is MaxAge or more after
		// the Timestamp of the segment's first record (records with a zero
		// Timestamp are not counted), so that retention by age, which
		// deletes whole sealed segments, can delete the records of a topic
		// that fills its segments slowly (Kafka's segment.ms). The roll
		// happens at the first append past the age, and depends only on the
		// records' timestamps: replicas given the same records cut the same
		// segments. Log.SetSegmentMaxAge changes it on an open log.
		// Default 0: by size only.
		MaxAge time.Duration
		// InitialOffset is the offset of the first record of a log created
		// empty (by NewLog on an empty directory, or by Reset). Default 0.
		InitialOffset uint64
	}
	// MaxRecordBytes is the largest record value, in bytes, that Append
	// accepts; longer values get ErrRecordTooLarge. Default
	// DefaultMaxRecordBytes (1 MiB).
	MaxRecordBytes uint64
	// SyncOnAppend makes Append and AppendBatch fsync before they return, so
	// an acknowledged record survives a power failure. Concurrent appenders
	// share fsyncs (group commit). Default false: records survive a crash of
	// the process but not of the machine unless Sync is called.
	SyncOnAppend bool
	// MappedSealedIndexes is how many of the most recently sealed segments
	// keep their index memory-mapped; the indexes of older ones are
	// released (unmapped, and read with pread: one more system call per
	// Read of a record there, none more per ReadBatch), so that the memory
	// a log maps does not grow with its segments. The active segment's
	// index is always mapped. Default DefaultMappedSealedIndexes (2); a
	// negative value maps none.
	MappedSealedIndexes int
	// CheckSealedOnOpen makes NewLog read and check every frame of every
	// sealed segment (length, CRC32-C, decoding, offsets), so that damage
	// anywhere in them fails the open (ErrCorrupt) rather than a later
	// Read. It reads the whole log at each open: meant for a log that is
	// kept short, such as the Raft log (compacted after each snapshot),
	// whose reader cannot skip a bad record. Default false: a sealed
	// segment is checked where recovery looks (its last frame, or all of
	// them when its index disagrees with its store), damage elsewhere is
	// found by Read.
	CheckSealedOnOpen bool
	// SyncSealedInBackground makes a roll leave the fsync of the segment
	// it seals to a goroutine of the Log, so that the appender does not
	// wait for it; the segment the roll creates keeps temporary names
	// until that fsync is done, so a sealed segment is still whole on disk
	// before any record after it counts (see sealsync.go): after a crash,
	// even of the process alone, the log reopens without the records of
	// segments still under temporary names. Sync, a Capture's Sync and
	// Close wait for those fsyncs and renames. For a log whose
	// appends are not fsynced (a topic's log): it cannot be combined with
	// SyncOnAppend (whose appends' fsync covers the sealed segment at no
	// extra cost) or Segment.Preallocate. Default false: a roll fsyncs the
	// segment it seals before it returns.
	SyncSealedInBackground bool
	// Logger receives recovery and truncation events. Default zap.NewNop().
	Logger *zap.Logger
}

// WithDefaults returns c with defaults filled in, or an error naming the
// first field it cannot use.
func (c Config) WithDefaults() (Config, error) {
	if c.Segment.MaxStoreBytes == 0 {
		c.Segment.MaxStoreBytes = DefaultMaxStoreBytes
	}
	if c.Segment.MaxIndexBytes == 0 {
		c.Segment.MaxIndexBytes = DefaultMaxIndexBytes
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	switch {
	case c.MappedSealedIndexes == 0:
		c.MappedSealedIndexes = DefaultMappedSealedIndexes
	case c.MappedSealedIndexes < 0:
		c.MappedSealedIndexes = -1
	}
	if c.Segment.MaxIndexBytes < entWidth {
		return c, fmt.Errorf("%w: Segment.MaxIndexBytes = %d, must be at least %d (one index entry)",
			ErrInvalidConfig, c.Segment.MaxIndexBytes, entWidth)
	}
	if c.Segment.MaxIndexBytes > maxIndexBytes {
		return c, fmt.Errorf("%w: Segment.MaxIndexBytes = %d, must be at most %d",
			ErrInvalidConfig, c.Segment.MaxIndexBytes, uint64(maxIndexBytes))
	}
	if c.SyncSealedInBackground && (c.SyncOnAppend || c.Segment.Preallocate) {
		return c, fmt.Errorf("%w: SyncSealedInBackground is for logs without SyncOnAppend and Segment.Preallocate",
			ErrInvalidConfig)
	}
	if c.MaxRecordBytes > maxRecordBytes {
		return c, fmt.Errorf("%w: MaxRecordBytes = %d, must be at most %d",
			ErrInvalidConfig, c.MaxRecordBytes, uint64(maxRecordBytes))
	}
	return c, nil
}

// MaxRecordBytesLimit is the largest Config.MaxRecordBytes accepted.
const MaxRecordBytesLimit = maxRecordBytes
