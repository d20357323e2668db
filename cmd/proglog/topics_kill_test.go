package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

// killTestTimeout bounds the whole kill test's calls.
const killTestTimeout = 3 * time.Minute

// ackedWrite is a write the cluster acknowledged: value at offset of topic.
type ackedWrite struct {
	topic  string
	value  string
	offset uint64
}

// nodeTopics reads every topic's records from the node at addr alone (a
// direct connection, no balancing), as that node has applied them. It
// fails (without failing the test) while the node is down or lags.
func nodeTopics(ctx context.Context, settings clientSettings, addr string, topics []string) (map[string][]string, error) {
	conn, err := settings.dialDirect(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := api.NewLogClient(conn)
	out := map[string][]string{}
	for _, topic := range topics {
		info, err := client.DescribeTopic(ctx, &api.DescribeTopicRequest{Name: topic})
		if err != nil {
			return nil, fmt.Errorf("%s: describe %s: %w", addr, topic, err)
		}
		for off := info.GetTopic().GetLowestOffset(); off < info.GetTopic().GetNextOffset(); off++ {
			res, err := client.Consume(ctx, &api.ConsumeRequest{Topic: topic, Offset: off})
			if err != nil {
				return nil, fmt.Errorf("%s: consume %s@%d: %w", addr, topic, off, err)
			}
			out[topic] = append(out[topic], string(res.GetRecord().GetValue()))
		}
	}
	return out, nil
}

// sameTopicsOnEveryNode waits until every node in addrs holds the same
// records in topics and, when complete is not nil, until they pass it, and
// returns them. Nodes can agree on a state still short of the commit (a new
// leader's followers apply the old leader's last entries only after its
// first commit): complete says what the test knows must be there.
func sameTopicsOnEveryNode(t *testing.T, settings clientSettings, addrs, topics []string, complete func(map[string][]string) error) map[string][]string {
	t.Helper()
	var want map[string][]string
	untilNoError(t, exitTimeout, func() error {
		want = nil
		for _, addr := range addrs {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			got, err := nodeTopics(ctx, settings, addr, topics)
			cancel()
			if err != nil {
				return err
			}
			if want == nil {
				want = got
			} else if !reflect.DeepEqual(want, got) {
				return fmt.Errorf("%s holds other records than %s", addr, addrs[0])
			}
		}
		if complete != nil {
			return complete(want)
		}
		return nil
	}, "the nodes' topics")
	return want
}

// untilNoError calls cond, on the test's goroutine, every 50 ms until it
// returns nil, and fails the test with its last error after timeout.
func untilNoError(t *testing.T, timeout time.Duration, cond func() error, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not settled within %v: %v", what, timeout, err)
		}
		<-ticker.C
	}
}

// killTestClient dials a balanced client of c with the root certificate,
// and returns it, the settings it dialled with and a context bounded by
// killTestTimeout; both end with the test.
func killTestClient(t *testing.T, c *testCluster, files tlsconfig.FileSet) (clientSettings, *loadbalance.Client, context.Context) {
	t.Helper()
	settings := clientSettings{
		addrs:   c.rpcAddrs,
		tls:     tlsconfig.Config{CAFile: files.CAFile, CertFile: files.RootClientCertFile, KeyFile: files.RootClientKeyFile},
		timeout: 30 * time.Second,
		// Above the followers' ReadWaitTimeout (2 s): a consume of an unknown
		// topic waits that long on a follower before NotFound.
		attemptTimeout: 5 * time.Second,
	}
	loadbalance.Register()
	client, err := settings.dial(zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), killTestTimeout)
	t.Cleanup(cancel)
	return settings, client, ctx
}

// TestTopicsSurviveKillOfTheLeader: two topics written concurrently by
// clients keep independent offsets, identical on every node, across a
// SIGKILL of the leader process and then of every process; every
// acknowledged write is where it was acknowledged; the default topic keeps
// the book's records.
func TestTopicsSurviveKillOfTheLeader(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	c := startCluster(t, 3, files)
	topics := []string{"orders", "payments"}
	for _, topic := range topics {
		c.mustRun(t, "", "topic", "create", topic)
	}
	c.mustRun(t, "", "produce", "book-0", "book-1")
	start := time.Now()
	phase := func(name string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), name) }

	settings, client, ctx := killTestClient(t, c, files)

	// Two writers per topic; the leader is killed once every writer is
	// under way.
	const writers, perWriter = 2, 40
	acks := make(chan ackedWrite, len(topics)*writers*perWriter)
	errs := make(chan error, len(topics)*writers)
	progress := make(chan struct{}, len(topics)*writers)
	var wg sync.WaitGroup
	for _, topic := range topics {
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					value := fmt.Sprintf("%s-w%d-%03d", topic, w, i)
					off, err := client.Produce(ctx, []byte(value), loadbalance.WithTopic(topic))
					if err != nil {
						errs <- fmt.Errorf("produce %s: %w", value, err)
						return
					}
					acks <- ackedWrite{topic: topic, value: value, offset: off}
					if i == perWriter/4 {
						progress <- struct{}{}
					}
				}
			}()
		}
	}
	for range len(topics) * writers {
		select {
		case <-progress:
		case <-ctx.Done():
			t.Fatal("writers made no progress")
		}
	}
	leader := c.leaderIndex(t)
	phase("writers under way; SIGKILL the leader")
	require.NoError(t, c.nodes[leader].cmd.Process.Signal(syscall.SIGKILL))
	<-c.nodes[leader].exited
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	close(acks)
	var acked []ackedWrite
	for a := range acks {
		acked = append(acked, a)
	}
	require.Len(t, acked, len(topics)*writers*perWriter)

	all := append([]string{api.DefaultTopic}, topics...)
	var survivors []string
	for i, addr := range c.rpcAddrs {
		if i != leader {
			survivors = append(survivors, addr)
		}
	}
	requireTopics := func(contents map[string][]string) {
		t.Helper()
		require.Equal(t, []string{"book-0", "book-1"}, contents[api.DefaultTopic], "the default topic")
		for _, a := range acked {
			require.Lessf(t, a.offset, uint64(len(contents[a.topic])), "%s: acknowledged offset %d past the end", a.topic, a.offset)
			require.Equalf(t, a.value, contents[a.topic][a.offset], "%s@%d", a.topic, a.offset)
		}
	}
	// holdsAcked: every acknowledged write is applied (requireTopics then
	// checks the values).
	holdsAcked := func(contents map[string][]string) error {
		for _, a := range acked {
			if a.offset >= uint64(len(contents[a.topic])) {
				return fmt.Errorf("%s: acknowledged offset %d not applied yet (%d records)", a.topic, a.offset, len(contents[a.topic]))
			}
		}
		return nil
	}
	phase("writers done")
	afterKill := sameTopicsOnEveryNode(t, settings, survivors, all, holdsAcked)
	phase("survivors agree")
	requireTopics(afterKill)
	for _, topic := range topics {
		t.Logf("%s: %d records for %d acknowledged writes", topic, len(afterKill[topic]), writers*perWriter)
	}

	// The killed node comes back with its data and catches up.
	c.restartNode(t, leader)
	require.Equal(t, afterKill, sameTopicsOnEveryNode(t, settings, c.rpcAddrs, all, holdsAcked), "after the killed node's return")
	phase("the killed node caught up")

	// SIGKILL every node, start them all again: nothing acknowledged is lost,
	// nothing moves.
	for i := range c.nodes {
		require.NoError(t, c.nodes[i].cmd.Process.Signal(syscall.SIGKILL))
		<-c.nodes[i].exited
	}
	for i := range c.nodes {
		c.restartNode(t, i)
	}
	require.Equal(t, afterKill, sameTopicsOnEveryNode(t, settings, c.rpcAddrs, all, holdsAcked), "after every node was killed")
	phase("every node back after SIGKILL of all")
	for _, topic := range topics {
		off, err := client.Produce(ctx, []byte("after"), loadbalance.WithTopic(topic))
		require.NoError(t, err)
		require.Equal(t, uint64(len(afterKill[topic])), off, "%s: next offset after the restart", topic)
	}
	phase("appends continue")
	_, err := client.Consume(ctx, 0, loadbalance.WithTopic("missing"))
	require.Equal(t, codes.NotFound, status.Code(err))
}

// leaderIndex returns the index of the node the cluster names leader.
func (c *testCluster) leaderIndex(t *testing.T) int {
	t.Helper()
	r := c.mustRun(t, "", "servers")
	for i, addr := range c.rpcAddrs {
		for _, line := range strings.Split(r.stdout, "\n") {
			if fields := strings.Fields(line); len(fields) == 3 && fields[1] == addr && fields[2] == "yes" {
				return i
			}
		}
	}
	t.Fatalf("no leader in %q", r.stdout)
	return -1
}

// restartNode starts node i again with the command line it first ran with.
func (c *testCluster) restartNode(t *testing.T, i int) {
	t.Helper()
	args := append([]string(nil), c.nodes[i].cmd.Args[1:]...)
	c.restarts++
	c.nodes[i] = startProcess(t, c.bin, fmt.Sprintf("%s.restart-%d", c.logs[i], c.restarts), args...)
}
