package server

import (
	"context"
	"errors"
	"net/http"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// Errors for requests the server refuses before they reach the log. Each
// carries codes.InvalidArgument across gRPC (HTTP 400; 413 for the size
// limits); the returned error wraps one of them with the details.
var (
	// ErrNoRecord is returned for a produce request without a record.
	ErrNoRecord = errors.New("server: request has no record")
	// ErrRecordTooLarge is returned for a record value over
	// Config.MaxRecordBytes.
	ErrRecordTooLarge = errors.New("server: record too large")
	// ErrEmptyBatch is returned for a ProduceBatch without records.
	ErrEmptyBatch = errors.New("server: batch has no records")
	// ErrBatchTooLarge is returned for a ProduceBatch over
	// Config.MaxBatchRecords records or Config.MaxBatchBytes bytes.
	ErrBatchTooLarge = errors.New("server: batch too large")
	// ErrInvalidRequest is returned for an HTTP request that is malformed:
	// bad JSON, a missing field, bad base64, a bad offset.
	ErrInvalidRequest = errors.New("server: invalid request")
)

// ErrStopping is returned to open streams when Config.Stopping is closed. It
// carries codes.Unavailable: the client should retry, on this server once it
// is back or on another.
var ErrStopping = errors.New("server: stopping")

// internalMessage is all a client learns about an unexpected error; the
// details go to the server's log, never to the client.
const internalMessage = "internal error"

// isInvalidArgument reports whether err is one of the server's invalid-input
// sentinels, which map to codes.InvalidArgument.
func isInvalidArgument(err error) bool {
	return errors.Is(err, ErrNoRecord) || errors.Is(err, ErrRecordTooLarge) ||
		errors.Is(err, ErrEmptyBatch) || errors.Is(err, ErrBatchTooLarge) ||
		errors.Is(err, ErrInvalidRequest)
}

// isOutOfRange reports whether err says the log does not hold an offset.
// It accepts the error by value (as api documents it) and by pointer.
func isOutOfRange(err error) bool {
	var byValue api.ErrOffsetOutOfRange
	var byPointer *api.ErrOffsetOutOfRange
	return errors.As(err, &byValue) || errors.As(err, &byPointer)
}

// toStatus turns any error the server meets into the gRPC status error a
// client sees. It is the one place the server picks codes:
//   - nil stays nil;
//   - errors that carry their own status (api.ErrOffsetOutOfRange,
//     api.ErrNotLeader, an Authorizer's PermissionDenied, a status from a
//     lower layer), also when wrapped, keep their code and details;
//   - context.Canceled and context.DeadlineExceeded become Canceled and
//     DeadlineExceeded;
//   - the server's invalid-input sentinels and api.ErrInvalidTopicName
//     become InvalidArgument with the error's message, api.ErrTopicNotFound
//     NotFound, api.ErrTopicExists AlreadyExists; ErrStopping becomes
//     Unavailable;
//   - anything else becomes Internal with a generic message, and is logged.
func toStatus(logger *zap.Logger, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case isInvalidArgument(err), errors.Is(err, api.ErrInvalidTopicName):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, api.ErrTopicNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, api.ErrTopicExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, ErrStopping):
		return status.Error(codes.Unavailable, err.Error())
	}
	// Checked before the context errors: a status error that wraps a context
	// error already says what it means.
	var withStatus interface{ GRPCStatus() *status.Status }
	if errors.As(err, &withStatus) {
		if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
			return st.Err()
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	logger.Error("internal error", zap.Error(err))
	return status.Error(codes.Internal, internalMessage)
}

// httpStatus maps a gRPC code, as chosen by toStatus, to the HTTP status the
// JSON API answers with. Size limits are told apart by httpError, which
// answers 413 for them.
func httpStatus(code codes.Code) int {
	switch code {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.OutOfRange, codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists:
		return http.StatusConflict
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.FailedPrecondition:
		// As grpc-gateway maps it: 412 is about conditional headers.
		return http.StatusBadRequest
	case codes.Canceled:
		// The client went away; nginx's 499 "client closed request" is the
		// common convention, and nobody reads the answer anyway.
		return 499
	default:
		return http.StatusInternalServerError
	}
}
