// Package storage is proglog's storage engine: a Log of records in
// segment files on disk, with its own versioned record format.
//
// # Layout
//
// A Log is a directory of segments. A segment is a store file of records
// and an index file mapping offsets to store positions, both named by the
// segment's base offset (the offset of its first record). The last segment
// is active and takes appends; when it is full (Config.Segment.MaxStoreBytes
// or MaxIndexBytes) it is flushed and a new one starts; the next Sync
// fsyncs it.
//
//	store:  [segment header: "PLGSEG", format version, base offset, CRC32-C]
//	        [4-byte length][4-byte CRC32-C][offset, timestamp, term, entry index, batch position, value] ...
//	index:  [4-byte relative offset][8-byte store position] ...   (memory-mapped)
//
// Every record carries a CRC32-C (Castagnoli) over its length and payload,
// and its own offset; a record that fails either check is reported as a
// *CorruptionError naming the segment and offset, never returned as data.
// Record documents the fields. The header names the format (FormatVersion):
// a store of another format, including format 1 (headerless, written by
// proglog before data model v2), is refused with ErrUnsupportedFormat and
// left as it is.
//
// # Recovery
//
// NewLog recovers what it finds: a process killed at any instant leaves the
// index at its grown size with a zero tail and the store perhaps ending in a
// partial frame. The last (active) segment is cut to its longest run of
// valid frames (a torn tail is truncated), and an index that disagrees with
// its store is rebuilt from it, so the log reopens to a prefix of what was
// appended that holds every record synced before the crash, and the next
// Append gets the next offset. A sealed segment (any other) is never cut:
// a roll fsyncs it before anything is written after it, so no crash leaves
// it short, and damage there (a frame that fails, a missing header, records
// missing before the next segment) is a failing disk or an outside write.
// NewLog then fails with a *CorruptionError (ErrCorrupt) naming the file
// and position, and leaves the store files as they are: cutting would drop
// records that may have been acknowledged. Config.CheckSealedOnOpen makes
// it check every frame of the sealed segments, not only where recovery
// looks. With Config.SyncSealedInBackground a roll leaves the fsync to a
// goroutine and the segments after one not yet durable keep pending names
// (see sealsync.go), which NewLog deletes: the invariant holds for every
// segment with a real name.
//
// # Durability
//
// Append returns once the record is in the process's write buffer and
// readable. It survives a crash of the process once it reaches the file
// (at the next flush: a read of it, Sync, a segment roll, Close) and a
// power failure once fsynced: set Config.SyncOnAppend, or call Sync (each
// fsyncs the active segment; a roll fsyncs the segment it seals).
// AppendBatch writes a batch with one write and at most one fsync (plus
// one for each segment it fills), and
// concurrent appenders with SyncOnAppend share fsyncs. A log with
// Config.SyncSealedInBackground promises less without Sync: the records of
// segments made since the last Sync (or Capture.Sync) that are still
// pending do not survive even a crash of the process; Sync, Capture.Sync
// and Close make them durable. (Meant for a log that can be rebuilt from
// elsewhere after a crash, as a topic's from the Raft log.)
//
// # Concurrency
//
// Appends are serialised with each other; reads run in parallel with each
// other and with appends (pread on the store, lock-free lookups in the
// mapped index). Only changes to the list of segments (a roll, Truncate,
// TruncateFrom, Reset, ResetTo, Restore, Close) wait for reads in flight.
// A consumer waits for new records on Appended, without polling.
//
// # Sequential reads
//
// Read returns one record (an index lookup and a pread). ReadBatch is the
// sequential reader for consumers that are behind: it returns the records
// from an offset on, up to a count and a byte budget, taking the read lock
// once, looking up only the first offset, reading each segment's frames
// with one pread and checking and decoding them in memory.
//
// # Snapshots
//
// Reader streams the log as it was at the call, even while appends
// continue; Restore rebuilds a log from such a stream with the same
// offsets. Raft uses them for snapshots.
package storage
