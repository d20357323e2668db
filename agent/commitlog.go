package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog"
	"github.com/proglog/proglog/server"
)

// topicLog adapts the replicated log's topics to server.CommitLog: it turns
// the api types the server speaks into distlog's, and distlog's own
// client-facing errors into api/v1's, which the server maps to codes.
type topicLog struct {
	log *distlog.DistributedLog
}

var _ server.CommitLog = topicLog{}

// AppendBatch appends records to topic through Raft.
func (l topicLog) AppendBatch(ctx context.Context, topic string, records []*api.Record) (uint64, error) {
	return l.log.AppendBatch(ctx, topic, records)
}

// AppendProduced appends produce calls, idempotent ones deduplicated,
// through Raft.
func (l topicLog) AppendProduced(ctx context.Context, topic string, batches []api.ProducerBatch) ([]api.ProducerResult, error) {
	return l.log.AppendProduced(ctx, topic, batches)
}

// StartAppend starts appending produce calls through Raft's group
// commit.
func (l topicLog) StartAppend(ctx context.Context, topic string, batches []api.ProducerBatch) (api.AppendWaiter, error) {
	f, err := l.log.StartAppend(ctx, topic, batches)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// AlterTopic changes topic name's retention and segment age through Raft.
func (l topicLog) AlterTopic(ctx context.Context, name string, config *api.TopicConfig) error {
	return clientError(l.log.AlterTopic(ctx, name, topicConfig(config)))
}

// CommitOffset commits group's offset in topic through Raft.
func (l topicLog) CommitOffset(ctx context.Context, group, topic string, offset uint64, reset bool) (uint64, error) {
	return l.log.CommitOffset(ctx, group, topic, offset, reset)
}

// FetchOffset reads group's committed offset in topic on this node.
func (l topicLog) FetchOffset(_ context.Context, group, topic string) (uint64, error) {
	return l.log.FetchOffset(group, topic)
}

// ListGroups lists the consumer groups on this node.
func (l topicLog) ListGroups(context.Context) ([]*api.GroupInfo, error) {
	var out []*api.GroupInfo
	for _, g := range l.log.Groups() {
		out = append(out, groupInfo(g))
	}
	return out, nil
}

// DescribeGroup describes group on this node.
func (l topicLog) DescribeGroup(_ context.Context, group string) (*api.GroupInfo, error) {
	g, err := l.log.Group(group)
	if err != nil {
		return nil, err
	}
	return groupInfo(g), nil
}

// groupInfo is g in the wire type.
func groupInfo(g distlog.GroupInfo) *api.GroupInfo {
	out := &api.GroupInfo{Name: g.Name}
	for _, t := range g.Topics {
		out.Topics = append(out.Topics, &api.GroupTopic{Topic: t.Topic, Committed: t.Committed, NextOffset: t.NextOffset, Lag: t.Lag})
	}
	return out
}

// Read reads topic on this node.
func (l topicLog) Read(ctx context.Context, topic string, offset uint64) (*api.Record, error) {
	return l.log.Read(ctx, topic, offset)
}

// ReadBatch reads a batch of topic on this node with its sequential reader.
func (l topicLog) ReadBatch(ctx context.Context, topic string, offset uint64, maxRecords int, maxBytes uint64) ([]*api.Record, error) {
	return l.log.ReadBatch(ctx, topic, offset, maxRecords, maxBytes)
}

// Appended is topic's change notification on this node.
func (l topicLog) Appended(topic string) <-chan struct{} {
	return l.log.Appended(topic)
}

// CreateTopic creates topic name through Raft.
func (l topicLog) CreateTopic(ctx context.Context, name string, config *api.TopicConfig) error {
	return clientError(l.log.CreateTopic(ctx, name, topicConfig(config)))
}

// DeleteTopic deletes topic name through Raft.
func (l topicLog) DeleteTopic(ctx context.Context, name string) error {
	return clientError(l.log.DeleteTopic(ctx, name))
}

// ListTopics describes every topic as this node has applied them.
func (l topicLog) ListTopics(context.Context) ([]*api.TopicInfo, error) {
	topics := l.log.Topics()
	infos := make([]*api.TopicInfo, 0, len(topics))
	for _, t := range topics {
		infos = append(infos, topicInfo(t))
	}
	return infos, nil
}

// DescribeTopic describes topic name as this node has applied it.
func (l topicLog) DescribeTopic(_ context.Context, name string) (*api.TopicInfo, error) {
	t, err := l.log.Topic(name)
	if err != nil {
		return nil, err
	}
	return topicInfo(t), nil
}

// topicConfig is distlog's view of a requested topic config.
func topicConfig(config *api.TopicConfig) distlog.TopicConfig {
	return distlog.TopicConfig{
		MaxRecordBytes: config.GetMaxRecordBytes(),
		SegmentBytes:   config.GetMaxSegmentBytes(),
		RetentionBytes: config.GetRetentionBytes(),
		RetentionAge:   msDuration(config.GetRetentionAgeMs()),
		SegmentAge:     msDuration(config.GetSegmentAgeMs()),
	}
}

// msDuration is ms milliseconds, at most the longest time.Duration (about
// 292 years): a larger value, such as a client's -1 for "forever" sent as
// an unsigned 2^64-1, would otherwise wrap to a negative age (under which
// retention deletes every sealed segment).
func msDuration(ms uint64) time.Duration {
	if ms > math.MaxInt64/uint64(time.Millisecond) {
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// wireTopicConfig is the wire view of a distlog topic config.
func wireTopicConfig(c distlog.TopicConfig) *api.TopicConfig {
	return &api.TopicConfig{
		MaxSegmentBytes: c.SegmentBytes,
		MaxRecordBytes:  c.MaxRecordBytes,
		RetentionBytes:  c.RetentionBytes,
		RetentionAgeMs:  uint64(c.RetentionAge / time.Millisecond),
		SegmentAgeMs:    uint64(c.SegmentAge / time.Millisecond),
	}
}

// topicInfo is the wire view of a distlog topic.
func topicInfo(t distlog.TopicInfo) *api.TopicInfo {
	info := &api.TopicInfo{
		Name:            t.Name,
		Config:          wireTopicConfig(t.Config),
		EffectiveConfig: wireTopicConfig(t.Effective),
		LowestOffset:    t.LowestOffset,
		NextOffset:      t.NextOffset,
		Records:         t.Records,
		Bytes:           t.Bytes,
		Segments:        uint64(t.Segments),
	}
	if t.NextOffset > t.LowestOffset {
		info.HighestOffset = t.NextOffset - 1
	}
	return info
}

// clientError marks distlog's topic errors that are the client's doing with
// the api/v1 sentinels the server maps (distlog declares them on its own);
// the message stays distlog's.
func clientError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, distlog.ErrDefaultTopic):
		return fmt.Errorf("%w (%w)", api.ErrDeleteDefaultTopic, err)
	case errors.Is(err, distlog.ErrInvalidTopicConfig):
		return fmt.Errorf("%w: %w", api.ErrInvalidTopicConfig, err)
	default:
		return err
	}
}
