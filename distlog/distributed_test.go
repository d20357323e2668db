package distlog

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

// waitTimeout bounds every wait of the cluster tests; Raft with the small
// timeouts below settles in well under a second even under -race.
const waitTimeout = 15 * time.Second

// testNode is one member of a testCluster.
type testNode struct {
	id   string
	dir  string
	addr string // advertised Raft address; kept across restarts
	log  *DistributedLog
}

// testCluster is n DistributedLogs on 127.0.0.1 with mutual TLS between
// them, node 0 bootstrapping and the others joined through the leader.
type testCluster struct {
	t      testing.TB
	pki    *testPKI
	nodes  []*testNode
	config func(*DistributedConfig) // applied to every node's config, may be nil
}

func newTestCluster(t testing.TB, n int, config func(*DistributedConfig)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, pki: newTestPKI(t), config: config}
	for i := 0; i < n; i++ {
		node := &testNode{id: fmt.Sprintf("node-%d", i), dir: filepath.Join(t.TempDir(), fmt.Sprintf("node-%d", i))}
		c.nodes = append(c.nodes, node)
		c.start(i)
		if i == 0 {
			c.waitLeader()
			continue
		}
		c.join(i)
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			if node.log != nil {
				require.NoError(t, node.log.Close())
			}
		}
	})
	return c
}

// start opens node i on its address (a fresh 127.0.0.1 port the first time).
func (c *testCluster) start(i int) {
	c.t.Helper()
	require.NoError(c.t, c.open(i))
}

// open is start, returning NewDistributedLog's error.
func (c *testCluster) open(i int) error {
	c.t.Helper()
	node := c.nodes[i]
	addr := node.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	require.NoError(c.t, err)
	node.addr = ln.Addr().String()

	cfg := DistributedConfig{Logger: zaptest.NewLogger(c.t).Named(node.id)}
	cfg.Log.Segment.MaxIndexBytes = 64 * entWidth
	cfg.Log.MaxRecordBytes = 4096
	cfg.MaxBatchBytes = 64 << 10
	cfg.ReadWaitTimeout = 5 * time.Second
	cfg.Raft.LocalID = raft.ServerID(node.id)
	cfg.Raft.StreamLayer = NewStreamLayer(ln, c.pki.serverTLS(), c.pki.peerTLS())
	cfg.Raft.Bootstrap = i == 0
	cfg.Raft.HeartbeatTimeout = 150 * time.Millisecond
	cfg.Raft.ElectionTimeout = 150 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.Raft.CommitTimeout = 10 * time.Millisecond
	cfg.Raft.TransportTimeout = 2 * time.Second
	if c.config != nil {
		c.config(&cfg)
	}
	node.log, err = NewDistributedLog(node.dir, cfg)
	return err
}

// stop closes node i.
func (c *testCluster) stop(i int) {
	c.t.Helper()
	require.NoError(c.t, c.nodes[i].log.Close())
	c.nodes[i].log = nil
}

// join adds node i through the leader and waits until it follows.
func (c *testCluster) join(i int) {
	c.t.Helper()
	node := c.nodes[i]
	require.Eventually(c.t, func() bool {
		return c.waitLeader().log.Join(node.id, node.addr) == nil
	}, waitTimeout, 10*time.Millisecond, "Join(%s)", node.id)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(c.t, node.log.WaitForLeader(ctx))
}

// waitLeader waits until a running node leads and returns it.
func (c *testCluster) waitLeader() *testNode {
	c.t.Helper()
	var leader *testNode
	require.Eventually(c.t, func() bool {
		for _, node := range c.nodes {
			if node.log != nil && node.log.IsLeader() {
				leader = node
				return true
			}
		}
		return false
	}, waitTimeout, 5*time.Millisecond, "no leader")
	return leader
}

func (c *testCluster) followers(leader *testNode) []*testNode {
	var out []*testNode
	for _, node := range c.nodes {
		if node != leader && node.log != nil {
			out = append(out, node)
		}
	}
	return out
}

// appendValues appends each value through the leader and returns the
// acknowledged offsets, retrying across a leader change.
func (c *testCluster) appendValues(values ...string) []uint64 {
	c.t.Helper()
	offsets := make([]uint64, len(values))
	for k, v := range values {
		require.Eventually(c.t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			off, err := appendOne(ctx, c.waitLeader().log, &api.Record{Value: []byte(v)})
			offsets[k] = off
			return err == nil
		}, waitTimeout, 10*time.Millisecond, "Append(%q)", v)
	}
	return offsets
}

// requireHolds checks that node holds exactly want at offsets 0..len-1 (it
// waits, through Read, for records not applied there yet).
func requireHolds(t *testing.T, node *testNode, want []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for off, v := range want {
		rec, err := node.log.Read(ctx, "", uint64(off))
		require.NoError(t, err, "%s: Read(%d)", node.id, off)
		require.Equal(t, v, string(rec.GetValue()), "%s: Read(%d) = %q, want %q", node.id, off, rec.GetValue(), v)
		require.Equal(t, uint64(off), rec.GetOffset())
	}
	require.Eventually(t, func() bool { return nextOffset(node.log) == uint64(len(want)) }, waitTimeout, 5*time.Millisecond,
		"%s: NextOffset() = %d, want %d", node.id, nextOffset(node.log), len(want))
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for k := range out {
		out[k] = fmt.Sprintf("%s-%d", prefix, k)
	}
	return out
}

func TestDistributedLogReplicates(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.waitLeader()
	ctx := context.Background()

	want := values("record", 10)
	for k, v := range want[:5] {
		off, err := appendOne(ctx, leader.log, &api.Record{Value: []byte(v)})
		require.NoError(t, err)
		require.Equal(t, uint64(k), off, "Append(%q) = %d, want %d", v, off, k)
	}
	// A batch is one Raft entry, at consecutive offsets.
	lastIndex := leader.log.Stats().LastIndex
	batch := make([]*api.Record, 5)
	for k, v := range want[5:] {
		batch[k] = &api.Record{Value: []byte(v)}
	}
	first, err := leader.log.AppendBatch(ctx, "", batch)
	require.NoError(t, err)
	require.Equal(t, uint64(5), first)
	require.Equal(t, lastIndex+1, leader.log.Stats().LastIndex, "a batch of 5 took %d Raft entries, want 1",
		leader.log.Stats().LastIndex-lastIndex)

	// Every node, read right away (followers wait for what they have not
	// applied yet), holds the same records at the same offsets.
	for _, node := range c.nodes {
		requireHolds(t, node, want)
		servers, err := node.log.GetServers()
		require.NoError(t, err)
		require.Len(t, servers, 3)
		for _, srv := range servers {
			n := c.nodes[slices.IndexFunc(c.nodes, func(n *testNode) bool { return n.id == srv.GetId() })]
			require.Equal(t, n.addr, srv.GetRpcAddr())
			require.Equal(t, n == leader, srv.GetIsLeader(), "%s sees %s is_leader = %v", node.id, srv.GetId(), srv.GetIsLeader())
		}
	}

	// The leader has applied everything: a read past the end fails at
	// once rather than waiting.
	start := time.Now()
	_, err = leader.log.Read(ctx, "", 1000)
	var outOfRange api.ErrOffsetOutOfRange
	require.ErrorAs(t, err, &outOfRange)
	require.Equal(t, uint64(1000), outOfRange.Offset)
	require.Less(t, time.Since(start), time.Second, "the leader waited on a read past the end")
}

func TestDistributedLogFollowerReadWaitIsBounded(t *testing.T) {
	c := newTestCluster(t, 2, func(cfg *DistributedConfig) { cfg.ReadWaitTimeout = 200 * time.Millisecond })
	follower := c.followers(c.waitLeader())[0]
	c.appendValues("a")
	requireHolds(t, follower, []string{"a"})

	start := time.Now()
	_, err := follower.log.Read(context.Background(), "", 5)
	elapsed := time.Since(start)
	var outOfRange api.ErrOffsetOutOfRange
	require.ErrorAs(t, err, &outOfRange)
	require.GreaterOrEqual(t, elapsed, 200*time.Millisecond, "follower did not wait for an unapplied offset")
	require.Less(t, elapsed, 3*time.Second, "follower wait not bounded by ReadWaitTimeout")

	// A cancelled context ends the wait with its error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = follower.log.Read(ctx, "", 5)
	require.ErrorIs(t, err, context.Canceled)

	// A record that arrives during the wait is returned.
	done := make(chan error, 1)
	go func() {
		rec, err := follower.log.Read(context.Background(), "", 1)
		if err == nil && string(rec.GetValue()) != "b" {
			err = fmt.Errorf("Read(1) = %q, want %q", rec.GetValue(), "b")
		}
		done <- err
	}()
	c.appendValues("b")
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("Read(1) on the follower did not return")
	}
}

// ReadBatch on a follower: it waits (bounded) for an offset written
// through the leader and not applied yet, returns records in order across
// the topic's segment boundaries (64 records each here), never more than
// asked, and past the end waits no longer than ReadWaitTimeout.
func TestDistributedLogFollowerReadBatch(t *testing.T) {
	c := newTestCluster(t, 2, func(cfg *DistributedConfig) { cfg.ReadWaitTimeout = 300 * time.Millisecond })
	leader := c.waitLeader()
	follower := c.followers(leader)[0]
	ctx := context.Background()

	want := values("batch", 300)
	for k := 0; k < len(want); k += 50 {
		records := make([]*api.Record, 50)
		for j := range records {
			records[j] = &api.Record{Value: []byte(want[k+j])}
		}
		first, err := leader.log.AppendBatch(ctx, "", records)
		require.NoError(t, err)
		require.Equal(t, uint64(k), first)
	}
	// Read your writes: the last batch was acknowledged by the leader; the
	// follower waits for it rather than answering out of range.
	batch, err := follower.log.ReadBatch(ctx, "", 299, 10, 1<<20)
	require.NoError(t, err)
	require.Len(t, batch, 1)
	require.Equal(t, want[299], string(batch[0].GetValue()))

	var got []string
	for off := uint64(0); off < uint64(len(want)); {
		batch, err := follower.log.ReadBatch(ctx, "", off, 45, 1<<20)
		require.NoError(t, err, "ReadBatch(%d)", off)
		require.NotEmpty(t, batch)
		require.LessOrEqual(t, len(batch), 45)
		for _, rec := range batch {
			require.Equal(t, off, rec.GetOffset())
			got = append(got, string(rec.GetValue()))
			off++
		}
	}
	require.Equal(t, want, got)

	start := time.Now()
	_, err = follower.log.ReadBatch(ctx, "", 300, 10, 1<<20)
	require.ErrorAs(t, err, new(api.ErrOffsetOutOfRange))
	require.Less(t, time.Since(start), 3*time.Second, "follower wait not bounded by ReadWaitTimeout")

	_, err = follower.log.ReadBatch(ctx, "nope", 0, 10, 1<<20)
	require.ErrorAs(t, err, new(api.TopicNotFoundError))
}

func TestDistributedLogFollowerAppendReturnsNotLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.appendValues("a")
	leader := c.waitLeader()
	// The write may have landed twice if it was retried across an
	// election; what matters is that followers hold exactly the leader's.
	held := topicContents(t, leader, DefaultTopic)
	for _, follower := range c.followers(leader) {
		c.requireTopicMatches(follower, DefaultTopic, []string{"a"})
		for _, appendFn := range []func() error{
			func() error {
				_, err := appendOne(context.Background(), follower.log, &api.Record{Value: []byte("x")})
				return err
			},
			func() error {
				_, err := follower.log.AppendBatch(context.Background(), "", []*api.Record{{Value: []byte("x")}, {Value: []byte("y")}})
				return err
			},
		} {
			err := appendFn()
			var notLeader api.ErrNotLeader
			require.ErrorAs(t, err, &notLeader, "%s: Append = %v, want ErrNotLeader", follower.id, err)
			require.Equal(t, leader.id, notLeader.LeaderID)
			require.Equal(t, leader.addr, notLeader.LeaderAddr)
		}
		require.Equal(t, uint64(len(held)), nextOffset(follower.log), "%s appended locally", follower.id)
		// Membership changes also go through the leader only.
		var notLeader api.ErrNotLeader
		require.ErrorAs(t, follower.log.Join("node-9", "127.0.0.1:1"), &notLeader)
	}
	requireHolds(t, leader, held)
}

func TestDistributedLogRefusesBadAppendsBeforeRaft(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	leader := c.waitLeader()
	ctx := context.Background()
	c.appendValues("first") // after the new leader's own entries
	before := leader.log.Stats().LastIndex
	big := make([]byte, 4097)
	tests := []struct {
		name    string
		records []*api.Record
		wantErr error
	}{
		{name: "record too large", records: []*api.Record{{Value: []byte("ok")}, {Value: big}}, wantErr: ErrRecordTooLarge},
		{name: "batch too large", records: slices.Repeat([]*api.Record{{Value: make([]byte, 4000)}}, 17), wantErr: ErrBatchTooLarge},
		{name: "empty batch", records: nil, wantErr: ErrEmptyBatch},
		{name: "nil record", records: []*api.Record{nil}, wantErr: ErrNilRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := leader.log.AppendBatch(ctx, "", tt.records)
			require.ErrorIs(t, err, tt.wantErr)
			require.Equal(t, before, leader.log.Stats().LastIndex, "a refused batch reached Raft")
		})
	}
	// An expired context is refused too.
	expired, cancel := context.WithTimeout(ctx, -time.Second)
	defer cancel()
	_, err := appendOne(expired, leader.log, &api.Record{Value: []byte("late")})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	off, err := appendOne(ctx, leader.log, &api.Record{Value: []byte("fine")})
	require.NoError(t, err)
	require.Equal(t, uint64(1), off)
}

func TestDistributedLogApplyErrorReachesTheCaller(t *testing.T) {
	// A command the FSM refuses (here malformed: it cannot come from
	// AppendBatch) reports its error through the Apply response.
	c := newTestCluster(t, 1, nil)
	leader := c.waitLeader()
	future := leader.log.Raft().Apply([]byte{commandVersion, kindAppend, 5}, time.Second)
	require.NoError(t, future.Error())
	res, ok := future.Response().(applyResult)
	require.True(t, ok)
	require.ErrorIs(t, res.err, ErrBadCommand)
	c.appendValues("after")
	requireHolds(t, leader, []string{"after"})
}

func TestDistributedLogLeaderFailover(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.waitLeader()
	oldIndex := slices.Index(c.nodes, old)
	want := values("before", 20)
	c.appendValues(want...)

	c.stop(oldIndex)
	leader := c.waitLeader()
	require.NotEqual(t, old.id, leader.id)
	after := values("after", 20)
	offsets := c.appendValues(after...)
	for k, off := range offsets {
		// A write retried across the election may land twice
		// (at-least-once), so offsets may skip; they never go back.
		require.GreaterOrEqual(t, off, uint64(20+k), "Append after failover = %d, want at least %d", off, 20+k)
	}
	want = append(want, after...)
	for _, node := range c.followers(nil) {
		c.requireTopicMatches(node, DefaultTopic, want) // no acknowledged record lost
	}

	// The old leader comes back and catches up.
	c.start(oldIndex)
	want = append(want, "rejoined")
	c.appendValues("rejoined")
	for _, node := range c.nodes {
		c.requireTopicMatches(node, DefaultTopic, want)
	}
}

func TestDistributedLogCatchUpThroughSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		cfg.Raft.SnapshotThreshold = 16
		cfg.Raft.SnapshotInterval = 20 * time.Millisecond
		cfg.Raft.TrailingLogs = 4
		cfg.Raft.TrailingBytes = -1 // a fixed count: these entries are small
	})
	leader := c.waitLeader()
	want := values("early", 10)
	c.appendValues(want...)
	away := c.followers(leader)[0]
	awayIndex := slices.Index(c.nodes, away)
	c.requireTopicMatches(away, DefaultTopic, want)
	awayLast := away.log.Stats().LastIndex
	c.stop(awayIndex)

	// While it is away, the log is compacted past everything it has.
	more := values("while-away", 100)
	c.appendValues(more...)
	want = append(want, more...)
	require.Eventually(t, func() bool {
		first, err := leader.log.logStore.FirstIndex()
		return err == nil && first > awayLast+1
	}, waitTimeout, 10*time.Millisecond, "the leader never compacted its log")

	c.start(awayIndex)
	c.requireTopicMatches(away, DefaultTopic, want)
	require.GreaterOrEqual(t, away.log.fsm.restoreCount(), uint64(1), "the node caught up without installing a snapshot")
	want = append(want, "after")
	c.appendValues("after")
	for _, node := range c.nodes {
		c.requireTopicMatches(node, DefaultTopic, want)
	}
}

func TestDistributedLogRestartAllNodes(t *testing.T) {
	tests := []struct {
		name   string
		config func(*DistributedConfig)
	}{
		// Raft replays every entry into the FSM after the restart.
		{name: "replay from the log", config: nil},
		// Raft restores the latest snapshot (which the data log already
		// holds), then replays the entries after it.
		{name: "snapshot then replay", config: func(cfg *DistributedConfig) {
			cfg.Raft.SnapshotThreshold = 8
			cfg.Raft.SnapshotInterval = 20 * time.Millisecond
			cfg.Raft.TrailingLogs = 4
			cfg.Raft.TrailingBytes = -1 // a fixed count: these entries are small
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCluster(t, 3, tt.config)
			want := values("record", 40)
			c.appendValues(want[:30]...)
			// Some as one batch.
			batch := make([]*api.Record, 10)
			for k, v := range want[30:] {
				batch[k] = &api.Record{Value: []byte(v)}
			}
			var first uint64
			err := c.leaderDo(func(l *DistributedLog) (err error) {
				first, err = l.AppendBatch(context.Background(), "", batch)
				return err
			})
			require.NoError(t, err)
			require.GreaterOrEqual(t, first, uint64(30))
			// A write retried across an election of the starting cluster
			// may land twice (at-least-once): from here on the records are
			// what the leader holds, each value once or repeated in place.
			held := topicContents(t, c.waitLeader(), DefaultTopic)
			require.Equal(t, want, slices.Compact(slices.Clone(held)))
			want = held
			for _, node := range c.nodes {
				requireHolds(t, node, want)
			}
			if tt.config != nil {
				require.Eventually(t, func() bool {
					return c.waitLeader().log.Stats().SnapshotIndex > 0
				}, waitTimeout, 10*time.Millisecond, "no snapshot taken")
			}

			for i := range c.nodes {
				c.stop(i)
			}
			for i := range c.nodes {
				c.start(i) // node 0 again with Bootstrap, over existing state
			}
			// The next append gets the next offset (len(want)) and, since every node applies
			// in order, a node holding it has finished replaying the rest.
			// (A write retried across the restart's elections may land twice,
			// at-least-once, so its offset may be past it; every node must
			// still hold exactly the leader's records.)
			offsets := c.appendValues("next")
			require.GreaterOrEqual(t, offsets[0], uint64(len(want)), "first append after restart = %d, want at least %d", offsets[0], len(want))
			got := topicContents(t, c.waitLeader(), DefaultTopic)
			require.Equal(t, want, got[:len(want)], "the records before the restart, each once")
			for off, v := range got[len(want):] {
				require.Equal(t, "next", v, "offset %d", len(want)+off)
			}
			for _, node := range c.nodes {
				requireHolds(t, node, got) // and NextOffset right after: nothing replayed twice
			}
		})
	}
}

func TestDistributedLogConcurrentAppends(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.waitLeader()
	const writers, perWriter = 4, 50
	var (
		mu      sync.Mutex
		offsets []uint64
		byValue = map[uint64]string{}
		wg      sync.WaitGroup
		errs    = make(chan error, writers)
	)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perWriter; k++ {
				v := fmt.Sprintf("w%d-%d", w, k)
				off, err := appendOne(context.Background(), leader.log, &api.Record{Value: []byte(v)})
				if err != nil {
					errs <- fmt.Errorf("Append(%q): %w", v, err)
					return
				}
				mu.Lock()
				offsets = append(offsets, off)
				byValue[off] = v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	slices.Sort(offsets)
	want := make([]string, writers*perWriter)
	for k, off := range offsets {
		require.Equal(t, uint64(k), off, "offsets are not 0..%d without gaps or duplicates", writers*perWriter-1)
		want[k] = byValue[off]
	}
	for _, node := range c.nodes {
		requireHolds(t, node, want)
	}
}

func TestDistributedLogMembership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.waitLeader()
	follower := c.followers(leader)[0]
	followerIndex := slices.Index(c.nodes, follower)

	serverAddrs := func() map[string]string {
		servers, err := leader.log.GetServers()
		require.NoError(t, err)
		out := map[string]string{}
		for _, srv := range servers {
			out[srv.GetId()] = srv.GetRpcAddr()
		}
		return out
	}

	// Join is idempotent.
	before := leader.log.Stats().LastIndex
	require.NoError(t, leader.log.Join(follower.id, follower.addr))
	require.Len(t, serverAddrs(), 3)
	require.Equal(t, before, leader.log.Stats().LastIndex, "a repeated Join changed the configuration")

	// Leave removes the server: it is gone from GetServers and no longer
	// replicated to.
	c.appendValues("a")
	requireHolds(t, follower, []string{"a"})
	require.NoError(t, leader.log.Leave(follower.id))
	require.NotContains(t, serverAddrs(), follower.id)
	require.NoError(t, leader.log.Leave(follower.id), "a repeated Leave")
	c.appendValues("b")
	for _, node := range c.followers(leader) {
		if node != follower {
			requireHolds(t, node, []string{"a", "b"})
		}
	}
	require.Equal(t, uint64(1), nextOffset(follower.log), "a removed server is still replicated to")

	// The node comes back on a new address under the same id: Join
	// records the new address, and it catches up.
	c.stop(followerIndex)
	follower.addr = ""
	c.start(followerIndex)
	require.NoError(t, leader.log.Join(follower.id, follower.addr))
	require.Equal(t, follower.addr, serverAddrs()[follower.id])
	requireHolds(t, follower, []string{"a", "b"})

	// A known id re-joining at yet another address has it replaced.
	c.stop(followerIndex)
	oldAddr := follower.addr
	follower.addr = ""
	c.start(followerIndex)
	require.NotEqual(t, oldAddr, follower.addr)
	require.NoError(t, leader.log.Join(follower.id, follower.addr))
	require.Equal(t, follower.addr, serverAddrs()[follower.id])
	require.Len(t, serverAddrs(), 3)
	c.appendValues("c")
	requireHolds(t, follower, []string{"a", "b", "c"})
}

func TestDistributedLogCloseIsIdempotent(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	node := c.nodes[0]
	c.appendValues("a")
	require.NoError(t, node.log.Close())
	require.NoError(t, node.log.Close())
	_, err := appendOne(context.Background(), node.log, &api.Record{Value: []byte("b")})
	require.ErrorIs(t, err, ErrClosed)
	_, err = node.log.Read(context.Background(), "", 0)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, node.log.WaitForLeader(context.Background()), ErrClosed)
	require.ErrorIs(t, node.log.Join("x", "127.0.0.1:1"), ErrClosed)
	_, err = node.log.GetServers()
	require.ErrorIs(t, err, ErrClosed)
	node.log = nil
}

func TestNewDistributedLogValidatesConfig(t *testing.T) {
	ln := newTestListener(t)
	wildcard, err := net.Listen("tcp", ":0")
	require.NoError(t, err)
	defer func() { _ = wildcard.Close() }()

	tests := []struct {
		name string
		cfg  DistributedConfig
	}{
		{name: "no local id", cfg: DistributedConfig{Raft: RaftConfig{StreamLayer: NewStreamLayer(ln, nil, nil)}}},
		{name: "no stream layer", cfg: DistributedConfig{Raft: RaftConfig{LocalID: "a"}}},
		{name: "unspecified listener address", cfg: DistributedConfig{Raft: RaftConfig{LocalID: "a", StreamLayer: NewStreamLayer(wildcard, nil, nil)}}},
		{name: "unspecified advertise address", cfg: DistributedConfig{Raft: RaftConfig{LocalID: "a", StreamLayer: NewStreamLayer(ln, nil, nil), AdvertiseAddr: "[::]:8400"}}},
		{name: "bad raft timeouts", cfg: DistributedConfig{Raft: RaftConfig{LocalID: "a", StreamLayer: NewStreamLayer(ln, nil, nil),
			HeartbeatTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: time.Second}}},
		{name: "batch smaller than a record", cfg: DistributedConfig{MaxBatchBytes: 10, Raft: RaftConfig{LocalID: "a", StreamLayer: NewStreamLayer(ln, nil, nil)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDistributedLog(t.TempDir(), tt.cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

func TestDistributedLogAdvertisesConfiguredAddress(t *testing.T) {
	pki := newTestPKI(t)
	wildcard, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	_, port, err := net.SplitHostPort(wildcard.Addr().String())
	require.NoError(t, err)
	cfg := DistributedConfig{Logger: zaptest.NewLogger(t)}
	cfg.Raft.LocalID = "solo"
	cfg.Raft.StreamLayer = NewStreamLayer(wildcard, pki.serverTLS(), pki.peerTLS())
	cfg.Raft.AdvertiseAddr = net.JoinHostPort("127.0.0.1", port)
	cfg.Raft.Bootstrap = true
	cfg.Raft.HeartbeatTimeout = 100 * time.Millisecond
	cfg.Raft.ElectionTimeout = 100 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
	d, err := NewDistributedLog(t.TempDir(), cfg)
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, d.WaitForLeader(ctx))
	servers, err := d.GetServers()
	require.NoError(t, err)
	require.Len(t, servers, 1)
	require.Equal(t, cfg.Raft.AdvertiseAddr, servers[0].GetRpcAddr())
	id, addr := d.Leader()
	require.Equal(t, "solo", id)
	require.Equal(t, cfg.Raft.AdvertiseAddr, addr)
}

func TestDistributedConfigBatchLimit(t *testing.T) {
	ln := newTestListener(t)
	tests := []struct {
		name           string
		maxRecordBytes uint64
		maxBatchBytes  uint64
		want           uint64 // 0: an ErrInvalidConfig
	}{
		{name: "defaults", want: DefaultMaxBatchBytes},
		{name: "records larger than the default batch", maxRecordBytes: 16 << 20, want: 16<<20 + maxAppendFramingBytes},
		{name: "explicit", maxRecordBytes: 100, maxBatchBytes: 1000, want: 1000},
		{name: "no room for one record", maxRecordBytes: 100, maxBatchBytes: 100},
		{name: "beyond the log store", maxBatchBytes: storage.MaxRecordBytesLimit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DistributedConfig{MaxBatchBytes: tt.maxBatchBytes}
			cfg.Log.MaxRecordBytes = tt.maxRecordBytes
			cfg.Raft.LocalID = "a"
			cfg.Raft.StreamLayer = NewStreamLayer(ln, nil, nil)
			got, err := cfg.withDefaults()
			if tt.want == 0 {
				require.ErrorIs(t, err, ErrInvalidConfig)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got.MaxBatchBytes, "MaxBatchBytes = %d, want %d", got.MaxBatchBytes, tt.want)
		})
	}
}

// The snapshot settings default to distlog's (lower than hashicorp/raft's:
// a snapshot does not copy the records) and reach Raft's config; explicit
// values are kept.
func TestDistributedConfigSnapshotDefaults(t *testing.T) {
	ln := newTestListener(t)
	base := func() DistributedConfig {
		var cfg DistributedConfig
		cfg.Raft.LocalID = "a"
		cfg.Raft.StreamLayer = NewStreamLayer(ln, nil, nil)
		return cfg
	}
	cfg, err := base().withDefaults()
	require.NoError(t, err)
	rc, err := cfg.raftConfig()
	require.NoError(t, err)
	require.Equal(t, uint64(DefaultSnapshotThreshold), rc.SnapshotThreshold)
	require.Equal(t, DefaultSnapshotInterval, rc.SnapshotInterval)
	require.Equal(t, uint64(DefaultMinTrailingLogs), rc.TrailingLogs, "the least kept under the byte budget")
	require.Equal(t, int64(DefaultTrailingBytes), cfg.Raft.TrailingBytes)
	off := base()
	off.Raft.TrailingBytes = -1
	cfg, err = off.withDefaults()
	require.NoError(t, err)
	rc, err = cfg.raftConfig()
	require.NoError(t, err)
	require.Equal(t, uint64(DefaultTrailingLogs), rc.TrailingLogs)
	require.Less(t, rc.TrailingLogs, raft.DefaultConfig().TrailingLogs)

	explicit := base()
	explicit.Raft.SnapshotThreshold = 7
	explicit.Raft.SnapshotInterval = 3 * time.Second
	explicit.Raft.TrailingLogs = 9
	cfg, err = explicit.withDefaults()
	require.NoError(t, err)
	rc, err = cfg.raftConfig()
	require.NoError(t, err)
	require.Equal(t, uint64(7), rc.SnapshotThreshold)
	require.Equal(t, 3*time.Second, rc.SnapshotInterval)
	require.Equal(t, uint64(9), rc.TrailingLogs)
}

func TestDistributedLogCloseLeavesNoGoroutines(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	c := newTestCluster(t, 3, nil)
	c.appendValues(values("v", 5)...)
	for _, node := range c.followers(nil) {
		requireHolds(t, node, values("v", 5))
	}
	// Close the leader first, then the followers: every accepted and
	// pooled Raft connection must go, with the goroutines serving them.
	// The closed logs stay reachable, so that no finalizer closes a socket
	// that Close forgot.
	var closed []*DistributedLog
	leader := slices.Index(c.nodes, c.waitLeader())
	closed = append(closed, c.nodes[leader].log)
	c.stop(leader)
	for i := range c.nodes {
		if i != leader {
			closed = append(closed, c.nodes[i].log)
			c.stop(i)
		}
	}
	goleak.VerifyNone(t, ignore)
	runtime.KeepAlive(closed)
}

func TestDistributedLogCloseHandsLeadershipOver(t *testing.T) {
	// Heartbeats so slow that an election after a silent leader would take
	// seconds: a new leader within a second means Close handed it over.
	const heartbeat = 2 * time.Second
	c := newTestCluster(t, 3, func(cfg *DistributedConfig) {
		cfg.Raft.HeartbeatTimeout = heartbeat
		cfg.Raft.ElectionTimeout = heartbeat
		cfg.Raft.LeaderLeaseTimeout = heartbeat
	})
	old := c.waitLeader()
	c.appendValues("a")
	start := time.Now()
	c.stop(slices.Index(c.nodes, old))
	var leader *testNode
	require.Eventually(t, func() bool {
		for _, node := range c.followers(nil) {
			if node.log.IsLeader() {
				leader = node
				return true
			}
		}
		return false
	}, heartbeat, 5*time.Millisecond, "no new leader within the heartbeat timeout")
	require.Less(t, time.Since(start), heartbeat/3, "a new leader took %v", time.Since(start))
	c.appendValues("b")
	requireHolds(t, leader, []string{"a", "b"})
}

func TestNewDistributedLogFailureClosesWhatItOpened(t *testing.T) {
	dir := t.TempDir()
	// Hold the Raft log store's directory so that NewDistributedLog fails
	// after validating its configuration and opening the topics.
	held, err := storage.NewLog(filepath.Join(dir, "raft", "log", logStoreSegmentsDirName), storage.Config{})
	require.NoError(t, err)
	defer func() { require.NoError(t, held.Close()) }()

	ln := newTestListener(t)
	cfg := DistributedConfig{Logger: zaptest.NewLogger(t)}
	cfg.Raft.LocalID = "a"
	cfg.Raft.StreamLayer = NewStreamLayer(ln, nil, nil)
	_, err = NewDistributedLog(dir, cfg)
	require.ErrorIs(t, err, storage.ErrLocked)
	_, err = ln.Accept()
	require.ErrorIs(t, err, net.ErrClosed, "the StreamLayer's listener is still open")
}

// A record this node cannot read back (here: one that fails its checksum)
// is ErrReplicaUnavailable, which clients retry on another node, never an
// internal error that ends their stream.
func TestDistributedLogUnreadableRecordIsReplicaUnavailable(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	leader := c.waitLeader()
	c.appendValues("first", "second")
	_, err := leader.log.Read(context.Background(), "", 1) // flushes the store's write buffer
	require.NoError(t, err)

	store := filepath.Join(leader.dir, "topics", "00000000000000000000", "00000000000000000000.store")
	file, err := os.OpenFile(store, os.O_RDWR, 0)
	require.NoError(t, err)
	info, err := file.Stat()
	require.NoError(t, err)
	last := make([]byte, 1)
	_, err = file.ReadAt(last, info.Size()-1) // the last byte of "second"
	require.NoError(t, err)
	last[0] ^= 0xff
	_, err = file.WriteAt(last, info.Size()-1)
	require.NoError(t, err)
	require.NoError(t, file.Close())

	_, err = leader.log.Read(context.Background(), "", 1)
	require.ErrorIs(t, err, api.ErrReplicaUnavailable)
	rec, err := leader.log.Read(context.Background(), "", 0)
	require.NoError(t, err)
	require.Equal(t, "first", string(rec.GetValue()))
}

// TestRaftReplicationIsNotPipelined: the transport refuses a pipeline, so
// Raft replicates one AppendEntries at a time (see the transport's
// configuration in NewDistributedLog for why).
func TestRaftReplicationIsNotPipelined(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	_, err := c.nodes[0].log.transport.AppendEntriesPipeline("elsewhere", "127.0.0.1:1")
	require.ErrorIs(t, err, raft.ErrPipelineReplicationNotSupported)
}
