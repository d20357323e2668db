package server

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
)

// BenchmarkProduce compares one unary Produce per record with a pipelined
// ProduceStream over loopback gRPC, on the in-memory servertest log: it
// measures the server and gRPC, not storage.
func BenchmarkProduce(b *testing.B) {
	for _, size := range []int{100, 4 << 10} {
		value := make([]byte, size)
		b.Run(fmt.Sprintf("unary/%dB", size), func(b *testing.B) {
			ts := newBenchServer(b)
			ctx := b.Context()
			b.SetBytes(int64(size))
			for b.Loop() {
				_, err := ts.client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: value}})
				require.NoError(b, err)
			}
		})
		b.Run(fmt.Sprintf("stream/%dB", size), func(b *testing.B) {
			ts := newBenchServer(b)
			stream, err := ts.client.ProduceStream(b.Context())
			require.NoError(b, err)
			answered := make(chan error, 1)
			b.SetBytes(int64(size))
			b.ResetTimer()
			go func() {
				for range b.N {
					if _, err := stream.Recv(); err != nil {
						answered <- err
						return
					}
				}
				answered <- nil
			}()
			for range b.N {
				require.NoError(b, stream.Send(&api.ProduceRequest{Record: &api.Record{Value: value}}))
			}
			require.NoError(b, <-answered)
			b.StopTimer()
			require.NoError(b, stream.CloseSend())
		})
	}
}

// newBenchServer is newTestServer for benchmarks.
func newBenchServer(b *testing.B) *testServer {
	b.Helper()
	cfg := &Config{CommitLog: newTestLog(b), Authorizer: allowAll{}}
	return newTestServer(b, cfg)
}
