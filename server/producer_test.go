package server

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	api "github.com/proglog/proglog/api/v1"
)

// An idempotent producer's retry of Produce or ProduceBatch gets the
// original offsets and appends nothing; a gap is FailedPrecondition naming
// the expected sequence; calls without a producer id are not deduplicated.
func TestIdempotentProduce(t *testing.T) {
	cfg := testConfig(t)
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	rec := func(v string) *api.Record { return &api.Record{Value: []byte(v)} }

	res, err := ts.client.Produce(ctx, &api.ProduceRequest{Record: rec("a"), ProducerId: 7, Sequence: 0})
	require.NoError(t, err)
	require.Equal(t, uint64(0), res.GetOffset())
	require.False(t, res.GetDuplicate())
	res, err = ts.client.Produce(ctx, &api.ProduceRequest{Record: rec("a"), ProducerId: 7, Sequence: 0})
	require.NoError(t, err)
	require.Equal(t, uint64(0), res.GetOffset())
	require.True(t, res.GetDuplicate(), "a retry is reported as a duplicate")

	batch, err := ts.client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: []*api.Record{rec("b"), rec("c")}, ProducerId: 7, Sequence: 1})
	require.NoError(t, err)
	require.Equal(t, &api.ProduceBatchResponse{FirstOffset: 1, Count: 2}, stripped(batch))
	batch, err = ts.client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: []*api.Record{rec("b"), rec("c")}, ProducerId: 7, Sequence: 1})
	require.NoError(t, err)
	require.Equal(t, &api.ProduceBatchResponse{FirstOffset: 1, Count: 2, Duplicate: true}, stripped(batch))

	_, err = ts.client.Produce(ctx, &api.ProduceRequest{Record: rec("x"), ProducerId: 7, Sequence: 5})
	st := requireCode(t, err, codes.FailedPrecondition)
	require.Contains(t, st.Message(), "expected sequence 2")

	for range 2 {
		_, err = ts.client.Produce(ctx, &api.ProduceRequest{Record: rec("plain")})
		require.NoError(t, err)
	}
	log := cfg.CommitLog
	require.Equal(t, 5, log.(interface{ Len(string) int }).Len(api.DefaultTopic), "records held")
}

func stripped(r *api.ProduceBatchResponse) *api.ProduceBatchResponse {
	return &api.ProduceBatchResponse{FirstOffset: r.GetFirstOffset(), Count: r.GetCount(), Duplicate: r.GetDuplicate()}
}

// ProduceStream requests carry their own sequences: a client that resends
// requests after a failover gets the original offsets for those appended,
// in order, and new ones for the rest.
func TestIdempotentProduceStream(t *testing.T) {
	cfg := testConfig(t)
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	send := func(from, to uint64) []*api.ProduceResponse {
		stream, err := ts.client.ProduceStream(ctx)
		require.NoError(t, err)
		for seq := from; seq < to; seq++ {
			require.NoError(t, stream.Send(&api.ProduceRequest{Record: &api.Record{Value: []byte{byte(seq)}}, ProducerId: 3, Sequence: seq}))
		}
		require.NoError(t, stream.CloseSend())
		var got []*api.ProduceResponse
		for seq := from; seq < to; seq++ {
			res, err := stream.Recv()
			require.NoError(t, err, "Recv for sequence %d", seq)
			got = append(got, res)
		}
		return got
	}
	for i, res := range send(0, 10) {
		require.Equal(t, uint64(i), res.GetOffset())
		require.False(t, res.GetDuplicate())
	}
	// Resent from 7 (the last 5 calls are remembered: 5..9), going on to 12.
	for i, res := range send(7, 13) {
		seq := uint64(7 + i)
		require.Equal(t, seq, res.GetOffset(), "offset of sequence %d", seq)
		require.Equal(t, seq < 10, res.GetDuplicate(), "duplicate flag of sequence %d", seq)
	}
	log := cfg.CommitLog
	require.Equal(t, 13, log.(interface{ Len(string) int }).Len(api.DefaultTopic))
}
