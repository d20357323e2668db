package server

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/servertest"
)

// batchValue is the value of record off in the batch tests: its length
// varies with the offset, so byte limits cut batches at varying places.
func batchValue(off int) []byte {
	return append(fmt.Appendf(nil, "record-%d|", off), bytes.Repeat([]byte{'x'}, off%50)...)
}

// appendBatchValues appends records first..first+n-1 with batchValue values.
func appendBatchValues(t *testing.T, log CommitLog, first, n int) {
	t.Helper()
	records := make([]*api.Record, n)
	for k := range records {
		records[k] = &api.Record{Value: batchValue(first + k)}
	}
	got, err := log.AppendBatch(context.Background(), api.DefaultTopic, records)
	require.NoError(t, err)
	require.Equal(t, uint64(first), got)
}

// receiveRecords receives from stream until it has n records, checking each
// response against the request's limits (batched when maxRecords > 0), and
// returns the records and the number of records in each response.
func receiveRecords(t *testing.T, stream grpc.ServerStreamingClient[api.ConsumeResponse], n int, maxRecords int, maxBytes uint64) ([]*api.Record, []int) {
	t.Helper()
	var records []*api.Record
	var sizes []int
	for len(records) < n {
		res, err := stream.Recv()
		require.NoError(t, err)
		if maxRecords == 0 {
			require.NotNil(t, res.GetRecord(), "unbatched response without a record")
			require.Empty(t, res.GetRecords(), "unbatched response with records")
			records = append(records, res.GetRecord())
			sizes = append(sizes, 1)
			continue
		}
		require.Nil(t, res.GetRecord(), "batched response with a record")
		batch := res.GetRecords()
		require.NotEmpty(t, batch, "batched response without records")
		require.LessOrEqual(t, len(batch), maxRecords, "records in one response")
		var size uint64
		for _, r := range batch {
			size += uint64(len(r.GetValue()))
		}
		if len(batch) > 1 {
			require.LessOrEqual(t, size, maxBytes, "value bytes in one response of %d records", len(batch))
		}
		records = append(records, batch...)
		sizes = append(sizes, len(batch))
	}
	require.Len(t, records, n, "records received")
	return records, sizes
}

// requireInOrder checks that records are offsets first.. with batchValue
// values.
func requireInOrder(t *testing.T, records []*api.Record, first int) {
	t.Helper()
	for k, r := range records {
		require.Equal(t, uint64(first+k), r.GetOffset(), "record %d's offset", k)
		require.Equal(t, batchValue(first+k), r.GetValue(), "record %d's value", k)
	}
}

// TestConsumeStreamBatches: a batched stream sends the same records, in
// the same order, as an unbatched one, in responses within the limits,
// full while the log holds more; at the end of the log it waits and goes
// on with what is appended later.
func TestConsumeStreamBatches(t *testing.T) {
	cfg := testConfig(t)
	log := newTestLog(t)
	cfg.CommitLog = log
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	const n = 500
	appendBatchValues(t, log, 0, n)

	unbatchedStream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 3})
	require.NoError(t, err)
	unbatched, _ := receiveRecords(t, unbatchedStream, n-3, 0, 0)
	requireInOrder(t, unbatched, 3)

	for _, lim := range []struct {
		maxRecords int
		maxBytes   uint64
	}{{1, 0}, {7, 0}, {64, 500}, {1000, 0}, {1000, 30}} {
		t.Run(fmt.Sprintf("records=%d/bytes=%d", lim.maxRecords, lim.maxBytes), func(t *testing.T) {
			stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 3, MaxRecords: uint32(lim.maxRecords), MaxBytes: uint32(lim.maxBytes)})
			require.NoError(t, err)
			maxBytes := lim.maxBytes
			if maxBytes == 0 {
				maxBytes = DefaultMaxConsumeBytes
			}
			batched, sizes := receiveRecords(t, stream, n-3, lim.maxRecords, maxBytes)
			require.Equal(t, len(unbatched), len(batched))
			for k := range unbatched {
				require.Equal(t, unbatched[k].GetOffset(), batched[k].GetOffset())
				require.Equal(t, unbatched[k].GetValue(), batched[k].GetValue())
			}
			if lim.maxBytes == 0 {
				// The log held every record when the stream started: every
				// response but the last is full.
				for _, size := range sizes[:len(sizes)-1] {
					require.Equal(t, lim.maxRecords, size, "a response while the consumer was behind: %v", sizes)
				}
			}
		})
	}

	// Caught up: the stream waits, and sends what comes as it comes.
	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: n - 2, MaxRecords: 100})
	require.NoError(t, err)
	got, _ := receiveRecords(t, stream, 2, 100, DefaultMaxConsumeBytes)
	requireInOrder(t, got, n-2)
	require.Eventually(t, waitingFor(log, 1), testTimeout, time.Millisecond, "the batched stream never waited for an append")
	for i := range 3 {
		appendBatchValues(t, log, n+i*5, 5)
		got, sizes := receiveRecords(t, stream, 5, 100, DefaultMaxConsumeBytes)
		requireInOrder(t, got, n+i*5)
		require.Equal(t, []int{5}, sizes, "an append of 5 records reached a waiting stream as %v", sizes)
	}
}

// TestConsumeBatchLimits: limits above the server's get the server's; a
// max_bytes without max_records is InvalidArgument, on ConsumeStream and
// Consume alike; a record larger than max_bytes comes alone.
func TestConsumeBatchLimits(t *testing.T) {
	cfg := testConfig(t)
	log := newTestLog(t)
	cfg.CommitLog = log
	cfg.MaxConsumeRecords = 5
	cfg.MaxConsumeBytes = 200
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	appendBatchValues(t, log, 0, 40)

	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{MaxRecords: 1 << 31, MaxBytes: 1 << 31})
	require.NoError(t, err)
	got, sizes := receiveRecords(t, stream, 40, 5, 200)
	requireInOrder(t, got, 0)
	require.Equal(t, 5, sizes[0], "first response with max_records above the server's 5")

	res, err := ts.client.Consume(ctx, &api.ConsumeRequest{Offset: 10, MaxRecords: 1000})
	require.NoError(t, err)
	require.Len(t, res.GetRecords(), 5, "Consume with max_records above the server's 5")
	require.Nil(t, res.GetRecord())
	requireInOrder(t, res.GetRecords(), 10)

	// Offsets 20-24 hold 30-34 bytes each: 100 bytes take three.
	res, err = ts.client.Consume(ctx, &api.ConsumeRequest{Offset: 20, MaxRecords: 5, MaxBytes: 100})
	require.NoError(t, err)
	require.Len(t, res.GetRecords(), 3, "Consume(20) with max_bytes 100")
	requireInOrder(t, res.GetRecords(), 20)

	// A record larger than max_bytes comes alone.
	res, err = ts.client.Consume(ctx, &api.ConsumeRequest{Offset: 30, MaxRecords: 5, MaxBytes: 1})
	require.NoError(t, err)
	require.Len(t, res.GetRecords(), 1)
	requireInOrder(t, res.GetRecords(), 30)

	// Past the end, unary Consume is out of range, batched or not.
	_, err = ts.client.Consume(ctx, &api.ConsumeRequest{Offset: 40, MaxRecords: 5})
	requireCode(t, err, codes.OutOfRange)

	_, err = ts.client.Consume(ctx, &api.ConsumeRequest{Offset: 0, MaxBytes: 100})
	requireCode(t, err, codes.InvalidArgument)
	stream, err = ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0, MaxBytes: 100})
	require.NoError(t, err)
	_, err = stream.Recv()
	st := requireCode(t, err, codes.InvalidArgument)
	require.Contains(t, st.Message(), "max_bytes")
}

// TestConsumeStreamUnbatchedByDefault: a request without max_records (the
// book's clients) gets one record per response, in record.
func TestConsumeStreamUnbatchedByDefault(t *testing.T) {
	cfg := testConfig(t)
	log := newTestLog(t)
	cfg.CommitLog = log
	ts := newTestServer(t, cfg)
	appendBatchValues(t, log, 0, 20)
	stream, err := ts.client.ConsumeStream(testContext(t), &api.ConsumeRequest{Offset: 0})
	require.NoError(t, err)
	got, sizes := receiveRecords(t, stream, 20, 0, 0)
	requireInOrder(t, got, 0)
	require.Len(t, sizes, 20, "responses for 20 records")
}

// TestConsumeStreamFlowControl: a batched stream whose client does not
// read stops reading the log once the client's flow-control window and
// the server's send quota are full, instead of buffering the topic; once
// the client reads, every record comes.
func TestConsumeStreamFlowControl(t *testing.T) {
	cfg := testConfig(t)
	log := newTestLog(t)
	cfg.CommitLog = log
	ts := newTestServer(t, cfg)
	const n, size = 2000, 10 << 10 // 20 MB of records
	value := bytes.Repeat([]byte{'v'}, size)
	for range n / 100 {
		records := make([]*api.Record, 100)
		for k := range records {
			records[k] = &api.Record{Value: value}
		}
		_, err := log.AppendBatch(context.Background(), api.DefaultTopic, records)
		require.NoError(t, err)
	}
	// A fixed 64 KiB window: no BDP estimation growing it.
	conn, err := grpc.NewClient(ts.conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, conn.Close()) })
	client := api.NewLogClient(conn)

	reads := log.Reads()
	stream, err := client.ConsumeStream(testContext(t), &api.ConsumeRequest{MaxRecords: 10})
	require.NoError(t, err)
	_, err = stream.Header()
	require.NoError(t, err)
	// Wait until the server stops reading: its Send is blocked.
	var last int64 = -1
	require.Eventually(t, func() bool {
		now := log.Reads()
		settled := now == last
		last = now
		return settled
	}, testTimeout, 200*time.Millisecond, "the server never stopped reading")
	t.Logf("batches read while the client read nothing: %d", last-reads)
	// Each read is a batch of 10 records (100 KiB); 200 would be the topic.
	require.Less(t, last-reads, int64(20), "batches read for a client that reads nothing")

	got := 0
	for got < n {
		res, err := stream.Recv()
		require.NoError(t, err)
		for _, r := range res.GetRecords() {
			require.Equal(t, uint64(got), r.GetOffset())
			got++
		}
	}
}

// TestReadBatchOfTheTestLog pins servertest.Log's ReadBatch, which the
// tests above rely on, to the CommitLog contract.
func TestReadBatchOfTheTestLog(t *testing.T) {
	log := servertest.NewLog()
	appendBatchValues(t, log, 0, 10)
	ctx := context.Background()
	got, err := log.ReadBatch(ctx, api.DefaultTopic, 2, 3, 1<<20)
	require.NoError(t, err)
	requireInOrder(t, got, 2)
	require.Len(t, got, 3)
	got, err = log.ReadBatch(ctx, api.DefaultTopic, 2, 0, 0)
	require.NoError(t, err)
	require.Len(t, got, 1, "max_records 0 and max_bytes 0 read one record")
	_, err = log.ReadBatch(ctx, api.DefaultTopic, 10, 3, 1<<20)
	require.ErrorAs(t, err, new(api.ErrOffsetOutOfRange))
}
