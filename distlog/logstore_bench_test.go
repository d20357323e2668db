package distlog

import (
	"testing"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	raftbench "github.com/hashicorp/raft/bench"
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
