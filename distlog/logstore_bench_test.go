package distlog

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	raftbench "github.com/hashicorp/raft/bench"
	"github.com/proglog/proglog/distlog/internal/latency"
	"github.com/proglog/proglog/distlog/storage"
)

// BenchmarkLogStore runs hashicorp/raft's own LogStore benchmarks
// (github.com/hashicorp/raft/bench) against distlog's Raft log store and,
// as a yardstick on the same disk in the same run, against
// hashicorp/raft-wal (a test-only dependency). StoreLog and StoreLogs are
// durable when they return (one fsync per call in both stores), so they
// measure the sync cost Raft pays per batch on every node. Compare with
// benchstat:
//
//	go test -run '^$' -bench 'LogStore' -count 6 ./distlog | tee new.txt
func BenchmarkLogStore(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) raft.LogStore
	}{
		{"distlog", func(b *testing.B) raft.LogStore {
			s, err := newLogStore(b.TempDir(), storage.Config{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"raftwal", func(b *testing.B) raft.LogStore {
			w, err := raftwal.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = w.Close() })
			return w
		}},
	}
	benches := []struct {
		name string
		run  func(*testing.B, raft.LogStore)
	}{
		// raftbench.StoreLog starts at index 0, which is no Raft index and
		// which neither store takes: it runs one index up.
		{"StoreLog", func(b *testing.B, s raft.LogStore) { raftbench.StoreLog(b, shiftedLogStore{s}) }},
		{"StoreLogs", raftbench.StoreLogs},
		{"GetLog", raftbench.GetLog},
		{"FirstIndex", raftbench.FirstIndex},
		{"LastIndex", raftbench.LastIndex},
		// raftbench.DeleteRange is left out: it stores entries with gaps
		// between them, which neither store (both raft.MonotonicLogStore)
		// holds.
	}
	for _, bench := range benches {
		for _, store := range stores {
			b.Run(bench.name+"/"+store.name, func(b *testing.B) {
				bench.run(b, store.open(b))
			})
		}
	}
}

// shiftedLogStore stores each entry one index above the one it is given.
type shiftedLogStore struct{ raft.LogStore }

func (s shiftedLogStore) StoreLog(l *raft.Log) error {
	shifted := *l
	shifted.Index++
	return s.LogStore.StoreLog(&shifted)
}

// BenchmarkStoreLogsWhileCompacting measures what Raft's log compaction costs the
// writer: one goroutine stores entries as a leader's main loop does (one
// StoreLogs of one 12 KiB entry, about a batch of 100 records of 100 B, one
// fsync each) while, on "compacting", another deletes the prefix as raft's
// snapshot goroutine does after each snapshot (every 128 entries, keeping
// the last 64: one or two 1 MiB segments and the first-index file per
// compaction). It reports the latency of StoreLogs in µs: p50, p99,
// p99.9, max, and "overlap-mean", the mean over the calls that started
// while a DeleteRange ran (what a compaction that holds the writer up
// costs each of them). "idle" is the same without compaction.
//
//	go test -run '^$' -bench StoreLogsWhileCompacting -benchtime 5000x -count 6 ./distlog
func BenchmarkStoreLogsWhileCompacting(b *testing.B) {
	const (
		entryBytes   = 12 << 10
		compactEvery = 128
		trailingLogs = 64
	)
	for _, compacting := range []bool{false, true} {
		name := "idle"
		if compacting {
			name = "compacting"
		}
		b.Run(name, func(b *testing.B) {
			s, err := newLogStore(b.TempDir(), storage.Config{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			data := make([]byte, entryBytes)
			for i := range data {
				data[i] = byte(i)
			}
			// The compactor: told the last index stored every
			// compactEvery entries, it deletes up to trailingLogs before it.
			var deleting atomic.Bool
			stored := make(chan uint64, 1)
			compactorDone := make(chan error, 1)
			go func() {
				var err error
				for last := range stored {
					first, _ := s.FirstIndex()
					if err == nil && first != 0 && first+trailingLogs <= last {
						deleting.Store(true)
						err = s.DeleteRange(first, last-trailingLogs)
						deleting.Store(false)
					}
				}
				compactorDone <- err
			}()
			latencies := make([]time.Duration, 0, b.N)
			var overlapped []time.Duration
			b.SetBytes(entryBytes)
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				during := deleting.Load()
				start := time.Now()
				if err := s.StoreLogs([]*raft.Log{{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: data}}); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				latencies = append(latencies, took)
				if during {
					overlapped = append(overlapped, took)
				}
				if compacting && i%compactEvery == 0 {
					select {
					case stored <- uint64(i):
					default: // still compacting: as raft, skip a round
					}
				}
			}
			b.StopTimer()
			close(stored)
			if err := <-compactorDone; err != nil {
				b.Fatal(err)
			}
			latency.Report(b, latencies)
			if len(overlapped) > 0 {
				b.ReportMetric(latency.Mean(overlapped), "overlap-mean-µs")
			}
		})
	}
}
