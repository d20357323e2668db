package telemetry

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TopicStats is a snapshot of one topic of the log a node serves.
type TopicStats struct {
	// Topic is the topic's name.
	Topic string
	// Bytes is the size on disk of the topic's segments.
	Bytes uint64
	// LowestOffset is the offset of the first record held (or that would be
	// held, when empty).
	LowestOffset uint64
	// NextOffset is the offset the next record will get; NextOffset -
	// LowestOffset records are held.
	NextOffset uint64
	// Segments is the number of segments on disk.
	Segments int
}

// RaftStats is a snapshot of a node's consensus state.
type RaftStats struct {
	// State is hashicorp/raft's state name: "Follower", "Candidate",
	// "Leader" or "Shutdown".
	State string
	// Term is the current term.
	Term uint64
	// CommitIndex is the highest log index known to be committed.
	CommitIndex uint64
	// AppliedIndex is the highest log index applied to the state machine.
	AppliedIndex uint64
	// LastLogIndex is the highest index in the node's Raft log.
	LastLogIndex uint64
	// HasLeader reports whether the node knows a leader.
	HasLeader bool
	// LastContact is how long ago this node last heard from the leader: 0 on
	// the leader itself, negative when it never has.
	LastContact time.Duration
}

// GroupStats is one consumer group's position in one topic.
type GroupStats struct {
	Group, Topic string
	// Lag is the topic's next offset minus the group's committed offset.
	Lag uint64
}

// MaxGroupSeries bounds the series of proglog_consumer_group_lag: past it,
// the lag of the remaining groups is summed per topic under group
// OtherGroupLabel.
const MaxGroupSeries = 100

// OtherGroupLabel is the group label of the lag of the groups past
// MaxGroupSeries.
const OtherGroupLabel = "(other)"

// StatsSources are the functions a StatsCollector calls at scrape time.
// Each may be nil, leaving its metrics out; one that returns an error fails
// only its own metrics for that scrape (they are reported as collection
// errors, which Metrics.Handler logs). They must be safe for concurrent use
// and quick: a scrape waits for them.
type StatsSources struct {
	// Topics lists the node's topics.
	Topics  func() ([]TopicStats, error)
	Raft    func() (RaftStats, error)
	Members func() (map[string]int, error) // member count by Serf status ("alive", "failed", …)
	// RetentionDeletedBytes returns the store-file bytes retention deleted
	// on this node since it started.
	RetentionDeletedBytes func() uint64
	// Groups lists the consumer groups' lag per topic, sorted by group.
	Groups func() ([]GroupStats, error)
	// TopicLabels bounds the topic label of the per-topic gauges: topics it
	// names get series of their own, the rest are summed under
	// OtherTopicLabel (records, bytes and segments; offsets, which do not
	// add up, are left out for them). Use Metrics.TopicLabels, so that the
	// counters and the gauges name the same topics. Nil: a new
	// TopicLabels with the default cap.
	TopicLabels *TopicLabels
}

// StatsCollector is a prometheus.Collector of the gauges that describe a
// node's state: each topic's offsets, records, bytes and segments, Raft
// state and indexes, and Serf members. It reads them when Prometheus scrapes, through
// StatsSources, so no goroutine polls them in between.
type StatsCollector struct {
	sources StatsSources
	topics  *TopicLabels

	lowestOffset  *prometheus.Desc
	highestOffset *prometheus.Desc
	records       *prometheus.Desc
	bytes         *prometheus.Desc
	segments      *prometheus.Desc

	raftState        *prometheus.Desc
	raftTerm         *prometheus.Desc
	raftCommitIndex  *prometheus.Desc
	raftAppliedIndex *prometheus.Desc
	raftLastIndex    *prometheus.Desc
	raftHasLeader    *prometheus.Desc
	raftLastContact  *prometheus.Desc

	members *prometheus.Desc

	retentionDeleted *prometheus.Desc
	groupLag         *prometheus.Desc
}

var _ prometheus.Collector = (*StatsCollector)(nil)

// NewStatsCollector returns a collector reading sources. Register it with
// Metrics.Register.
func NewStatsCollector(sources StatsSources) *StatsCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	topics := sources.TopicLabels
	if topics == nil {
		topics = NewTopicLabels(0)
	}
	return &StatsCollector{
		sources:       sources,
		topics:        topics,
		lowestOffset:  desc("log_lowest_offset", "Offset of the first record a topic holds on this node.", "topic"),
		highestOffset: desc("log_highest_offset", "Offset of the last record a topic holds on this node; absent while it holds none.", "topic"),
		records:       desc("log_records", "Records a topic holds on this node.", "topic"),
		bytes:         desc("log_bytes", "Bytes of a topic's segments on this node's disk.", "topic"),
		segments:      desc("log_segments", "Segments of a topic's log on this node.", "topic"),

		raftState:        desc("raft_state", "1 for the node's current Raft state, 0 for the others.", "state"),
		raftTerm:         desc("raft_term", "Current Raft term."),
		raftCommitIndex:  desc("raft_commit_index", "Highest Raft log index known to be committed."),
		raftAppliedIndex: desc("raft_applied_index", "Highest Raft log index applied to the data log."),
		raftLastIndex:    desc("raft_last_log_index", "Highest index in the node's Raft log."),
		raftHasLeader:    desc("raft_has_leader", "1 when the node knows a Raft leader, else 0."),
		raftLastContact: desc("raft_last_contact_seconds",
			"Seconds since the node last heard from the Raft leader (0 on the leader); absent until it has."),

		members: desc("serf_members", "Serf members this node knows, by status.", "status"),

		retentionDeleted: desc("retention_deleted_bytes_total", "Bytes of segment files retention deleted on this node since it started."),
		groupLag: desc("consumer_group_lag", "Records between a consumer group's committed offset and the topic's end on this node "+
			"(at most MaxGroupSeries groups by name; the rest summed under group \"(other)\").", "group", "topic"),
	}
}

// Describe sends every metric's description.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.lowestOffset, c.highestOffset, c.records, c.bytes, c.segments,
		c.raftState, c.raftTerm, c.raftCommitIndex, c.raftAppliedIndex, c.raftLastIndex,
		c.raftHasLeader, c.raftLastContact, c.members, c.retentionDeleted, c.groupLag,
	} {
		ch <- d
	}
}

// Collect reads the sources and sends the current values.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	if c.sources.Topics != nil {
		c.collectTopics(ch)
	}
	if c.sources.Raft != nil {
		c.collectRaft(ch)
	}
	if c.sources.Members != nil {
		c.collectMembers(ch)
	}
	if c.sources.RetentionDeletedBytes != nil {
		m, err := prometheus.NewConstMetric(c.retentionDeleted, prometheus.CounterValue, float64(c.sources.RetentionDeletedBytes()))
		if err != nil {
			m = prometheus.NewInvalidMetric(c.retentionDeleted, err)
		}
		ch <- m
	}
	if c.sources.Groups != nil {
		c.collectGroups(ch)
	}
}

// collectGroups sends each group's lag per topic: the first MaxGroupSeries
// (group, topic) pairs by name on their own, the others summed per topic
// under OtherGroupLabel, so the series stay bounded.
func (c *StatsCollector) collectGroups(ch chan<- prometheus.Metric) {
	groups, err := c.sources.Groups()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.groupLag, fmt.Errorf("read group stats: %w", err))
		return
	}
	other := map[string]float64{}
	for k, g := range groups {
		topic := c.topics.Label(g.Topic)
		if k < MaxGroupSeries && topic != OtherTopicLabel {
			ch <- gauge(c.groupLag, float64(g.Lag), g.Group, topic)
			continue
		}
		other[topic] += float64(g.Lag)
	}
	for topic, lag := range other {
		ch <- gauge(c.groupLag, lag, OtherGroupLabel, topic)
	}
}

// gauge returns a gauge sample, or an invalid metric carrying the error if
// the labels do not fit desc (a bug, reported at scrape time, not a panic).
func gauge(desc *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return m
}

func (c *StatsCollector) collectTopics(ch chan<- prometheus.Metric) {
	topics, err := c.sources.Topics()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.segments, fmt.Errorf("read topic stats: %w", err))
		return
	}
	var other struct {
		seen                     bool
		records, bytes, segments float64
	}
	for _, s := range topics {
		records := 0.0
		if s.NextOffset > s.LowestOffset {
			records = float64(s.NextOffset - s.LowestOffset)
		}
		label := c.topics.Label(s.Topic)
		if label == OtherTopicLabel {
			other.seen = true
			other.records += records
			other.bytes += float64(s.Bytes)
			other.segments += float64(s.Segments)
			continue
		}
		ch <- gauge(c.lowestOffset, float64(s.LowestOffset), label)
		if s.NextOffset > s.LowestOffset {
			ch <- gauge(c.highestOffset, float64(s.NextOffset-1), label)
		}
		ch <- gauge(c.records, records, label)
		ch <- gauge(c.bytes, float64(s.Bytes), label)
		ch <- gauge(c.segments, float64(s.Segments), label)
	}
	if other.seen {
		ch <- gauge(c.records, other.records, OtherTopicLabel)
		ch <- gauge(c.bytes, other.bytes, OtherTopicLabel)
		ch <- gauge(c.segments, other.segments, OtherTopicLabel)
	}
}

func (c *StatsCollector) collectRaft(ch chan<- prometheus.Metric) {
	s, err := c.sources.Raft()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.raftState, fmt.Errorf("read raft stats: %w", err))
		return
	}
	current := strings.ToLower(s.State)
	// One series per state, so that a dashboard can graph state changes and
	// an alert can count leaders.
	for _, state := range [...]string{"follower", "candidate", "leader", "shutdown"} {
		v := 0.0
		if state == current {
			v = 1
		}
		ch <- gauge(c.raftState, v, state)
	}
	ch <- gauge(c.raftTerm, float64(s.Term))
	ch <- gauge(c.raftCommitIndex, float64(s.CommitIndex))
	ch <- gauge(c.raftAppliedIndex, float64(s.AppliedIndex))
	ch <- gauge(c.raftLastIndex, float64(s.LastLogIndex))
	hasLeader := 0.0
	if s.HasLeader {
		hasLeader = 1
	}
	ch <- gauge(c.raftHasLeader, hasLeader)
	if s.LastContact >= 0 {
		ch <- gauge(c.raftLastContact, s.LastContact.Seconds())
	}
}

func (c *StatsCollector) collectMembers(ch chan<- prometheus.Metric) {
	counts, err := c.sources.Members()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.members, fmt.Errorf("read serf members: %w", err))
		return
	}
	for status, n := range counts {
		ch <- gauge(c.members, float64(n), status)
	}
}
