package distlog

import (
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/zap"
)

// Raft only counts entries, and an entry's size varies by more than four
// orders of magnitude with the load: one small record, or every call that
// queued up while the entry before was replicated (up to MaxBatchBytes).
// A count that suits one (2048 entries: two seconds of single writes) is
// gigabytes of the other. So with Raft.TrailingBytes on, each node turns
// that byte budget into Raft's TrailingLogs and SnapshotThreshold from the
// average entry size in its Raft log, at start and then twice per
// SnapshotInterval (Raft checks for a snapshot after one to two intervals,
// so it never compacts on a count older than that).

// trailingCounts is what Raft keeps after a snapshot (TrailingLogs) and
// how many new entries trigger the next one (SnapshotThreshold).
type trailingCounts struct {
	trailing, threshold uint64
}

// minSnapshotThreshold keeps snapshots from following every entry or two
// when entries are large: each snapshot fsyncs every topic's active
// segment and writes the metadata table.
const minSnapshotThreshold = 16

// countsFor turns the byte budget into entry counts for entries of the
// average size bytes/entries: TrailingLogs holds about budget bytes and at
// least cfg.TrailingLogs entries; SnapshotThreshold is the entries that
// fill budget, between minSnapshotThreshold and cfg.SnapshotThreshold. An
// empty log (no average yet) gets the configured counts.
func countsFor(cfg RaftConfig, bytes, entries uint64) trailingCounts {
	if entries == 0 || bytes == 0 || cfg.TrailingBytes < 0 {
		return trailingCounts{trailing: cfg.TrailingLogs, threshold: cfg.SnapshotThreshold}
	}
	fit := uint64(cfg.TrailingBytes) / max(bytes/entries, 1)
	return trailingCounts{
		trailing:  max(fit, cfg.TrailingLogs),
		threshold: min(max(fit, minSnapshotThreshold), max(cfg.SnapshotThreshold, minSnapshotThreshold)),
	}
}

// raftLogCounts is countsFor over this node's Raft log as it is now.
func (d *DistributedLog) raftLogCounts() (trailingCounts, bool) {
	segments, err := d.logStore.log.Segments()
	if err != nil || len(segments) == 0 {
		return trailingCounts{}, false // closed
	}
	var bytes uint64
	for _, s := range segments {
		bytes += s.Bytes
	}
	entries := segments[len(segments)-1].Next - segments[0].Base
	return countsFor(d.config.Raft, bytes, entries), true
}

// sizeRaftConfig sets rc's counts from the Raft log before Raft starts, so
// a restarted node does not compact on the configured counts first.
func (d *DistributedLog) sizeRaftConfig(rc *raft.Config) {
	if d.config.Raft.TrailingBytes < 0 {
		return
	}
	if c, ok := d.raftLogCounts(); ok {
		rc.TrailingLogs, rc.SnapshotThreshold = c.trailing, c.threshold
	}
}

// trailingLoop runs until closed (unless Raft.TrailingBytes is negative),
// resizing Raft's counts twice per SnapshotInterval.
func (d *DistributedLog) trailingLoop(closed <-chan struct{}) {
	if d.config.Raft.TrailingBytes < 0 {
		return
	}
	tick := time.NewTicker(max(d.config.Raft.SnapshotInterval/2, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return
		case <-tick.C:
		}
		d.resizeTrailing()
	}
}

// resizeTrailing reloads Raft's counts when one is more than an eighth
// away from what the Raft log now calls for (so a steady load does not
// reload them every tick).
func (d *DistributedLog) resizeTrailing() {
	want, ok := d.raftLogCounts()
	if !ok {
		return
	}
	rc := d.raft.ReloadableConfig()
	if near(want.trailing, rc.TrailingLogs) && near(want.threshold, rc.SnapshotThreshold) {
		return
	}
	rc.TrailingLogs, rc.SnapshotThreshold = want.trailing, want.threshold
	if err := d.raft.ReloadConfig(rc); err != nil {
		d.logger.Warn("could not resize Raft's trailing logs", zap.Uint64("trailing_logs", want.trailing),
			zap.Uint64("snapshot_threshold", want.threshold), zap.Error(err))
		return
	}
	d.logger.Debug("Raft's trailing logs and snapshot threshold sized from the byte budget",
		zap.Uint64("trailing_logs", want.trailing), zap.Uint64("snapshot_threshold", want.threshold))
}

// near reports whether want is within an eighth of have.
func near(want, have uint64) bool {
	return want == have || (want > have-have/8 && want < have+have/8)
}
