// Package chaos is proglog's failover harness: it runs the real proglog
// binary as separate processes (3 or 5 nodes on 127.0.0.1), writes through
// loadbalance.Client while it kills, pauses, partitions, corrupts and fills
// nodes, and then checks what the cluster kept.
//
// Everything lives in the package's tests. `go test ./test/chaos` (part of
// `make test`) runs a short version of every fault once; `make chaos` runs
// randomized faults for as long as asked:
//
//	make chaos DURATION=10m NODES=5 SEED=42
//
// which is
//
//	go test -run '^TestChaos$' -timeout 0 -v ./test/chaos -args \
//		-chaos.duration 10m -chaos.nodes 5 -chaos.seed 42
//
// # How faults are made
//
//   - Crashes and pauses are signals to the node's process: SIGKILL, SIGTERM
//     (a graceful stop: the node hands leadership over and leaves), SIGSTOP
//     and SIGCONT.
//   - Partitions: every node advertises its RPC port on a loopback address
//     of its own (127.0.1.N), where the harness runs a small TCP proxy to
//     the node's real port on 127.0.0.1. The proxy finds which node opened
//     each connection (the process owning the socket's other end, found in
//     /proc by both of its addresses: Linux reuses a local port for
//     different destinations) and cuts or holds connections between nodes the partition
//     separates. Clients are never cut. Serf gossip is not proxied: a
//     partition separates Raft, not membership. The proxy is written here
//     rather than embedding github.com/Shopify/toxiproxy/v2: toxiproxy
//     identifies neither the connecting process nor offers per-pair rules,
//     and would add its HTTP API and metrics stack to the module for a
//     hundred lines of io.Copy.
//   - Corruption: with the node stopped, the newest segment store file of
//     its Raft log is cut in the middle of a record and one byte of the
//     newest data segment is flipped; the node is then restarted.
//   - Disk full: a follower's data directory is a small tmpfs (root only;
//     skipped otherwise), shrunk to what it holds, and grown back later.
//
// # What is checked
//
// Every write's invocation, completion and outcome is recorded (ok with an
// offset, or unknown: an error whose write may have landed). At the end
// every node's log is read whole and compared: every acknowledged value is
// at its offset on every node; offsets are contiguous; no offset holds two
// values across nodes; no value appears twice (the writers are idempotent
// producers); and the history of writes and reads is linearizable (porcupine), with a
// timeout. Write stalls after each fault are measured and printed.
package chaos
