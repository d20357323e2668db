// Package agent runs one proglog node: a multiplexed RPC listener split by
// cmux into Raft peer traffic and the gRPC service, an HTTPS server for the
// JSON API, metrics and health, the Raft-replicated log, and Serf membership
// that turns gossip into Raft configuration changes.
//
// New starts the pieces in order and undoes what it started if a step fails;
// Shutdown stops them in reverse order and is safe to call more than once.
package agent
