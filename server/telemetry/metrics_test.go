package telemetry_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/servertest"
	"github.com/proglog/proglog/server/telemetry"
	"github.com/proglog/proglog/server/telemetry/telemetrytest"
)

func TestMetricsCountCallsAndAppends(t *testing.T) {
	h := newHarness(t, harnessOptions{logger: zaptest.NewLogger(t)})
	ctx := callCtx(t)
	root := h.client(t, "root")

	values := []string{"a", "bb", "ccc"}
	for _, v := range values {
		_, err := root.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte(v)}})
		require.NoError(t, err)
	}
	_, err := root.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: []*api.Record{
		{Value: []byte("dddd")}, {Value: []byte("eeeee")},
	}})
	require.NoError(t, err)
	_, err = root.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte(failValue)}})
	require.Equal(t, codes.Internal, status.Code(err), "Produce(%q) code", failValue)
	_, err = root.Consume(ctx, &api.ConsumeRequest{Offset: 99})
	require.Equal(t, codes.OutOfRange, status.Code(err), "Consume(99) code")
	_, err = h.client(t, "").Consume(ctx, &api.ConsumeRequest{Offset: 0})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "Consume without certificate code")

	srv := httptest.NewServer(h.metrics.Handler())
	t.Cleanup(srv.Close)
	m := telemetrytest.Scrape(t, srv.Client(), srv.URL)

	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"records appended", "proglog_records_appended_total", map[string]string{"topic": "default"}, 5},
		{"bytes appended", "proglog_bytes_appended_total", map[string]string{"topic": "default"}, 1 + 2 + 3 + 4 + 5},
		{"produce ok", "grpc_server_handled_total", map[string]string{"grpc_method": "Produce", "grpc_code": "OK"}, 3},
		{"produce internal", "grpc_server_handled_total", map[string]string{"grpc_method": "Produce", "grpc_code": "Internal"}, 1},
		{"batch ok", "grpc_server_handled_total", map[string]string{"grpc_method": "ProduceBatch", "grpc_code": "OK"}, 1},
		{"consume out of range", "grpc_server_handled_total", map[string]string{"grpc_method": "Consume", "grpc_code": "OutOfRange"}, 1},
		{"consume refused before auth", "grpc_server_handled_total", map[string]string{"grpc_method": "Consume", "grpc_code": "Unauthenticated"}, 1},
		{"produce latency observed", "grpc_server_handling_seconds", map[string]string{"grpc_method": "Produce"}, 4},
		{"unused method initialized", "grpc_server_handled_total", map[string]string{"grpc_method": "ProduceStream", "grpc_code": "OK"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := m.Value(tt.metric, tt.labels)
			require.True(t, ok, "%s%v missing", tt.metric, tt.labels)
			require.Equal(t, tt.want, got, "%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
		})
	}
}

func TestMetricsRegistryPerNode(t *testing.T) {
	// Two nodes in one process each get a registry of their own.
	a, err := telemetry.NewMetrics(telemetry.MetricsConfig{})
	require.NoError(t, err)
	b, err := telemetry.NewMetrics(telemetry.MetricsConfig{})
	require.NoError(t, err)
	require.NotSame(t, a.Registry(), b.Registry())

	// A registry given twice refuses the second set of metrics.
	reg := prometheus.NewRegistry()
	_, err = telemetry.NewMetrics(telemetry.MetricsConfig{Registry: reg})
	require.NoError(t, err)
	_, err = telemetry.NewMetrics(telemetry.MetricsConfig{Registry: reg})
	require.Error(t, err, "NewMetrics on a registry that already holds them")
}

func TestMetricNamesFollowConventions(t *testing.T) {
	m, err := telemetry.NewMetrics(telemetry.MetricsConfig{Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	require.NoError(t, m.Register(telemetry.NewStatsCollector(fakeSources(nil))))
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	require.NoError(t, err)
	require.Empty(t, problems, "promlint problems")
}

// fakeSources returns fixed stats, or err from every source when set.
func fakeSources(err error) telemetry.StatsSources {
	return telemetry.StatsSources{
		Topics: func() ([]telemetry.TopicStats, error) {
			return []telemetry.TopicStats{
				{Topic: "default", LowestOffset: 10, NextOffset: 15, Segments: 2, Bytes: 300},
				{Topic: "orders", LowestOffset: 0, NextOffset: 0, Segments: 1, Bytes: 0},
			}, err
		},
		Raft: func() (telemetry.RaftStats, error) {
			return telemetry.RaftStats{
				State: "Follower", Term: 3, CommitIndex: 20, AppliedIndex: 19, LastLogIndex: 21,
				HasLeader: true, LastContact: 1500 * time.Millisecond,
			}, err
		},
		Members: func() (map[string]int, error) {
			return map[string]int{"alive": 3, "failed": 1}, err
		},
	}
}

func TestStatsCollector(t *testing.T) {
	const want = `
# HELP proglog_log_bytes Bytes of a topic's segments on this node's disk.
# TYPE proglog_log_bytes gauge
proglog_log_bytes{topic="default"} 300
proglog_log_bytes{topic="orders"} 0
# HELP proglog_log_highest_offset Offset of the last record a topic holds on this node; absent while it holds none.
# TYPE proglog_log_highest_offset gauge
proglog_log_highest_offset{topic="default"} 14
# HELP proglog_log_lowest_offset Offset of the first record a topic holds on this node.
# TYPE proglog_log_lowest_offset gauge
proglog_log_lowest_offset{topic="default"} 10
proglog_log_lowest_offset{topic="orders"} 0
# HELP proglog_log_records Records a topic holds on this node.
# TYPE proglog_log_records gauge
proglog_log_records{topic="default"} 5
proglog_log_records{topic="orders"} 0
# HELP proglog_log_segments Segments of a topic's log on this node.
# TYPE proglog_log_segments gauge
proglog_log_segments{topic="default"} 2
proglog_log_segments{topic="orders"} 1
# HELP proglog_raft_applied_index Highest Raft log index applied to the data log.
# TYPE proglog_raft_applied_index gauge
proglog_raft_applied_index 19
# HELP proglog_raft_commit_index Highest Raft log index known to be committed.
# TYPE proglog_raft_commit_index gauge
proglog_raft_commit_index 20
# HELP proglog_raft_has_leader 1 when the node knows a Raft leader, else 0.
# TYPE proglog_raft_has_leader gauge
proglog_raft_has_leader 1
# HELP proglog_raft_last_contact_seconds Seconds since the node last heard from the Raft leader (0 on the leader); absent until it has.
# TYPE proglog_raft_last_contact_seconds gauge
proglog_raft_last_contact_seconds 1.5
# HELP proglog_raft_last_log_index Highest index in the node's Raft log.
# TYPE proglog_raft_last_log_index gauge
proglog_raft_last_log_index 21
# HELP proglog_raft_state 1 for the node's current Raft state, 0 for the others.
# TYPE proglog_raft_state gauge
proglog_raft_state{state="candidate"} 0
proglog_raft_state{state="follower"} 1
proglog_raft_state{state="leader"} 0
proglog_raft_state{state="shutdown"} 0
# HELP proglog_raft_term Current Raft term.
# TYPE proglog_raft_term gauge
proglog_raft_term 3
# HELP proglog_serf_members Serf members this node knows, by status.
# TYPE proglog_serf_members gauge
proglog_serf_members{status="alive"} 3
proglog_serf_members{status="failed"} 1
`
	got := collectText(t, telemetry.NewStatsCollector(fakeSources(nil)))
	require.Equal(t, strings.TrimPrefix(want, "\n"), got)
}

// collectText gathers c alone and returns it in the text exposition
// format, families sorted by name.
func collectText(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	var b strings.Builder
	for _, f := range families {
		_, err := expfmt.MetricFamilyToText(&b, f)
		require.NoError(t, err)
	}
	return b.String()
}

// collectCount gathers c alone and counts the samples of the named metric.
func collectCount(t *testing.T, c prometheus.Collector, name string) int {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

func TestStatsCollectorOmitsUnknowns(t *testing.T) {
	c := telemetry.NewStatsCollector(telemetry.StatsSources{
		Topics: func() ([]telemetry.TopicStats, error) {
			return []telemetry.TopicStats{{Topic: "default", LowestOffset: 0, NextOffset: 0, Segments: 1}}, nil
		},
		Raft: func() (telemetry.RaftStats, error) {
			return telemetry.RaftStats{State: "Candidate", LastContact: -1}, nil
		},
	})
	tests := []struct {
		metric string
		want   int
	}{
		{"proglog_log_highest_offset", 0}, // empty log: no last record
		{"proglog_log_records", 1},
		{"proglog_raft_last_contact_seconds", 0}, // never heard from a leader
		{"proglog_raft_state", 4},
		{"proglog_serf_members", 0}, // no source
	}
	for _, tt := range tests {
		t.Run(tt.metric, func(t *testing.T) {
			got := collectCount(t, c, tt.metric)
			require.Equal(t, tt.want, got, "collectCount(%s) = %d, want %d", tt.metric, got, tt.want)
		})
	}
}

func TestMetricsHandlerServesPastAFailingSource(t *testing.T) {
	m, err := telemetry.NewMetrics(telemetry.MetricsConfig{Logger: zaptest.NewLogger(t)})
	require.NoError(t, err)
	sources := fakeSources(nil)
	sources.Raft = func() (telemetry.RaftStats, error) {
		return telemetry.RaftStats{}, errors.New("raft is shut down")
	}
	require.NoError(t, m.Register(telemetry.NewStatsCollector(sources)))

	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	got := telemetrytest.Scrape(t, srv.Client(), srv.URL)
	_, ok := got.Value("proglog_log_segments", map[string]string{"topic": "default"})
	require.True(t, ok, "proglog_log_segments missing when only Raft failed")
	_, ok = got.Value("proglog_raft_term", nil)
	require.False(t, ok, "proglog_raft_term present although Raft failed")
	// The handler counts a scrape's error after serving it: the next scrape
	// shows the first one's.
	got = telemetrytest.Scrape(t, srv.Client(), srv.URL)
	errs, ok := got.Value("promhttp_metric_handler_errors_total", map[string]string{"cause": "gathering"})
	require.True(t, ok, "promhttp_metric_handler_errors_total missing")
	require.Equal(t, 1.0, errs, "gathering errors before the second scrape")
}

func TestScrapeStatus(t *testing.T) {
	// The handler answers plain GETs, as Prometheus sends them.
	m, err := telemetry.NewMetrics(telemetry.MetricsConfig{})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "go_goroutines", "default registry has the Go collector")
	require.Contains(t, rec.Body.String(), `proglog_records_appended_total{topic="default"} 0`)
}

// TestTopicLabelsAreBounded: past MaxTopicLabels topics, appends and gauges
// are counted under "(other)", so clients creating topics cannot grow the
// number of series without bound.
func TestTopicLabelsAreBounded(t *testing.T) {
	_, err := telemetry.NewMetrics(telemetry.MetricsConfig{MaxTopicLabels: -1})
	require.Error(t, err, "NewMetrics with a negative MaxTopicLabels")

	m, err := telemetry.NewMetrics(telemetry.MetricsConfig{Registry: prometheus.NewRegistry(), MaxTopicLabels: 3})
	require.NoError(t, err)
	log := servertest.NewLog()
	counted := m.CountAppends(log)
	ctx := t.Context()
	topics := []string{"a", "b", "c", "d", "e"}
	for _, topic := range topics {
		require.NoError(t, log.CreateTopic(ctx, topic, nil))
		_, err := counted.AppendBatch(ctx, topic, []*api.Record{{Value: []byte("xy")}})
		require.NoError(t, err)
	}
	var stats []telemetry.TopicStats
	for _, topic := range append([]string{"default"}, topics...) {
		stats = append(stats, telemetry.TopicStats{Topic: topic, NextOffset: 1, Segments: 1, Bytes: 10})
	}
	require.NoError(t, m.Register(telemetry.NewStatsCollector(telemetry.StatsSources{
		Topics:      func() ([]telemetry.TopicStats, error) { return stats, nil },
		TopicLabels: m.TopicLabels(),
	})))

	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	got := telemetrytest.Scrape(t, srv.Client(), srv.URL)
	// The default topic holds a label from the start; "a" and "b" took the
	// other two.
	tests := []struct {
		metric, topic string
		want          float64
	}{
		{"proglog_records_appended_total", "default", 0},
		{"proglog_records_appended_total", "a", 1},
		{"proglog_records_appended_total", "b", 1},
		{"proglog_records_appended_total", telemetry.OtherTopicLabel, 3},
		{"proglog_bytes_appended_total", telemetry.OtherTopicLabel, 6},
		{"proglog_log_records", "a", 1},
		{"proglog_log_records", telemetry.OtherTopicLabel, 3},
		{"proglog_log_bytes", telemetry.OtherTopicLabel, 30},
		{"proglog_log_segments", telemetry.OtherTopicLabel, 3},
	}
	for _, tt := range tests {
		v, ok := got.Value(tt.metric, map[string]string{"topic": tt.topic})
		require.True(t, ok, "%s{topic=%q} missing", tt.metric, tt.topic)
		require.Equal(t, tt.want, v, "%s{topic=%q}", tt.metric, tt.topic)
	}
	for _, topic := range []string{"c", "d", "e"} {
		_, ok := got.Value("proglog_records_appended_total", map[string]string{"topic": topic})
		require.False(t, ok, "topic %q past the cap has a series of its own", topic)
		_, ok = got.Value("proglog_log_highest_offset", map[string]string{"topic": topic})
		require.False(t, ok, "topic %q past the cap has an offset series", topic)
	}
}

// TestCountAppendsCountsIdempotentProduces: records appended through
// AppendProduced (the idempotent path the balancing client takes by default)
// are counted once; a duplicate, appended by an earlier attempt, is not
// counted again, nor is a refused call.
func TestCountAppendsCountsIdempotentProduces(t *testing.T) {
	m, err := telemetry.NewMetrics(telemetry.MetricsConfig{Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	counted := m.CountAppends(servertest.NewLog())
	ctx := t.Context()
	call := api.ProducerBatch{ProducerID: 7, Sequence: 0, Records: []*api.Record{{Value: []byte("abc")}, {Value: []byte("de")}}}
	results, err := counted.AppendProduced(ctx, api.DefaultTopic, []api.ProducerBatch{call})
	require.NoError(t, err)
	require.NoError(t, results[0].Err)
	results, err = counted.AppendProduced(ctx, api.DefaultTopic, []api.ProducerBatch{call}) // a retry
	require.NoError(t, err)
	require.True(t, results[0].Duplicate, "the retry is a duplicate")
	gap := api.ProducerBatch{ProducerID: 7, Sequence: 5, Records: []*api.Record{{Value: []byte("x")}}}
	results, err = counted.AppendProduced(ctx, api.DefaultTopic, []api.ProducerBatch{gap})
	if err == nil {
		require.Error(t, results[0].Err, "a sequence gap is refused")
	}

	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	got := telemetrytest.Scrape(t, srv.Client(), srv.URL)
	records, _ := got.Value("proglog_records_appended_total", map[string]string{"topic": "default"})
	bytes, _ := got.Value("proglog_bytes_appended_total", map[string]string{"topic": "default"})
	require.Equal(t, 2.0, records, "records appended")
	require.Equal(t, 5.0, bytes, "bytes appended")
}
