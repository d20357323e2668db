package telemetry

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LogStats is a snapshot of the data log a node serves.
type LogStats struct {
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

// StatsSources are the functions a StatsCollector calls at scrape time.
// Each may be nil, leaving its metrics out; one that returns an error fails
// only its own metrics for that scrape (they are reported as collection
// errors, which Metrics.Handler logs). They must be safe for concurrent use
// and quick: a scrape waits for them.
type StatsSources struct {
	Log     func() (LogStats, error)
	Raft    func() (RaftStats, error)
	Members func() (map[string]int, error) // member count by Serf status ("alive", "failed", …)
}

// StatsCollector is a prometheus.Collector of the gauges that describe a
// node's state: data log offsets and segments, Raft state and indexes, and
// Serf members. It reads them when Prometheus scrapes, through
// StatsSources, so no goroutine polls them in between.
type StatsCollector struct {
	sources StatsSources

	lowestOffset  *prometheus.Desc
	highestOffset *prometheus.Desc
	records       *prometheus.Desc
	segments      *prometheus.Desc

	raftState        *prometheus.Desc
	raftTerm         *prometheus.Desc
	raftCommitIndex  *prometheus.Desc
	raftAppliedIndex *prometheus.Desc
	raftLastIndex    *prometheus.Desc
	raftHasLeader    *prometheus.Desc
	raftLastContact  *prometheus.Desc

	members *prometheus.Desc
}

var _ prometheus.Collector = (*StatsCollector)(nil)

// NewStatsCollector returns a collector reading sources. Register it with
// Metrics.Register.
func NewStatsCollector(sources StatsSources) *StatsCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &StatsCollector{
		sources:       sources,
		lowestOffset:  desc("log_lowest_offset", "Offset of the first record the node's data log holds."),
		highestOffset: desc("log_highest_offset", "Offset of the last record the node's data log holds; absent while it holds none."),
		records:       desc("log_records", "Records the node's data log holds."),
		segments:      desc("log_segments", "Segments of the node's data log."),

		raftState:        desc("raft_state", "1 for the node's current Raft state, 0 for the others.", "state"),
		raftTerm:         desc("raft_term", "Current Raft term."),
		raftCommitIndex:  desc("raft_commit_index", "Highest Raft log index known to be committed."),
		raftAppliedIndex: desc("raft_applied_index", "Highest Raft log index applied to the data log."),
		raftLastIndex:    desc("raft_last_log_index", "Highest index in the node's Raft log."),
		raftHasLeader:    desc("raft_has_leader", "1 when the node knows a Raft leader, else 0."),
		raftLastContact: desc("raft_last_contact_seconds",
			"Seconds since the node last heard from the Raft leader (0 on the leader); absent until it has."),

		members: desc("serf_members", "Serf members this node knows, by status.", "status"),
	}
}

// Describe sends every metric's description.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.lowestOffset, c.highestOffset, c.records, c.segments,
		c.raftState, c.raftTerm, c.raftCommitIndex, c.raftAppliedIndex, c.raftLastIndex,
		c.raftHasLeader, c.raftLastContact, c.members,
	} {
		ch <- d
	}
}

// Collect reads the sources and sends the current values.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	if c.sources.Log != nil {
		c.collectLog(ch)
	}
	if c.sources.Raft != nil {
		c.collectRaft(ch)
	}
	if c.sources.Members != nil {
		c.collectMembers(ch)
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

func (c *StatsCollector) collectLog(ch chan<- prometheus.Metric) {
	s, err := c.sources.Log()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.segments, fmt.Errorf("read log stats: %w", err))
		return
	}
	ch <- gauge(c.lowestOffset, float64(s.LowestOffset))
	if s.NextOffset > s.LowestOffset {
		ch <- gauge(c.highestOffset, float64(s.NextOffset-1))
		ch <- gauge(c.records, float64(s.NextOffset-s.LowestOffset))
	} else {
		ch <- gauge(c.records, 0)
	}
	ch <- gauge(c.segments, float64(s.Segments))
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
