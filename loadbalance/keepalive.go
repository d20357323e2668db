package loadbalance

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Keepalive figures of the Client (Config.KeepaliveTime and
// Config.KeepaliveTimeout) and of the servers it talks to
// (ServerKeepaliveOptions).
//
// Why keepalive at all: a server that is paused (SIGSTOP, a VM frozen, a
// long GC stall) or cut off by a silent network keeps its TCP connection
// open. Nothing fails; calls and streams on that connection just wait. A
// ping that gets no answer is the only way the client notices, closes the
// connection, and fails what was on it with codes.Unavailable so it can be
// retried elsewhere.
const (
	// MinKeepaliveTime is the shortest ping interval gRPC allows a client:
	// it raises anything lower to this, so New refuses a lower
	// Config.KeepaliveTime instead of silently using another figure.
	MinKeepaliveTime = 10 * time.Second
	// DefaultKeepaliveTime is the default Config.KeepaliveTime: as short as
	// gRPC allows.
	DefaultKeepaliveTime = MinKeepaliveTime
	// DefaultKeepaliveTimeout is the default Config.KeepaliveTimeout. A live
	// server answers a ping within milliseconds, even under load (pings are
	// answered by its transport, not by a handler); 5 s leaves room for a
	// long GC pause on a busy node without waiting much longer than that.
	DefaultKeepaliveTimeout = 5 * time.Second

	// ServerKeepaliveMinTime is how often a server lets a client ping it:
	// half of MinKeepaliveTime, so every valid client configuration is
	// within the policy with room for timer jitter. gRPC's own default is
	// 5 minutes, and a server that keeps it sends GOAWAY "too_many_pings"
	// to a Client on its third ping.
	ServerKeepaliveMinTime = MinKeepaliveTime / 2
	// ServerKeepaliveTime is how long a client connection may be silent
	// before the server pings it, to find clients that are paused or gone
	// and free their streams. gRPC's default is 2 hours.
	ServerKeepaliveTime = 30 * time.Second
	// ServerKeepaliveTimeout is how long the server waits for the answer to
	// its ping before it closes the connection.
	ServerKeepaliveTimeout = 10 * time.Second
)

// ServerKeepaliveOptions returns the gRPC server options a proglog server
// needs for Clients' keepalive: an enforcement policy that allows a ping
// every ServerKeepaliveMinTime, with or without calls in flight (Clients
// ping idle connections too, so a write does not find a dead leader
// connection first), and server-side pings after ServerKeepaliveTime of
// silence. The agent adds them to its gRPC server.
func ServerKeepaliveOptions() []grpc.ServerOption {
	return serverKeepaliveOptions(1)
}

// serverKeepaliveOptions divides every figure by speedup, so tests can run
// the same policy in milliseconds.
func serverKeepaliveOptions(speedup time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             ServerKeepaliveMinTime / speedup,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    ServerKeepaliveTime / speedup,
			Timeout: ServerKeepaliveTimeout / speedup,
		}),
	}
}

// clientKeepalive is the dial option of a Client's connection.
func clientKeepalive(cfg Config) grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time:    cfg.KeepaliveTime,
		Timeout: cfg.KeepaliveTimeout,
		// Ping idle connections too: a leader that froze while no write
		// was in flight is then found out before the next write is sent
		// to it, and its SubConn leaves the picker.
		PermitWithoutStream: true,
	})
}
