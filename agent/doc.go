// Package agent runs one proglog node: a multiplexed RPC listener split by
// cmux into Raft peer traffic and the gRPC service, an HTTPS server for the
// JSON API, metrics and health, the Raft-replicated log, and Serf membership
// that turns gossip into Raft configuration changes.
//
// Gossip is encrypted with Config.GossipKeys (or, deliberately, not:
// GossipInsecure), and gossip alone never makes a voter: the leader adds a
// member only after a TLS handshake with the member's Raft port has shown a
// certificate of the cluster's CA, for the address it advertises, whose
// subject may join (verify.go). Refusals are logged once, counted in
// proglog_raft_join_refusals_total, and the refused member is removed from
// Serf.
//
// New starts the pieces in order and undoes what it started if a step fails;
// Shutdown stops them in reverse order and is safe to call more than once.
package agent
