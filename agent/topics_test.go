package agent_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/agent"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// topicAck is one acknowledged write: value was appended to a topic at offset.
type topicAck struct {
	value  string
	offset uint64
}

// topicWriter writes values to one topic through the balancing client and
// records what was acknowledged. Retried writes may append a value twice
// (at-least-once, as documented); the acknowledged offset is the one that
// counts.
func topicWriter(ctx context.Context, client *loadbalance.Client, topic, prefix string, n int, acks chan<- topicAck, errs chan<- error) {
	for i := range n {
		value := fmt.Sprintf("%s-%s-%03d", topic, prefix, i)
		var off uint64
		var err error
		if i%5 == 4 {
			// Every fifth write is a batch of one, so both write RPCs are
			// exercised with a topic.
			off, err = client.ProduceBatch(ctx, [][]byte{[]byte(value)}, loadbalance.WithTopic(topic))
		} else {
			off, err = client.Produce(ctx, []byte(value), loadbalance.WithTopic(topic))
		}
		if err != nil {
			errs <- fmt.Errorf("produce %s to %s: %w", value, topic, err)
			return
		}
		acks <- topicAck{value: value, offset: off}
	}
}

// topicContents reads topic on node i up to its next offset, as the node
// has applied it.
func (c *testCluster) topicContents(i int, topic string) ([]string, error) {
	log := c.nodes[i].agent.Log()
	info, err := log.Topic(topic)
	if err != nil {
		return nil, fmt.Errorf("node %d: topic %s: %w", i, topic, err)
	}
	if info.LowestOffset != 0 {
		return nil, fmt.Errorf("node %d: topic %s: lowest offset %d, want 0", i, topic, info.LowestOffset)
	}
	out := make([]string, 0, info.NextOffset)
	for off := range info.NextOffset {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		record, err := log.Read(ctx, topic, off)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("node %d: Read(%s, %d): %w", i, topic, off, err)
		}
		if record.GetOffset() != off {
			return nil, fmt.Errorf("node %d: Read(%s, %d) returned offset %d", i, topic, off, record.GetOffset())
		}
		out = append(out, string(record.GetValue()))
	}
	return out, nil
}

// requireSameTopics waits until every running node holds the same records in
// each topic, and returns those contents.
func (c *testCluster) requireSameTopics(topics ...string) map[string][]string {
	c.t.Helper()
	var want map[string][]string
	var lastErr error
	converged := func() bool {
		want = nil
		for i, node := range c.nodes {
			if node.agent == nil {
				continue
			}
			got := map[string][]string{}
			for _, topic := range topics {
				contents, err := c.topicContents(i, topic)
				if err != nil {
					lastErr = err
					return false
				}
				got[topic] = contents
			}
			if want == nil {
				want = got
				continue
			}
			if !reflect.DeepEqual(want, got) {
				lastErr = fmt.Errorf("node %d holds other records than the first running node", i)
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !converged() {
		if time.Now().After(deadline) {
			c.t.Fatalf("nodes did not converge on topics %v: %v", topics, lastErr)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline, as require.Eventually does
	}
	return want
}

// requireAcked checks that every acknowledged write is in contents at its
// offset.
func requireAcked(t *testing.T, contents map[string][]string, acked map[string][]topicAck) {
	t.Helper()
	for topic, acks := range acked {
		for _, a := range acks {
			require.Lessf(t, a.offset, uint64(len(contents[topic])), "%s: acknowledged offset %d of %q is past the end", topic, a.offset, a.value)
			require.Equalf(t, a.value, contents[topic][a.offset], "%s: offset %d holds another value than acknowledged", topic, a.offset)
		}
	}
}

// writeTopicsConcurrently runs writersPerTopic writers per topic, each
// writing perWriter values through client, calls during once the writers
// have made some progress in every topic, and returns what was
// acknowledged.
func writeTopicsConcurrently(t *testing.T, ctx context.Context, client *loadbalance.Client, topics []string,
	round string, writersPerTopic, perWriter int, during func()) map[string][]topicAck {
	t.Helper()
	acks := map[string]chan topicAck{}
	errs := make(chan error, len(topics)*writersPerTopic)
	var wg sync.WaitGroup
	for _, topic := range topics {
		topicAcks := make(chan topicAck, writersPerTopic*perWriter)
		acks[topic] = topicAcks
		for w := range writersPerTopic {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topicWriter(ctx, client, topic, fmt.Sprintf("%s-w%d", round, w), perWriter, topicAcks, errs)
			}()
		}
	}
	require.Eventually(t, func() bool {
		for _, topic := range topics {
			if len(acks[topic]) < perWriter/4 {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "writers made no progress")
	during()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	acked := map[string][]topicAck{}
	for _, topic := range topics {
		close(acks[topic])
		for a := range acks[topic] {
			acked[topic] = append(acked[topic], a)
		}
		require.Len(t, acked[topic], writersPerTopic*perWriter, "acknowledged writes to %s", topic)
	}
	return acked
}

// TestClusterTopics: two topics written concurrently through the balancing
// client keep independent offsets (each from 0, contiguous), identical on
// every node; a full restart of the cluster keeps every topic and its
// records; writes go on across a crash of the leader and every acknowledged
// write is on every surviving node; the book's flow on the default topic is
// untouched throughout.
func TestClusterTopics(t *testing.T) {
	loadbalance.Register()
	c := newTestCluster(t, 3, func(cfg *agent.Config) {
		// Small segments, so topics span several and restart re-reads them.
		cfg.SegmentMaxStoreBytes = 1024
	})
	client := c.balancedClient(loadbalance.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	topics := []string{"orders", "payments.eu"}
	all := append([]string{api.DefaultTopic}, topics...)
	for _, topic := range topics {
		info, err := client.CreateTopic(ctx, topic, nil)
		require.NoError(t, err, "CreateTopic(%s)", topic)
		require.Equal(t, topic, info.GetName())
	}
	// The book's flow on the default topic, before and after.
	require.Equal(t, []uint64{0, 1}, c.produce("book-0", "book-1"), "default topic offsets")

	const writersPerTopic, perWriter = 2, 30

	// Round 1: concurrent writes, then every node stopped and started again.
	acked := writeTopicsConcurrently(t, ctx, client, topics, "r1", writersPerTopic, perWriter, func() {})
	before := c.requireSameTopics(all...)
	requireAcked(t, before, acked)
	require.Equal(t, []string{"book-0", "book-1"}, before[api.DefaultTopic], "the default topic holds only the book's records")
	for i := range c.nodes {
		c.stop(i)
	}
	for i := range c.nodes {
		c.restart(i)
	}
	c.waitForLeader()
	c.waitForServers(3)
	after := c.requireSameTopics(all...)
	require.Equal(t, before, after, "topics after a full restart")
	for _, topic := range topics {
		off, err := client.Produce(ctx, []byte("after restart"), loadbalance.WithTopic(topic))
		require.NoError(t, err)
		require.Equal(t, uint64(len(after[topic])), off, "%s: next offset after restart", topic)
	}
	require.Equal(t, []uint64{2}, c.produce("book-2"), "default topic: next offset after restart")

	// Round 2: concurrent writes across a crash of the leader.
	crashed := -1
	acked2 := writeTopicsConcurrently(t, ctx, client, topics, "r2", writersPerTopic, perWriter, func() {
		crashed = c.waitForLeader()
		c.crash(crashed)
	})
	c.waitForLeader()
	final := c.requireSameTopics(all...)
	requireAcked(t, final, acked)
	requireAcked(t, final, acked2)
	require.Equal(t, []string{"book-0", "book-1", "book-2"}, final[api.DefaultTopic], "the default topic")
	for _, topic := range topics {
		require.Equal(t, after[topic], final[topic][:len(after[topic])], "%s: records before the crash kept", topic)
		t.Logf("%s: %d records for %d acknowledged writes (duplicates come from writes retried across the crash)",
			topic, len(final[topic]), 2*writersPerTopic*perWriter+1)
	}
	t.Logf("crashed node %d", crashed)

	// Topic administration through the cluster.
	list, err := client.ListTopics(ctx)
	require.NoError(t, err)
	var names []string
	for _, topic := range list {
		names = append(names, topic.GetName())
	}
	require.Equal(t, all, names, "ListTopics")
	_, err = client.CreateTopic(ctx, "orders", &api.TopicConfig{MaxSegmentBytes: 1 << 20})
	require.Equal(t, codes.AlreadyExists, status.Code(err), "CreateTopic with another config: %v", err)
	// A stream following the topic on a node ends when the topic is
	// deleted (the node's Appended channel closes on deletion).
	follower := (c.waitForLeader() + 1) % len(c.nodes)
	if c.nodes[follower].agent == nil {
		follower = (follower + 1) % len(c.nodes)
	}
	stream, err := c.client(follower).ConsumeStream(ctx, &api.ConsumeRequest{Topic: "orders", Offset: uint64(len(final["orders"]))})
	require.NoError(t, err)
	_, err = stream.Header() // the stream is open and waiting past the end
	require.NoError(t, err)
	require.NoError(t, client.DeleteTopic(ctx, "orders"))
	_, err = stream.Recv()
	require.Equal(t, codes.NotFound, status.Code(err), "a stream of a deleted topic: %v", err)
	require.Eventually(t, func() bool {
		_, err = client.Consume(ctx, 0, loadbalance.WithTopic("orders"))
		return status.Code(err) == codes.NotFound
	}, 10*time.Second, 20*time.Millisecond, "Consume of a deleted topic: %v", err)
	err = client.DeleteTopic(ctx, api.DefaultTopic)
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "DeleteTopic(default): %v", err)

	// A topic's config is enforced, and one the cluster cannot honour is
	// refused.
	_, err = client.CreateTopic(ctx, "huge", &api.TopicConfig{MaxRecordBytes: 1 << 40})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "CreateTopic over the node's record limit: %v", err)
	_, err = client.CreateTopic(ctx, "small", &api.TopicConfig{MaxRecordBytes: 4})
	require.NoError(t, err)
	_, err = client.Produce(ctx, []byte("1234"), loadbalance.WithTopic("small"))
	require.NoError(t, err, "a record at the topic's limit")
	_, err = client.Produce(ctx, []byte("12345"), loadbalance.WithTopic("small"))
	require.Equal(t, codes.InvalidArgument, status.Code(err), "a record over the topic's limit: %v", err)
}
