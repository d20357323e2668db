package distlog

import (
	"context"
	"fmt"
	"testing"

	api "github.com/proglog/proglog/api/v1"
	"go.uber.org/zap"
)

// BenchmarkDistributedAppend measures appends through the leader of a
// three-node cluster in this process (mutual TLS on loopback, every Raft
// batch fsynced on each node): one client at a time, many clients at once
// (Raft and the log store group-commit them), and batches of 100 records.
// It reports records/s; compare runs with benchstat.
func BenchmarkDistributedAppend(b *testing.B) {
	const valueBytes = 100
	c := newTestCluster(b, 3, func(cfg *DistributedConfig) {
		cfg.Logger = zap.NewNop()
		cfg.Log.Segment.MaxIndexBytes = 0 // defaults: the benchmark is not about segment rolls
		cfg.Log.MaxRecordBytes = 0
		cfg.MaxBatchBytes = 0
	})
	leader := c.waitLeader()
	value := make([]byte, valueBytes)
	ctx := context.Background()
	report := func(b *testing.B, records int) {
		b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	}

	b.Run("sequential", func(b *testing.B) {
		b.SetBytes(valueBytes)
		for b.Loop() {
			if _, err := appendOne(ctx, leader.log, &api.Record{Value: value}); err != nil {
				b.Fatal(err)
			}
		}
		report(b, b.N)
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(valueBytes)
		b.SetParallelism(16) // 16 clients per GOMAXPROCS
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := appendOne(ctx, leader.log, &api.Record{Value: value}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, b.N)
	})
	for _, size := range []int{100} {
		b.Run(fmt.Sprintf("batch-%d", size), func(b *testing.B) {
			batch := make([]*api.Record, size)
			for k := range batch {
				batch[k] = &api.Record{Value: value}
			}
			b.SetBytes(int64(valueBytes * size))
			for b.Loop() {
				if _, err := leader.log.AppendBatch(ctx, "", batch); err != nil {
					b.Fatal(err)
				}
			}
			report(b, b.N*size)
		})
	}
}
