package api_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

func TestErrOffsetOutOfRange(t *testing.T) {
	err := fmt.Errorf("read: %w", api.ErrOffsetOutOfRange{Offset: 42})

	var oor api.ErrOffsetOutOfRange
	require.True(t, errors.As(err, &oor))
	require.Equal(t, uint64(42), oor.Offset)
	require.Contains(t, oor.LocalizedMessage(), "42")

	_, ok := status.FromError(err)
	require.False(t, ok, "api errors carry no gRPC status: the server alone picks codes")
}

// TestNotLeaderFromStatus: the detail the server builds from ErrorInfo reads
// back into the same ErrNotLeader on the client, after a trip through the
// status's wire form.
func TestNotLeaderFromStatus(t *testing.T) {
	tests := []struct {
		name string
		err  api.ErrNotLeader
	}{
		{"leader known", api.ErrNotLeader{LeaderID: "node-1", LeaderAddr: "127.0.0.1:8401"}},
		{"election in progress", api.ErrNotLeader{}},
		{"leadership lost in flight", api.ErrNotLeader{LeaderID: "node-2", LeaderAddr: "127.0.0.1:8402", OutcomeUnknown: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := status.New(codes.Unavailable, tt.err.Error()).WithDetails(tt.err.ErrorInfo())
			require.NoError(t, err)
			wire := status.FromProto(st.Proto())
			got, ok := api.NotLeaderFromStatus(wire)
			require.True(t, ok, "NotLeaderFromStatus(%v)", wire)
			require.Equal(t, tt.err, got)
		})
	}

	_, ok := api.NotLeaderFromStatus(status.New(codes.Unavailable, "connection refused"))
	require.False(t, ok, "a plain Unavailable is not a NOT_LEADER refusal")
	other, err := status.New(codes.Unavailable, "x").WithDetails(&errdetails.ErrorInfo{Reason: api.ErrorReasonNotLeader, Domain: "elsewhere"})
	require.NoError(t, err)
	_, ok = api.NotLeaderFromStatus(other)
	require.False(t, ok, "another domain's NOT_LEADER is not proglog's")
}

// TestSentinelsWrap: lower layers wrap the sentinels with their own prefix
// and keep them matchable.
func TestSentinelsWrap(t *testing.T) {
	for _, sentinel := range []error{api.ErrNoRecord, api.ErrRecordTooLarge, api.ErrEmptyBatch, api.ErrBatchTooLarge, api.ErrLogClosed, api.ErrReplicaUnavailable} {
		layer := fmt.Errorf("distlog: %w", sentinel)
		err := fmt.Errorf("append 3: %w", layer)
		require.ErrorIs(t, err, sentinel)
		require.ErrorIs(t, err, layer)
		_, ok := status.FromError(err)
		require.Falsef(t, ok, "%v carries a gRPC status", sentinel)
	}
}
