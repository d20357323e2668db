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

// ErrClosed is returned by every DistributedLog method called after Close.
// It wraps api.ErrLogClosed.
var ErrClosed = fmt.Errorf("distlog: %w", api.ErrLogClosed)

// ErrRecordTooLarge is returned by AppendBatch when a record's value is
// longer than the topic's record limit. Nothing is appended. It wraps
// api.ErrRecordTooLarge.
var ErrRecordTooLarge = fmt.Errorf("distlog: %w", api.ErrRecordTooLarge)

// ErrNilRecord is returned by AppendBatch when given a nil record. It wraps
// api.ErrNoRecord.
var ErrNilRecord = fmt.Errorf("distlog: nil record: %w", api.ErrNoRecord)

// ErrInvalidConfig is wrapped by the error NewDistributedLog returns for a
// DistributedConfig it cannot use; the message names the field and its
// value.
var ErrInvalidConfig = errors.New("distlog: invalid config")

// ErrBadSnapshot is returned by a restore from a snapshot stream that is
// not one this release writes, is truncated, or fails its checks.
var ErrBadSnapshot = errors.New("distlog: invalid snapshot")

// ErrCorruptData is returned by NewDistributedLog when a log on the node's
// disk is damaged where no crash leaves damage: inside a sealed segment of
// the Raft log or of a topic (storage.ErrCorrupt, naming the file and
// position), or in a segment header (storage.ErrBadSegmentHeader). Such a
// log holds records the cluster acknowledged; recovery does not cut it,
// because a node that silently lost them could vote and serve as if it
// held them. The message says what to do: the node is rebuilt from the
// other nodes with an empty data directory. Nothing is changed on disk.
var ErrCorruptData = errors.New("distlog: corrupt data on disk")

// ErrOldDataFormat is returned by NewDistributedLog for a data directory
// written by a release before data model v2, which this release cannot read
// or upgrade. The directory is left as it is.
var ErrOldDataFormat = errors.New("distlog: data directory is in the format of an earlier proglog release")
