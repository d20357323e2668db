// Package discovery finds the other nodes of a proglog cluster by gossip and
// tells the caller who joins and who leaves.
//
// Each node runs one Membership over HashiCorp Serf. The node's tags carry
// RPCAddrTag, the address of its RPC port, so that when another node learns of
// it the Handler receives both the node's name and where to reach it. The
// agent's Handler turns those calls into Raft membership changes on the
// leader: Join adds a voter, Leave removes a server.
//
// # Starting a cluster
//
// The first node starts with no StartJoinAddrs; every other node names one or
// more Serf addresses of nodes already running:
//
//	keys, err := discovery.ReadGossipKeyFile("/etc/proglog/gossip.key")
//	if err != nil { ... }
//	m, err := discovery.New(handler, discovery.Config{
//		NodeName:       "node-2",
//		GossipKeys:     keys,
//		BindAddr:       "10.0.0.2:8401",
//		Tags:           map[string]string{discovery.RPCAddrTag: "10.0.0.2:8400"},
//		StartJoinAddrs: []string{"10.0.0.1:8401"},
//	})
//	if err != nil { ... }           // errors.Is(err, discovery.ErrJoin): nobody answered
//	defer m.Close()                 // leaves gracefully, then shuts Serf down
//
// # Restarting
//
// With Config.SnapshotPath, Serf records the members this one knows in a
// file, and a member started again on the same file rejoins them by itself,
// StartJoinAddrs or not; Config.RejoinAfterLeave extends that to a member that
// left gracefully (Close leaves), which is what a node that is stopped and
// started again wants. A restarted member does not wait for that rejoin, and
// does not fail when its StartJoinAddrs are down as long as its snapshot names
// other members: it keeps trying all of them every Config.RetryJoinInterval
// until one answers. So a cluster whose every node is restarted, in any
// order, with the command lines it was first started with, finds itself
// again. Only a member with nothing to rejoin (no snapshot, an empty one, or
// a leave recorded without RejoinAfterLeave) fails with ErrJoin.
//
// # Encryption
//
// With Config.GossipKeys, every packet and stream is encrypted and
// authenticated with AES-GCM (memberlist's keyring): a member without one of
// the keys cannot join, and plaintext gossip is refused. GossipKeys[0]
// encrypts; every key listed decrypts. ReadGossipKeyFile reads keys from a
// file (base64, one per line, as GenerateGossipKey makes them).
//
// A key is rotated without a pause in three rounds, each applied to every
// member (Membership.SetGossipKeys) before the next starts: install the new
// key beside the old ([old, new]), use it ([new, old]), remove the old one
// ([new]). SetGossipKeys changes only the member it is called on, the way
// the agent reloads its key file on SIGHUP; Serf's KeyManager would instead
// send each step to the whole cluster as a query.
//
// Gossip membership proves only that a member holds the key. The agent
// decides for itself whom to make a Raft voter, and calls Membership.Remove
// on members it refuses.
//
// # Events
//
// The Handler hears about other members only, never the local one. A member
// joining, coming back, or changing its tags is a Join; a member leaving
// gracefully, being declared failed, or being reaped is a Leave, so both calls
// must be idempotent. Calls come one at a time, in Serf's order, from a
// goroutine the Membership owns. A Handler that returns an error, or takes a
// long time, is logged; it stops neither the event loop nor Serf's gossip,
// because events are queued between Serf and the Handler without bound.
//
// # Shutting down
//
// Leave tells the cluster this node is going, so the others report a leave
// and not a failure. Close leaves first if Leave was not called, then shuts
// Serf down and waits for the event goroutines. Close is idempotent.
//
// # Timings
//
// Config.Profile selects the gossip and failure-detection timings: ProfileLAN
// (Serf's defaults) for production, ProfileWAN for slow links, ProfileLocal for
// tests and single-host clusters (a crash reported in about 2.5 s instead of 6,
// a graceful leave in 0.3 s instead of 1.6).
//
// # Logging
//
// Serf and memberlist log through the standard library's log package; their
// lines go to Config.Logger at the level named by their "[LEVEL]" prefix,
// under the names "discovery.serf" and "discovery.memberlist". Once Close has
// returned, nothing more is written to Config.Logger, even by the memberlist
// goroutines that briefly outlive it.
package discovery
