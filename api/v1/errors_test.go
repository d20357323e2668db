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

	st, ok := status.FromError(err)
	require.True(t, ok, "status.FromError finds GRPCStatus through wrapping")
	require.Equal(t, codes.OutOfRange, st.Code())
	require.Contains(t, st.Message(), "42")

	var localized *errdetails.LocalizedMessage
	for _, d := range st.Details() {
		if m, ok := d.(*errdetails.LocalizedMessage); ok {
			localized = m
		}
	}
	require.NotNil(t, localized, "details = %v, want a LocalizedMessage", st.Details())
	require.Equal(t, "en-US", localized.GetLocale())
	require.Contains(t, localized.GetMessage(), "42")
}

func TestErrNotLeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		err  api.ErrNotLeader
	}{
		{"leader known", api.ErrNotLeader{LeaderID: "node-1", LeaderAddr: "127.0.0.1:8401"}},
		{"election in progress", api.ErrNotLeader{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(tt.err)
			require.Equal(t, codes.Unavailable, st.Code())
			// What a client sees: the status rebuilt from its wire form.
			wire := status.FromProto(st.Proto())
			got, ok := api.NotLeaderFromStatus(wire)
			require.True(t, ok, "NotLeaderFromStatus(%v)", wire)
			require.Equal(t, tt.err, got)
		})
	}

	_, ok := api.NotLeaderFromStatus(status.New(codes.Unavailable, "connection refused"))
	require.False(t, ok, "a plain Unavailable is not a NOT_LEADER refusal")
}

func TestCodedError(t *testing.T) {
	sentinel := api.NewCodedError(codes.Unavailable, "distlog: log is closed")
	err := fmt.Errorf("read 3: %w", sentinel)
	require.ErrorIs(t, err, sentinel)
	require.Equal(t, codes.Unavailable, sentinel.Code())
	st, ok := status.FromError(err)
	require.True(t, ok, "status.FromError finds GRPCStatus through wrapping")
	require.Equal(t, codes.Unavailable, st.Code())
	require.Equal(t, "read 3: distlog: log is closed", st.Message())
	require.NotErrorIs(t, err, api.NewCodedError(codes.Unavailable, "distlog: log is closed"),
		"sentinels match by identity, not by message")
}
