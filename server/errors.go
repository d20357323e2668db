package server

import (
	"context"
	"errors"
	"net/http"

	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	api "github.com/proglog/proglog/api/v1"
)

// ErrInvalidRequest is returned for a request that is malformed: bad JSON,
// a missing field, bad base64, a bad offset (HTTP), or fields that make no
// sense together (a ConsumeRequest's max_bytes without max_records).
// InvalidArgument (HTTP 400). The client-facing errors of the log itself (a missing or oversized
// record, an offset out of range, not the leader, …) are api/v1's.
var ErrInvalidRequest = errors.New("server: invalid request")

// ErrStopping is returned to open streams when Config.Stopping is closed.
// Unavailable (HTTP 503): the client should retry, on this server once it
// is back or on another.
var ErrStopping = errors.New("server: stopping")

// internalMessage is all a client learns about an unexpected error; the
// details go to the server's log, never to the client.
const internalMessage = "internal error"

// errorClass is one row of errorTable: the errors it matches, and the gRPC
// code and HTTP status they reach clients with.
type errorClass struct {
	name  string
	match func(error) bool
	code  codes.Code
	http  int
}

// errorTable is the one place where errors become gRPC codes and HTTP
// statuses; toStatus and httpError both read it, first match wins. Errors
// are matched with errors.Is / errors.As, so lower layers wrap them freely.
// It is never modified.
var errorTable = []errorClass{
	{"offset out of range", isOutOfRange, codes.OutOfRange, http.StatusNotFound},
	{"not leader", isNotLeader, codes.Unavailable, http.StatusServiceUnavailable},
	{"oversized input", isAny(api.ErrRecordTooLarge, api.ErrBatchTooLarge), codes.InvalidArgument, http.StatusRequestEntityTooLarge},
	{"invalid input", isAny(api.ErrNoRecord, api.ErrEmptyBatch, ErrInvalidRequest, api.ErrInvalidTopicName, api.ErrInvalidTopicConfig, api.ErrInvalidGroupName), codes.InvalidArgument, http.StatusBadRequest},
	{"topic not found", isAny(api.ErrTopicNotFound), codes.NotFound, http.StatusNotFound},
	{"group not found", isAny(api.ErrGroupNotFound), codes.NotFound, http.StatusNotFound},
	{"topic exists", isAny(api.ErrTopicExists), codes.AlreadyExists, http.StatusConflict},
	{"default topic kept", isAny(api.ErrDeleteDefaultTopic), codes.FailedPrecondition, http.StatusConflict},
	{"producer sequence", isAny(api.ErrOutOfOrderSequence), codes.FailedPrecondition, http.StatusConflict},
	{"stopping", isAny(api.ErrLogClosed, ErrStopping), codes.Unavailable, http.StatusServiceUnavailable},
	{"replica unavailable", isAny(api.ErrReplicaUnavailable), codes.Unavailable, http.StatusServiceUnavailable},
	// The authentication and authorization layers (server/auth, an
	// Authorizer) refuse calls with status errors; they keep their code.
	{"unauthenticated", hasCode(codes.Unauthenticated), codes.Unauthenticated, http.StatusUnauthorized},
	{"permission denied", hasCode(codes.PermissionDenied), codes.PermissionDenied, http.StatusForbidden},
	{"canceled", isAny(context.Canceled), codes.Canceled, statusClientClosedRequest},
	{"deadline exceeded", isAny(context.DeadlineExceeded), codes.DeadlineExceeded, http.StatusGatewayTimeout},
}

// statusClientClosedRequest answers a call whose client went away: nginx's
// 499 "client closed request" is the common convention, and nobody reads the
// answer anyway.
const statusClientClosedRequest = 499

// classify returns the row of errorTable that err matches, and false for an
// error no row knows (an internal error).
func classify(err error) (errorClass, bool) {
	for _, class := range errorTable {
		if class.match(err) {
			return class, true
		}
	}
	return errorClass{name: "internal", code: codes.Internal, http: http.StatusInternalServerError}, false
}

// toStatus turns any error the server meets into the gRPC status error a
// client sees, by errorTable: nil stays nil; a known error keeps its
// message (with details: a LocalizedMessage for an offset out of range, an
// ErrorInfo naming the leader for not-leader); anything else becomes Internal
// with a generic message, and is logged.
func toStatus(logger *zap.Logger, err error) error {
	if err == nil {
		return nil
	}
	class, known := classify(err)
	if !known {
		logger.Error("internal error", zap.Error(err))
		return status.Error(codes.Internal, internalMessage)
	}
	if st, ok := status.FromError(err); ok && st.Code() == class.code {
		// A status error (from server/auth): its message without a "rpc
		// error: code = …" prefix, and any details it carries.
		return st.Err()
	}
	st := status.New(class.code, err.Error())
	if detail := errorDetail(err); detail != nil {
		if withDetail, derr := st.WithDetails(detail); derr == nil {
			st = withDetail
		}
	}
	return st.Err()
}

// errorDetail is the status detail the client-facing error err documents, or
// nil.
func errorDetail(err error) protoadapt.MessageV1 {
	if oor, ok := asOutOfRange(err); ok {
		return &errdetails.LocalizedMessage{Locale: "en-US", Message: oor.LocalizedMessage()}
	}
	var notLeader api.ErrNotLeader
	if errors.As(err, &notLeader) {
		return notLeader.ErrorInfo()
	}
	return nil
}

// httpError returns the HTTP status and message the JSON API answers err
// with, by the same table: a known error's message, or a generic one for an
// internal error, which is logged.
func httpError(logger *zap.Logger, err error) (int, string) {
	class, known := classify(err)
	if !known {
		logger.Error("internal error", zap.Error(err))
		return class.http, internalMessage
	}
	if st, ok := status.FromError(err); ok {
		return class.http, st.Message()
	}
	return class.http, err.Error()
}

// isAny returns a matcher for errors that wrap any of targets.
func isAny(targets ...error) func(error) bool {
	return func(err error) bool {
		for _, target := range targets {
			if errors.Is(err, target) {
				return true
			}
		}
		return false
	}
}

// hasCode returns a matcher for status errors with code.
func hasCode(code codes.Code) func(error) bool {
	return func(err error) bool {
		st, ok := status.FromError(err)
		return ok && st.Code() == code
	}
}

// isNotLeader reports whether err is an api.ErrNotLeader.
func isNotLeader(err error) bool {
	var notLeader api.ErrNotLeader
	return errors.As(err, &notLeader)
}

// isOutOfRange reports whether err says the log does not hold an offset.
func isOutOfRange(err error) bool {
	_, ok := asOutOfRange(err)
	return ok
}

// asOutOfRange finds an api.ErrOffsetOutOfRange in err, by value (as api
// documents it) or by pointer.
func asOutOfRange(err error) (api.ErrOffsetOutOfRange, bool) {
	var byValue api.ErrOffsetOutOfRange
	if errors.As(err, &byValue) {
		return byValue, true
	}
	var byPointer *api.ErrOffsetOutOfRange
	if errors.As(err, &byPointer) && byPointer != nil {
		return *byPointer, true
	}
	return api.ErrOffsetOutOfRange{}, false
}
