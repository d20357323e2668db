package distlog

import (
	"errors"
	"time"

	api "github.com/proglog/proglog/api/v1"
)

// DefaultTopic is the topic of the book's API (requests that name no
// topic): api.DefaultTopic. It exists on every cluster from bootstrap (and
// on every data directory from its creation) and cannot be deleted.
const DefaultTopic = api.DefaultTopic

// maxTopicNameBytes is the longest topic name.
const maxTopicNameBytes = api.MaxTopicNameLength

// TopicConfig configures a topic. Zero fields take the node's setting
// (DistributedConfig.Log and TopicSegments). MaxRecordBytes and
// SegmentBytes are fixed when the topic is created; the retention fields
// and SegmentAge are changeable with AlterTopic.
type TopicConfig struct {
	// MaxRecordBytes is the largest record value, in bytes, the topic
	// takes. Default (0): the node's Log.MaxRecordBytes. At most the
	// node's Log.MaxRecordBytes.
	MaxRecordBytes uint64
	// SegmentBytes is the store-file size, in bytes, past which the
	// topic's segment is sealed and a new one started. Default (0): the
	// node's Log.Segment.MaxStoreBytes.
	SegmentBytes uint64
	// RetentionBytes, when not 0, bounds the topic's size: the leader
	// deletes its oldest sealed segments while the topic holds more. The
	// active segment is never deleted, so a topic may hold up to about one
	// segment more. Changeable with AlterTopic.
	RetentionBytes uint64
	// RetentionAge, when not 0, is how long records are kept: the leader
	// deletes a sealed segment once its last record was appended longer
	// ago than this. Changeable with AlterTopic.
	RetentionAge time.Duration
	// SegmentAge, when not 0, seals the topic's active segment once a
	// record comes SegmentAge or more after the segment's first (by the
	// leader's timestamps, so every replica cuts the same segments), like
	// Kafka's segment.ms, whether or not the topic has a retention age.
	// Default (0): the node's TopicSegments.MaxAge, which applies only to a
	// topic with a RetentionAge. At least MinTopicSegmentAge. Changeable
	// with AlterTopic.
	SegmentAge time.Duration
}

// MinTopicSegmentAge is the smallest TopicConfig.SegmentAge: CreateTopic
// and AlterTopic refuse a smaller one (ErrInvalidTopicConfig) rather than
// raise it, so a topic never holds a value other than the one asked for.
// Below it a topic would start a segment, two open files, for nearly every
// append.
const MinTopicSegmentAge = time.Second

// TopicInfo describes a topic as this node has applied it.
type TopicInfo struct {
	Name string
	// Config is the topic's own configuration: 0 where it takes the node's.
	Config TopicConfig
	// Effective is the configuration this node applies to the topic, the
	// node's defaults filled in: MaxRecordBytes and SegmentBytes are never
	// 0; SegmentAge is the age its segments roll at, 0 when they roll by
	// size only. The retention fields are Config's (they have no default).
	Effective TopicConfig
	// LowestOffset is the offset of the first record held (or of the next
	// one, when the topic holds none).
	LowestOffset uint64
	// NextOffset is the offset the next record appended gets; the topic
	// holds LowestOffset .. NextOffset-1.
	NextOffset uint64
	// Records is NextOffset - LowestOffset.
	Records uint64
	// Bytes is the size of the topic's store files on this node.
	Bytes uint64
	// Segments is the number of segments of the topic's log.
	Segments int
}

// validTopicName reports whether name is a topic name (api.TopicNameRule).
func validTopicName(name string) bool { return api.ValidateTopicName(name) == nil }

// The topic errors are api/v1's: api.TopicNotFoundError,
// api.TopicExistsError and api.InvalidTopicNameError.

// ErrDefaultTopic is returned by DeleteTopic for DefaultTopic, which the
// book's API needs (a client error: FailedPrecondition).
var ErrDefaultTopic = errors.New("distlog: the default topic cannot be deleted")

// ErrInvalidTopicConfig is returned by CreateTopic for a TopicConfig this
// node cannot honour; the message names the field (a client error:
// InvalidArgument).
var ErrInvalidTopicConfig = errors.New("distlog: invalid topic config")
