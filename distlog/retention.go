package distlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	api "github.com/proglog/proglog/api/v1"
	"go.uber.org/zap"
)

// Retention. A topic with RetentionBytes or RetentionAge loses its oldest
// sealed segments: the leader decides how far (from its own segments and
// their records' leader-stamped timestamps) and replicates a truncate entry
// naming the new lowest offset, so every node's lowest offset is the same;
// each node then deletes its whole segments below it (segment boundaries
// may differ between nodes, so a node may keep a few records below the
// lowest offset on disk, never readable). The active segment is never
// deleted. A follower too far behind to be sent the entries it misses
// catches up by a snapshot, which carries the lowest offset.

// DefaultRetentionCheckInterval is the default
// DistributedConfig.RetentionCheckInterval.
const DefaultRetentionCheckInterval = 5 * time.Second

// truncateLocked applies a truncate entry at index.
func (f *fsm) truncateLocked(index uint64, cmd command) applyResult {
	if index <= f.meta.applied {
		return applyResult{skipped: true}
	}
	t, ok := f.topics[cmd.topic]
	if !ok || t.id != cmd.topicID || t.log == nil {
		return applyResult{} // deleted (and maybe created again) since the leader decided
	}
	lowest := min(cmd.lowest, t.log.NextOffset())
	if lowest <= t.lowest {
		return applyResult{}
	}
	before, _ := t.log.Bytes()
	t.lowest = lowest
	if err := f.persistMetaLocked(index); err != nil {
		return f.stopLocked(fmt.Errorf("truncate topic %q: %w", cmd.topic, err))
	}
	if err := t.log.Truncate(lowest); err != nil {
		// The lowest offset holds (reads below it fail); the files stay
		// until the next truncate.
		f.logger.Warn("removing segments below the lowest offset failed", zap.String("topic", cmd.topic), zap.Error(err))
	}
	after, _ := t.log.Bytes()
	if before > after {
		f.retentionDeleted += before - after
	}
	f.logger.Info("retention: topic truncated", zap.String("topic", cmd.topic), zap.Uint64("lowest", lowest),
		zap.Uint64("bytes_deleted", before-min(before, after)))
	return applyResult{first: lowest}
}

// alterTopicLocked applies an alter-topic entry at index: the topic's
// retention becomes cmd's, and its SegmentAge too unless cmd keeps it (the
// segment age it rolls at changes at this entry on every replica).
func (f *fsm) alterTopicLocked(index uint64, cmd command) applyResult {
	if index <= f.meta.applied {
		return applyResult{skipped: true}
	}
	t, ok := f.topics[cmd.topic]
	if !ok {
		return applyResult{err: api.TopicNotFoundError{Topic: cmd.topic}}
	}
	old := t.config
	t.config.RetentionBytes, t.config.RetentionAge = cmd.config.RetentionBytes, cmd.config.RetentionAge
	if !cmd.keepSegmentAge {
		t.config.SegmentAge = cmd.config.SegmentAge
	}
	if err := f.persistMetaLocked(index); err != nil {
		t.config = old
		return f.stopLocked(fmt.Errorf("alter topic %q: %w", cmd.topic, err))
	}
	if t.log != nil {
		t.log.SetSegmentMaxAge(f.segmentMaxAge(t.config))
	}
	f.logger.Info("topic altered", zap.String("topic", cmd.topic),
		zap.Uint64("retention_bytes", t.config.RetentionBytes), zap.Duration("retention_age", t.config.RetentionAge),
		zap.Duration("segment_age", t.config.SegmentAge))
	return applyResult{}
}

// retentionCut returns the offset below which topic t's sealed segments
// exceed its retention at now, or t's lowest offset when nothing is to go.
func retentionCut(t *topicState, now time.Time) (uint64, error) {
	cut := t.lowest
	if t.config.RetentionBytes == 0 && t.config.RetentionAge == 0 {
		return cut, nil
	}
	segments, err := t.log.Segments()
	if err != nil {
		return cut, err
	}
	var total uint64
	for _, s := range segments {
		total += s.Bytes
	}
	sealed := segments[:len(segments)-1]
	for _, s := range sealed {
		if s.Next <= cut {
			total -= s.Bytes
			continue
		}
		if t.config.RetentionBytes != 0 && total > t.config.RetentionBytes {
			cut = s.Next
			total -= s.Bytes
			continue
		}
		if t.config.RetentionAge != 0 && s.Next > s.Base {
			last, err := t.log.Read(s.Next - 1)
			if err != nil {
				return cut, err
			}
			if now.Sub(time.Unix(0, last.Timestamp)) > t.config.RetentionAge {
				cut = s.Next
				total -= s.Bytes
				continue
			}
		}
		break
	}
	return cut, nil
}

// retentionLoop runs on every node, acting only while it leads: every
// RetentionCheckInterval it replicates a truncate entry for each topic
// whose sealed segments exceed its retention. It ends when the log closes.
func (d *DistributedLog) retentionLoop(closed <-chan struct{}) {
	ticker := time.NewTicker(d.config.RetentionCheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-closed:
			return
		case <-ticker.C:
		}
		if d.raft.State() != raft.Leader {
			continue
		}
		d.enforceRetention()
	}
}

// enforceRetention proposes the truncations retention asks for now.
func (d *DistributedLog) enforceRetention() {
	now := time.Now()
	for _, name := range d.fsm.topicNames() {
		t, ok := d.fsm.lookup(name)
		if !ok || t.log == nil {
			continue
		}
		d.fsm.mu.RLock()
		cut, err := retentionCut(t, now)
		lowest, id := t.lowest, t.id
		d.fsm.mu.RUnlock()
		if err != nil || cut <= lowest {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.config.ApplyTimeout)
		_, _, err = d.apply(ctx, encodeTruncate(name, id, cut))
		cancel()
		if err != nil && !errors.Is(err, ErrClosed) {
			d.logger.Warn("retention: truncate failed", zap.String("topic", name), zap.Error(err))
		}
	}
}

// topicNames returns the names of the topics.
func (f *fsm) topicNames() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	names := make([]string, 0, len(f.topics))
	for name := range f.topics {
		names = append(names, name)
	}
	return names
}

// RetentionDeletedBytes returns the bytes of store files this node deleted
// for retention since it started.
func (d *DistributedLog) RetentionDeletedBytes() uint64 {
	d.fsm.mu.RLock()
	defer d.fsm.mu.RUnlock()
	return d.fsm.retentionDeleted
}

// AlterTopic sets topic name's changeable configuration to cfg's
// (RetentionBytes, RetentionAge and SegmentAge, 0 removing it; the other
// fields are fixed at creation and ignored) through Raft. A SegmentAge
// below MinTopicSegmentAge is ErrInvalidTopicConfig.
//
// Its entry is of a kind the release before SegmentAge does not know:
// upgrade every node before altering a topic.
func (d *DistributedLog) AlterTopic(ctx context.Context, name string, cfg TopicConfig) error {
	if d.isClosed() {
		return ErrClosed
	}
	name, err := topicName(name)
	if err != nil {
		return err
	}
	if err := validateSegmentAge(cfg.SegmentAge); err != nil {
		return err
	}
	_, _, err = d.apply(ctx, encodeAlterTopicAge(name, cfg))
	return err
}

// validateSegmentAge checks a TopicConfig.SegmentAge asked for.
func validateSegmentAge(age time.Duration) error {
	if age < 0 || (age > 0 && age < MinTopicSegmentAge) {
		return fmt.Errorf("%w: SegmentAge = %v: give 0 (the node's default) or at least %v",
			ErrInvalidTopicConfig, age, MinTopicSegmentAge)
	}
	return nil
}

// lowestOf returns topic t's lowest offset as retention set it.
func (f *fsm) lowestOf(t *topicState) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return t.lowest
}
