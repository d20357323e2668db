package api

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorReasonNotLeader is the ErrorInfo reason a follower puts on a write it
// refuses, so clients can tell "retry at the leader" from other failures.
const ErrorReasonNotLeader = "NOT_LEADER"

// ErrorDomain is the ErrorInfo domain of proglog's own error details.
const ErrorDomain = "proglog"

// ErrOffsetOutOfRange is returned when a read asks for an offset the log does
// not hold (past the end, or before the lowest offset after truncation).
// It carries codes.OutOfRange across gRPC.
type ErrOffsetOutOfRange struct {
	Offset uint64
}

// Error implements error.
func (e ErrOffsetOutOfRange) Error() string {
	return fmt.Sprintf("offset out of range: %d", e.Offset)
}

// GRPCStatus returns codes.OutOfRange with a localized message naming the
// offset, so grpc-go sends the right code when a handler returns this error.
func (e ErrOffsetOutOfRange) GRPCStatus() *status.Status {
	st := status.New(codes.OutOfRange, e.Error())
	msg := fmt.Sprintf("The requested offset is outside the log's range: %d", e.Offset)
	d := &errdetails.LocalizedMessage{Locale: "en-US", Message: msg}
	if withDetails, err := st.WithDetails(d); err == nil {
		return withDetails
	}
	return st
}

// ErrNotLeader is returned when a write reaches a server that is not the Raft
// leader. LeaderAddr is the leader's RPC address when this server knows it
// (empty during an election). It carries codes.Unavailable, so callers retry,
// with an ErrorInfo detail (reason NOT_LEADER, metadata leader_id and
// leader_addr) that a client can act on.
type ErrNotLeader struct {
	LeaderID   string
	LeaderAddr string
}

// Error implements error.
func (e ErrNotLeader) Error() string {
	if e.LeaderAddr == "" {
		return "not the leader; no leader is known"
	}
	return fmt.Sprintf("not the leader; the leader is %s at %s", e.LeaderID, e.LeaderAddr)
}

// GRPCStatus returns codes.Unavailable with an ErrorInfo naming the leader.
func (e ErrNotLeader) GRPCStatus() *status.Status {
	st := status.New(codes.Unavailable, e.Error())
	d := &errdetails.ErrorInfo{
		Reason:   ErrorReasonNotLeader,
		Domain:   ErrorDomain,
		Metadata: map[string]string{"leader_id": e.LeaderID, "leader_addr": e.LeaderAddr},
	}
	if withDetails, err := st.WithDetails(d); err == nil {
		return withDetails
	}
	return st
}

// NotLeaderFromStatus reports whether st is a NOT_LEADER refusal and, if so,
// the leader it names.
func NotLeaderFromStatus(st *status.Status) (ErrNotLeader, bool) {
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetReason() != ErrorReasonNotLeader || info.GetDomain() != ErrorDomain {
			continue
		}
		md := info.GetMetadata()
		return ErrNotLeader{LeaderID: md["leader_id"], LeaderAddr: md["leader_addr"]}, true
	}
	return ErrNotLeader{}, false
}

// CodedError is a sentinel error that names the gRPC code it reaches clients
// with. The layers below the server (the storage engine, the replicated log)
// declare their sentinels with it, so the server reports, say, a closed log
// as Unavailable and an oversized record as InvalidArgument without
// importing those layers. Match it with errors.Is against the sentinel.
type CodedError struct {
	code codes.Code
	msg  string
}

// NewCodedError returns a sentinel with message msg that gRPC reports with
// code.
func NewCodedError(code codes.Code, msg string) *CodedError {
	return &CodedError{code: code, msg: msg}
}

// Error implements error.
func (e *CodedError) Error() string { return e.msg }

// Code is the gRPC code the error reaches clients with.
func (e *CodedError) Code() codes.Code { return e.code }

// GRPCStatus returns the error's code and message.
func (e *CodedError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }
