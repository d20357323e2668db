package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	"go.uber.org/zap"

	"github.com/proglog/proglog/agent"
	"github.com/proglog/proglog/discovery"
	"github.com/proglog/proglog/server/telemetry"
	"github.com/proglog/proglog/server/tlsconfig"
)

// minRaftTimeout is the shortest Raft timeout the flags accept (raft
// itself refuses under 5 ms).
const minRaftTimeout = 10 * time.Millisecond

// agentSettings are the settings of `proglog agent`, with every file path
// resolved: what the flags, variables and config file said.
type agentSettings struct {
	dataDir        string
	nodeName       string
	bindAddr       string
	advertiseHost  string
	rpcPort        int
	httpPort       int
	startJoinAddrs []string
	// startJoinTimeout is how long to keep trying startJoinAddrs.
	startJoinTimeout time.Duration
	// Raft timing.
	raftHeartbeatTimeout, raftElectionTimeout, raftLeaderLeaseTimeout time.Duration
	raftTrailingBytes                                                 int
	bootstrap                                                         bool
	// bootstrapNode is the node name that bootstraps, as if with bootstrap.
	bootstrapNode string
	aclModelFile  string
	aclPolicyFile string
	// serverTLS secures the gRPC and HTTP servers and the Raft branch of the
	// RPC port; peerTLS is what a node dials Raft peers with (its
	// certificate, and the CA that verifies peers both ways).
	serverTLS tlsconfig.Config
	peerTLS   tlsconfig.Config
	logLevel  string
	// Limits; they must match on every node.
	maxRecordBytes  int
	maxBatchRecords int
	maxConsumeBytes int
	// Tracing: exporter name and OTLP collector.
	traceExporter string
	otlpEndpoint  string
	otlpInsecure  bool
	// gossipKeyFile holds the gossip keys; gossipInsecure turns encryption
	// off instead. gossipKeyFileSet says the file was named explicitly.
	gossipKeyFile    string
	gossipKeyFileSet bool
	gossipInsecure   bool
	// pprofAddr is where Go's profiles are served; "" is off.
	pprofAddr string
	// segmentMaxAge seals topic segments by age; 0 is off.
	segmentMaxAge time.Duration
	// groupCommitInFlight, groupCommitLinger (0: off) and
	// produceStreamWindow tune the write path.
	groupCommitInFlight int
	groupCommitLinger   time.Duration
	produceStreamWindow int
}

// readAgentSettings reads and validates the settings of `proglog agent`.
// Certificate and ACL paths left empty default to the files `make gencert`
// writes into the config dir.
func readAgentSettings(s *settings) (agentSettings, error) {
	files := tlsconfig.Files(configDir(s))
	as := agentSettings{
		dataDir:                s.String(keyDataDir),
		nodeName:               s.String(keyNodeName),
		bindAddr:               s.String(keyBindAddr),
		advertiseHost:          s.String(keyAdvertiseHost),
		rpcPort:                s.Int(keyRPCPort),
		httpPort:               s.Int(keyHTTPPort),
		startJoinAddrs:         s.List(keyStartJoinAddrs),
		startJoinTimeout:       s.Duration(keyStartJoinTimeout),
		raftHeartbeatTimeout:   s.Duration(keyRaftHeartbeatTimeout),
		raftElectionTimeout:    s.Duration(keyRaftElectionTimeout),
		raftLeaderLeaseTimeout: s.Duration(keyRaftLeaderLeaseTimeout),
		raftTrailingBytes:      s.Int(keyRaftTrailingBytes),
		pprofAddr:              s.String(keyPprofAddr),
		segmentMaxAge:          s.Duration(keySegmentMaxAge),
		groupCommitInFlight:    s.Int(keyGroupCommitInFlight),
		groupCommitLinger:      s.Duration(keyGroupCommitLinger),
		produceStreamWindow:    s.Int(keyProduceStreamWindow),
		bootstrap:              s.Bool(keyBootstrap),
		bootstrapNode:          s.String(keyBootstrapNode),
		aclModelFile:           orDefault(s.String(keyACLModelFile), files.ACLModelFile),
		aclPolicyFile:          orDefault(s.String(keyACLPolicyFile), files.ACLPolicyFile),
		serverTLS: tlsconfig.Config{
			CertFile: orDefault(s.String(keyServerTLSCertFile), files.ServerCertFile),
			KeyFile:  orDefault(s.String(keyServerTLSKeyFile), files.ServerKeyFile),
			CAFile:   orDefault(s.String(keyServerTLSCAFile), files.CAFile),
			Server:   true,
		},
		peerTLS: tlsconfig.Config{
			CertFile: orDefault(s.String(keyPeerTLSCertFile), files.ServerCertFile),
			KeyFile:  orDefault(s.String(keyPeerTLSKeyFile), files.ServerKeyFile),
			CAFile:   orDefault(s.String(keyPeerTLSCAFile), files.CAFile),
			Peer:     true,
		},
		logLevel:        s.String(keyLogLevel),
		maxRecordBytes:  s.Int(keyMaxRecordBytes),
		maxBatchRecords: s.Int(keyMaxBatchRecords),
		maxConsumeBytes: s.Int(keyMaxConsumeBytes),
		traceExporter:   s.String(keyTraceExporter),
		otlpEndpoint:    s.String(keyOTLPEndpoint),
		otlpInsecure:    s.Bool(keyOTLPInsecure),
		gossipInsecure:  s.Bool(keyGossipInsecure),
	}
	as.gossipKeyFile = s.String(keyGossipKeyFile)
	as.gossipKeyFileSet = as.gossipKeyFile != ""
	if !as.gossipKeyFileSet && !as.gossipInsecure {
		as.gossipKeyFile = files.GossipKeyFile
	}
	if err := s.Err(); err != nil {
		return as, err
	}
	return as, as.validate()
}

// validate checks what can be checked without the files and the network;
// agent.New checks the rest.
func (as agentSettings) validate() error {
	switch {
	case as.dataDir == "":
		return usageError(errors.New("--data-dir is required: the directory of this node's data"))
	case as.nodeName == "":
		return usageError(errors.New("--node-name is required (no host name to default to)"))
	case as.rpcPort < 0 || as.rpcPort > 65535:
		return usageError(fmt.Errorf("--rpc-port %d is not a port", as.rpcPort))
	case as.httpPort < 0 || as.httpPort > 65535:
		return usageError(fmt.Errorf("--http-port %d is not a port", as.httpPort))
	case as.startJoinTimeout < 0:
		return usageError(fmt.Errorf("--start-join-timeout %v must not be negative", as.startJoinTimeout))
	case as.raftHeartbeatTimeout < minRaftTimeout || as.raftElectionTimeout < minRaftTimeout || as.raftLeaderLeaseTimeout < minRaftTimeout:
		return usageError(fmt.Errorf("--raft-heartbeat-timeout %v, --raft-election-timeout %v, --raft-leader-lease-timeout %v: each must be at least %v",
			as.raftHeartbeatTimeout, as.raftElectionTimeout, as.raftLeaderLeaseTimeout, minRaftTimeout))
	case as.raftLeaderLeaseTimeout > as.raftHeartbeatTimeout:
		return usageError(fmt.Errorf("--raft-leader-lease-timeout %v must not exceed --raft-heartbeat-timeout %v",
			as.raftLeaderLeaseTimeout, as.raftHeartbeatTimeout))
	case as.segmentMaxAge < 0:
		return usageError(fmt.Errorf("--segment-max-age %v: want a duration, or 0 to seal segments by size only", as.segmentMaxAge))
	case as.groupCommitInFlight < 1:
		return usageError(fmt.Errorf("--group-commit-in-flight %d: want at least 1", as.groupCommitInFlight))
	case as.groupCommitLinger < 0:
		return usageError(fmt.Errorf("--group-commit-linger %v: want a duration, or 0 not to wait", as.groupCommitLinger))
	case as.produceStreamWindow < 1:
		return usageError(fmt.Errorf("--produce-stream-window %d: want at least 1 record", as.produceStreamWindow))
	case as.raftTrailingBytes == 0 || as.raftTrailingBytes < -1:
		return usageError(fmt.Errorf("--raft-trailing-bytes %d: want a positive number of bytes, or -1 to keep a fixed number of entries", as.raftTrailingBytes))
	case as.maxRecordBytes <= 0:
		return usageError(fmt.Errorf("--max-record-bytes %d must be positive", as.maxRecordBytes))
	case as.maxBatchRecords <= 0:
		return usageError(fmt.Errorf("--max-batch-records %d must be positive", as.maxBatchRecords))
	case as.maxConsumeBytes <= 0:
		// The server refuses values above server.MaxConsumeLimit, by name.
		return usageError(fmt.Errorf("--max-consume-bytes %d must be positive", as.maxConsumeBytes))
	case as.gossipInsecure && as.gossipKeyFileSet:
		return usageError(errors.New("--gossip-insecure and --gossip-key-file contradict each other: choose one"))
	}
	switch as.traceExporter {
	case telemetry.ExporterNone, telemetry.ExporterStdout, telemetry.ExporterOTLP:
	default:
		return usageError(fmt.Errorf("--trace-exporter %q: want %s, %s or %s", as.traceExporter,
			telemetry.ExporterNone, telemetry.ExporterStdout, telemetry.ExporterOTLP))
	}
	if _, _, err := net.SplitHostPort(as.bindAddr); err != nil {
		return usageError(fmt.Errorf("--bind-addr %q: %w", as.bindAddr, err))
	}
	if _, _, err := net.SplitHostPort(as.advertiseHost); as.advertiseHost != "" && err == nil {
		return usageError(fmt.Errorf("--advertise-host %q: want a host without a port (the ports are --rpc-port and --http-port)", as.advertiseHost))
	}
	for _, addr := range as.startJoinAddrs {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return usageError(fmt.Errorf("--start-join-addrs: %q is not host:port", addr))
		}
	}
	if _, err := parseLogLevel(as.logLevel); err != nil {
		return err
	}
	return nil
}

// bootstraps reports whether this node bootstraps a new cluster: --bootstrap,
// or --bootstrap-node naming this node.
func (as agentSettings) bootstraps() bool {
	return as.bootstrap || (as.bootstrapNode != "" && as.bootstrapNode == as.nodeName)
}

// config builds the agent's Config: it reads the certificates.
func (as agentSettings) config(logger *zap.Logger) (agent.Config, error) {
	serverTLS, err := tlsconfig.SetupTLSConfig(as.serverTLS)
	if err != nil {
		return agent.Config{}, fmt.Errorf("server certificate: %w%s", err, gencertHint(err))
	}
	peerClientTLS, err := tlsconfig.SetupTLSConfig(as.peerTLS)
	if err != nil {
		return agent.Config{}, fmt.Errorf("peer certificate: %w%s", err, gencertHint(err))
	}
	// As in the seed book, the Raft branch serves the server certificate
	// (it names the hosts peers dial; the peer certificate may be a plain
	// client certificate without them) and requires a peer certificate
	// signed by the peer CA.
	peerServerTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: as.serverTLS.CertFile,
		KeyFile:  as.serverTLS.KeyFile,
		CAFile:   as.peerTLS.CAFile,
		Server:   true,
		Peer:     true,
	})
	if err != nil {
		return agent.Config{}, fmt.Errorf("raft server certificate: %w%s", err, gencertHint(err))
	}
	gossipKeys, err := as.readGossipKeys()
	if err != nil {
		return agent.Config{}, err
	}
	return agent.Config{
		GossipKeys:             gossipKeys,
		GossipInsecure:         as.gossipInsecure,
		DataDir:                as.dataDir,
		NodeName:               as.nodeName,
		BindAddr:               as.bindAddr,
		AdvertiseHost:          as.advertiseHost,
		RPCPort:                as.rpcPort,
		HTTPPort:               as.httpPort,
		StartJoinAddrs:         as.startJoinAddrs,
		StartJoinTimeout:       as.startJoinTimeout,
		RaftHeartbeatTimeout:   as.raftHeartbeatTimeout,
		RaftElectionTimeout:    as.raftElectionTimeout,
		RaftLeaderLeaseTimeout: as.raftLeaderLeaseTimeout,
		RaftTrailingBytes:      int64(as.raftTrailingBytes),
		PprofAddr:              as.pprofAddr,
		SegmentMaxAge:          zeroMeansOff(as.segmentMaxAge),
		GroupCommitInFlight:    as.groupCommitInFlight,
		GroupCommitLinger:      zeroMeansOff(as.groupCommitLinger),
		ProduceStreamWindow:    as.produceStreamWindow,
		Bootstrap:              as.bootstraps(),
		ServerTLSConfig:        serverTLS,
		PeerTLSConfig:          peerClientTLS,
		PeerServerTLSConfig:    peerServerTLS,
		PeerTLSFiles: agent.PeerTLSFiles{
			CertFile:       as.peerTLS.CertFile,
			CAFile:         as.peerTLS.CAFile,
			ServerCertFile: as.serverTLS.CertFile,
		},
		ACLModelFile:    as.aclModelFile,
		ACLPolicyFile:   as.aclPolicyFile,
		MaxRecordBytes:  as.maxRecordBytes,
		MaxBatchRecords: as.maxBatchRecords,
		MaxConsumeBytes: as.maxConsumeBytes,
		TraceExporter:   as.traceExporter,
		OTLPEndpoint:    as.otlpEndpoint,
		OTLPInsecure:    as.otlpInsecure,
		Logger:          logger,
	}, nil
}

// readGossipKeys reads the gossip key file; nil with --gossip-insecure.
func (as agentSettings) readGossipKeys() ([][]byte, error) {
	if as.gossipInsecure {
		return nil, nil
	}
	keys, err := discovery.ReadGossipKeyFile(as.gossipKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("gossip key: %w (run 'make gencert', or 'proglog keygen --out %s'; every node needs the same key. "+
			"--gossip-insecure runs without one, and lets anyone who reaches --bind-addr join the gossip)", err, as.gossipKeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	return keys, nil
}

func newAgentCmd(hostname string) (*cobra.Command, error) {
	opts := agentOptions(hostname)
	return newCommand(&cobra.Command{
		Use:   "agent",
		Short: "Run one node of a cluster",
		Long: `Run one proglog node: Raft and gRPC on --rpc-port (one port, split by the first
byte), the JSON API, /metrics, /healthz and /readyz over HTTPS on --http-port,
and Serf gossip on --bind-addr, whose host is where every port listens.

The first node of a new cluster runs with --bootstrap (or is named by
--bootstrap-node); the others name a running node's Serf address in
--start-join-addrs and the leader adds them. --advertise-host is the name the
others reach this node by, when it is not the bind address (a pod's DNS name).
Every connection is mutual TLS, and gossip is encrypted: the certificates, the
ACL and the gossip key default to the files 'make gencert' writes into
--config-dir. The leader makes a member a Raft voter only once a TLS handshake
with the member's RPC port has shown a server certificate from the cluster's CA
whose subject may join (ACL action "join"; without join lines in the policy,
the subject of this node's own server certificate). SIGHUP reloads the gossip
key file, which is how a key is rotated without a restart.

SIGINT or SIGTERM stops the node gracefully: it leaves the cluster, lets calls
in flight finish, and closes its log. A second signal kills it at once.
Started again with the same flags and --data-dir, it rejoins the members it
remembers and catches up.`,
		Example: `  # A three-node cluster on one machine ('make run' does this):
  proglog agent --data-dir .data/node-1 --node-name node-1 --bootstrap \
    --bind-addr 127.0.0.1:8301 --rpc-port 8401 --http-port 8080
  proglog agent --data-dir .data/node-2 --node-name node-2 \
    --bind-addr 127.0.0.1:8302 --rpc-port 8402 --http-port 8081 \
    --start-join-addrs 127.0.0.1:8301

  # The same from the environment and a config file:
  PROGLOG_DATA_DIR=/var/lib/proglog proglog agent --config-file /etc/proglog.yaml`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd.Flags(), opts, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			as, err := readAgentSettings(s)
			if err != nil {
				return err
			}
			return runAgent(cmd.Context(), as, cmd)
		},
	}, opts)
}

// reloadGossipKeys applies the gossip key file to the running node's
// keyring: one step of a key rotation (see README).
func reloadGossipKeys(as agentSettings, a *agent.Agent, logger *zap.Logger) {
	if as.gossipInsecure {
		logger.Warn("SIGHUP: gossip is not encrypted (--gossip-insecure); no key file to reload")
		return
	}
	keys, err := as.readGossipKeys()
	if err == nil {
		err = a.SetGossipKeys(keys)
	}
	if err != nil {
		logger.Error("SIGHUP: gossip keys not reloaded; the keyring is unchanged", zap.String("file", as.gossipKeyFile), zap.Error(err))
		return
	}
	logger.Info("SIGHUP: gossip keys reloaded", zap.String("file", as.gossipKeyFile), zap.Int("keys", len(keys)))
}

// runAgent runs a node until ctx is done (SIGINT or SIGTERM), then shuts it
// down.
func runAgent(ctx context.Context, as agentSettings, cmd *cobra.Command) error {
	logger, err := newLogger(as.logLevel, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	// Sync fails on a terminal; nothing to do about it.
	defer func() { _ = logger.Sync() }()
	// OpenTelemetry reports export failures through a process-wide handler
	// that defaults to the standard log package; main owns the process, so
	// it routes them into zap here.
	otel.SetErrorHandler(telemetry.OTelErrorHandler(logger))
	cfg, err := as.config(logger)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a, err := agent.New(cfg)
	if err != nil {
		return fmt.Errorf("start node %s: %w%s", as.nodeName, err, corruptDataHint(err, as))
	}
	// The agent logs its addresses when it starts and when it stops.
	hangup := make(chan os.Signal, 1)
	signal.Notify(hangup, syscall.SIGHUP)
	defer signal.Stop(hangup)
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			waiting = false
		case <-hangup:
			reloadGossipKeys(as, a, logger)
		}
	}
	logger.Info("signal received; shutting down (a second signal kills at once)")
	if err := a.Shutdown(); err != nil {
		return fmt.Errorf("shut down node %s: %w", as.nodeName, err)
	}
	return nil
}

// corruptDataHint completes distlog's advice for a node refused for
// corrupt data with the flags to start it again with: a node that
// bootstraps would, with an empty data directory, bootstrap a new, empty
// cluster of its own instead of rejoining.
func corruptDataHint(err error, as agentSettings) string {
	if !errors.Is(err, agent.ErrCorruptData) || !as.bootstraps() {
		return ""
	}
	return " (this node bootstraps: start it without --bootstrap, and without --bootstrap-node naming it, " +
		"with --start-join-addrs naming a running node)"
}

// zeroMeansOff turns a duration flag whose 0 means "off" (--segment-max-age:
// by size only; --group-commit-linger: never wait) into the agent.Config
// field, whose 0 is the default and negative is off.
func zeroMeansOff(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
