// Package loadbalance balances a gRPC client over a proglog cluster from the
// client side: writes go to the Raft leader, reads spread over followers.
//
// It has three parts.
//
//   - A name resolver for the scheme "proglog" (Builder, made by NewBuilder).
//     A target is "proglog:///host:port" or a comma-separated seed list
//     "proglog:///h1:p1,h2:p2". The resolver asks a seed (or any server it
//     learned before) for GetServers, reports every server to gRPC with its
//     leadership in resolver.Address.BalancerAttributes, and asks again on
//     ResolveNow and every ResolverConfig.ResolveInterval.
//   - A balancer registered under the name "proglog" (Register). Its picker
//     routes by exact method name: Produce, ProduceBatch and ProduceStream to
//     the leader; Consume and ConsumeStream round-robin over ready followers,
//     or the leader when no follower is ready; every other method (GetServers,
//     health) to any ready server. When the leader is unknown or unreachable
//     a write fails fast with codes.Unavailable instead of waiting forever.
//   - Client, a small wrapper over both that retries writes on Unavailable
//     (including a follower's NOT_LEADER refusal) with exponential backoff,
//     resumes a broken ConsumeStream on another server from the next offset,
//     fails a ProduceStream over to the new leader, resending what was
//     not acknowledged, in order, and coalesces concurrent Produce calls
//     into ProduceBatch RPCs.
//
// # Coalesced writes
//
// Client.Produce sends a call at once when no RPC of its topic is in
// flight (Config.CoalesceInFlight, 1); calls made meanwhile queue and leave
// together, in arrival order, as one ProduceBatch when it ends (at most
// Config.MaxCoalesceRecords calls and MaxCoalesceBytes of values), with no
// timer. Each caller gets its own offset and error. A batch is one
// idempotent producer call, retried whole, so it is appended exactly once;
// a call whose context ends while queued is withdrawn, never sent; a batch
// refused for one record (InvalidArgument) is resent call by call, so only
// that call fails. A unary mTLS call costs the client and the leader far
// more CPU than the record it carries, so many one-record writers get
// several times the throughput this way (see README, Performance).
// Config.NoCoalesce sends one Produce RPC per call.
//
// # Servers that come back
//
// A connection that failed is redialled with a backoff capped at
// Config.ReconnectMaxBackoff (500 ms), so a server that returns after
// minutes takes calls within about that long; one the resolver names leader
// while its connection is failing is redialled at once.
//
// # Using the resolver and balancer directly
//
//	loadbalance.Register() // once, before creating gRPC clients
//	b, err := loadbalance.NewBuilder(loadbalance.ResolverConfig{})
//	conn, err := grpc.NewClient("proglog:///10.0.0.1:8400,10.0.0.2:8400",
//		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
//		grpc.WithResolvers(b))
//	client := api.NewLogClient(conn)
//
// The resolver puts the balancer in the service config it reports, so no
// grpc.WithDefaultServiceConfig is needed. Each grpc.ClientConn gets its own
// resolver and its own balancer and picker; nothing is shared between
// connections.
//
// # Using Client
//
//	c, err := loadbalance.New(loadbalance.Config{
//		Seeds:     []string{"10.0.0.1:8400"},
//		TLSConfig: tlsConfig,
//	})
//	defer c.Close()
//	off, err := c.Produce(ctx, []byte("hello"))
//	err = c.ConsumeStream(ctx, 0, func(r *api.Record) error { ...; return nil })
//
// # Paused servers
//
// A server that is paused (SIGSTOP, a frozen VM) or cut off without a reset
// keeps its connections open and answers nothing, so nothing fails by
// itself. Client deals with it three ways:
//
//   - Every attempt of a call has its own deadline, Config.AttemptTimeout
//     (5 s), and one that passes is retried like an Unavailable error, on
//     the server the resolver names by then. A stream that gets no headers
//     within it is reopened elsewhere.
//   - A write still pending a quarter of AttemptTimeout in asks the resolver
//     for the current leader; when it reports a new one, the write in
//     flight to the old one is abandoned and sent to the new one at once.
//     The resolver asks servers that failed to answer it last.
//   - gRPC keepalive (Config.KeepaliveTime, KeepaliveTimeout: 10 s + 5 s)
//     closes a connection whose server stopped answering pings, which
//     breaks a ConsumeStream on it so that it resumes elsewhere. A quiet
//     stream alone is not a sign: the log may just be idle. Servers must
//     accept those pings: give them ServerKeepaliveOptions (the agent does).
//
// Abandoning an attempt can write twice: see Client.Produce.
//
// # TLS
//
// The resolver dials seeds with the ClientConn's own transport credentials
// (or ResolverConfig.Credentials). Every address it reports carries the host
// of the server's rpc_addr as its ServerName, so each server's certificate is
// checked against its own name, as if it had been dialled directly; the list
// comes from a server that passed the same TLS verification. A non-empty
// tls.Config.ServerName overrides this for every connection.
package loadbalance
