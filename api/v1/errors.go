package api

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// The errors a client can meet, as plain Go errors. Every layer below the
// server (the storage engine, the replicated log) returns these, or wraps
// them; none of them attaches a gRPC code. The server alone decides the code
// (and the HTTP status) of each, in one table (server/errors.go), and adds
// the details documented here. Their messages carry no package prefix: they
// are what a client reads.

// ErrorReasonNotLeader is the ErrorInfo reason a follower puts on a write it
// refuses, so clients can tell "retry at the leader" from other failures.
const ErrorReasonNotLeader = "NOT_LEADER"

// ErrorDomain is the ErrorInfo domain of proglog's own error details.
const ErrorDomain = "proglog"

// Sentinels for requests and states the log refuses. Lower layers wrap them
// with their own prefix and details (fmt.Errorf("distlog: %w", ...)); match
// them with errors.Is.
var (
	// ErrNoRecord is returned for a produce request without a record, or a
	// nil record in a batch. The server reports it as InvalidArgument (HTTP
	// 400).
	ErrNoRecord = errors.New("no record")
	// ErrRecordTooLarge is returned for a record value over the configured
	// limit. InvalidArgument (HTTP 413).
	ErrRecordTooLarge = errors.New("record too large")
	// ErrEmptyBatch is returned for a batch without records.
	// InvalidArgument (HTTP 400).
	ErrEmptyBatch = errors.New("batch has no records")
	// ErrBatchTooLarge is returned for a batch over the configured number
	// of records or bytes. InvalidArgument (HTTP 413).
	ErrBatchTooLarge = errors.New("batch too large")
	// ErrLogClosed is returned for a call that reaches a log that is closed:
	// the node is stopping. Unavailable (HTTP 503): retry on another node.
	ErrLogClosed = errors.New("log is closed")
	// ErrReplicaUnavailable is returned for a read that this node cannot
	// serve from its own copy of the log (an I/O error such as a full disk,
	// or a record that fails its checksum); the node logs the cause.
	// Unavailable (HTTP 503): another node's copy may serve it.
	ErrReplicaUnavailable = errors.New("this node cannot read its copy of the log; try another node")
)

// ErrOffsetOutOfRange is returned when a read asks for an offset the log does
// not hold (past the end, or before the lowest offset after truncation). The
// server reports it as OutOfRange (HTTP 404) with a LocalizedMessage detail.
// A read below the lowest offset (records deleted by retention) sets
// BelowLowest and names the lowest offset, where a reader can go on.
type ErrOffsetOutOfRange struct {
	Offset uint64
	// BelowLowest is set when Offset is below Lowest, the topic's lowest
	// offset.
	BelowLowest bool
	Lowest      uint64
}

// Error implements error.
func (e ErrOffsetOutOfRange) Error() string {
	if e.BelowLowest {
		return fmt.Sprintf("offset out of range: %d is below the lowest offset %d (older records were deleted by retention)", e.Offset, e.Lowest)
	}
	return fmt.Sprintf("offset out of range: %d", e.Offset)
}

// LocalizedMessage is the human-readable explanation the server attaches as
// an errdetails.LocalizedMessage.
func (e ErrOffsetOutOfRange) LocalizedMessage() string {
	if e.BelowLowest {
		return fmt.Sprintf("The requested offset %d is below the lowest offset held, %d: records before it were deleted by retention", e.Offset, e.Lowest)
	}
	return fmt.Sprintf("The requested offset is outside the log's range: %d", e.Offset)
}

// ErrNotLeader is returned when a write reaches a server that is not the Raft
// leader. LeaderAddr is the leader's RPC address when this server knows it
// (empty during an election). The server reports it as Unavailable (HTTP
// 503), so callers retry, with an ErrorInfo detail (reason NOT_LEADER, domain
// proglog, metadata leader_id and leader_addr) that NotLeaderFromStatus reads
// back on the client.
//
// OutcomeUnknown is set when the server was the leader when it took the
// write and lost leadership before the write committed: the write may still
// be committed by the next leader, so a retry may append it twice. Unset,
// the write was refused before it was appended anywhere. It travels as the
// ErrorInfo metadata key "outcome" with the value "unknown".
type ErrNotLeader struct {
	LeaderID       string
	LeaderAddr     string
	OutcomeUnknown bool
}

// Error implements error.
func (e ErrNotLeader) Error() string {
	msg := "not the leader"
	if e.OutcomeUnknown {
		msg = "leadership lost while the write was in flight; it may still be committed"
	}
	if e.LeaderAddr == "" {
		return msg + "; no leader is known"
	}
	return fmt.Sprintf("%s; the leader is %s at %s", msg, e.LeaderID, e.LeaderAddr)
}

// ErrorInfo is the detail the server attaches to e's status.
func (e ErrNotLeader) ErrorInfo() *errdetails.ErrorInfo {
	md := map[string]string{"leader_id": e.LeaderID, "leader_addr": e.LeaderAddr}
	if e.OutcomeUnknown {
		md["outcome"] = "unknown"
	}
	return &errdetails.ErrorInfo{Reason: ErrorReasonNotLeader, Domain: ErrorDomain, Metadata: md}
}

// NotLeaderFromStatus reports whether st, as a client received it, is a
// NOT_LEADER refusal and, if so, the leader it names.
func NotLeaderFromStatus(st *status.Status) (ErrNotLeader, bool) {
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetReason() != ErrorReasonNotLeader || info.GetDomain() != ErrorDomain {
			continue
		}
		md := info.GetMetadata()
		return ErrNotLeader{LeaderID: md["leader_id"], LeaderAddr: md["leader_addr"], OutcomeUnknown: md["outcome"] == "unknown"}, true
	}
	return ErrNotLeader{}, false
}
