package agent

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/proglog/proglog/discovery"
	"github.com/proglog/proglog/server/telemetry"
)

// Defaults for Config fields left at their zero value.
const (
	// DefaultBindAddr is where Serf gossips when BindAddr is empty.
	DefaultBindAddr = "127.0.0.1:8301"
	// DefaultRPCPort is the multiplexed Raft + gRPC port when RPCPort is 0
	// and RandomPorts is false.
	DefaultRPCPort = 8401
	// DefaultHTTPPort is the JSON API / metrics / health port when HTTPPort is
	// 0 and RandomPorts is false.
	DefaultHTTPPort = 8080
	// DefaultShutdownTimeout bounds how long Shutdown waits for in-flight
	// calls before closing connections.
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultLeaveTimeout bounds the wait for this node's removal from the
	// Raft configuration at shutdown.
	DefaultLeaveTimeout = 5 * time.Second
	// DefaultReconcileInterval is how often the leader reconciles Serf's
	// membership with the Raft configuration.
	DefaultReconcileInterval = time.Second
	// DefaultJoinVerifyTimeout bounds the leader's TLS handshake with a
	// member it is about to add as a voter.
	DefaultJoinVerifyTimeout = 5 * time.Second
	// DefaultRefusedRetryInterval is how long the reconcile loop leaves a
	// refused member alone before it verifies it again.
	DefaultRefusedRetryInterval = 30 * time.Second
)

// Config configures one node. The zero value of each field means its
// default; New validates it and names the field that is wrong.
type Config struct {
	// DataDir holds the node's data log, Raft log, stable store, snapshots,
	// and Serf's snapshot of the members it knew (serf/local.snapshot), from
	// which a restarted node rejoins. Required.
	DataDir string
	// NodeName is the node's unique name, used as its Raft server ID and Serf
	// node name. Required.
	NodeName string
	// BindAddr is host:port for Serf gossip (TCP and UDP). The host is also
	// where the RPC and HTTP ports listen. Default DefaultBindAddr.
	BindAddr string
	// RPCPort is the port of the multiplexed Raft + gRPC listener on the host
	// of BindAddr. 0 means DefaultRPCPort unless RandomPorts is set.
	RPCPort int
	// HTTPPort is the port of the HTTPS listener (JSON API, /metrics,
	// /healthz, /readyz). 0 means DefaultHTTPPort unless RandomPorts is set.
	HTTPPort int
	// AdvertiseHost is the host name or IP address that other nodes and
	// clients reach this node's RPC port by: the host of its address in the
	// Raft configuration, in GetServers answers and in its Serf tag, and so
	// the name peers and clients check its certificate against. A DNS name
	// that stays with the node when its IP address changes (a StatefulSet
	// pod's) keeps the Raft configuration valid across restarts. The RPC and
	// HTTP ports still listen on the host of BindAddr. Default: the IP
	// address the RPC port is bound to.
	AdvertiseHost string
	// RandomPorts makes a 0 RPCPort or HTTPPort (and a 0 port in BindAddr)
	// mean "any free port" instead of the default: for tests.
	RandomPorts bool
	// StartJoinAddrs are Serf addresses of running nodes to join. Empty for
	// the first node. An address that is this node's own (BindAddr, or
	// AdvertiseHost with BindAddr's port) is skipped, so that every node of a
	// cluster can be given the same list. A node restarted with existing data also rejoins the
	// members in its Serf snapshot, so it needs none of these to answer.
	StartJoinAddrs []string
	// StartJoinTimeout is how long New keeps trying StartJoinAddrs, every
	// startJoinRetryInterval, while none answers: nodes started together (a
	// StatefulSet's pods) need not wait for each other's start. 0 (default)
	// means one try, and New fails with discovery.ErrJoin at once.
	StartJoinTimeout time.Duration
	// Bootstrap makes this node bootstrap a new Raft cluster with itself as
	// the only voter. Ignored when the node already has Raft state.
	Bootstrap bool
	// GossipProfile selects Serf's timings: discovery.ProfileLAN (default)
	// or discovery.ProfileLocal for nodes on one host and for tests.
	GossipProfile discovery.Profile
	// ReconcileInterval is how often the leader compares Serf's members with
	// the Raft configuration and repairs the difference (a node that joined
	// while there was no leader, a node that left while it was a follower).
	// Default DefaultReconcileInterval.
	ReconcileInterval time.Duration

	// GossipKeys encrypt and authenticate Serf's gossip (see
	// discovery.Config.GossipKeys): GossipKeys[0] encrypts, every key
	// decrypts. Required unless GossipInsecure: without them anyone who
	// reaches BindAddr joins the gossip. SetGossipKeys changes them on a
	// running node, for key rotation.
	GossipKeys [][]byte
	// GossipInsecure runs Serf's gossip in plaintext, unauthenticated: for
	// a deliberate setup on a network only the cluster reaches. New refuses
	// it together with GossipKeys, and logs a warning at start.
	GossipInsecure bool
	// JoinVerifyTimeout bounds the leader's verification of a member it is
	// about to add as a Raft voter: a TLS handshake on the member's RPC
	// port (see verify.go). Default DefaultJoinVerifyTimeout.
	JoinVerifyTimeout time.Duration
	// RefusedRetryInterval is how long the leader's reconcile loop leaves a
	// member it refused (or could not reach) before verifying it again; a
	// new Serf join event from the member is verified at once. Default
	// DefaultRefusedRetryInterval.
	RefusedRetryInterval time.Duration

	// ServerTLSConfig secures the gRPC and HTTP servers: it must verify
	// client certificates when given (tls.VerifyClientCertIfGiven). Required.
	ServerTLSConfig *tls.Config
	// PeerTLSConfig is the dialing side of Raft connections to other nodes,
	// as in the seed book: it presents this node's peer certificate (which
	// may be a plain client certificate; the book uses its root client
	// certificate) and verifies the other node's server certificate against
	// its CA, for the host dialed. Required.
	PeerTLSConfig *tls.Config
	// PeerServerTLSConfig is the accepting side of Raft connections, the
	// Raft branch of the RPC port: it serves the server certificate (which
	// names the hosts peers dial) and requires and verifies the dialer's
	// peer certificate. Default: ServerTLSConfig with ClientAuth raised to
	// tls.RequireAndVerifyClientCert.
	PeerServerTLSConfig *tls.Config
	// PeerTLSFiles names the files the two peer configurations were read
	// from. They are used in messages only: a failed peer handshake is
	// logged (once per peer, at Warn) and reported on /readyz with them.
	// Optional.
	PeerTLSFiles PeerTLSFiles

	// ACLModelFile and ACLPolicyFile are the Casbin model and policy.
	// Required.
	ACLModelFile  string
	ACLPolicyFile string

	// MaxRecordBytes is the largest record value accepted, in bytes.
	// Default 1 MiB.
	MaxRecordBytes int
	// MaxBatchRecords is the most records one ProduceBatch may carry.
	// Default 1000.
	MaxBatchRecords int
	// MaxConsumeBytes is the most bytes of record values one batched
	// ConsumeStream or Consume response carries (and about what one
	// stream holds in memory while its client is slow). 0 means the
	// server's default, server.DefaultMaxConsumeBytes (1 MiB).
	MaxConsumeBytes int
	// SegmentMaxStoreBytes and SegmentMaxIndexBytes size the segments of the
	// data log and the Raft log. 0 means distlog's defaults.
	SegmentMaxStoreBytes uint64
	SegmentMaxIndexBytes uint64
	// SegmentMaxAge seals a segment of a topic with a retention age once it
	// spans this much time of records (distlog.TopicSegmentConfig.MaxAge),
	// so that retention by age reaches quiet topics. 0 means distlog.DefaultTopicSegmentMaxAge (1 h);
	// negative: by size only.
	SegmentMaxAge time.Duration

	// Raft timing; 0 means distlog's defaults (DefaultHeartbeatTimeout and
	// the others: 500 ms, 500 ms, 250 ms) and raft's 50 ms commit timeout.
	// Tests shorten them.
	RaftHeartbeatTimeout   time.Duration
	RaftElectionTimeout    time.Duration
	RaftLeaderLeaseTimeout time.Duration
	RaftCommitTimeout      time.Duration
	// RetentionCheckInterval is how often the leader enforces the topics'
	// retention; 0 means distlog.DefaultRetentionCheckInterval (5 s).
	RetentionCheckInterval time.Duration
	// RaftSnapshotThreshold is how many Raft entries since the last snapshot
	// trigger a new one; 0 means distlog.DefaultSnapshotThreshold (1024).
	RaftSnapshotThreshold uint64
	// RaftSnapshotInterval is how often Raft checks whether to snapshot; 0
	// means distlog.DefaultSnapshotInterval (1 s).
	RaftSnapshotInterval time.Duration
	// RaftTrailingLogs is how many entries a snapshot leaves in the Raft log
	// for followers that fell behind; one further behind is sent a whole
	// snapshot. 0 means distlog.DefaultTrailingLogs (2048). See
	// distlog.RaftConfig for the disk it costs.
	RaftTrailingLogs uint64
	// RaftTrailingBytes is about how many bytes of entries a snapshot
	// leaves in the Raft log, at least RaftTrailingLogs entries; 0 means
	// distlog.DefaultTrailingBytes (32 MiB), negative keeps exactly
	// RaftTrailingLogs. See distlog.RaftConfig.TrailingBytes.
	RaftTrailingBytes int64
	// GroupCommitInFlight is how many coalesced append entries the leader
	// keeps in Raft at once; 0 means distlog.DefaultGroupCommitInFlight
	// (1). More can help when the nodes have disks of their own (the
	// leader's fsync of the next entry overlaps the followers' of the
	// last); see distlog.GroupCommitConfig.MaxInFlight.
	GroupCommitInFlight int
	// GroupCommitLinger is the longest the leader waits for the writers of
	// the entry that just finished to write again before it proposes the
	// next one; 0 means distlog.DefaultGroupCommitLinger (500µs), negative
	// never waits. See distlog.GroupCommitConfig.Linger.
	GroupCommitLinger time.Duration
	// ProduceStreamWindow is how many records one ProduceStream keeps in
	// flight on the server; 0 means server.DefaultProduceStreamWindow.
	ProduceStreamWindow int

	// GRPCServerOptions are appended to the gRPC server's options, after the
	// agent's own (TLS credentials, authentication interceptors), e.g.
	// interceptors that count or trace calls. Default none.
	GRPCServerOptions []grpc.ServerOption

	// MetricsRegistry receives the node's Prometheus metrics, served on
	// /metrics of the HTTP port. Default: a new registry for this agent
	// alone, with the Go runtime and process collectors. Never give two
	// agents the same registry: their metrics have the same names.
	MetricsRegistry *prometheus.Registry
	// MetricsMaxTopicLabels is how many topics get a topic label value of
	// their own on the per-topic metrics; topics met after that are counted
	// under "(other)", so clients creating topics cannot grow the node's
	// series without bound. Default telemetry.DefaultMaxTopicLabels (100).
	MetricsMaxTopicLabels int
	// TraceExporter is where OpenTelemetry spans go: "" or "none" (default:
	// no tracing), "stdout" (JSON on standard output) or "otlp" (OTLP/gRPC
	// to OTLPEndpoint).
	TraceExporter string
	// OTLPEndpoint is the host:port of the OTLP/gRPC receiver for the "otlp"
	// exporter. Default: $OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317.
	OTLPEndpoint string
	// OTLPInsecure sends spans to OTLPEndpoint without TLS (a collector on
	// the same host or pod). Default false.
	OTLPInsecure bool
	// SpanExporter, when set, receives every span synchronously and
	// TraceExporter is ignored: for tests and embedding. Default none.
	SpanExporter sdktrace.SpanExporter

	// PprofAddr, when set, is a host:port where the node serves Go's
	// profiles (net/http/pprof under /debug/pprof/) over plain HTTP without
	// authentication, for `go tool pprof` (see pprof.go). Default "": off.
	// Bind it to a loopback address: profiles show memory contents.
	PprofAddr string

	// LeaveTimeout bounds how long Shutdown waits for the leader to remove
	// this node from the Raft configuration (after handing leadership over
	// if it led). Default DefaultLeaveTimeout.
	LeaveTimeout time.Duration
	// ShutdownTimeout bounds a graceful stop of the servers. Default
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives the node's logs; it is named per component. Default
	// zap.NewNop().
	Logger *zap.Logger
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if !c.RandomPorts {
		if c.RPCPort == 0 {
			c.RPCPort = DefaultRPCPort
		}
		if c.HTTPPort == 0 {
			c.HTTPPort = DefaultHTTPPort
		}
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = 1 << 20
	}
	if c.MaxBatchRecords == 0 {
		c.MaxBatchRecords = 1000
	}
	if c.LeaveTimeout == 0 {
		c.LeaveTimeout = DefaultLeaveTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.JoinVerifyTimeout == 0 {
		c.JoinVerifyTimeout = DefaultJoinVerifyTimeout
	}
	if c.RefusedRetryInterval == 0 {
		c.RefusedRetryInterval = DefaultRefusedRetryInterval
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.PeerServerTLSConfig == nil && c.ServerTLSConfig != nil {
		peer := c.ServerTLSConfig.Clone()
		peer.ClientAuth = tls.RequireAndVerifyClientCert
		c.PeerServerTLSConfig = peer
	}
	return c
}

// PeerTLSFiles names the certificate files behind a node's Raft TLS, for
// messages about failed peer handshakes.
type PeerTLSFiles struct {
	// CertFile is the peer certificate the node dials with.
	CertFile string
	// CAFile verifies the other nodes, both ways.
	CAFile string
	// ServerCertFile is the certificate the Raft branch serves.
	ServerCertFile string
}

// validate reports the first field that is missing or wrong.
func (c Config) validate() error {
	switch {
	case c.DataDir == "":
		return fmt.Errorf("agent: DataDir is required")
	case c.NodeName == "":
		return fmt.Errorf("agent: NodeName is required")
	case c.ServerTLSConfig == nil:
		return fmt.Errorf("agent: ServerTLSConfig is required")
	case c.PeerTLSConfig == nil:
		return fmt.Errorf("agent: PeerTLSConfig is required")
	case c.ACLModelFile == "" || c.ACLPolicyFile == "":
		return fmt.Errorf("agent: ACLModelFile and ACLPolicyFile are required")
	case c.StartJoinTimeout < 0:
		return fmt.Errorf("agent: StartJoinTimeout %v must not be negative", c.StartJoinTimeout)
	case c.RPCPort < 0 || c.RPCPort > 65535:
		return fmt.Errorf("agent: RPCPort %d out of range", c.RPCPort)
	case c.HTTPPort < 0 || c.HTTPPort > 65535:
		return fmt.Errorf("agent: HTTPPort %d out of range", c.HTTPPort)
	case c.MaxRecordBytes < 0 || c.MaxBatchRecords < 0 || c.MaxConsumeBytes < 0:
		return fmt.Errorf("agent: MaxRecordBytes, MaxBatchRecords and MaxConsumeBytes must not be negative")
	case c.GroupCommitInFlight < 0 || c.ProduceStreamWindow < 0:
		return fmt.Errorf("agent: GroupCommitInFlight %d and ProduceStreamWindow %d must not be negative", c.GroupCommitInFlight, c.ProduceStreamWindow)
	case c.MetricsMaxTopicLabels < 0:
		return fmt.Errorf("agent: MetricsMaxTopicLabels %d must not be negative", c.MetricsMaxTopicLabels)
	case c.TraceExporter != "" && c.TraceExporter != telemetry.ExporterNone &&
		c.TraceExporter != telemetry.ExporterStdout && c.TraceExporter != telemetry.ExporterOTLP:
		return fmt.Errorf("agent: TraceExporter %q: want %q, %q or %q",
			c.TraceExporter, telemetry.ExporterNone, telemetry.ExporterStdout, telemetry.ExporterOTLP)
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("agent: BindAddr %q: %w", c.BindAddr, err)
	}
	if c.AdvertiseHost != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseHost); err == nil {
			return fmt.Errorf("agent: AdvertiseHost %q: want a host without a port", c.AdvertiseHost)
		}
		if ip := net.ParseIP(c.AdvertiseHost); ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("agent: AdvertiseHost %q: other nodes cannot reach a wildcard address", c.AdvertiseHost)
		}
	}
	switch {
	case len(c.GossipKeys) == 0 && !c.GossipInsecure:
		return fmt.Errorf("agent: GossipKeys is required (or GossipInsecure, for plaintext gossip that anyone who reaches BindAddr can join)")
	case len(c.GossipKeys) > 0 && c.GossipInsecure:
		return fmt.Errorf("agent: GossipKeys and GossipInsecure are exclusive")
	case c.JoinVerifyTimeout < 0 || c.RefusedRetryInterval < 0:
		return fmt.Errorf("agent: JoinVerifyTimeout and RefusedRetryInterval must not be negative")
	}
	return nil
}

// startJoinAddrs is StartJoinAddrs without this node's own Serf address:
// joining oneself is pointless, and a name of one's own that does not
// resolve yet (a new pod's DNS record) must not stop the node from starting.
func (c Config) startJoinAddrs() []string {
	_, serfPort, _ := net.SplitHostPort(c.BindAddr)
	own := []string{c.BindAddr}
	if c.AdvertiseHost != "" {
		own = append(own, net.JoinHostPort(c.AdvertiseHost, serfPort))
	}
	var addrs []string
	for _, addr := range c.StartJoinAddrs {
		if !slices.ContainsFunc(own, func(o string) bool { return strings.EqualFold(o, addr) }) {
			addrs = append(addrs, addr)
		}
	}
	return addrs
}

// host is the host part of BindAddr, where every listener of the node binds.
func (c Config) host() string {
	h, _, _ := net.SplitHostPort(c.BindAddr)
	return h
}
