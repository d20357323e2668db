package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/soheilhy/cmux"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/proglog/proglog/discovery"
	"github.com/proglog/proglog/distlog"
	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/server"
	"github.com/proglog/proglog/server/auth"
)

// Agent is one running proglog node. Create it with New; stop it with
// Shutdown.
type Agent struct {
	cfg    Config
	logger *zap.Logger

	rpcListener  net.Listener
	httpListener net.Listener
	// pprofListener serves Go's profiles when Config.PprofAddr is set
	// (pprof.go).
	pprofListener net.Listener
	pprofServer   *http.Server
	mux           cmux.CMux
	log           *distlog.DistributedLog
	grpcServer    *grpc.Server
	httpServer    *http.Server
	membership    *discovery.Membership
	// verifier decides which Serf members may become Raft voters
	// (verify.go).
	verifier *joinVerifier
	// obs holds metrics, tracing, call logging and health (metrics.go,
	// health.go).
	obs *observability
	// peerTLS follows the TLS handshakes of Raft's connections
	// (peertls.go).
	peerTLS *peerHandshakes

	// stopping is closed first thing in Shutdown: it ends open gRPC streams
	// (server.Config.Stopping) and the reconcile loop.
	stopping chan struct{}
	// wg waits for the goroutines the agent owns: cmux, gRPC and HTTP
	// serving, and reconciliation.
	wg sync.WaitGroup

	// shutdownOnce makes Shutdown idempotent; shutdownErr is its result.
	shutdownOnce sync.Once
	shutdownErr  error
}

// New starts a node: the RPC listener and its multiplexer, the replicated
// log, the gRPC server, the HTTPS server, and Serf membership, in that order.
// If a step fails, what was already started is shut down again.
func New(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:      cfg,
		logger:   cfg.Logger.Named("agent").With(zap.String("node", cfg.NodeName)),
		stopping: make(chan struct{}),
	}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"listeners", a.setupListeners},
		{"profiling listener", a.startPprof},
		{"log", a.setupLog},
		{"telemetry", a.setupTelemetry},
		{"grpc server", a.setupGRPCServer},
		{"http server", a.setupHTTPServer},
		{"join verification", a.setupJoinVerifier},
		{"membership", a.setupMembership},
	}
	for _, step := range steps {
		if err := step.fn(); err != nil {
			err = fmt.Errorf("agent: set up %s: %w", step.name, err)
			return nil, errors.Join(err, a.Shutdown())
		}
	}
	a.serve()
	a.logger.Info("agent started",
		zap.String("rpc_addr", a.RPCAddr()),
		zap.String("http_addr", a.HTTPAddr()),
		zap.String("serf_addr", a.membership.Addr()))
	return a, nil
}

// RPCAddr is the address of the node's multiplexed Raft + gRPC port, as
// other nodes and clients reach it: Config.AdvertiseHost and the bound port,
// or the bound address when AdvertiseHost is empty.
func (a *Agent) RPCAddr() string {
	bound := a.rpcListener.Addr().String()
	if a.cfg.AdvertiseHost == "" {
		return bound
	}
	_, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	return net.JoinHostPort(a.cfg.AdvertiseHost, port)
}

// HTTPAddr is the address of the node's HTTPS port (JSON API, metrics,
// health).
func (a *Agent) HTTPAddr() string { return a.httpListener.Addr().String() }

// SerfAddr is the address Serf gossips on, for other nodes' StartJoinAddrs.
func (a *Agent) SerfAddr() string {
	if a.membership == nil {
		return ""
	}
	return a.membership.Addr()
}

// Log is the node's replicated log.
func (a *Agent) Log() *distlog.DistributedLog { return a.log }

func (a *Agent) port(p int) string {
	return net.JoinHostPort(a.cfg.host(), strconv.Itoa(p))
}

func (a *Agent) setupListeners() error {
	var err error
	a.rpcListener, err = net.Listen("tcp", a.port(a.cfg.RPCPort))
	if err != nil {
		return fmt.Errorf("listen on rpc port %d: %w", a.cfg.RPCPort, err)
	}
	a.httpListener, err = net.Listen("tcp", a.port(a.cfg.HTTPPort))
	if err != nil {
		return fmt.Errorf("listen on http port %d: %w", a.cfg.HTTPPort, err)
	}
	a.mux = cmux.New(a.rpcListener)
	// A connection stuck before its first byte must not pin a goroutine.
	a.mux.SetReadTimeout(10 * time.Second)
	return nil
}

// isRaft matches connections whose first byte is distlog.RaftRPC. gRPC over
// TLS starts with a TLS record (0x16), so the two never collide.
func isRaft(r io.Reader) bool {
	b := make([]byte, 1)
	n, err := io.ReadFull(r, b)
	return err == nil && n == 1 && bytes.Equal(b, []byte{distlog.RaftRPC})
}

func (a *Agent) setupLog() error {
	raftListener := a.mux.Match(isRaft)
	a.peerTLS = newPeerHandshakes(a.logger.Named("peertls"), a.cfg.PeerTLSFiles)
	layer := distlog.NewStreamLayer(raftListener, a.cfg.PeerServerTLSConfig, a.cfg.PeerTLSConfig,
		distlog.WithHandshakeObserver(a.peerTLS.observe))

	dc := a.cfg.distributedConfig()
	dc.Raft.LocalID = raft.ServerID(a.cfg.NodeName)
	dc.Raft.StreamLayer = layer
	dc.Raft.AdvertiseAddr = a.RPCAddr()
	dc.Logger = a.cfg.Logger

	l, err := distlog.NewDistributedLog(filepath.Join(a.cfg.DataDir), dc)
	if err != nil {
		return err
	}
	a.log = l
	return nil
}

func (a *Agent) setupGRPCServer() error {
	authorizer, err := auth.New(a.cfg.ACLModelFile, a.cfg.ACLPolicyFile)
	if err != nil {
		return err
	}
	opts := append([]grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(a.cfg.ServerTLSConfig)),
	}, a.obs.grpcServerOptions(auth.UnaryServerInterceptor(), auth.StreamServerInterceptor())...)
	// Let clients ping as often as loadbalance.Client does (gRPC's default
	// policy answers its third ping with GOAWAY "too_many_pings"), and ping
	// silent clients to free their streams.
	opts = append(opts, loadbalance.ServerKeepaliveOptions()...)
	opts = append(opts, a.cfg.GRPCServerOptions...)
	a.grpcServer, err = server.NewGRPCServer(a.serverConfig(authorizer), opts...)
	if err != nil {
		return err
	}
	a.obs.registerGRPC(a.grpcServer)
	return nil
}

// distributedConfig is the log's configuration from c's settings; the
// node's identity, stream layer, address and logger are added by setupLog.
func (c Config) distributedConfig() distlog.DistributedConfig {
	var dc distlog.DistributedConfig
	dc.Log.MaxRecordBytes = uint64(c.MaxRecordBytes)
	dc.Log.Segment.MaxStoreBytes = c.SegmentMaxStoreBytes
	dc.Log.Segment.MaxIndexBytes = c.SegmentMaxIndexBytes
	dc.TopicSegments.MaxAge = c.SegmentMaxAge
	dc.Raft.Bootstrap = c.Bootstrap
	dc.Raft.HeartbeatTimeout = c.RaftHeartbeatTimeout
	dc.Raft.ElectionTimeout = c.RaftElectionTimeout
	dc.Raft.LeaderLeaseTimeout = c.RaftLeaderLeaseTimeout
	dc.Raft.CommitTimeout = c.RaftCommitTimeout
	dc.Raft.SnapshotThreshold = c.RaftSnapshotThreshold
	dc.Raft.SnapshotInterval = c.RaftSnapshotInterval
	dc.Raft.TrailingLogs = c.RaftTrailingLogs
	dc.Raft.TrailingBytes = c.RaftTrailingBytes
	dc.RetentionCheckInterval = c.RetentionCheckInterval
	dc.GroupCommit.MaxInFlight = c.GroupCommitInFlight
	dc.GroupCommit.Linger = c.GroupCommitLinger
	return dc
}

func (a *Agent) serverConfig(authorizer server.Authorizer) *server.Config {
	return &server.Config{
		CommitLog:       a.obs.metrics.CountAppends(topicLog{a.log}),
		Authorizer:      authorizer,
		ServerGetter:    a.log,
		ID:              a.cfg.NodeName,
		RPCAddr:         a.RPCAddr(),
		MaxRecordBytes:  a.cfg.MaxRecordBytes,
		MaxBatchRecords: a.cfg.MaxBatchRecords,
		MaxConsumeBytes: a.cfg.MaxConsumeBytes,
		// One ProduceStream's window; the bytes it may hold stay the
		// server's default.
		ProduceStreamWindow: a.cfg.ProduceStreamWindow,
		Stopping:            a.stopping,
		Logger:              a.cfg.Logger,
	}
}

func (a *Agent) setupHTTPServer() error {
	authorizer, err := auth.New(a.cfg.ACLModelFile, a.cfg.ACLPolicyFile)
	if err != nil {
		return err
	}
	api, err := server.NewHTTPHandler(a.serverConfig(authorizer))
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", auth.HTTPMiddleware(api))
	a.obs.registerHTTP(mux)
	a.httpServer = &http.Server{
		Handler:           mux,
		TLSConfig:         a.cfg.ServerTLSConfig.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(a.cfg.Logger.Named("http")),
	}
	return nil
}

// startJoinRetryInterval is the wait between tries of StartJoinAddrs while
// Config.StartJoinTimeout lasts.
const startJoinRetryInterval = time.Second

func (a *Agent) setupJoinVerifier() error {
	v, err := newJoinVerifier(a.cfg, a.logger)
	if err != nil {
		return err
	}
	if err := a.obs.metrics.Register(v.refusals); err != nil {
		return err
	}
	a.verifier = v
	return nil
}

func (a *Agent) setupMembership() error {
	if a.cfg.GossipInsecure {
		a.logger.Warn("GOSSIP IS NOT ENCRYPTED (--gossip-insecure): anyone who reaches the Serf address can join the "+
			"gossip and read it; only the join verification keeps them out of Raft. Use a gossip key on any network "+
			"others can reach.", zap.String("serf_addr", a.cfg.BindAddr))
	}
	cfg := discovery.Config{
		NodeName:       a.cfg.NodeName,
		BindAddr:       a.cfg.BindAddr,
		Tags:           map[string]string{discovery.RPCAddrTag: a.RPCAddr()},
		StartJoinAddrs: a.cfg.startJoinAddrs(),
		// A node stopped gracefully leaves Serf, and the leader takes it out
		// of the Raft configuration. Started again, with or without its
		// original StartJoinAddrs, it rejoins the members its snapshot
		// names, and the leader adds it back (membershipHandler.Join and
		// reconcile): without the snapshot, a restarted bootstrap node
		// joined nobody and stayed out for good.
		SnapshotPath:     filepath.Join(a.cfg.DataDir, "serf", "local.snapshot"),
		Rejoin:           a.log.HadState(),
		RejoinAfterLeave: true,
		Profile:          a.cfg.GossipProfile,
		GossipKeys:       a.cfg.GossipKeys,
		Logger:           a.cfg.Logger,
	}
	deadline := time.Now().Add(a.cfg.StartJoinTimeout)
	for {
		m, err := discovery.New(membershipHandler{a}, cfg)
		if err == nil {
			a.membership = m
			return nil
		}
		if !errors.Is(err, discovery.ErrJoin) || !time.Now().Add(startJoinRetryInterval).Before(deadline) {
			return err
		}
		// The nodes to join may be starting too (pods created together,
		// their DNS names not yet published).
		a.logger.Info("no start-join address answered yet; retrying",
			zap.Duration("retry_in", startJoinRetryInterval), zap.Time("until", deadline), zap.Error(err))
		time.Sleep(startJoinRetryInterval)
	}
}

// serve starts the goroutines that accept connections. It runs once every
// setup step has succeeded, so a failed New never leaves one behind.
func (a *Agent) serve() {
	grpcListener := newBranchListener(a.mux.Match(cmux.Any()), &a.wg)
	a.wg.Add(4)
	go func() {
		defer a.wg.Done()
		if err := a.mux.Serve(); err != nil && !isClosedErr(err) {
			a.logger.Error("rpc multiplexer stopped", zap.Error(err))
		}
	}()
	go func() {
		defer a.wg.Done()
		if err := a.grpcServer.Serve(grpcListener); err != nil && !isClosedErr(err) {
			a.logger.Error("grpc server stopped", zap.Error(err))
		}
	}()
	go func() {
		defer a.wg.Done()
		tlsListener := tls.NewListener(a.httpListener, a.httpServer.TLSConfig)
		if err := a.httpServer.Serve(tlsListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("http server stopped", zap.Error(err))
		}
	}()
	go func() {
		defer a.wg.Done()
		a.reconcileLoop()
	}()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.watchReadiness()
	}()
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, cmux.ErrListenerClosed) ||
		errors.Is(err, cmux.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped)
}

// Shutdown leaves the cluster and stops the node in the reverse order of
// New: membership, then the servers (open streams are ended, in-flight calls
// get ShutdownTimeout to finish), then the log, then the listeners. It keeps
// going past errors and returns them joined. Calling it again returns the
// first call's result.
func (a *Agent) Shutdown() error {
	a.shutdownOnce.Do(func() {
		a.shutdownErr = a.shutdown()
	})
	return a.shutdownErr
}

func (a *Agent) shutdown() error {
	if a.obs != nil {
		// Probes and clients watching health move away before anything stops.
		a.obs.health.Shutdown()
	}
	a.logger.Info("agent shutting down")
	close(a.stopping)
	var errs []error
	if a.membership != nil {
		if err := a.membership.Close(); err != nil {
			errs = append(errs, fmt.Errorf("leave membership: %w", err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.stopPprof(); err != nil {
		errs = append(errs, fmt.Errorf("stop profiling server: %w", err))
	}
	if a.httpServer != nil {
		if err := a.httpServer.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop http server: %w", err))
		}
	}
	if a.grpcServer != nil {
		if err := server.GracefulStop(ctx, a.grpcServer); err != nil {
			errs = append(errs, fmt.Errorf("stop grpc server: %w", err))
		}
	}
	if a.log != nil && a.membership != nil {
		a.leaveRaft(a.cfg.LeaveTimeout)
	}
	if a.log != nil {
		if err := a.log.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close log: %w", err))
		}
	}
	if a.mux != nil {
		a.mux.Close()
	}
	for _, l := range []net.Listener{a.rpcListener, a.httpListener, a.pprofListener} {
		if l == nil {
			continue
		}
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close listener %s: %w", l.Addr(), err))
		}
	}
	a.wg.Wait()
	if a.obs != nil {
		if err := a.obs.close(a.cfg.ShutdownTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	a.logger.Info("agent stopped")
	return errors.Join(errs...)
}

// SetGossipKeys replaces the node's gossip keyring with keys, keys[0] being
// the primary (see discovery.Membership.SetGossipKeys): how a running
// cluster's key is rotated, node by node, without a restart. It fails for a
// node started with GossipInsecure.
func (a *Agent) SetGossipKeys(keys [][]byte) error {
	return a.membership.SetGossipKeys(keys)
}

// Leave takes the node out of the cluster without stopping it: it leaves
// Serf gracefully, so the leader removes it from the Raft configuration and
// stops replicating to it. Shutdown still has to be called.
func (a *Agent) Leave() error {
	return a.membership.Leave()
}
