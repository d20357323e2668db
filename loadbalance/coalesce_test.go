package loadbalance

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// queuedCalls returns how many Produce calls wait for a batch of topic.
func (c *Client) queuedCalls(topic string) int {
	c.coalescer.mu.Lock()
	defer c.coalescer.mu.Unlock()
	if q := c.coalescer.topics[topic]; q != nil {
		return len(q.queued)
	}
	return 0
}

// produceResult is the outcome of one Produce call made by produceAsyncIn.
type produceResult struct {
	value  string
	offset uint64
	err    error
}

// produceAsyncIn runs client.Produce(ctx, value) on a goroutine; the channel
// gets its outcome.
func produceAsyncIn(ctx context.Context, client *Client, value string) <-chan produceResult {
	done := make(chan produceResult, 1)
	go func() {
		off, err := client.Produce(ctx, []byte(value))
		done <- produceResult{value: value, offset: off, err: err}
	}()
	return done
}

// coalesceSetup is a client on a one-server fake cluster whose leader holds a
// lone Produce call in flight (it is frozen), so that the calls made next
// queue: with CoalesceInFlight 1 they leave as batches once thaw lets the
// lone call end.
type coalesceSetup struct {
	cluster *fakeCluster
	client  *Client
	lone    <-chan produceResult
}

// newCoalesceSetup makes the cluster and client (cfg's Seeds are filled in;
// CoalesceInFlight defaults to 1), writes a warm-up record (offset 0), then
// freezes the leader and sends the lone call "lone".
func newCoalesceSetup(t *testing.T, cfg Config) *coalesceSetup {
	t.Helper()
	cluster := newFakeCluster(t, 1)
	cfg.Seeds = cluster.addrs()
	if cfg.CoalesceInFlight == 0 {
		cfg.CoalesceInFlight = 1
	}
	// Attempts must not time out while the test holds them frozen: the fake
	// would see a retry as a new call.
	cfg.AttemptTimeout = time.Minute
	client := newTestClient(t, cfg)
	ctx := testContext(t)
	_, err := client.Produce(ctx, []byte("warm-up"))
	require.NoError(t, err, "warm-up Produce")
	cluster.server(0).freeze()
	t.Cleanup(cluster.server(0).thaw) // before the servers stop
	lone := produceAsyncIn(ctx, client, "lone")
	require.Eventually(t, func() bool { return cluster.server(0).calls(api.Log_Produce_FullMethodName) == 2 },
		5*time.Second, time.Millisecond, "the lone call never reached the leader")
	return &coalesceSetup{cluster: cluster, client: client, lone: lone}
}

// queue makes one Produce call per value, each after the one before is
// queued, so their arrival order is the order of values.
func (s *coalesceSetup) queue(t *testing.T, ctx context.Context, values ...string) []<-chan produceResult {
	t.Helper()
	var results []<-chan produceResult
	for _, v := range values {
		want := s.client.queuedCalls("") + 1
		results = append(results, produceAsyncIn(ctx, s.client, v))
		require.Eventually(t, func() bool { return s.client.queuedCalls("") == want },
			5*time.Second, time.Millisecond, "Produce(%s) never queued", v)
	}
	return results
}

// wait returns the outcome of each call, failing the test if one takes too
// long.
// requireFollowTheLone checks that every result succeeded at the offsets
// after the lone call's (1), contiguous in arrival order, and that the log
// holds each caller's value there.
func requireFollowTheLone(t *testing.T, cluster *fakeCluster, results []produceResult) {
	t.Helper()
	log := cluster.values()
	for i, r := range results {
		require.NoError(t, r.err, "Produce(%s)", r.value)
		require.Equal(t, uint64(2+i), r.offset, "Produce(%s) offset", r.value)
		require.Equal(t, r.value, string(log[r.offset]), "value at offset %d", r.offset)
	}
}

func wait(t *testing.T, results ...<-chan produceResult) []produceResult {
	t.Helper()
	var out []produceResult
	for _, ch := range results {
		select {
		case r := <-ch:
			out = append(out, r)
		case <-time.After(10 * time.Second):
			t.Fatalf("a Produce call did not return")
		}
	}
	return out
}

func TestProduceCoalescesConcurrentCalls(t *testing.T) {
	s := newCoalesceSetup(t, Config{})
	var values []string
	for i := range 20 {
		values = append(values, fmt.Sprintf("v%02d", i))
	}
	queued := s.queue(t, testContext(t), values...)
	s.cluster.server(0).thaw()

	lone := wait(t, s.lone)[0]
	require.NoError(t, lone.err, "lone Produce")
	require.Equal(t, uint64(1), lone.offset, "lone Produce offset")
	requireFollowTheLone(t, s.cluster, wait(t, queued...))
	require.Len(t, s.cluster.values(), 22, "records in the log")
	require.Equal(t, 2, s.cluster.server(0).calls(api.Log_Produce_FullMethodName),
		"Produce RPCs: want the warm-up and the lone call only")
	batches := s.cluster.batchRequests()
	require.Len(t, batches, 1, "ProduceBatch RPCs: %v", batches)
	require.Equal(t, 20, batches[0].records, "records in the coalesced batch")
	require.NotZero(t, batches[0].producerID, "the batch's producer id")
}

func TestProduceCoalescedBatchRespectsLimits(t *testing.T) {
	tests := []struct {
		name        string
		cfg         Config
		values      int
		wantBatches []int // records of each ProduceBatch RPC
		wantProduce int   // Produce RPCs after the lone one (batches of one)
	}{
		{name: "records", cfg: Config{MaxCoalesceRecords: 3}, values: 7, wantBatches: []int{3, 3}, wantProduce: 1},
		// Values of 4 bytes: two fit in 10.
		{name: "bytes", cfg: Config{MaxCoalesceBytes: 10}, values: 5, wantBatches: []int{2, 2}, wantProduce: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newCoalesceSetup(t, tt.cfg)
			var values []string
			for i := range tt.values {
				values = append(values, fmt.Sprintf("v%03d", i))
			}
			queued := s.queue(t, testContext(t), values...)
			s.cluster.server(0).thaw()
			require.NoError(t, wait(t, s.lone)[0].err, "lone Produce")
			requireFollowTheLone(t, s.cluster, wait(t, queued...))
			var got []int
			for _, b := range s.cluster.batchRequests() {
				got = append(got, b.records)
			}
			require.Equal(t, tt.wantBatches, got, "records per ProduceBatch")
			require.Equal(t, 2+tt.wantProduce, s.cluster.server(0).calls(api.Log_Produce_FullMethodName), "Produce RPCs")
		})
	}
}

func TestProduceWithdrawsACallCancelledWhileQueued(t *testing.T) {
	s := newCoalesceSetup(t, Config{})
	cancelled, cancel := context.WithCancel(testContext(t))
	withdrawn := s.queue(t, cancelled, "withdrawn")
	kept := s.queue(t, testContext(t), "kept")
	cancel()
	got := wait(t, withdrawn...)[0]
	require.ErrorIs(t, got.err, context.Canceled, "Produce cancelled while queued")
	require.Equal(t, codes.Canceled, status.Code(got.err), "Produce cancelled while queued = %v", got.err)
	require.Equal(t, 1, s.client.queuedCalls(""), "calls queued after the withdrawal")

	s.cluster.server(0).thaw()
	require.NoError(t, wait(t, s.lone)[0].err, "lone Produce")
	k := wait(t, kept...)[0]
	require.NoError(t, k.err, "Produce(kept)")
	require.Equal(t, uint64(2), k.offset, "Produce(kept) offset")
	require.Equal(t, []string{"warm-up", "lone", "kept"}, strings.Fields(string(joinValues(s.cluster.values()))),
		"the log: the withdrawn call must not be in it")
	require.Empty(t, s.cluster.batchRequests(), "ProduceBatch RPCs: the one call left goes alone")
}

// joinValues joins values with spaces.
func joinValues(values [][]byte) []byte {
	var out []byte
	for _, v := range values {
		out = append(append(out, v...), ' ')
	}
	return out
}

func TestProduceCoalescedBatchWithOneBadRecordFailsOnlyIt(t *testing.T) {
	s := newCoalesceSetup(t, Config{})
	s.cluster.setMaxRecordBytes(10)
	values := []string{"a", "b", "much-too-large", "c", "d"}
	queued := s.queue(t, testContext(t), values...)
	s.cluster.server(0).thaw()
	require.NoError(t, wait(t, s.lone)[0].err, "lone Produce")
	results := wait(t, queued...)
	log := s.cluster.values()
	next := uint64(2)
	for _, r := range results {
		if r.value == "much-too-large" {
			require.Equal(t, codes.InvalidArgument, status.Code(r.err), "Produce(%s) = %v", r.value, r.err)
			continue
		}
		require.NoError(t, r.err, "Produce(%s)", r.value)
		require.Equal(t, next, r.offset, "Produce(%s) offset (arrival order)", r.value)
		require.Equal(t, r.value, string(log[r.offset]), "value at offset %d", r.offset)
		next++
	}
	require.Len(t, log, 6, "records in the log")
	require.Len(t, s.cluster.batchRequests(), 1, "ProduceBatch RPCs: the refused batch")
	require.Equal(t, 2+len(values), s.cluster.server(0).calls(api.Log_Produce_FullMethodName),
		"Produce RPCs: warm-up, lone, then each call of the refused batch alone")
}

func TestProduceCoalescedBatchRetriedExactlyOnce(t *testing.T) {
	// Two servers: the batch is appended by server 0, which never answers
	// (a leader that crashed after committing); the client retries it on
	// server 1, the new leader, with the same producer and sequence, and
	// every caller gets the offset of the first append.
	cluster := newFakeCluster(t, 2)
	client := newTestClient(t, Config{Seeds: cluster.addrs(), CoalesceInFlight: 1, AttemptTimeout: time.Minute,
		ResolveInterval: time.Hour})
	ctx := testContext(t)
	_, err := client.Produce(ctx, []byte("warm-up"))
	require.NoError(t, err, "warm-up Produce")
	leader := cluster.server(0)
	leader.freeze()
	t.Cleanup(leader.thaw)
	lone := produceAsyncIn(ctx, client, "lone")
	require.Eventually(t, func() bool { return leader.calls(api.Log_Produce_FullMethodName) == 2 },
		5*time.Second, time.Millisecond, "the lone call never reached the leader")
	s := &coalesceSetup{cluster: cluster, client: client, lone: lone}
	values := []string{"a", "b", "c", "d"}
	queued := s.queue(t, ctx, values...)

	leader.loseAnswers()
	leader.thaw()
	require.NoError(t, wait(t, lone)[0].err, "lone Produce")
	require.Eventually(t, func() bool { return len(cluster.values()) == 2+len(values) },
		5*time.Second, time.Millisecond, "the batch was never appended")
	cluster.setLeader(1)
	client.ResolveNow()

	requireFollowTheLone(t, cluster, wait(t, queued...))
	require.Len(t, cluster.values(), 2+len(values), "records in the log: the retry must append nothing")
	batches := cluster.batchRequests()
	require.GreaterOrEqual(t, len(batches), 2, "ProduceBatch RPCs: want the lost one and a retry")
	require.Equal(t, 0, batches[0].server, "first ProduceBatch went to")
	require.Equal(t, 1, batches[len(batches)-1].server, "last ProduceBatch went to")
	for _, b := range batches {
		require.Equal(t, batches[0].producerID, b.producerID, "producer of every attempt")
		require.Equal(t, batches[0].sequence, b.sequence, "sequence of every attempt")
		require.Equal(t, len(values), b.records, "records of every attempt")
	}
}

func TestProduceWithoutCoalescingSendsEachCall(t *testing.T) {
	cluster := newFakeCluster(t, 1)
	client := newTestClient(t, Config{Seeds: cluster.addrs(), NoCoalesce: true, AttemptTimeout: time.Minute})
	ctx := testContext(t)
	_, err := client.Produce(ctx, []byte("warm-up"))
	require.NoError(t, err, "warm-up Produce")
	cluster.server(0).freeze()
	t.Cleanup(cluster.server(0).thaw)
	var results []<-chan produceResult
	for i := range 5 {
		results = append(results, produceAsyncIn(ctx, client, fmt.Sprintf("v%d", i)))
	}
	// All five are in flight at once, one RPC each.
	require.Eventually(t, func() bool { return cluster.server(0).calls(api.Log_Produce_FullMethodName) == 6 },
		5*time.Second, time.Millisecond, "five concurrent calls did not make five RPCs")
	cluster.server(0).thaw()
	got := wait(t, results...)
	log := cluster.values()
	for _, r := range got {
		require.NoError(t, r.err, "Produce(%s)", r.value)
		require.Equal(t, r.value, string(log[r.offset]), "value at offset %d", r.offset)
	}
	require.Len(t, log, 6, "records in the log")
	require.Empty(t, cluster.batchRequests(), "ProduceBatch RPCs")
}

func TestCloseFailsQueuedProduceCalls(t *testing.T) {
	s := newCoalesceSetup(t, Config{})
	queued := s.queue(t, testContext(t), "queued")
	require.NoError(t, s.client.Close())
	got := wait(t, queued...)[0]
	require.ErrorIs(t, got.err, ErrClosed, "queued Produce after Close")
	require.Error(t, wait(t, s.lone)[0].err, "lone Produce in flight at Close")
}

func TestConfigRejectsNegativeCoalesceLimits(t *testing.T) {
	for _, cfg := range []Config{{CoalesceInFlight: -1}, {MaxCoalesceRecords: -1}, {MaxCoalesceBytes: -1}} {
		cfg.Seeds, cfg.Insecure = []string{"127.0.0.1:1"}, true
		_, err := New(cfg)
		require.Error(t, err, "New(%+v)", cfg)
	}
}

func TestProduceCoalescedWithoutIdempotence(t *testing.T) {
	s := newCoalesceSetup(t, Config{NotIdempotent: true})
	queued := s.queue(t, testContext(t), "a", "b", "c")
	s.cluster.server(0).thaw()
	require.NoError(t, wait(t, s.lone)[0].err, "lone Produce")
	requireFollowTheLone(t, s.cluster, wait(t, queued...))
	batches := s.cluster.batchRequests()
	require.Len(t, batches, 1, "ProduceBatch RPCs")
	require.Zero(t, batches[0].producerID, "producer id of a batch from a NotIdempotent client")
}

func TestProduceCallersLeavingASentBatchEndIt(t *testing.T) {
	// The batch is appended but its answer never comes; the callers give up
	// (ctx cancelled): each gets its context's error at once, and the
	// batch's RPC, which no one waits for any more, ends.
	s := newCoalesceSetup(t, Config{})
	ctx, cancel := context.WithCancel(testContext(t))
	queued := s.queue(t, ctx, "a", "b")
	s.cluster.server(0).loseAnswers()
	s.cluster.server(0).thaw()
	require.NoError(t, wait(t, s.lone)[0].err, "lone Produce")
	require.Eventually(t, func() bool { return len(s.cluster.batchRequests()) == 1 && s.client.queuedCalls("") == 0 },
		5*time.Second, time.Millisecond, "the batch was never sent")
	cancel()
	for _, r := range wait(t, queued...) {
		require.ErrorIs(t, r.err, context.Canceled, "Produce(%s) after its caller left", r.value)
		require.Equal(t, codes.Canceled, status.Code(r.err), "Produce(%s) = %v", r.value, r.err)
	}
	// The batch's deadline is the callers' (testContext, 10 s): only their
	// leaving can end it this soon.
	require.Eventually(t, func() bool { return s.client.batchesInFlight() == 0 },
		5*time.Second, time.Millisecond, "the batch's RPC went on after its callers left")
}

// batchesInFlight returns how many coalesced batches are being sent.
func (c *Client) batchesInFlight() int {
	c.coalescer.mu.Lock()
	defer c.coalescer.mu.Unlock()
	return len(c.coalescer.batches)
}
