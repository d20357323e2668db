package distlog

import (
	"time"

	"go.uber.org/zap"
)

// trailingLoop runs until closed (unless Raft.TrailingBytes is negative).
// Every SnapshotInterval it sets Raft's TrailingLogs to the number of
// entries of the Raft log's current average size that fill
// Raft.TrailingBytes, and at least Raft.TrailingLogs: Raft only knows a
// count, and an entry's size varies by three orders of magnitude with the
// load (one record, or every call that queued up while the entry before
// was replicated). Raft reads the new value at its next compaction.
func (d *DistributedLog) trailingLoop(closed <-chan struct{}) {
	if d.config.Raft.TrailingBytes < 0 {
		return
	}
	tick := time.NewTicker(d.config.Raft.SnapshotInterval)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return
		case <-tick.C:
		}
		d.adjustTrailingLogs()
	}
}

// adjustTrailingLogs reloads Raft's TrailingLogs when the byte budget
// calls for a value more than an eighth away from the current one (so a
// steady load does not reload it every tick).
func (d *DistributedLog) adjustTrailingLogs() {
	segments, err := d.logStore.log.Segments()
	if err != nil || len(segments) == 0 {
		return // closed, or nothing to average over yet
	}
	var bytes uint64
	for _, s := range segments {
		bytes += s.Bytes
	}
	entries := segments[len(segments)-1].Next - segments[0].Base
	want := trailingEntries(uint64(d.config.Raft.TrailingBytes), d.config.Raft.TrailingLogs, bytes, entries)
	rc := d.raft.ReloadableConfig()
	have := rc.TrailingLogs
	if want == have || (want > have-have/8 && want < have+have/8) {
		return
	}
	rc.TrailingLogs = want
	if err := d.raft.ReloadConfig(rc); err != nil {
		d.logger.Warn("could not set Raft's trailing logs", zap.Uint64("trailing_logs", want), zap.Error(err))
		return
	}
	d.logger.Debug("Raft trailing logs set from the byte budget", zap.Uint64("trailing_logs", want),
		zap.Uint64("average_entry_bytes", bytes/max(entries, 1)))
}

// trailingEntries is how many entries of the average size bytes/entries
// fit in budget, and at least least.
func trailingEntries(budget, least, bytes, entries uint64) uint64 {
	if entries == 0 || bytes == 0 {
		return least
	}
	average := max(bytes/entries, 1)
	return max(budget/average, least)
}
