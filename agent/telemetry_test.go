package agent_test

// Observability of a real cluster (issue 7): /metrics scraped over HTTPS
// after produces, a span per RPC with its status, and health that follows
// the Raft leader and shutdown.

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/agent"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/server/telemetry"
	"github.com/proglog/proglog/server/telemetry/telemetrytest"
)

// telemetryTimeout bounds every wait of these tests.
const telemetryTimeout = 20 * time.Second

// httpsClient returns an HTTPS client that trusts the cluster's CA and
// presents the root client certificate when withCert is set.
func (c *testCluster) httpsClient(withCert bool) *http.Client {
	c.t.Helper()
	tlsCfg := c.rootTLS()
	if !withCert {
		tlsCfg.Certificates = nil
	}
	transport := &http.Transport{TLSClientConfig: tlsCfg}
	c.t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}
}

// httpURL is path on node i's HTTPS port.
func (c *testCluster) httpURL(i int, path string) string {
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.nodes[i].cfg.HTTPPort)) + path
}

// get GETs url and returns the status code.
func get(t *testing.T, client *http.Client, url string) int {
	t.Helper()
	res, err := client.Get(url)
	require.NoError(t, err, "GET %s", url)
	_, _ = io.Copy(io.Discard, res.Body)
	require.NoError(t, res.Body.Close())
	return res.StatusCode
}

// metricValue returns a sample's value, failing t when it is missing.
func metricValue(t *testing.T, m telemetrytest.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := m.Value(name, labels)
	require.True(t, ok, "%s%v missing", name, labels)
	return v
}

// defaultTopic selects the default topic's series of a per-topic metric.
var defaultTopic = map[string]string{"topic": "default"}

func TestClusterMetrics(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *agent.Config) {
		// Two records per segment, so segments roll.
		cfg.SegmentMaxIndexBytes = 2 * 12
	})
	produced := values("metrics", 5)
	c.produce(produced...)
	leader := c.waitForLeader()
	follower := (leader + 1) % 3
	root := c.httpsClient(true)

	// Each agent has its own registry: only the node that took the writes
	// counts them.
	var appended, appendedBytes, produceOK float64
	for i := range c.nodes {
		m := telemetrytest.Scrape(t, root, c.httpURL(i, "/metrics"))
		appended += metricValue(t, m, "proglog_records_appended_total", defaultTopic)
		appendedBytes += metricValue(t, m, "proglog_bytes_appended_total", defaultTopic)
		produceOK += metricValue(t, m, "grpc_server_handled_total",
			map[string]string{"grpc_method": "Produce", "grpc_code": "OK"})
	}
	require.Equal(t, float64(len(produced)), appended, "records appended, all nodes")
	require.Equal(t, float64(len(produced)*len(produced[0])), appendedBytes, "bytes appended, all nodes")
	require.Equal(t, float64(len(produced)), produceOK, "Produce OK calls, all nodes")
	followerMetrics := telemetrytest.Scrape(t, root, c.httpURL(follower, "/metrics"))
	require.Zero(t, metricValue(t, followerMetrics, "proglog_records_appended_total", defaultTopic),
		"records appended on a follower")

	// The follower's gauges show what it replicated, at scrape time.
	require.Eventually(t, func() bool {
		m := telemetrytest.Scrape(t, root, c.httpURL(follower, "/metrics"))
		highest, ok := m.Value("proglog_log_highest_offset", defaultTopic)
		return ok && highest == float64(len(produced)-1)
	}, telemetryTimeout, 20*time.Millisecond, "follower's highest offset")
	tests := []struct {
		name   string
		node   int
		metric string
		labels map[string]string
		want   float64
	}{
		{"follower records", follower, "proglog_log_records", defaultTopic, 5},
		{"follower lowest offset", follower, "proglog_log_lowest_offset", defaultTopic, 0},
		{"follower segments", follower, "proglog_log_segments", defaultTopic, 3},
		{"follower state", follower, "proglog_raft_state", map[string]string{"state": "follower"}, 1},
		{"follower not leader", follower, "proglog_raft_state", map[string]string{"state": "leader"}, 0},
		{"follower knows leader", follower, "proglog_raft_has_leader", nil, 1},
		{"leader state", leader, "proglog_raft_state", map[string]string{"state": "leader"}, 1},
		{"leader last contact", leader, "proglog_raft_last_contact_seconds", nil, 0},
		{"leader members", leader, "proglog_serf_members", map[string]string{"status": "alive"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := telemetrytest.Scrape(t, root, c.httpURL(tt.node, "/metrics"))
			got := metricValue(t, m, tt.metric, tt.labels)
			require.Equal(t, tt.want, got, "%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
		})
	}
	t.Run("raft indexes", func(t *testing.T) {
		m := telemetrytest.Scrape(t, root, c.httpURL(follower, "/metrics"))
		applied := metricValue(t, m, "proglog_raft_applied_index", nil)
		commit := metricValue(t, m, "proglog_raft_commit_index", nil)
		require.GreaterOrEqual(t, applied, float64(len(produced)), "applied index")
		require.GreaterOrEqual(t, commit, applied, "commit index")
		require.GreaterOrEqual(t, metricValue(t, m, "proglog_raft_term", nil), 1.0, "term")
		lastContact := metricValue(t, m, "proglog_raft_last_contact_seconds", nil)
		require.Less(t, lastContact, 5.0, "follower's last contact")
	})

	// /metrics wants a client certificate; the health endpoints do not.
	anonymous := c.httpsClient(false)
	require.Equal(t, http.StatusUnauthorized, get(t, anonymous, c.httpURL(leader, "/metrics")), "/metrics without certificate")
	require.Equal(t, http.StatusOK, get(t, anonymous, c.httpURL(leader, "/healthz")), "/healthz without certificate")
}

// statusCode is the span attribute otelgrpc puts a call's code in.
const statusCode = attribute.Key("rpc.response.status_code")

// serverSpan waits for the one server span named name with the given code.
func serverSpan(t *testing.T, exporter *tracetest.InMemoryExporter, kind trace.SpanKind, name, code string) tracetest.SpanStub {
	t.Helper()
	var found tracetest.SpanStub
	require.Eventually(t, func() bool {
		n := 0
		for _, s := range exporter.GetSpans() {
			if s.Name != name || s.SpanKind != kind {
				continue
			}
			for _, kv := range s.Attributes {
				if kv.Key == statusCode && kv.Value.AsString() == code {
					found = s
					n++
				}
			}
		}
		return n == 1
	}, telemetryTimeout, 10*time.Millisecond, "one %v span %s with code %s", kind, name, code)
	return found
}

func TestClusterTraces(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	c := newTestCluster(t, 1, func(cfg *agent.Config) { cfg.SpanExporter = exporter })
	ctx, cancel := context.WithTimeout(context.Background(), telemetryTimeout)
	defer cancel()

	client := c.client(0)
	_, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("traced")}})
	require.NoError(t, err)
	_, err = client.Consume(ctx, &api.ConsumeRequest{Offset: 99})
	require.Equal(t, codes.OutOfRange, status.Code(err), "Consume(99) code")

	produce := serverSpan(t, exporter, trace.SpanKindServer, "log.v1.Log/Produce", "OK")
	serverSpan(t, exporter, trace.SpanKindServer, "log.v1.Log/Consume", "OUT_OF_RANGE")
	instance, ok := produce.Resource.Set().Value("service.instance.id")
	require.True(t, ok, "service.instance.id missing")
	require.Equal(t, "node-0", instance.AsString(), "service.instance.id")

	// Through the balancing client, with client tracing: one trace across
	// client and server.
	clientExporter := tracetest.NewInMemoryExporter()
	clientTracing, err := telemetry.NewTracing(ctx, telemetry.TracingConfig{SpanExporter: clientExporter})
	require.NoError(t, err)
	loadbalance.Register()
	lb, err := loadbalance.New(loadbalance.Config{
		Seeds:       []string{c.nodes[0].agent.RPCAddr()},
		TLSConfig:   c.rootTLS(),
		DialOptions: []grpc.DialOption{grpc.WithStatsHandler(clientTracing.ClientHandler())},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = lb.Close() })
	_, err = lb.ProduceBatch(ctx, [][]byte{[]byte("a"), []byte("b")})
	require.NoError(t, err)
	clientSpan := serverSpan(t, clientExporter, trace.SpanKindClient, "log.v1.Log/ProduceBatch", "OK")
	batch := serverSpan(t, exporter, trace.SpanKindServer, "log.v1.Log/ProduceBatch", "OK")
	require.Equal(t, clientSpan.SpanContext.TraceID(), batch.SpanContext.TraceID(), "trace id")
	require.Equal(t, clientSpan.SpanContext.SpanID(), batch.Parent.SpanID(), "server span's parent")
}

// healthClient returns a gRPC health client of node i that presents no
// client certificate, as a load balancer or Kubernetes probe would.
func (c *testCluster) healthClient(i int) healthpb.HealthClient {
	c.t.Helper()
	tlsCfg := c.rootTLS()
	tlsCfg.Certificates = nil
	conn, err := grpc.NewClient(c.nodes[i].agent.RPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// checkStatus calls Check(service) and returns the status, or -1 when the
// call failed.
func checkStatus(client healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return -1
	}
	return resp.GetStatus()
}

func TestClusterHealth(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	anonymous := c.httpsClient(false)

	// Every node serves once it knows the leader and has caught up.
	for i := range c.nodes {
		health := c.healthClient(i)
		for _, service := range []string{"", api.Log_ServiceDesc.ServiceName} {
			require.Eventually(t, func() bool {
				return checkStatus(health, service) == healthpb.HealthCheckResponse_SERVING
			}, telemetryTimeout, 20*time.Millisecond, "node %d Check(%q) never SERVING", i, service)
		}
		require.Equal(t, http.StatusOK, get(t, anonymous, c.httpURL(i, "/readyz")), "node %d /readyz", i)
		require.Equal(t, http.StatusOK, get(t, anonymous, c.httpURL(i, "/healthz")), "node %d /healthz", i)
	}

	// A follower shutting down says NOT_SERVING to its watchers first, then
	// ends their streams, so its graceful stop does not wait for them.
	leader := c.waitForLeader()
	follower := (leader + 1) % 3
	last := 3 - leader - follower
	watchCtx, cancelWatch := context.WithTimeout(context.Background(), telemetryTimeout)
	defer cancelWatch()
	watch, err := c.healthClient(follower).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	resp, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus(), "Watch before shutdown")

	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- c.nodes[follower].agent.Shutdown() }()
	resp, err = watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, resp.GetStatus(), "Watch during shutdown")
	_, err = watch.Recv()
	require.Error(t, err, "Watch stream still open after shutdown")
	select {
	case err := <-stopped:
		require.NoError(t, err, "Shutdown with a health watcher")
	case <-time.After(telemetryTimeout):
		t.Fatalf("Shutdown did not return within %v", telemetryTimeout)
	}
	require.Less(t, time.Since(start), c.nodes[follower].cfg.ShutdownTimeout,
		"Shutdown waited for its deadline: a stream kept the gRPC server from stopping")
	c.nodes[follower].agent = nil

	// Without the leader, the last node has no quorum and no leader: not
	// ready, though alive. (A graceful stop would hand leadership over and
	// leave the last node a configuration of one, so the leader crashes.)
	c.waitForServers(2)
	c.crash(leader)
	health := c.healthClient(last)
	require.Eventually(t, func() bool {
		return checkStatus(health, "") == healthpb.HealthCheckResponse_NOT_SERVING
	}, telemetryTimeout, 20*time.Millisecond, "node without a leader still SERVING")
	require.Equal(t, http.StatusServiceUnavailable, get(t, anonymous, c.httpURL(last, "/readyz")), "/readyz without a leader")
	require.Equal(t, http.StatusOK, get(t, anonymous, c.httpURL(last, "/healthz")), "/healthz without a leader")
}

// TestPprofListener: a node given PprofAddr serves Go's profiles there over
// plain HTTP (what `go tool pprof` reads), stops serving them at Shutdown,
// and a node without it opens no such listener.
func TestPprofListener(t *testing.T) {
	c := newTestCluster(t, 2, func(cfg *agent.Config) {
		if cfg.NodeName == "node-1" {
			cfg.PprofAddr = "127.0.0.1:0"
		}
	})
	require.Empty(t, c.nodes[0].agent.PprofAddr(), "node without PprofAddr")
	addr := c.nodes[1].agent.PprofAddr()
	require.NotEmpty(t, addr)

	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "goroutine profile:")

	c.stop(1)
	_, err = http.Get("http://" + addr + "/debug/pprof/")
	require.Error(t, err, "the profiling listener outlived Shutdown")
}
