package agent_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// TestExactlyOnceThroughLeaderCrash: concurrent writers share one balanced
// client (Produce, ProduceBatch and a ProduceStream) while the leader
// crashes mid-write; the client retries and resends with the same producer
// sequences, so every acknowledged value is in every survivor's log exactly
// once, at the offset it was acknowledged with, and no value is there twice.
// The Produce writers are many, so the client coalesces their calls into
// ProduceBatch RPCs (one producer sequence per batch), and batches in
// flight at the crash are retried as a whole.
func TestExactlyOnceThroughLeaderCrash(t *testing.T) {
	loadbalance.Register()
	c := newTestCluster(t, 3, nil)
	// coalesced counts ProduceBatch attempts that carry several Produce
	// calls (their values start with "p"); failed the ones that failed,
	// to be retried.
	var coalesced, failed atomic.Int64
	countCoalesced := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any,
		cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if r, ok := req.(*api.ProduceBatchRequest); ok && len(r.GetRecords()) > 1 &&
			strings.HasPrefix(string(r.GetRecords()[0].GetValue()), "p") {
			coalesced.Add(1)
			if err != nil {
				failed.Add(1)
			}
		}
		return err
	})
	client := c.balancedClient(loadbalance.Config{DialOptions: []grpc.DialOption{countCoalesced}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	acked := map[string]uint64{} // value → offset acknowledged; guarded by mu
	var errs []error             // guarded by mu
	ack := func(value string, offset uint64, err error) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			if prev, ok := acked[value]; ok {
				errs = append(errs, fmt.Errorf("%s acknowledged twice, at %d and %d", value, prev, offset))
			}
			acked[value] = offset
		case ctx.Err() == nil:
			errs = append(errs, fmt.Errorf("%s: %w", value, err))
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				v := fmt.Sprintf("p%d-%05d", w, i)
				off, err := client.Produce(ctx, []byte(v))
				ack(v, off, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			vs := [][]byte{[]byte(fmt.Sprintf("b-%05d-0", i)), []byte(fmt.Sprintf("b-%05d-1", i))}
			first, err := client.ProduceBatch(ctx, vs)
			ack(string(vs[0]), first, err)
			ack(string(vs[1]), first+1, err)
		}
	}()
	stream, err := client.ProduceStream(ctx)
	require.NoError(t, err)
	streamSent := make(chan []string, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		var sent []string
		defer func() { streamSent <- sent }()
		for i := 0; ctx.Err() == nil; i++ {
			v := fmt.Sprintf("s-%05d", i)
			if stream.Send([]byte(v)) != nil {
				return
			}
			sent = append(sent, v)
		}
	}()
	streamAcks := make(chan []uint64, 1)
	go func() {
		defer wg.Done()
		var offsets []uint64
		defer func() { streamAcks <- offsets }()
		for {
			off, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					ack("stream", 0, err)
				}
				return
			}
			offsets = append(offsets, off)
		}
	}()

	require.Eventually(t, func() bool { return count() >= 100 }, 20*time.Second, 5*time.Millisecond, "no writes before the crash")
	old := c.waitForLeader()
	c.crash(old)
	before, coalescedBefore := count(), coalesced.Load()
	require.Eventually(t, func() bool { return count() >= before+100 }, 30*time.Second, 5*time.Millisecond,
		"writes did not resume after the leader crashed")
	require.Positive(t, coalesced.Load(), "no coalesced ProduceBatch: the Produce writers were not coalesced")
	t.Logf("coalesced ProduceBatch attempts: %d before the crash, %d in all, %d failed (and were retried)",
		coalescedBefore, coalesced.Load(), failed.Load())
	cancel()
	stream.Close()
	wg.Wait()
	sent, offsets := <-streamSent, <-streamAcks
	require.LessOrEqual(t, len(offsets), len(sent))
	for k, off := range offsets {
		ack(sent[k], off, nil)
	}
	require.Empty(t, errs)

	leader := c.waitForLeader()
	end := c.nodes[leader].agent.Log().Stats().NextOffset
	for i, node := range c.nodes {
		if node.agent == nil {
			continue
		}
		var log []string
		require.Eventually(t, func() bool {
			return node.agent.Log().Stats().NextOffset >= end
		}, 10*time.Second, 10*time.Millisecond, "node %d never caught up", i)
		for off := range end {
			rec, err := node.agent.Log().Read(context.Background(), "", off)
			require.NoError(t, err, "node %d: Read(%d)", i, off)
			log = append(log, string(rec.GetValue()))
		}
		seen := map[string]int{}
		for off, v := range log {
			seen[v]++
			require.Equal(t, 1, seen[v], "node %d: %s appended twice (again at %d)", i, v, off)
		}
		for v, off := range acked {
			require.Less(t, off, end, "node %d: %s acknowledged at %d past the end", i, v, off)
			require.Equal(t, v, log[off], "node %d: Read(%d)", i, off)
		}
		t.Logf("node %d: %d records, %d acknowledged, none twice", i, len(log), len(acked))
	}
}
