package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/agent"
	api "github.com/proglog/proglog/api/v1"
)

// A record produced on the leader is consumable from every node, in order,
// with the same offsets; a follower refuses writes and names the leader.
func TestClusterReplicates(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	want := values("replicated", 5)
	offsets := c.produce(want...)
	require.Equal(t, []uint64{0, 1, 2, 3, 4}, offsets)
	for i := range c.nodes {
		require.Equal(t, want, c.readAll(i, uint64(len(want))), "node %d", i)
	}

	leader := c.waitForLeader()
	follower := (leader + 1) % 3
	_, err := c.client(follower).Produce(context.Background(),
		&api.ProduceRequest{Record: &api.Record{Value: []byte("to a follower")}})
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code(), "Produce on a follower: %v", err)
	notLeader, ok := api.NotLeaderFromStatus(st)
	require.True(t, ok, "follower's refusal carries NOT_LEADER: %v", st)
	require.Equal(t, c.nodes[leader].agent.RPCAddr(), notLeader.LeaderAddr)
	c.requireHighest(follower, uint64(len(want)))

	servers, err := c.client(follower).GetServers(context.Background(), &api.GetServersRequest{})
	require.NoError(t, err)
	require.Equal(t, []string{"node-0", "node-1", "node-2"}, sortedIDs(servers.GetServers()))
	leaders := 0
	for _, s := range servers.GetServers() {
		if s.GetIsLeader() {
			leaders++
			require.Equal(t, c.nodes[leader].cfg.NodeName, s.GetId())
		}
	}
	require.Equal(t, 1, leaders, "GetServers: exactly one leader")
}

// The leader's agent shuts down: a new leader is elected, writes continue,
// no acknowledged record is lost, and the old leader rejoins after a restart
// and catches up — through a snapshot, since the log was compacted while it
// was away.
func TestClusterLeaderFailover(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *agent.Config) {
		cfg.RaftSnapshotThreshold = 16
		cfg.RaftSnapshotInterval = 50 * time.Millisecond
		cfg.RaftTrailingLogs = 4
		cfg.RaftTrailingBytes = -1
	})
	before := values("before", 10)
	c.produce(before...)

	old := c.waitForLeader()
	c.stop(old)
	newLeader := c.waitForLeader()
	require.NotEqual(t, old, newLeader)

	after := values("after", 60)
	offsets := c.produce(after...)
	require.Equal(t, uint64(10), offsets[0])
	require.Equal(t, uint64(69), offsets[len(offsets)-1])
	want := append(append([]string{}, before...), after...)
	for i := range c.nodes {
		if i != old {
			require.Equal(t, want, c.readAll(i, uint64(len(want))), "node %d", i)
		}
	}

	c.restart(old)
	c.waitForServers(3)
	require.Equal(t, want, c.readAll(old, uint64(len(want))), "restarted node %d", old)
	c.requireHighest(old, uint64(len(want)))
}

// A follower that leaves the cluster is no longer in GetServers and no longer
// receives records, although its process keeps running.
func TestClusterFollowerLeaves(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.produce("first")
	leader := c.waitForLeader()
	follower := (leader + 1) % 3
	c.requireHighest(follower, 1)
	require.NoError(t, c.nodes[follower].agent.Leave())
	c.waitForServers(2, follower)

	servers, err := c.client(leader).GetServers(context.Background(), &api.GetServersRequest{})
	require.NoError(t, err)
	require.NotContains(t, sortedIDs(servers.GetServers()), c.nodes[follower].cfg.NodeName)

	c.produce("second")
	c.requireHighest((follower+1)%3, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rec, err := c.nodes[follower].agent.Log().Read(ctx, "", 1)
	require.Error(t, err, "a node that left still received offset 1: %v", rec)
}

// Many goroutines producing at once get offsets 0..n-1 with no gap or
// duplicate, and every node holds the same records at the same offsets.
func TestClusterConcurrentProduce(t *testing.T) {
	const workers, perWorker = 8, 125
	c := newTestCluster(t, 3, nil)
	leader := c.waitForLeader()
	client := c.client(leader)

	var (
		mu   sync.Mutex
		seen = make(map[uint64]string)
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				v := fmt.Sprintf("w%d-%d", w, i)
				res, err := client.Produce(context.Background(), &api.ProduceRequest{Record: &api.Record{Value: []byte(v)}})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := seen[res.GetOffset()]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("offset %d given to %q and %q", res.GetOffset(), prev, v)
					return
				}
				seen[res.GetOffset()] = v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	const total = workers * perWorker
	require.Len(t, seen, total)
	want := make([]string, total)
	for off := range uint64(total) {
		v, ok := seen[off]
		require.True(t, ok, "offset %d missing", off)
		want[off] = v
	}
	for i := range c.nodes {
		require.Equal(t, want, c.readAll(i, total), "node %d", i)
		c.requireHighest(i, total)
	}
}

// Restarting every node of a cluster keeps exactly the records it held: no
// duplicates from Raft replaying its log into the state machine, and new
// appends continue at the next offset.
func TestClusterRestartAll(t *testing.T) {
	const n = 500
	c := newTestCluster(t, 3, nil)
	leader := c.waitForLeader()
	batch := make([]*api.Record, 0, 100)
	for i := range n {
		batch = append(batch, &api.Record{Value: []byte(fmt.Sprintf("r-%04d", i))})
		if len(batch) == cap(batch) {
			_, err := c.client(leader).ProduceBatch(context.Background(), &api.ProduceBatchRequest{Records: batch})
			require.NoError(t, err)
			batch = batch[:0]
		}
	}
	want := values("r", n)
	for i := range c.nodes {
		require.Equal(t, want, c.readAll(i, n), "node %d before restart", i)
	}

	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.restart(i)
	}
	c.waitForLeader()
	c.waitForServers(3)
	for i := range c.nodes {
		c.requireHighest(i, n)
		require.Equal(t, want, c.readAll(i, n), "node %d after restart", i)
	}
	offsets := c.produce("after restart")
	require.Equal(t, []uint64{n}, offsets)
}

// Raft and gRPC share the RPC port (the cluster above replicates over it);
// the JSON API answers on the HTTP port with the same mTLS and ACL.
func TestClusterHTTPAPI(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.waitForLeader()
	base := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.nodes[leader].cfg.HTTPPort))

	httpClient := func(certFile, keyFile string) *http.Client {
		tlsCfg := c.rootTLS()
		tlsCfg.Certificates = nil
		if certFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			require.NoError(t, err)
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	}
	root := httpClient(c.files.RootClientCertFile, c.files.RootClientKeyFile)
	nobody := httpClient(c.files.NobodyClientCertFile, c.files.NobodyClientKeyFile)
	anonymous := httpClient("", "")

	post := func(client *http.Client, body string) (int, string) {
		res, err := client.Post(base+"/", "application/json", bytes.NewBufferString(body))
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}

	code, body := post(root, `{"record": {"value": "TGV0J3MgR28gIzEK"}}`)
	require.Equal(t, http.StatusOK, code, body)
	var produced struct{ Offset uint64 }
	require.NoError(t, json.Unmarshal([]byte(body), &produced))
	require.Equal(t, uint64(0), produced.Offset)

	code, body = post(nobody, `{"record": {"value": "TGV0J3MgR28gIzEK"}}`)
	require.Equal(t, http.StatusForbidden, code, body)
	code, body = post(anonymous, `{"record": {"value": "TGV0J3MgR28gIzEK"}}`)
	require.Equal(t, http.StatusUnauthorized, code, body)

	// A follower serves the read over its own HTTP port.
	follower := (leader + 1) % 3
	url := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.nodes[follower].cfg.HTTPPort)) + "/?offset=0"
	var record struct {
		Record struct {
			Value  []byte
			Offset uint64
		}
	}
	require.Eventually(t, func() bool {
		res, err := root.Get(url)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return false
		}
		return json.NewDecoder(res.Body).Decode(&record) == nil
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "Let's Go #1\n", string(record.Record.Value))
}

// A node that stops gracefully leaves the Raft configuration before its Raft
// stops, handing leadership over first if it leads: in a two-node cluster the
// survivor then leads a configuration of one and keeps accepting writes
// (were the stopped leader still a voter, the survivor could never commit
// anything again, its removal included).
func TestClusterGracefulStopOfLeaderInTwoNodeCluster(t *testing.T) {
	c := newTestCluster(t, 2, nil)
	c.produce("before")
	leader := c.waitForLeader()
	survivor := 1 - leader
	c.stop(leader)

	require.Equal(t, survivor, c.waitForLeader())
	servers, err := c.nodes[survivor].agent.Log().GetServers()
	require.NoError(t, err)
	require.Equal(t, []string{c.nodes[survivor].cfg.NodeName}, sortedIDs(servers))
	require.Equal(t, []uint64{1}, c.produce("after"))

	c.restart(leader)
	c.waitForServers(2)
	require.Equal(t, []string{"before", "after"}, c.readAll(leader, 2))
}
