// Package distlog is proglog's replicated log: named topics, each a
// storage.Log, kept identical on every node by Raft.
//
// See DistributedLog for the layout on disk, fsm for how commands are
// applied exactly once across restarts, and snapshotstore.go for snapshots
// that hard-link segment files instead of copying the log.
package distlog
