package loadbalance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// newTestConn dials cluster through a plain grpc.ClientConn with the
// resolver, as a caller that does not use Client would.
func newTestConn(t *testing.T, cfg ResolverConfig, seeds ...string) (api.LogClient, *Builder) {
	t.Helper()
	cfg.Logger = zaptest.NewLogger(t)
	b, err := NewBuilder(cfg)
	require.NoError(t, err)
	conn, err := grpc.NewClient(Scheme+":///"+strings.Join(seeds, ","),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(b))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, conn.Close()) })
	return api.NewLogClient(conn), b
}

func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	cfg.Insecure = true
	cfg.Logger = zaptest.NewLogger(t)
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitForLeaderWrites produces until a write succeeds, i.e. until the
// client's picker has a ready leader.
func waitForLeaderWrites(t *testing.T, client api.LogClient) {
	t.Helper()
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("warm-up")}})
		return err == nil
	}, 5*time.Second, 10*time.Millisecond, "no write succeeded")
}

func TestWritesGoToLeaderReadsSpreadOverFollowers(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	cluster.append([]byte("r0"))
	client, _ := newTestConn(t, ResolverConfig{}, cluster.addrs()[1])
	ctx := testContext(t)

	waitForLeaderWrites(t, client)
	// Wait until both followers are in the picker.
	require.Eventually(t, func() bool {
		if _, err := client.Consume(ctx, &api.ConsumeRequest{Offset: 0}); err != nil {
			return false
		}
		got := cluster.callCounts(api.Log_Consume_FullMethodName)
		return got[1] > 0 && got[2] > 0
	}, 5*time.Second, 10*time.Millisecond, "reads never reached both followers")

	produces := cluster.callCounts(api.Log_Produce_FullMethodName)
	consumes := cluster.callCounts(api.Log_Consume_FullMethodName)
	const n = 20
	for i := range n {
		_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("v")}})
		require.NoError(t, err, "Produce #%d", i)
		_, err = client.Consume(ctx, &api.ConsumeRequest{Offset: 0})
		require.NoError(t, err, "Consume #%d", i)
	}
	gotProduces := diff(cluster.callCounts(api.Log_Produce_FullMethodName), produces)
	gotConsumes := diff(cluster.callCounts(api.Log_Consume_FullMethodName), consumes)
	require.Equal(t, []int{n, 0, 0}, gotProduces, "Produce calls per server")
	require.Equal(t, []int{0, n / 2, n / 2}, gotConsumes, "Consume calls per server (round-robin over followers)")
}

func TestLeaderChangeMovesWritesWithoutReconnecting(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client, b := newTestConn(t, ResolverConfig{ResolveInterval: time.Hour}, cluster.addrs()...)
	ctx := testContext(t)
	waitForLeaderWrites(t, client)
	// Every server is connected once the GetServers calls of the client
	// itself have reached all of them.
	require.Eventually(t, func() bool {
		_, err := client.GetServers(ctx, &api.GetServersRequest{})
		require.NoError(t, err)
		for _, n := range cluster.callCounts(api.Log_GetServers_FullMethodName) {
			if n == 0 {
				return false
			}
		}
		return true
	}, 5*time.Second, 10*time.Millisecond, "not every server is connected")
	connections := cluster.connections()

	cluster.setLeader(2)
	b.ResolveNow()
	require.Eventually(t, func() bool {
		_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("v")}})
		return err == nil && cluster.servers[2].calls(api.Log_Produce_FullMethodName) > 0
	}, 5*time.Second, 10*time.Millisecond, "writes never moved to the new leader")
	produces := cluster.callCounts(api.Log_Produce_FullMethodName)
	for i := range 10 {
		_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("v")}})
		require.NoError(t, err, "Produce #%d", i)
	}
	require.Equal(t, []int{0, 0, 10}, diff(cluster.callCounts(api.Log_Produce_FullMethodName), produces),
		"Produce calls per server after the leader change")
	require.Equal(t, connections, cluster.connections(), "connections accepted per server: a leader change must not reconnect")
}

func TestNoLeaderFailsWithUnavailable(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	cluster.setLeader(-1)
	client, _ := newTestConn(t, ResolverConfig{}, cluster.addrs()[0])
	ctx := testContext(t)
	// Once connected, GetServers works; writes must fail, not hang.
	require.Eventually(t, func() bool {
		_, err := client.GetServers(ctx, &api.GetServersRequest{})
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)

	start := time.Now()
	_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("v")}})
	require.Equal(t, codes.Unavailable, status.Code(err), "Produce with no leader = %v", err)
	require.Less(t, time.Since(start), time.Second, "Produce with no leader took too long")
	require.Equal(t, []int{0, 0, 0}, cluster.callCounts(api.Log_Produce_FullMethodName), "Produce calls reaching servers")
}

func TestNoServerFailsWithUnavailable(t *testing.T) {
	client, _ := newTestConn(t, ResolverConfig{ResolveTimeout: 500 * time.Millisecond}, deadAddr(t), deadAddr(t))
	ctx := testContext(t)
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"Produce", func() error {
			_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{}})
			return err
		}},
		{"Consume", func() error { _, err := client.Consume(ctx, &api.ConsumeRequest{}); return err }},
		{"GetServers", func() error { _, err := client.GetServers(ctx, &api.GetServersRequest{}); return err }},
	} {
		err := call.do()
		require.Equal(t, codes.Unavailable, status.Code(err), "%s with every seed down = %v", call.name, err)
	}
}

func TestClientRidesOverNotLeader(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	// An hour: only the client's reaction to NOT_LEADER can move writes.
	client := newTestClient(t, Config{Seeds: cluster.addrs()[:1], ResolveInterval: time.Hour})
	ctx := testContext(t)
	_, err := client.Produce(ctx, []byte("first"))
	require.NoError(t, err)

	// Leadership moves; the client's picker still points at server 0, which
	// now refuses writes with NOT_LEADER.
	cluster.setLeader(1)
	offset, err := client.Produce(ctx, []byte("second"))
	require.NoError(t, err)
	require.Equal(t, uint64(1), offset, "Produce offset")
	got := cluster.callCounts(api.Log_Produce_FullMethodName)
	require.GreaterOrEqual(t, got[0], 2, "Produce calls on the old leader = %d, want the first write and at least one refusal", got[0])
	require.Equal(t, 1, got[1], "Produce calls on the new leader")

	first, err := client.ProduceBatch(ctx, [][]byte{[]byte("a"), []byte("b")})
	require.NoError(t, err)
	require.Equal(t, uint64(2), first, "ProduceBatch first offset")
	require.Equal(t, []int{0, 1, 0}, cluster.callCounts(api.Log_ProduceBatch_FullMethodName), "ProduceBatch calls per server")
}

func TestClientGivesUpAtDeadline(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	cluster.setLeader(-1)
	client := newTestClient(t, Config{Seeds: cluster.addrs()[:1], RetryTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := client.Produce(context.Background(), []byte("v"))
	elapsed := time.Since(start)
	require.Equal(t, codes.Unavailable, status.Code(err), "Produce with no leader = %v", err)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.GreaterOrEqual(t, elapsed, 300*time.Millisecond, "Produce gave up before RetryTimeout")
	require.Less(t, elapsed, 3*time.Second, "Produce kept retrying past RetryTimeout")
}

func TestClientDoesNotRetryOtherErrors(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client := newTestClient(t, Config{Seeds: cluster.addrs()[:1]})
	ctx := testContext(t)
	_, err := client.Consume(ctx, 42)
	require.Equal(t, codes.OutOfRange, status.Code(err), "Consume(42) on an empty log = %v", err)
	total := 0
	for _, n := range cluster.callCounts(api.Log_Consume_FullMethodName) {
		total += n
	}
	// Not retried: one call, and one to the leader to confirm it
	// (TestConsumeChecksOutOfRangeWithTheLeader).
	require.LessOrEqual(t, total, 2, "Consume calls for one non-retryable failure")
}

func TestClientConsumeAndGetServers(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	client := newTestClient(t, Config{Seeds: cluster.addrs()[2:]})
	ctx := testContext(t)
	for i := range 3 {
		off, err := client.Produce(ctx, fmt.Appendf(nil, "v%d", i))
		require.NoError(t, err)
		require.Equal(t, uint64(i), off)
	}
	for i := range 3 {
		rec, err := client.Consume(ctx, uint64(i))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("v%d", i), string(rec.GetValue()), "Consume(%d)", i)
	}
	servers, err := client.GetServers(ctx)
	require.NoError(t, err)
	require.Len(t, servers, 3)
}

func TestConsumeStreamResumesOnAnotherServer(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	for i := range 5 {
		cluster.append(fmt.Appendf(nil, "v%d", i))
	}
	client := newTestClient(t, Config{Seeds: cluster.addrs(), InitialBackoff: 10 * time.Millisecond})
	// Consume calls only after both followers are in the picker, so the
	// resumed stream has somewhere else to go.
	ctx := testContext(t)
	waitBothFollowers(t, ctx, client, cluster)

	var (
		mu       sync.Mutex
		received []uint64
	)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(received)
	}
	streamCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- client.ConsumeStream(streamCtx, 0, func(r *api.Record) error {
			mu.Lock()
			defer mu.Unlock()
			received = append(received, r.GetOffset())
			return nil
		})
	}()
	require.Eventually(t, func() bool { return count() == 5 }, 5*time.Second, 10*time.Millisecond)

	streams := cluster.callCounts(api.Log_ConsumeStream_FullMethodName)
	first := -1
	for i, n := range streams {
		if n > 0 {
			first = i
		}
	}
	require.NotEqual(t, -1, first, "no server got the stream")
	require.NotEqual(t, 0, first, "the stream went to the leader while followers were ready")
	cluster.servers[first].stop()
	for i := 5; i < 10; i++ {
		cluster.append(fmt.Appendf(nil, "v%d", i))
	}
	require.Eventually(t, func() bool { return count() == 10 }, 10*time.Second, 10*time.Millisecond,
		"records after the first server stopped")
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled, "ConsumeStream after cancel")
	case <-time.After(5 * time.Second):
		t.Fatal("ConsumeStream did not return after cancel")
	}

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, received, "offsets handed to fn")
	other := 3 - first // the other follower
	require.Contains(t, cluster.servers[other].streamOffsets(), uint64(5),
		"streams opened on server %d: want one resumed at offset 5", other)
}

// TestConsumeBatchesResumesOnAnotherServer: ConsumeBatches asks for
// batches, hands fn every record once, in order, in batches of
// consecutive offsets, and resumes a broken stream on another server from
// the next offset; ConsumeStream with WithBatches receives batches too and
// still calls fn per record.
func TestConsumeBatchesResumesOnAnotherServer(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	for i := range 50 {
		cluster.append(fmt.Appendf(nil, "v%d", i))
	}
	client := newTestClient(t, Config{Seeds: cluster.addrs(), InitialBackoff: 10 * time.Millisecond})
	ctx := testContext(t)
	waitBothFollowers(t, ctx, client, cluster)

	var (
		mu       sync.Mutex
		received []uint64
		batches  int
	)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(received)
	}
	streamCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- client.ConsumeBatches(streamCtx, 0, func(records []*api.Record) error {
			mu.Lock()
			defer mu.Unlock()
			batches++
			for k, r := range records {
				if r.GetOffset() != records[0].GetOffset()+uint64(k) {
					return fmt.Errorf("batch from %d has offset %d at %d", records[0].GetOffset(), r.GetOffset(), k)
				}
				received = append(received, r.GetOffset())
			}
			return nil
		}, WithBatches(20, 0))
	}()
	require.Eventually(t, func() bool { return count() == 50 }, 5*time.Second, 10*time.Millisecond)

	first := -1
	for i, n := range cluster.callCounts(api.Log_ConsumeStream_FullMethodName) {
		if n > 0 {
			first = i
		}
	}
	require.NotEqual(t, -1, first, "no server got the stream")
	require.Equal(t, []uint32{20}, cluster.servers[first].streamMaxRecords(), "max_records of the stream")
	cluster.servers[first].stop()
	for i := 50; i < 60; i++ {
		cluster.append(fmt.Appendf(nil, "v%d", i))
	}
	require.Eventually(t, func() bool { return count() == 60 }, 10*time.Second, 10*time.Millisecond,
		"records after the first server stopped")
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled, "ConsumeBatches after cancel")
	case <-time.After(5 * time.Second):
		t.Fatal("ConsumeBatches did not return after cancel")
	}
	mu.Lock()
	want := make([]uint64, 60)
	for i := range want {
		want[i] = uint64(i)
	}
	require.Equal(t, want, received, "offsets handed to fn")
	require.Less(t, batches, 20, "50 records held before the stream opened came in %d batches", batches)
	mu.Unlock()

	// ConsumeStream with WithBatches: batches on the wire, fn per record.
	var offsets []uint64
	errEnough := errors.New("enough")
	err := client.ConsumeStream(ctx, 55, func(r *api.Record) error {
		offsets = append(offsets, r.GetOffset())
		if len(offsets) == 5 {
			return errEnough
		}
		return nil
	}, WithBatches(3, 0))
	require.ErrorIs(t, err, errEnough)
	require.Equal(t, []uint64{55, 56, 57, 58, 59}, offsets)
	var asked []uint32
	for _, srv := range cluster.servers {
		asked = append(asked, srv.streamMaxRecords()...)
	}
	require.Contains(t, asked, uint32(3), "ConsumeStream with WithBatches(3, 0) asked for %v", asked)
}

func TestConsumeStreamReturnsCallbackError(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	cluster.append([]byte("v0"))
	client := newTestClient(t, Config{Seeds: cluster.addrs()[:1]})
	errStop := errors.New("stop here")
	err := client.ConsumeStream(testContext(t), 0, func(*api.Record) error { return errStop })
	require.ErrorIs(t, err, errStop, "ConsumeStream = %v, want fn's error", err)
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{name: "insecure", cfg: Config{Seeds: []string{"127.0.0.1:1"}, Insecure: true}, ok: true},
		{name: "no seeds", cfg: Config{Insecure: true}},
		{name: "seed without port", cfg: Config{Seeds: []string{"localhost"}, Insecure: true}},
		{name: "comma in seed", cfg: Config{Seeds: []string{"a:1,b:2"}, Insecure: true}},
		{name: "neither TLS nor Insecure", cfg: Config{Seeds: []string{"127.0.0.1:1"}}},
		{name: "negative timeout", cfg: Config{Seeds: []string{"127.0.0.1:1"}, Insecure: true, RetryTimeout: -1}},
		{name: "backoff inverted", cfg: Config{Seeds: []string{"127.0.0.1:1"}, Insecure: true,
			InitialBackoff: time.Second, MaxBackoff: time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = zaptest.NewLogger(t)
			c, err := New(tt.cfg)
			if !tt.ok {
				require.Error(t, err, "New(%s) = nil error", tt.name)
				return
			}
			require.NoError(t, err)
			require.NoError(t, c.Close())
			require.NoError(t, c.Close(), "second Close")
		})
	}
}

func diff(after, before []int) []int {
	out := make([]int, len(after))
	for i := range after {
		out[i] = after[i] - before[i]
	}
	return out
}

// A consumer that has caught up sits on an open stream without records. Two
// breaks far apart (more than StreamResumeTimeout) must not end it: the
// stream resumed after the first break was up, so the second break starts a
// new failure period instead of continuing the first.
func TestConsumeStreamSurvivesBreaksWhileIdle(t *testing.T) {
	const resumeTimeout = 300 * time.Millisecond
	cluster := newFakeCluster(t, 3)
	cluster.append([]byte("v0"))
	client := newTestClient(t, Config{
		Seeds: cluster.addrs(), StreamResumeTimeout: resumeTimeout,
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	ctx := testContext(t)
	waitBothFollowers(t, ctx, client, cluster)

	records := make(chan *api.Record, 16)
	done := make(chan error, 1)
	go func() {
		done <- client.ConsumeStream(ctx, 0, func(r *api.Record) error {
			records <- r
			return nil
		})
	}()
	select {
	case r := <-records:
		require.Equal(t, uint64(0), r.GetOffset())
	case err := <-done:
		t.Fatalf("ConsumeStream ended: %v", err)
	case <-ctx.Done():
		t.Fatal("no first record")
	}

	// serving is the server holding the one stream opened at offset 0.
	serving := func() int {
		for i, s := range cluster.servers {
			if slices.Contains(s.streamOffsets(), 0) && s.calls(api.Log_ConsumeStream_FullMethodName) == 1 {
				return i
			}
		}
		return -1
	}
	first := serving()
	require.NotEqual(t, -1, first, "no server holds the stream")
	// resumedOn is a server, other than skip, with a stream opened at
	// offset 1: one resumed after a break.
	resumedOn := func(skip ...int) int {
		for i, s := range cluster.servers {
			if !slices.Contains(skip, i) && slices.Contains(s.streamOffsets(), 1) {
				return i
			}
		}
		return -1
	}

	cluster.servers[first].stop()
	var second int
	require.Eventually(t, func() bool { second = resumedOn(first); return second >= 0 },
		5*time.Second, 10*time.Millisecond, "the stream never resumed after the first break")
	// Idle on the resumed stream for longer than StreamResumeTimeout.
	require.Never(t, func() bool { return len(done) > 0 }, 2*resumeTimeout, 10*time.Millisecond,
		"ConsumeStream ended while idle on a working stream")

	cluster.servers[second].stop()
	require.Eventually(t, func() bool { return resumedOn(first, second) >= 0 || len(done) > 0 },
		5*time.Second, 10*time.Millisecond, "the stream never resumed after the second break")
	cluster.append([]byte("v1"))
	select {
	case r := <-records:
		require.Equal(t, uint64(1), r.GetOffset())
	case err := <-done:
		t.Fatalf("ConsumeStream ended after the second break: %v", err)
	case <-ctx.Done():
		t.Fatal("no record after the second break")
	}
}

// A deadline that cuts the last attempt short does not hide why the attempts
// before it failed: the error reports the refused connection, not only
// "deadline exceeded".
func TestClientGaveUpKeepsTheCause(t *testing.T) {
	client := newTestClient(t, Config{Seeds: []string{deadAddr(t)}, RetryTimeout: 300 * time.Millisecond})
	refused := status.Error(codes.Unavailable, "dial tcp 127.0.0.1:1: connect: connection refused")
	calls := 0
	err := client.retry(context.Background(), "test", false, func(ctx context.Context) error {
		calls++
		if calls == 1 {
			return refused
		}
		<-ctx.Done() // the second attempt hangs until the caller's deadline
		return status.FromContextError(ctx.Err()).Err()
	})
	require.Equal(t, 2, calls)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "connection refused", "retry = %v", err)
	require.Equal(t, codes.Unavailable, status.Code(err))
}

// TestConsumeChecksOutOfRangeWithTheLeader: a follower that fell behind
// answers OutOfRange for records the leader acknowledged; Consume asks the
// leader before it believes it. A read past the real end is still
// OutOfRange.
func TestConsumeChecksOutOfRangeWithTheLeader(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	cluster.append([]byte("r0"), []byte("r1"), []byte("r2"))
	cluster.server(1).lagBehind(3)
	cluster.server(2).lagBehind(3)
	client := newTestClient(t, Config{Seeds: cluster.addrs()})
	ctx := testContext(t)
	// Wait until both followers take reads.
	waitBothFollowers(t, ctx, client, cluster)

	before := cluster.callCounts(api.Log_Consume_FullMethodName)
	rec, err := client.Consume(ctx, 2)
	require.NoError(t, err, "Consume(2) with both followers behind")
	require.Equal(t, "r2", string(rec.GetValue()))
	calls := diff(cluster.callCounts(api.Log_Consume_FullMethodName), before)
	require.Equal(t, 1, calls[0], "Consume calls on the leader")
	require.Equal(t, 1, calls[1]+calls[2], "Consume calls on the followers")

	_, err = client.Consume(ctx, 3)
	require.Equal(t, codes.OutOfRange, status.Code(err), "Consume(3) past the end = %v", err)

	// ConsumeBatch: the same check with the leader, which holds the batch.
	batch, err := client.ConsumeBatch(ctx, 1)
	require.NoError(t, err, "ConsumeBatch(1) with both followers behind")
	require.Len(t, batch, 2)
	require.Equal(t, "r1", string(batch[0].GetValue()))
	require.Equal(t, "r2", string(batch[1].GetValue()))
	_, err = client.ConsumeBatch(ctx, 3)
	require.Equal(t, codes.OutOfRange, status.Code(err), "ConsumeBatch(3) past the end = %v", err)
}

// TestConsumeBatch: ConsumeBatch returns the records from the offset on, in
// order, within WithBatches' limit, from a follower; Consume still returns
// one record even with WithBatches.
func TestConsumeBatch(t *testing.T) {
	cluster := newFakeCluster(t, 3)
	for i := range 10 {
		cluster.append(fmt.Appendf(nil, "r%d", i))
	}
	client := newTestClient(t, Config{Seeds: cluster.addrs()})
	ctx := testContext(t)
	waitBothFollowers(t, ctx, client, cluster)

	before := cluster.callCounts(api.Log_Consume_FullMethodName)
	batch, err := client.ConsumeBatch(ctx, 3, WithBatches(4, 0))
	require.NoError(t, err)
	require.Len(t, batch, 4)
	for k, r := range batch {
		require.Equal(t, uint64(3+k), r.GetOffset())
		require.Equal(t, fmt.Sprintf("r%d", 3+k), string(r.GetValue()))
	}
	calls := diff(cluster.callCounts(api.Log_Consume_FullMethodName), before)
	require.Equal(t, 0, calls[0], "ConsumeBatch calls on the leader")

	batch, err = client.ConsumeBatch(ctx, 8)
	require.NoError(t, err)
	require.Len(t, batch, 2, "ConsumeBatch(8) of 10 records")

	rec, err := client.Consume(ctx, 5, WithBatches(4, 0))
	require.NoError(t, err)
	require.Equal(t, "r5", string(rec.GetValue()))
}
