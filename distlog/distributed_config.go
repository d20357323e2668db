package distlog

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"github.com/proglog/proglog/distlog/storage"
	"go.uber.org/zap"
)

// Defaults applied by NewDistributedLog to zero DistributedConfig fields.
const (
	// DefaultApplyTimeout is the default DistributedConfig.ApplyTimeout.
	DefaultApplyTimeout = 10 * time.Second
	// DefaultReadWaitTimeout is the default DistributedConfig.ReadWaitTimeout.
	DefaultReadWaitTimeout = 2 * time.Second
	// DefaultMaxBatchBytes is the default DistributedConfig.MaxBatchBytes.
	DefaultMaxBatchBytes = 8 << 20
	// DefaultSnapshotRetain is the default RaftConfig.SnapshotRetain.
	DefaultSnapshotRetain = 2
	// DefaultSnapshotThreshold is the default RaftConfig.SnapshotThreshold.
	DefaultSnapshotThreshold = 1024
	// DefaultSnapshotInterval is the default RaftConfig.SnapshotInterval.
	DefaultSnapshotInterval = time.Second
	// DefaultTrailingLogs is the default RaftConfig.TrailingLogs when
	// TrailingBytes is off.
	DefaultTrailingLogs = 2048
	// DefaultMinTrailingLogs is the default RaftConfig.TrailingLogs with
	// TrailingBytes on (the default): the least kept, whatever the size.
	DefaultMinTrailingLogs = 16
	// DefaultTrailingBytes is the default RaftConfig.TrailingBytes.
	DefaultTrailingBytes = 32 << 20
	// DefaultTransportTimeout is the default RaftConfig.TransportTimeout.
	DefaultTransportTimeout = 10 * time.Second
	// DefaultTransportMaxPool is the default RaftConfig.TransportMaxPool.
	DefaultTransportMaxPool = 5
	// DefaultHeartbeatTimeout is the default RaftConfig.HeartbeatTimeout:
	// half of hashicorp/raft's 1 s, so that writes resume within about a
	// second of a leader's crash (a follower waits 1–2 heartbeat timeouts
	// before it campaigns). Leaders send heartbeats every tenth of it, and
	// followers answer them off Raft's main loop, so a busy disk does not
	// delay them. Raise it on slow or distant networks.
	DefaultHeartbeatTimeout = 500 * time.Millisecond
	// DefaultElectionTimeout is the default RaftConfig.ElectionTimeout.
	DefaultElectionTimeout = 500 * time.Millisecond
	// DefaultTopicSegmentBytes is the default TopicSegmentConfig.MaxStoreBytes:
	// a topic's segment is sealed past 8 MiB (NATS JetStream's file store
	// uses blocks of that size; Kafka's segments are 1 GiB). Each segment
	// holds two open files and a little memory for as long as it is kept:
	// segments of 1 MiB (the storage default, kept for the Raft log, which
	// is compacted after every snapshot) made a node of 10M records of 100
	// bytes hold ~2,850 files. Retention deletes whole sealed segments, so
	// larger ones make it coarser.
	DefaultTopicSegmentBytes = 8 << 20
	// DefaultTopicSegmentIndexBytes is the default
	// TopicSegmentConfig.MaxIndexBytes: 32,768 entries of 12 bytes. The
	// active segment's index file is allocated whole when the segment is
	// created (so that a full disk fails a write rather than the process)
	// and cut back to its entries when it is sealed: 384 KiB per topic,
	// twice what 1 MiB segments took, where room for a full 8 MiB segment
	// of 100-byte records (58,000) would take 768 KiB. So segments of
	// records under ~212 bytes are sealed at 32,768 records (4.7 MB of
	// 100-byte records) before they reach 8 MiB.
	DefaultTopicSegmentIndexBytes = 12 * 32768
	// DefaultTopicSegmentMaxAge is the default TopicSegmentConfig.MaxAge: a
	// segment of a topic with a retention age is sealed once it spans an
	// hour of records, so that retention deletes records of a quiet topic
	// within about an hour of their age passing (Kafka's segment.ms is a
	// week, for every topic).
	DefaultTopicSegmentMaxAge = time.Hour
	// DefaultLeaderLeaseTimeout is the default RaftConfig.LeaderLeaseTimeout:
	// half the heartbeat timeout, raft's own ratio.
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
)

// DistributedConfig configures a DistributedLog. Zero fields take the default
// named in their comment; Raft.LocalID and Raft.StreamLayer are required.
type DistributedConfig struct {
	// Log configures the segments of the topics' logs (the records clients
	// read) and of the Raft log store. Log.MaxRecordBytes bounds each
	// record's value in a topic created without its own limit, and the
	// limit a topic may set; it must be the same on every node: the state
	// machine refuses an oversized record on every node alike only if they
	// agree on the limit. Log.SyncOnAppend applies to the topics' logs only;
	// the Raft log store always fsyncs each batch before Raft counts it, and
	// the topics can be rebuilt from it after a crash, so they need no
	// fsync of their own (snapshots fsync what they capture).
	// Log.Segment.InitialOffset is ignored: topics start at 0, the Raft
	// log store at index 1. Defaults: see storage.Config.
	Log storage.Config
	// TopicSegments sizes the segments of the topics' logs, for topics
	// that set no segment size of their own (TopicConfig.SegmentBytes);
	// the Raft log store's segments keep Log.Segment's.
	TopicSegments TopicSegmentConfig

	// Raft configures consensus.
	Raft RaftConfig

	// RetentionCheckInterval is how often the leader checks the topics'
	// retention (RetentionBytes, RetentionAge) and replicates the
	// truncations it asks for. Default DefaultRetentionCheckInterval (5 s).
	RetentionCheckInterval time.Duration

	// Producers bounds the idempotent producers' state (see
	// ProducerConfig); defaults: 5 calls per producer, 10000 producers,
	// 24 h idle expiry.
	Producers ProducerConfig

	// GroupCommit configures how concurrent appends share Raft entries
	// (see GroupCommitConfig); defaults: 1 entry in flight, 4096 calls
	// per entry, a linger of 500µs for the last entry's writers.
	GroupCommit GroupCommitConfig

	// ApplyTimeout bounds how long Append and AppendBatch wait to hand an
	// entry to Raft (a shorter context deadline wins). Once Raft holds the
	// entry, they wait until it is applied or Raft gives up on it (for
	// instance when the leader loses its lease). Default 10 s.
	ApplyTimeout time.Duration

	// ReadWaitTimeout bounds how long Read waits for an offset this node
	// does not hold yet, in case it is committed but not yet applied here
	// (a shorter context deadline wins). Default 2 s.
	ReadWaitTimeout time.Duration

	// MaxBatchBytes bounds the encoded size, in bytes, of one AppendBatch
	// (its values plus one to ten bytes of framing each, and the topic
	// name); it is the largest Raft entry the log makes. It must leave room for one record of
	// Log.MaxRecordBytes. Default 8 MiB, or one maximum record if larger.
	MaxBatchBytes uint64

	// Logger receives the DistributedLog's and Raft's logs (Raft's hclog
	// output is bridged into it), named "distlog" with the node id attached.
	// Default zap.NewNop().
	Logger *zap.Logger
}

// RaftConfig is the consensus part of a DistributedConfig. Zero durations and
// counts take the defaults given in each comment: hashicorp/raft's
// (raft.DefaultConfig), except for the snapshot thresholds, which are lower
// because a snapshot here does not copy the records; tests set them small.
type RaftConfig struct {
	// LocalID identifies this server in the Raft configuration for all
	// time; required.
	LocalID raft.ServerID

	// StreamLayer carries Raft's peer traffic; required.
	StreamLayer *StreamLayer

	// AdvertiseAddr is the host:port peers dial to reach this node's
	// StreamLayer. Default: the StreamLayer's listener address, which must
	// then not be an unspecified address such as [::]:8400, since peers
	// cannot dial that.
	AdvertiseAddr string

	// Bootstrap makes this node bootstrap a one-server cluster of itself
	// when it has no Raft state yet. With existing state it is ignored, so
	// the first node can be restarted with the same flags.
	Bootstrap bool

	// HeartbeatTimeout: time without contact from a leader before a
	// follower starts an election. Default DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// ElectionTimeout: time a candidate waits for votes before it starts a
	// new election. Default DefaultElectionTimeout.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: time a leader keeps leading without hearing from
	// a quorum; must not exceed HeartbeatTimeout. Default
	// DefaultLeaderLeaseTimeout, or HeartbeatTimeout when that is shorter.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: time without an Apply after which the leader sends an
	// AppendEntries anyway, so commits reach followers. Default 50 ms.
	CommitTimeout time.Duration

	// SnapshotThreshold: number of Raft entries since the last snapshot
	// before a new one is taken; with TrailingBytes on, the most: fewer
	// when TrailingBytes of entries come first. Default
	// DefaultSnapshotThreshold (1024;
	// hashicorp/raft's is 8192). A snapshot hard-links the topics' segment
	// files and fsyncs their active segments: its cost does not grow with
	// the records held, so it can be frequent. Until a snapshot, every
	// entry stays in the Raft log beside the topics' copy of its records:
	// with the default threshold, interval and TrailingLogs, and entries of
	// 100 records of 100 bytes, the Raft log holds 30–50 MB at most where
	// raft's defaults let it hold every record written in two minutes and
	// 18,432 entries more.
	SnapshotThreshold uint64
	// SnapshotInterval: how often Raft checks whether SnapshotThreshold
	// entries were written since the last snapshot (at a random time
	// between one and two intervals). Default DefaultSnapshotInterval (1 s;
	// hashicorp/raft's is 120 s): the check costs nothing, and under a
	// steady write load the Raft log then holds no more than about two
	// seconds of entries beyond SnapshotThreshold and TrailingLogs.
	SnapshotInterval time.Duration
	// TrailingLogs: number of Raft entries kept after a snapshot so that a
	// follower that fell behind by fewer catches up from the log; one
	// further behind is sent a snapshot (InstallSnapshot), which carries
	// every record of every topic. With TrailingBytes on (the default) it
	// is the least kept; default DefaultMinTrailingLogs (16). With it off,
	// exactly this many are kept; default DefaultTrailingLogs (2048;
	// hashicorp/raft's is 10240).
	TrailingLogs uint64
	// TrailingBytes: about how many bytes of Raft entries a snapshot
	// leaves in the Raft log, and how many new bytes of entries trigger
	// the next snapshot, whatever their number. Raft counts entries, and
	// an entry holds one call's records or every call that queued up
	// while the one before replicated (up to MaxBatchBytes): 2048 entries
	// are two seconds of single writes or gigabytes of large batches. So
	// each node divides TrailingBytes by the average entry size of its
	// Raft log (at start and twice per SnapshotInterval) and sets Raft's
	// TrailingLogs (at least the field above) and SnapshotThreshold (at
	// most the field above, at least 16) from it: a follower that was away
	// catches up from the log when it missed less than about this much,
	// and the Raft log holds about twice this much, at most. Default
	// DefaultTrailingBytes (32 MiB); a negative value turns it off (Raft
	// gets TrailingLogs and SnapshotThreshold as they are).
	TrailingBytes int64
	// SnapshotRetain: number of snapshots kept on disk. Default 2.
	SnapshotRetain int

	// TransportTimeout: I/O deadline of one Raft RPC (scaled up for
	// snapshot installs) and of dialing a peer. Default 10 s.
	TransportTimeout time.Duration
	// TransportMaxPool: idle connections kept per peer. Default 5.
	TransportMaxPool int
}

// withDefaults returns c with defaults filled in, or an error naming the
// first field it cannot use.
func (c DistributedConfig) withDefaults() (DistributedConfig, error) {
	if c.Raft.LocalID == "" {
		return c, fmt.Errorf("%w: Raft.LocalID is empty", ErrInvalidConfig)
	}
	if c.Raft.StreamLayer == nil {
		return c, fmt.Errorf("%w: Raft.StreamLayer is nil", ErrInvalidConfig)
	}
	if c.Raft.AdvertiseAddr == "" {
		c.Raft.AdvertiseAddr = c.Raft.StreamLayer.Addr().String()
	}
	if err := checkAdvertiseAddr(c.Raft.AdvertiseAddr); err != nil {
		return c, fmt.Errorf("%w: Raft.AdvertiseAddr = %q: %w", ErrInvalidConfig, c.Raft.AdvertiseAddr, err)
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = DefaultApplyTimeout
	}
	if c.ReadWaitTimeout == 0 {
		c.ReadWaitTimeout = DefaultReadWaitTimeout
	}
	if c.Raft.SnapshotRetain == 0 {
		c.Raft.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.Raft.SnapshotThreshold == 0 {
		c.Raft.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.Raft.SnapshotInterval == 0 {
		c.Raft.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.Raft.TrailingBytes == 0 {
		c.Raft.TrailingBytes = DefaultTrailingBytes
	}
	if c.Raft.TrailingLogs == 0 {
		c.Raft.TrailingLogs = DefaultTrailingLogs
		if c.Raft.TrailingBytes > 0 {
			c.Raft.TrailingLogs = DefaultMinTrailingLogs
		}
	}
	if c.Raft.TransportTimeout == 0 {
		c.Raft.TransportTimeout = DefaultTransportTimeout
	}
	if c.Raft.TransportMaxPool == 0 {
		c.Raft.TransportMaxPool = DefaultTransportMaxPool
	}
	if c.Raft.HeartbeatTimeout == 0 {
		c.Raft.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.Raft.ElectionTimeout == 0 {
		c.Raft.ElectionTimeout = DefaultElectionTimeout
	}
	if c.Raft.LeaderLeaseTimeout == 0 {
		c.Raft.LeaderLeaseTimeout = min(DefaultLeaderLeaseTimeout, c.Raft.HeartbeatTimeout)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.RetentionCheckInterval < 0 {
		return c, fmt.Errorf("%w: RetentionCheckInterval = %v, want >= 0", ErrInvalidConfig, c.RetentionCheckInterval)
	}
	if c.RetentionCheckInterval == 0 {
		c.RetentionCheckInterval = DefaultRetentionCheckInterval
	}
	var err error
	if c.Producers, err = c.Producers.withDefaults(); err != nil {
		return c, err
	}
	if c.GroupCommit, err = c.GroupCommit.withDefaults(); err != nil {
		return c, err
	}
	if c.ApplyTimeout < 0 || c.ReadWaitTimeout < 0 || c.Raft.TransportTimeout < 0 {
		return c, fmt.Errorf("%w: negative timeout (ApplyTimeout %v, ReadWaitTimeout %v, Raft.TransportTimeout %v)",
			ErrInvalidConfig, c.ApplyTimeout, c.ReadWaitTimeout, c.Raft.TransportTimeout)
	}
	if c.Raft.SnapshotRetain < 1 || c.Raft.TransportMaxPool < 1 {
		return c, fmt.Errorf("%w: Raft.SnapshotRetain = %d, Raft.TransportMaxPool = %d, both must be at least 1",
			ErrInvalidConfig, c.Raft.SnapshotRetain, c.Raft.TransportMaxPool)
	}
	if c.TopicSegments, err = c.TopicSegments.withDefaults(c.Log); err != nil {
		return c, err
	}
	log, err := c.Log.WithDefaults()
	if err != nil {
		return c, fmt.Errorf("%w: Log: %w", ErrInvalidConfig, err)
	}
	c.Log = log
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = max(DefaultMaxBatchBytes, c.Log.MaxRecordBytes+maxAppendFramingBytes)
	}
	if c.MaxBatchBytes < c.Log.MaxRecordBytes+maxAppendFramingBytes {
		return c, fmt.Errorf("%w: MaxBatchBytes = %d leaves no room for one record of Log.MaxRecordBytes = %d (needs %d)",
			ErrInvalidConfig, c.MaxBatchBytes, c.Log.MaxRecordBytes, c.Log.MaxRecordBytes+maxAppendFramingBytes)
	}
	if c.MaxBatchBytes > storage.MaxRecordBytesLimit-logEntryOverhead {
		return c, fmt.Errorf("%w: MaxBatchBytes = %d, must be at most %d",
			ErrInvalidConfig, c.MaxBatchBytes, uint64(storage.MaxRecordBytesLimit-logEntryOverhead))
	}
	return c, nil
}

// raftConfig builds hashicorp/raft's configuration from c, which has had its
// defaults filled in, and validates it.
//
// MaxAppendEntries, BatchApplyCh and CommitTimeout stay at raft's defaults
// on purpose. Group commit (groupcommit.go) makes the entries: one
// goroutine proposes at most GroupCommit.MaxInFlight entries at a time,
// each holding what queued up (31–44 entries per 1000 records with 64
// writers, BenchmarkGroupCommit), so raft never has more than a few
// entries to batch and a larger MaxAppendEntries or a buffered apply
// channel has nothing to gather; the previous release measured both
// (BatchApplyCh, MaxAppendEntries 128) with one entry per append and found
// no difference above the noise either. CommitTimeout only paces the
// AppendEntries that carry the commit index when no new entry comes; an
// entry's commit is sent with the next one or the next heartbeat
// (HeartbeatTimeout/10), and a write waits for the leader's commit, not
// the followers'. The snapshot thresholds count entries: with group commit
// an entry carries many records, so SnapshotThreshold and TrailingLogs
// hold more records than before per entry count.
func (c DistributedConfig) raftConfig() (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = c.Raft.LocalID
	if c.Raft.HeartbeatTimeout != 0 {
		rc.HeartbeatTimeout = c.Raft.HeartbeatTimeout
	}
	if c.Raft.ElectionTimeout != 0 {
		rc.ElectionTimeout = c.Raft.ElectionTimeout
	}
	if c.Raft.LeaderLeaseTimeout != 0 {
		rc.LeaderLeaseTimeout = c.Raft.LeaderLeaseTimeout
	}
	if c.Raft.CommitTimeout != 0 {
		rc.CommitTimeout = c.Raft.CommitTimeout
	}
	rc.SnapshotThreshold = c.Raft.SnapshotThreshold
	rc.SnapshotInterval = c.Raft.SnapshotInterval
	rc.TrailingLogs = c.Raft.TrailingLogs
	rc.Logger = newHCLogger(c.Logger.Named("raft"))
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("%w: Raft: %w", ErrInvalidConfig, err)
	}
	return rc, nil
}

// errUnspecifiedAddr explains why an advertise address is refused.
var errUnspecifiedAddr = errors.New("peers cannot dial an unspecified or empty host; set Raft.AdvertiseAddr")

// checkAdvertiseAddr refuses addresses peers cannot dial, such as
// [::]:8400 or :8400.
func checkAdvertiseAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" || port == "0" {
		return fmt.Errorf("port %q is not dialable", port)
	}
	if host == "" {
		return errUnspecifiedAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return errUnspecifiedAddr
	}
	return nil
}

// TopicSegmentConfig sizes the segments of the topics' logs (see
// DistributedConfig.TopicSegments).
type TopicSegmentConfig struct {
	// MaxStoreBytes is the store-file size past which a topic's segment is
	// sealed. Default: DistributedConfig.Log.Segment.MaxStoreBytes when that
	// is set (the size the node was given for its logs), otherwise
	// DefaultTopicSegmentBytes (8 MiB).
	MaxStoreBytes uint64
	// MaxIndexBytes bounds a topic segment's index: it holds at most
	// MaxIndexBytes/12 records. Default: Log.Segment.MaxIndexBytes when
	// that is set, otherwise DefaultTopicSegmentIndexBytes.
	MaxIndexBytes uint64
	// MaxAge seals a segment of a topic with a retention age
	// (TopicConfig.RetentionAge) once a record comes MaxAge or more after
	// the segment's first (by the leader's timestamps, so every replica
	// cuts the same segments; see storage.Config.Segment.MaxAge). Topics
	// without a retention age roll by size only: nothing would delete the
	// segments an age roll cut, and each holds open files. Default
	// DefaultTopicSegmentMaxAge (1 h); negative: by size only.
	MaxAge time.Duration
}

func (c TopicSegmentConfig) withDefaults(log storage.Config) (TopicSegmentConfig, error) {
	if c.MaxStoreBytes == 0 {
		c.MaxStoreBytes = log.Segment.MaxStoreBytes
	}
	if c.MaxStoreBytes == 0 {
		c.MaxStoreBytes = DefaultTopicSegmentBytes
	}
	if c.MaxIndexBytes == 0 {
		c.MaxIndexBytes = log.Segment.MaxIndexBytes
	}
	if c.MaxIndexBytes == 0 {
		c.MaxIndexBytes = DefaultTopicSegmentIndexBytes
	}
	switch {
	case c.MaxAge == 0:
		c.MaxAge = DefaultTopicSegmentMaxAge
	case c.MaxAge < 0:
		c.MaxAge = 0
	}
	// The storage package validates the sizes with the topic's own.
	probe := log
	probe.Segment.MaxStoreBytes, probe.Segment.MaxIndexBytes = c.MaxStoreBytes, c.MaxIndexBytes
	if _, err := probe.WithDefaults(); err != nil {
		return c, fmt.Errorf("%w: TopicSegments: %w", ErrInvalidConfig, err)
	}
	return c, nil
}
