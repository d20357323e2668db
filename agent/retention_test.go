package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/agent"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// Retention through the cluster's API: a topic created with
// retention_bytes keeps about that much on every node; a read below its
// lowest offset is OutOfRange naming it; ConsumeStream from 0 fails the same
// way unless from_lowest, which starts at the lowest offset; AlterTopic
// changes retention.
func TestClusterRetention(t *testing.T) {
	loadbalance.Register()
	c := newTestCluster(t, 3, func(cfg *agent.Config) { cfg.RetentionCheckInterval = 20 * time.Millisecond })
	client := c.balancedClient(loadbalance.Config{})
	ctx := context.Background()
	_, err := client.CreateTopic(ctx, "short", &api.TopicConfig{MaxSegmentBytes: 1 << 10, RetentionBytes: 4 << 10})
	require.NoError(t, err)
	value := bytes.Repeat([]byte("x"), 100)
	for range 20 {
		_, err := client.ProduceBatch(ctx, [][]byte{value, value, value, value, value, value, value, value, value, value}, loadbalance.WithTopic("short"))
		require.NoError(t, err)
	}
	var lowest uint64
	require.Eventually(t, func() bool {
		info, err := client.DescribeTopic(ctx, "short")
		lowest = info.GetLowestOffset()
		return err == nil && lowest > 0 && info.GetBytes() <= 7<<10
	}, 15*time.Second, 20*time.Millisecond, "retention never applied")

	_, err = client.Consume(ctx, 0, loadbalance.WithTopic("short"))
	require.Equal(t, codes.OutOfRange, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "below the lowest offset")

	stream, err := client.LogClient().ConsumeStream(ctx, &api.ConsumeRequest{Topic: "short"})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.Equal(t, codes.OutOfRange, status.Code(err), "a stream from below the lowest offset")
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err = client.LogClient().ConsumeStream(sctx, &api.ConsumeRequest{Topic: "short", FromLowest: true})
	require.NoError(t, err)
	res, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		t.Fatal("stream ended")
	}
	require.NoError(t, err)
	require.GreaterOrEqual(t, res.GetRecord().GetOffset(), lowest, "from_lowest starts at the lowest offset")
	cancel()

	info, err := client.AlterTopic(ctx, "short", &api.TopicConfig{RetentionAgeMs: 60000})
	require.NoError(t, err)
	require.Equal(t, uint64(0), info.GetConfig().GetRetentionBytes())
	require.Equal(t, uint64(60000), info.GetConfig().GetRetentionAgeMs())
	_, err = client.AlterTopic(ctx, "short", &api.TopicConfig{MaxSegmentBytes: 99})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}
