package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/servertest"
)

// waitingFor returns a condition for require.Eventually that holds once a
// ConsumeStream has caught up and asked the log for its next change.
func waitingFor(log *servertest.Log, n int64) func() bool {
	return func() bool { return log.AppendedCalls() >= n }
}

// TestConsumeStreamReceivesLaterAppends: a ConsumeStream that reached the end
// of the log gets the records appended afterwards, and does not poll the log
// while it waits.
func TestConsumeStreamReceivesLaterAppends(t *testing.T) {
	cfg := testConfig(t)
	log := newTestLog(t)
	cfg.CommitLog = log
	ts := newTestServer(t, cfg)
	ctx := testContext(t)

	_, err := ts.client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("before")}})
	require.NoError(t, err)
	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
	require.NoError(t, err)
	res, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, []byte("before"), res.Record.Value)

	require.Eventually(t, waitingFor(log, 1), testTimeout, time.Millisecond, "ConsumeStream never waited for an append")
	reads := log.Reads()
	require.Never(t, func() bool { return log.Reads() != reads }, 300*time.Millisecond, 5*time.Millisecond,
		"ConsumeStream read the log while waiting for an append: it polls")

	for i := 1; i <= 3; i++ {
		value := fmt.Appendf(nil, "after %d", i)
		_, err := ts.client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: value}})
		require.NoError(t, err)
		res, err := stream.Recv()
		require.NoError(t, err)
		require.Equalf(t, value, res.Record.Value, "ConsumeStream record %d = %q, want %q", i, res.Record.Value, value)
		require.Equalf(t, uint64(i), res.Record.Offset, "ConsumeStream offset = %d, want %d", res.Record.Offset, i)
	}
}

// TestConsumeStreamFromTheFuture: a stream may start past the end and gets
// the record at its offset once the log reaches it.
func TestConsumeStreamFromTheFuture(t *testing.T) {
	ts := newTestServer(t, testConfig(t))
	ctx := testContext(t)
	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 2})
	require.NoError(t, err)
	for i := range 3 {
		_, err := ts.client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: fmt.Append(nil, i)}})
		require.NoError(t, err)
	}
	res, err := stream.Recv()
	require.NoError(t, err)
	require.Equalf(t, uint64(2), res.Record.Offset, "first record of ConsumeStream(2) has offset %d, want 2", res.Record.Offset)
}

// handlerResults is a stream interceptor that reports each stream handler's
// return value, so a test can see a handler end.
func handlerResults() (chan error, grpc.ServerOption) {
	results := make(chan error, 16)
	return results, grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		results <- err
		return err
	})
}

// receiveWithin waits for one value from ch.
func receiveWithin[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		require.FailNowf(t, "timed out", "waiting for %s", what)
		var zero T
		return zero
	}
}

// TestConsumeStreamEndsOnCancel: cancelling a waiting ConsumeStream ends its
// handler, and no goroutine is left behind.
func TestConsumeStreamEndsOnCancel(t *testing.T) {
	cfg := testConfig(t)
	log := newTestLog(t)
	cfg.CommitLog = log
	results, resultsOpt := handlerResults()
	ts := newTestServer(t, cfg, resultsOpt)
	// Warm the connection up, so that its goroutines are in the baseline.
	_, err := ts.client.GetServers(testContext(t), &api.GetServersRequest{})
	require.NoError(t, err)
	baseline := goleak.IgnoreCurrent()

	ctx, cancel := context.WithCancel(testContext(t))
	stream, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
	require.NoError(t, err)
	require.Eventually(t, waitingFor(log, 1), testTimeout, time.Millisecond, "ConsumeStream never waited for an append")
	cancel()

	handlerErr := receiveWithin(t, results, "the ConsumeStream handler to return after cancel")
	requireCode(t, handlerErr, codes.Canceled)
	_, err = stream.Recv()
	requireCode(t, err, codes.Canceled)
	goleak.VerifyNone(t, baseline)
}

// TestGracefulStopEndsOpenStreams: with Stopping closed, GracefulStop returns
// although a ConsumeStream waits for records and a ProduceStream is open,
// and both streams end with Unavailable.
func TestGracefulStopEndsOpenStreams(t *testing.T) {
	for _, closeStopping := range []bool{true, false} {
		t.Run(fmt.Sprintf("close Stopping=%v", closeStopping), func(t *testing.T) {
			cfg := testConfig(t)
			log := newTestLog(t)
			cfg.CommitLog = log
			stopping := make(chan struct{})
			cfg.Stopping = stopping
			ts := newTestServer(t, cfg)
			ctx := testContext(t)

			consume, err := ts.client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
			require.NoError(t, err)
			produce, err := ts.client.ProduceStream(ctx)
			require.NoError(t, err)
			require.NoError(t, produce.Send(&api.ProduceRequest{Record: &api.Record{Value: []byte("x")}}))
			_, err = produce.Recv()
			require.NoError(t, err)
			_, err = consume.Recv()
			require.NoError(t, err)
			require.Eventually(t, waitingFor(log, 1), testTimeout, time.Millisecond, "ConsumeStream never waited for an append")

			if !closeStopping {
				// Without Stopping, GracefulStop would wait for the clients:
				// the deadline forces the stop.
				stopCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				require.ErrorIs(t, GracefulStop(stopCtx, ts.srv), context.DeadlineExceeded)
				_, err = consume.Recv()
				requireCode(t, err, codes.Unavailable)
				return
			}

			close(stopping)
			stopCtx, cancel := context.WithTimeout(ctx, testTimeout)
			defer cancel()
			require.NoError(t, GracefulStop(stopCtx, ts.srv), "GracefulStop did not return while streams were open")
			_, err = consume.Recv()
			st := requireCode(t, err, codes.Unavailable)
			require.Contains(t, st.Message(), "stopping")
			_, err = produce.Recv()
			requireCode(t, err, codes.Unavailable)
		})
	}
}

// recvCounter is a stream interceptor that counts the messages stream
// handlers receive.
func recvCounter(n *atomic.Int64) grpc.ServerOption {
	return grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &countingStream{ServerStream: ss, received: n})
	})
}

type countingStream struct {
	grpc.ServerStream
	received *atomic.Int64
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.received.Add(1)
	}
	return err
}

// TestProduceStreamPipelines: while one append is in progress the server
// keeps receiving requests, and appends those that queued up as batches
// within the batch limits, answering each in order.
func TestProduceStreamPipelines(t *testing.T) {
	tests := []struct {
		name          string
		maxBatchBytes int
		// queued are the value sizes sent while the first append is held.
		queued []int
		// wantBatches are the sizes of the appends that follow.
		wantBatches []int
	}{
		{"queued requests make one batch", 0, []int{1, 1, 1}, []int{3}},
		{"batches stay within MaxBatchBytes", 20, []int{10, 10, 10, 5, 20}, []int{2, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxRecordBytes = 20
			cfg.MaxBatchBytes = tt.maxBatchBytes
			gate, received, stream, _ := gatedProduceStream(t, cfg)
			send := func(size int) {
				require.NoError(t, stream.Send(&api.ProduceRequest{Record: &api.Record{Value: make([]byte, size)}}))
			}
			send(1)
			require.Equal(t, 1, receiveWithin(t, gate.entered, "the first append"), "first append size")
			// The first append is held. A server that waited for it before
			// reading on would receive nothing more.
			for _, size := range tt.queued {
				send(size)
			}
			want := int64(1 + len(tt.queued))
			require.Eventuallyf(t, func() bool { return received.Load() == want }, testTimeout, time.Millisecond,
				"server received fewer than %d requests while an append was in progress: it does not pipeline", want)
			gate.release <- struct{}{}
			for i, wantSize := range tt.wantBatches {
				got := receiveWithin(t, gate.entered, "the next append")
				require.Equalf(t, wantSize, got, "append %d has %d records, want %d", i+1, got, wantSize)
				gate.release <- struct{}{}
			}
			for want := range uint64(want) {
				res, err := stream.Recv()
				require.NoError(t, err)
				require.Equalf(t, want, res.Offset, "answer %d has offset %d, want %d", want, res.Offset, want)
			}
			require.NoError(t, stream.CloseSend())
			_, err := stream.Recv()
			require.ErrorIs(t, err, io.EOF)
		})
	}
}

// TestConsumeStreamSlowConsumerIsBounded: a client that stops reading holds
// the server back through gRPC flow control, instead of the server reading
// the whole log into memory.
func TestConsumeStreamSlowConsumerIsBounded(t *testing.T) {
	const (
		records    = 200
		recordSize = 16 << 10
		window     = 64 << 10
	)
	cfg := testConfig(t)
	log := newTestLog(t)
	cfg.CommitLog = log
	ts := newTestServer(t, cfg)
	ctx := testContext(t)
	batch := make([]*api.Record, 50)
	for i := range batch {
		batch[i] = &api.Record{Value: make([]byte, recordSize)}
	}
	for range records / len(batch) {
		_, err := ts.client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: batch})
		require.NoError(t, err)
	}

	// A client with fixed (not BDP-grown) flow-control windows that opens a
	// stream and does not read.
	conn, err := grpc.NewClient(ts.conn.Target(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(window),
		grpc.WithInitialConnWindowSize(window))
	require.NoError(t, err)
	defer conn.Close()
	stream, err := api.NewLogClient(conn).ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
	require.NoError(t, err)

	require.Eventually(t, func() bool { return log.Reads() > 0 }, testTimeout, time.Millisecond)
	// The window holds 4 records; gRPC buffers a few more on the server side.
	const bound = 40
	require.Never(t, func() bool { return log.Reads() > bound }, 300*time.Millisecond, 5*time.Millisecond,
		"server read more than %d records for a client that reads nothing: it buffers", bound)
	t.Logf("reads while the client did not read: %d", log.Reads())
	// Reading drains it all.
	for i := range records {
		res, err := stream.Recv()
		require.NoError(t, err)
		require.Equal(t, uint64(i), res.Record.Offset)
	}
}

// heldLog starts each append at once (the records land in start order) but
// reports its outcome only when the test releases it, so that many appends
// are in flight and finish in any order the test picks.
type heldLog struct {
	CommitLog
	started chan *heldAppend
	// failAt makes the append of the request with this value fail.
	failAt string
}

type heldAppend struct {
	done    chan struct{}
	results []api.ProducerResult
	err     error
}

func (a *heldAppend) Done() <-chan struct{} { return a.done }

func (a *heldAppend) Result() ([]api.ProducerResult, error) {
	<-a.done
	return a.results, a.err
}

func (l *heldLog) StartAppend(ctx context.Context, topic string, batches []api.ProducerBatch) (api.AppendWaiter, error) {
	a := &heldAppend{done: make(chan struct{})}
	if len(batches) == 1 && string(batches[0].Records[0].GetValue()) == l.failAt {
		a.err = errors.New("held: disk on fire")
	} else {
		a.results, a.err = l.CommitLog.AppendProduced(ctx, topic, batches)
	}
	l.started <- a
	return a, nil
}

// TestProduceStreamKeepsManyAppendsInFlight: the server starts the next
// append before the last one finished, and answers in request order
// whatever order the appends finish in; a failed append ends the stream
// with its error after the requests before it are answered.
func TestProduceStreamKeepsManyAppendsInFlight(t *testing.T) {
	cfg := testConfig(t)
	log := &heldLog{CommitLog: servertest.NewLog(), started: make(chan *heldAppend, 16), failAt: "v3"}
	cfg.CommitLog = log
	ts := newTestServer(t, cfg)
	stream, err := ts.client.ProduceStream(testContext(t))
	require.NoError(t, err)
	const n = 5
	var held []*heldAppend
	for k := range n {
		require.NoError(t, stream.Send(&api.ProduceRequest{Record: &api.Record{Value: fmt.Appendf(nil, "v%d", k)}}))
		// Each request is started while the ones before are still held.
		held = append(held, receiveWithin(t, log.started, "the next append"))
	}
	for k := n - 1; k >= 0; k-- {
		close(held[k].done)
	}
	for want := range uint64(3) {
		res, err := stream.Recv()
		require.NoError(t, err)
		require.Equalf(t, want, res.GetOffset(), "answer %d has offset %d", want, res.GetOffset())
	}
	_, err = stream.Recv()
	require.Equal(t, codes.Internal, status.Code(err), "stream ended with %v, want the failed append's error", err)
}

// TestProduceStreamBoundsHeldBytes: a stream stops reading once the
// records it holds (read ahead or in flight) reach ProduceStreamWindowBytes,
// so gRPC flow control holds the client back; a record larger than the
// bound still goes through alone, and every record is answered in order.
func TestProduceStreamBoundsHeldBytes(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxRecordBytes = 64
	cfg.ProduceStreamWindowBytes = 30
	gate, received, stream, ctx := gatedProduceStream(t, cfg)
	sizes := []int{10, 10, 10, 10, 10, 40}
	require.NoError(t, stream.Send(&api.ProduceRequest{Record: &api.Record{Value: make([]byte, sizes[0])}}))
	require.Equal(t, 1, receiveWithin(t, gate.entered, "the first append"), "first append size")
	for _, size := range sizes[1:] {
		require.NoError(t, stream.Send(&api.ProduceRequest{Record: &api.Record{Value: make([]byte, size)}}))
	}
	// The first record is held in its append: the stream holds 10 bytes,
	// takes two more records (30 bytes) and receives a fourth that waits
	// for room.
	require.Eventually(t, func() bool { return received.Load() >= 4 }, testTimeout, time.Millisecond,
		"server received fewer than 4 requests (three within 30 bytes, one waiting for room)")
	require.Neverf(t, func() bool { return received.Load() > 4 }, 200*time.Millisecond, 5*time.Millisecond,
		"server read past its %d-byte window while an append was held", cfg.ProduceStreamWindowBytes)

	gate.release <- struct{}{}
	// Release every later append; the goroutine ends with the test's
	// context, which is cancelled before the cleanup waits for it.
	releaserDone := make(chan struct{})
	t.Cleanup(func() { <-releaserDone })
	go func() {
		defer close(releaserDone)
		for {
			select {
			case <-gate.entered:
			case <-ctx.Done():
				return
			}
			select {
			case gate.release <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for want := range uint64(len(sizes)) {
		res, err := stream.Recv()
		require.NoErrorf(t, err, "answer %d", want)
		require.Equalf(t, want, res.GetOffset(), "answer %d has offset %d, want %d", want, res.GetOffset(), want)
	}
	require.NoError(t, stream.CloseSend())
	_, err := stream.Recv()
	require.ErrorIs(t, err, io.EOF)
}

// TestStreamBudget: take admits what fits, a lone request larger than the
// whole budget, and gives up without taking when done is closed.
func TestStreamBudget(t *testing.T) {
	b := newStreamBudget(10)
	never := make(chan struct{})
	require.True(t, b.take(25, never), "take(25) with nothing held = false, want true (a large request goes alone)")
	closed := make(chan struct{})
	close(closed)
	require.False(t, b.take(1, closed), "take(1) with the budget used up and done closed = true, want false")
	b.give(25)
	require.True(t, b.take(6, never), "take(6) after give = false, want true")
	require.True(t, b.take(4, never), "take(4) with 6 of 10 held = false, want true")
	b.give(4)
	require.False(t, b.take(5, closed), "take(5) with 6 of 10 held and done closed = true, want false")
}

// gatedProduceStream opens a ProduceStream on a server with cfg whose log
// holds every append at a gate, counting the requests the server has
// received; ctx is the stream's.
func gatedProduceStream(t *testing.T, cfg *Config) (*appendGate, *atomic.Int64, api.Log_ProduceStreamClient, context.Context) {
	t.Helper()
	gate := newAppendGate()
	cfg.CommitLog = servertest.NewLog(servertest.WithAppendHook(gate.hook))
	received := new(atomic.Int64)
	ts := newTestServer(t, cfg, recvCounter(received))
	ctx := testContext(t)
	stream, err := ts.client.ProduceStream(ctx)
	require.NoError(t, err)
	return gate, received, stream, ctx
}
