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

// BenchmarkGroupCommit compares group-commit settings on a three-node
// cluster in this process: every append its own entry (disabled) and 1, 2
// or 4 coalesced entries in flight, under two workloads: 64 concurrent
// one-record appends (writers-64) and 4 concurrent appends of 100 records
// (batch-100x4, as proglog bench --mode batch --batch 100 --concurrency 4).
// It reports records/s and Raft entries per 1000 records.
func BenchmarkGroupCommit(b *testing.B) {
	const valueBytes = 100
	variants := []struct {
		name string
		cfg  GroupCommitConfig
	}{
		{"disabled", GroupCommitConfig{Disabled: true}},
		{"inflight-1", GroupCommitConfig{MaxInFlight: 1}},
		{"inflight-2", GroupCommitConfig{MaxInFlight: 2}},
		{"inflight-4", GroupCommitConfig{MaxInFlight: 4}},
	}
	workloads := []struct {
		name string
		// writers per GOMAXPROCS (b.SetParallelism) and records per append
		parallelism, batch int
	}{
		{"writers-64", 32, 1}, // 64 writers on 2 CPUs
		{"batch-100x4", 2, 100},
	}
	for _, v := range variants {
		for _, w := range workloads {
			b.Run(v.name+"/"+w.name, func(b *testing.B) {
				c := newTestCluster(b, 3, func(cfg *DistributedConfig) {
					cfg.Logger = zap.NewNop()
					cfg.Log.Segment.MaxIndexBytes = 0
					cfg.Log.MaxRecordBytes = 0
					cfg.MaxBatchBytes = 0
					cfg.GroupCommit = v.cfg
				})
				leader := c.waitLeader()
				batch := make([]*api.Record, w.batch)
				for k := range batch {
					batch[k] = &api.Record{Value: make([]byte, valueBytes)}
				}
				ctx := context.Background()
				startIndex := leader.log.Raft().LastIndex()
				b.SetBytes(int64(valueBytes * w.batch))
				b.SetParallelism(w.parallelism)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := leader.log.AppendBatch(ctx, DefaultTopic, batch); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				records := float64(b.N * w.batch)
				b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(leader.log.Raft().LastIndex()-startIndex)*1000/records, "entries/1000records")
			})
		}
	}
}
