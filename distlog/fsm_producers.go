package distlog

import (
	"fmt"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog/storage"
	"go.uber.org/zap"
)

// gatherProducedLocked decides the runs of producer-append entry l
// (response i) against the producer table, in order, and adds the records
// of the runs to append to b; it returns the entry's response when it has
// nothing to write. The records an entry appends are its appended runs'
// values in order, at batch positions 0, 1, …; a run refused or found to be
// a duplicate adds none. Decisions depend only on the table, so a replay
// after a restart decides alike and finds the same records in the log.
func (f *fsm) gatherProducedLocked(b *topicBatch, i int, l *raft.Log, cmd command) any {
	t := b.topic
	limit := f.maxRecordBytes(t.config)
	for k, v := range cmd.values {
		if n := uint64(len(v)); n > limit {
			return applyResult{err: fmt.Errorf("%w: record %d of %d has %d bytes, topic %q takes at most %d",
				ErrRecordTooLarge, k, len(cmd.values), n, t.name, limit)}
		}
	}
	// How many of the entry's records the log holds already (a replay
	// after a restart): all of them when a later entry appended since.
	allPresent := l.Index < t.lastIndex
	var present uint64
	if l.Index == t.lastIndex {
		present = uint64(t.lastPos) + 1
	}
	entryFirst, located := uint64(0), false
	locate := func() uint64 {
		if !located {
			located = true
			if allPresent {
				entryFirst = f.firstOffsetOfEntry(t, l.Index)
			} else {
				entryFirst = t.log.NextOffset() + uint64(len(b.records)) - present
			}
		}
		return entryFirst
	}

	results := make([]api.ProducerResult, len(cmd.runs))
	var appended [][]byte
	next := 0 // index in cmd.values of the run's first value
	for k, run := range cmd.runs {
		values := cmd.values[next : next+int(run.records)]
		next += int(run.records)
		d := f.producers.decide(run, t.id, cmd.limits)
		switch {
		case d.err != nil:
			results[k].Err = d.err
		case d.duplicate:
			results[k] = api.ProducerResult{First: d.first, Count: d.count, Duplicate: true}
		default:
			first := locate() + uint64(len(appended))
			f.producers.record(run, t.id, first, run.records, cmd.limits)
			results[k] = api.ProducerResult{First: first, Count: run.records}
			appended = append(appended, values...)
		}
	}
	total := uint64(len(appended))
	if allPresent || present >= total {
		return applyResult{runs: results, skipped: allPresent || present > 0}
	}
	if present > 0 {
		f.logger.Warn("completing a batch cut short by a crash", zap.String("topic", t.name),
			zap.Uint64("raft_index", l.Index), zap.Uint64("had", present), zap.Uint64("batch", total))
	}
	b.pending = append(b.pending, pendingAppend{response: i, records: len(b.records), skip: uint32(present), count: int(total), runs: results})
	for pos := present; pos < total; pos++ {
		b.records = append(b.records, &storage.Record{
			Value: appended[pos], Timestamp: cmd.timestamp, Term: l.Term, EntryIndex: l.Index, BatchPos: uint32(pos),
		})
	}
	return nil // set by writeBatchLocked
}

// firstOffsetOfEntry finds the offset of the first record that the entry
// at index appended to t, by binary search on the records' entry indexes
// (which grow with the offsets). It is only needed when Raft replays an
// entry whose records the log holds already.
func (f *fsm) firstOffsetOfEntry(t *topicState, index uint64) uint64 {
	lo, err := t.log.LowestOffset()
	if err != nil {
		return 0
	}
	hi := t.log.NextOffset()
	for lo < hi {
		mid := lo + (hi-lo)/2
		rec, err := t.log.Read(mid)
		if err != nil {
			f.logger.Warn("reading a replayed entry's records failed", zap.String("topic", t.name), zap.Uint64("offset", mid), zap.Error(err))
			return mid
		}
		if rec.EntryIndex < index {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
