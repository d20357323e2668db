package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

var errSecret = errors.New("disk /dev/sda1 secret detail")

// TestErrorTable: every client-facing error gets its gRPC code and its HTTP
// status from errorTable, wrapped or not; internal errors reveal nothing.
// Every row of the table is exercised.
func TestErrorTable(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		wantCode    codes.Code
		wantMessage string
		wantHTTP    int
	}{
		{"out of range", api.ErrOffsetOutOfRange{Offset: 7}, codes.OutOfRange, "offset out of range: 7", http.StatusNotFound},
		{"out of range, wrapped", fmt.Errorf("read: %w", api.ErrOffsetOutOfRange{Offset: 7}), codes.OutOfRange, "read: offset out of range: 7", http.StatusNotFound},
		{"out of range, pointer", &api.ErrOffsetOutOfRange{Offset: 7}, codes.OutOfRange, "offset out of range: 7", http.StatusNotFound},
		{"not leader", api.ErrNotLeader{LeaderID: "n1", LeaderAddr: "a:1"}, codes.Unavailable, "the leader is n1 at a:1", http.StatusServiceUnavailable},
		{"not leader, wrapped", fmt.Errorf("append: %w", api.ErrNotLeader{}), codes.Unavailable, "no leader is known", http.StatusServiceUnavailable},
		{"permission denied", status.Error(codes.PermissionDenied, "nobody may not produce"), codes.PermissionDenied, "nobody may not produce", http.StatusForbidden},
		{"unauthenticated", status.Error(codes.Unauthenticated, "no certificate"), codes.Unauthenticated, "no certificate", http.StatusUnauthorized},
		{"canceled", context.Canceled, codes.Canceled, "context canceled", 499},
		{"canceled, wrapped", fmt.Errorf("apply: %w", context.Canceled), codes.Canceled, "apply: context canceled", 499},
		{"deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "context deadline exceeded", http.StatusGatewayTimeout},
		{"no record", api.ErrNoRecord, codes.InvalidArgument, "no record", http.StatusBadRequest},
		{"nil record in the log", fmt.Errorf("distlog: nil record: %w", api.ErrNoRecord), codes.InvalidArgument, "distlog: nil record", http.StatusBadRequest},
		{"record too large", fmt.Errorf("%w: 9 bytes", api.ErrRecordTooLarge), codes.InvalidArgument, "record too large: 9 bytes", http.StatusRequestEntityTooLarge},
		{"record too large in the log", fmt.Errorf("record 2: %w", fmt.Errorf("distlog: %w", api.ErrRecordTooLarge)), codes.InvalidArgument, "record 2: distlog: record too large", http.StatusRequestEntityTooLarge},
		{"empty batch", api.ErrEmptyBatch, codes.InvalidArgument, "batch has no records", http.StatusBadRequest},
		{"batch too large", fmt.Errorf("%w: 1001 records", api.ErrBatchTooLarge), codes.InvalidArgument, "batch too large: 1001 records", http.StatusRequestEntityTooLarge},
		{"invalid HTTP request", fmt.Errorf("%w: bad JSON", ErrInvalidRequest), codes.InvalidArgument, "bad JSON", http.StatusBadRequest},
		{"stopping", ErrStopping, codes.Unavailable, "stopping", http.StatusServiceUnavailable},
		{"log closed, wrapped", fmt.Errorf("read 3: %w", fmt.Errorf("distlog: %w", api.ErrLogClosed)), codes.Unavailable, "read 3: distlog: log is closed", http.StatusServiceUnavailable},
		{"replica unavailable", fmt.Errorf("distlog: read default@3: %w", api.ErrReplicaUnavailable), codes.Unavailable, "distlog: read default@3: this node cannot read its copy of the log; try another node", http.StatusServiceUnavailable},
		{"topic not found", fmt.Errorf("append: %w", api.TopicNotFoundError{Topic: "orders"}), codes.NotFound, `topic "orders" does not exist; create it`, http.StatusNotFound},
		{"topic exists", api.TopicExistsError{Topic: "orders"}, codes.AlreadyExists, `topic "orders" already exists`, http.StatusConflict},
		{"invalid topic name", fmt.Errorf("create: %w", api.InvalidTopicNameError{Topic: "a/b"}), codes.InvalidArgument, "[A-Za-z0-9._-]{1,249}", http.StatusBadRequest},
		{"invalid topic config", fmt.Errorf("distlog: %w: MaxRecordBytes 9 over the node's 8", api.ErrInvalidTopicConfig), codes.InvalidArgument, "invalid topic config: MaxRecordBytes", http.StatusBadRequest},
		{"delete the default topic", fmt.Errorf("distlog: %w", api.ErrDeleteDefaultTopic), codes.FailedPrecondition, "default topic cannot be deleted", http.StatusConflict},
		{"producer sequence out of order", fmt.Errorf("call 0: %w", api.SequenceError{ProducerID: 1, Sequence: 9, Expected: 4}), codes.FailedPrecondition, "sequence 9 out of order; expected sequence 4", http.StatusConflict},
		{"group not found", fmt.Errorf("group %q: %w", "g", api.ErrGroupNotFound), codes.NotFound, "group has no committed offset", http.StatusNotFound},
		{"invalid group name", api.ValidateGroupName("a/b"), codes.InvalidArgument, "group names match", http.StatusBadRequest},
		{"unknown", errSecret, codes.Internal, "internal error", http.StatusInternalServerError},
		{"unknown status code", status.Error(codes.Unknown, "secret detail"), codes.Internal, "internal error", http.StatusInternalServerError},
		{"a status no layer may set", status.Error(codes.NotFound, "secret detail"), codes.Internal, "internal error", http.StatusInternalServerError},
	}
	rowsHit := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			class, _ := classify(tt.err)
			rowsHit[class.name] = true

			err := toStatus(zaptest.NewLogger(t), tt.err)
			st, ok := status.FromError(err)
			require.True(t, ok)
			require.Equalf(t, tt.wantCode, st.Code(), "toStatus(%v) code = %s, want %s", tt.err, st.Code(), tt.wantCode)
			require.Containsf(t, st.Message(), tt.wantMessage, "toStatus(%v) message = %q, want it to contain %q", tt.err, st.Message(), tt.wantMessage)
			require.NotContains(t, st.Message(), "secret")
			require.NotContains(t, st.Message(), "rpc error")

			code, message := httpError(zaptest.NewLogger(t), tt.err)
			require.Equalf(t, tt.wantHTTP, code, "httpError(%v) = %d, want %d", tt.err, code, tt.wantHTTP)
			require.Equalf(t, st.Message(), message, "httpError(%v) message = %q, want the gRPC message %q", tt.err, message, st.Message())
		})
	}
	require.NoError(t, toStatus(zaptest.NewLogger(t), nil), "toStatus(nil)")
	for _, row := range errorTable {
		require.Truef(t, rowsHit[row.name], "no test case for errorTable row %q", row.name)
	}
}

// TestToStatusKeepsDetails: the api package's error details survive, so a
// client can find the leader in a NOT_LEADER refusal.
func TestToStatusKeepsDetails(t *testing.T) {
	err := toStatus(zaptest.NewLogger(t), fmt.Errorf("append: %w", api.ErrNotLeader{LeaderID: "n1", LeaderAddr: "a:1"}))
	leader, ok := api.NotLeaderFromStatus(status.Convert(err))
	require.True(t, ok, "NOT_LEADER detail lost")
	require.Equal(t, api.ErrNotLeader{LeaderID: "n1", LeaderAddr: "a:1"}, leader)
	require.Equal(t, codes.Unavailable, status.Code(err))

	err = toStatus(zaptest.NewLogger(t), api.ErrOffsetOutOfRange{Offset: 3})
	var found bool
	for _, d := range status.Convert(err).Details() {
		_, found = d.(*errdetails.LocalizedMessage)
	}
	require.True(t, found, "LocalizedMessage detail lost")
}
