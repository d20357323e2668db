package main

import (
	"strings"
	"time"

	"github.com/proglog/proglog/distlog"
	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/server"
)

// Setting keys. Each key is, all at once, a command-line flag (--key), a key
// of the YAML file named by --config-file, and an environment variable
// (PROGLOG_ + the key upper-cased, dashes turned into underscores). Code reads
// settings only through these constants and only through settings, which
// refuses a key its command did not declare: a misspelt key is a compile
// error, not a setting that silently reads as empty (the book's
// "acl-mode-file").
const (
	// Every command.
	keyConfigFile = "config-file"
	keyConfigDir  = "config-dir"
	keyLogLevel   = "log-level"

	// proglog agent (issue 5).
	keyDataDir           = "data-dir"
	keyNodeName          = "node-name"
	keyBindAddr          = "bind-addr"
	keyAdvertiseHost     = "advertise-host"
	keyRPCPort           = "rpc-port"
	keyHTTPPort          = "http-port"
	keyStartJoinAddrs    = "start-join-addrs"
	keyStartJoinTimeout  = "start-join-timeout"
	keyBootstrap         = "bootstrap"
	keyBootstrapNode     = "bootstrap-node"
	keyACLModelFile      = "acl-model-file"
	keyACLPolicyFile     = "acl-policy-file"
	keyServerTLSCertFile = "server-tls-cert-file"
	keyServerTLSKeyFile  = "server-tls-key-file"
	keyServerTLSCAFile   = "server-tls-ca-file"
	keyPeerTLSCertFile   = "peer-tls-cert-file"
	keyPeerTLSKeyFile    = "peer-tls-key-file"
	keyPeerTLSCAFile     = "peer-tls-ca-file"
	keyMaxRecordBytes    = "max-record-bytes"
	keyMaxBatchRecords   = "max-batch-records"
	keyMaxConsumeBytes   = "max-consume-bytes"
	keyTraceExporter     = "trace-exporter"
	keyOTLPEndpoint      = "otlp-endpoint"
	keyOTLPInsecure      = "otlp-insecure"
	// proglog agent (issue 12).
	keyGossipKeyFile  = "gossip-key-file"
	keyGossipInsecure = "gossip-insecure"
	// proglog agent (issue 15).
	keyRaftHeartbeatTimeout   = "raft-heartbeat-timeout"
	keyRaftElectionTimeout    = "raft-election-timeout"
	keyRaftTrailingBytes      = "raft-trailing-bytes"
	keyRaftLeaderLeaseTimeout = "raft-leader-lease-timeout"
	// proglog agent (issue 16).
	keyPprofAddr           = "pprof-addr"
	keySegmentMaxAge       = "segment-max-age"
	keyGroupCommitInFlight = "group-commit-in-flight"
	keyGroupCommitLinger   = "group-commit-linger"
	keyProduceStreamWindow = "produce-stream-window"

	// Client commands: produce, consume, servers, bench.
	keyAddr           = "addr"
	keyTLSCAFile      = "tls-ca-file"
	keyTLSCertFile    = "tls-cert-file"
	keyTLSKeyFile     = "tls-key-file"
	keyTimeout        = "timeout"
	keyAttemptTimeout = "attempt-timeout"

	// produce, consume, bench.
	keyTopic = "topic"

	// topic create. Named apart from the agent's --max-record-bytes, so
	// that PROGLOG_MAX_RECORD_BYTES set for a node never becomes a topic's
	// config.
	keyTopicSegmentBytes   = "topic-segment-bytes"
	keyTopicMaxRecordBytes = "topic-max-record-bytes"
	// topic create and topic alter.
	keyRetentionBytes  = "retention-bytes"
	keyRetentionAge    = "retention-age"
	keyTopicSegmentAge = "topic-segment-age"

	// consume.
	keyFrom   = "from"
	keyFollow = "follow"
	keyCount  = "count"
	keyJSON   = "json"
	// consume --group.
	keyGroup          = "group"
	keyCommitEvery    = "commit-every"
	keyCommitInterval = "commit-interval"

	// servers.
	keyExpect = "expect"

	// keygen.
	keyOut = "out"

	// bench.
	keyMode        = "mode"
	keyRecords     = "records"
	keySize        = "size"
	keyConcurrency = "concurrency"
	keyBatch       = "batch"
	keyNoCoalesce  = "no-coalesce"
)

// envPrefix starts every environment variable proglog reads. It matches
// tlsconfig.ConfigDirEnv: PROGLOG_CONFIG_DIR is the config-dir setting.
const envPrefix = "PROGLOG_"

// envName is the environment variable of a setting key.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// Defaults of the client commands: the cluster `make run` starts.
const (
	defaultAddrs         = "127.0.0.1:8401,127.0.0.1:8402,127.0.0.1:8403"
	defaultClientTimeout = 10 * time.Second
)

// option declares one setting of a command: its key (flag name, config-file
// key, environment variable), its default and its help text.
type option struct {
	key   string
	short string
	// def is the default and fixes the type: string, bool, int,
	// time.Duration or []string.
	def   any
	usage string
}

// commonOptions are declared by every command; logLevel is the command's
// default log level.
func commonOptions(logLevel string) []option {
	return []option{
		{key: keyConfigFile, def: "", usage: "YAML file of settings (keys are the flag names); flags and PROGLOG_* variables override it"},
		{key: keyConfigDir, def: "", usage: "directory of the certificates and ACL files that 'make gencert' writes (default $PROGLOG_CONFIG_DIR, else ~/.proglog)"},
		{key: keyLogLevel, def: logLevel, usage: "log level: debug, info, warn or error"},
	}
}

// agentOptions are the settings of `proglog agent`: the book's flag names
// plus --log-level.
func agentOptions(hostname string) []option {
	return append(commonOptions("info"),
		option{key: keyDataDir, def: "", usage: "directory of this node's data log, Raft log and snapshots (required)"},
		option{key: keyNodeName, def: hostname, usage: "unique node name: the Raft server ID and Serf node name"},
		option{key: keyBindAddr, def: "127.0.0.1:8301", usage: "host:port Serf gossips on (TCP and UDP); the RPC and HTTP ports listen on its host"},
		option{key: keyAdvertiseHost, def: "", usage: "host name or IP other nodes and clients reach this node's RPC port by, and its certificate names (default: the host of --bind-addr); a DNS name survives an IP change"},
		option{key: keyRPCPort, def: 8401, usage: "port of the multiplexed Raft + gRPC listener"},
		option{key: keyHTTPPort, def: 8080, usage: "port of the HTTPS listener: JSON API, /metrics, /healthz, /readyz"},
		option{key: keyStartJoinAddrs, def: []string{}, usage: "Serf addresses (host:port, comma-separated) of running nodes to join"},
		option{key: keyStartJoinTimeout, def: time.Duration(0), usage: "how long a new node keeps trying --start-join-addrs while none answers (nodes started together); 0: one try"},
		option{key: keyBootstrap, def: false, usage: "bootstrap a new cluster with this node as its only voter (ignored when the node has Raft state)"},
		option{key: keyBootstrapNode, def: "", usage: "the node that bootstraps a new cluster: a node whose --node-name is this acts as with --bootstrap, so every node can share one command line (a StatefulSet's pods)"},
		option{key: keyACLModelFile, def: "", usage: "Casbin ACL model (default model.conf in --config-dir)"},
		option{key: keyACLPolicyFile, def: "", usage: "Casbin ACL policy (default policy.csv in --config-dir)"},
		option{key: keyServerTLSCertFile, def: "", usage: "certificate of the gRPC and HTTP servers (default server.pem in --config-dir)"},
		option{key: keyServerTLSKeyFile, def: "", usage: "key of --server-tls-cert-file (default server-key.pem in --config-dir)"},
		option{key: keyServerTLSCAFile, def: "", usage: "CA that verifies client certificates (default ca.pem in --config-dir)"},
		option{key: keyPeerTLSCertFile, def: "", usage: "certificate this node presents when it dials a Raft peer; a client certificate will do, as in the book's root-client.pem (default server.pem in --config-dir)"},
		option{key: keyPeerTLSKeyFile, def: "", usage: "key of --peer-tls-cert-file (default server-key.pem in --config-dir)"},
		option{key: keyPeerTLSCAFile, def: "", usage: "CA that verifies Raft peers: their server certificates when this node dials, their peer certificates when they dial it (default ca.pem in --config-dir)"},
		option{key: keyMaxRecordBytes, def: 1 << 20, usage: "largest record value accepted, in bytes; must be the same on every node"},
		option{key: keyMaxBatchRecords, def: 1000, usage: "most records one ProduceBatch may carry"},
		option{key: keyMaxConsumeBytes, def: 1 << 20, usage: "most bytes of record values in one batched ConsumeStream or Consume response (max_records); about what a stream holds while its client is slow"},
		option{key: keyTraceExporter, def: "none", usage: "where OpenTelemetry spans go: none, stdout or otlp"},
		option{key: keyOTLPEndpoint, def: "", usage: "host:port of the OTLP/gRPC collector for --trace-exporter otlp (default $OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317)"},
		option{key: keyOTLPInsecure, def: false, usage: "send spans to --otlp-endpoint without TLS (a collector on the same host)"},
		option{key: keyGossipKeyFile, def: "", usage: "gossip encryption keys, base64, one per line, the first encrypting (default gossip.key in --config-dir; 'make gencert' or 'proglog keygen' writes one); SIGHUP reloads it"},
		option{key: keyGossipInsecure, def: false, usage: "gossip in plaintext, without a key: anyone who reaches --bind-addr can join the gossip (never on a shared network)"},
		option{key: keyRaftHeartbeatTimeout, def: distlog.DefaultHeartbeatTimeout, usage: "time without a leader's heartbeat before a follower campaigns: how soon a crashed leader is replaced (raise it on slow or distant networks, on every node)"},
		option{key: keyRaftElectionTimeout, def: distlog.DefaultElectionTimeout, usage: "time a candidate waits for votes before it campaigns again"},
		option{key: keyRaftLeaderLeaseTimeout, def: distlog.DefaultLeaderLeaseTimeout, usage: "time a leader keeps leading without hearing from a majority; at most --raft-heartbeat-timeout"},
		option{key: keySegmentMaxAge, def: distlog.DefaultTopicSegmentMaxAge, usage: "seal a segment of a topic with a retention age once it spans this much time of records, so that retention by age also reaches topics that fill their segments slowly (others roll by size only); 0: by size only"},
		option{key: keyPprofAddr, def: "", usage: "host:port where the node serves Go's profiles (/debug/pprof/) for 'go tool pprof', over plain HTTP without authentication: bind it to 127.0.0.1; empty: off"},
		option{key: keyRaftTrailingBytes, def: distlog.DefaultTrailingBytes, usage: "about how many bytes of Raft entries a snapshot leaves in the Raft log (at least 16 entries) and how many new bytes trigger a snapshot, so a follower that was away catches up from the log rather than by a snapshot with every record; -1: exactly 2048 entries"},
		option{key: keyGroupCommitInFlight, def: distlog.DefaultGroupCommitInFlight, usage: "how many coalesced append entries the leader keeps in Raft at once; more may help when every node has a disk of its own (the leader's fsync of the next entry overlaps the followers' of the last), and is slower when the nodes share one"},
		option{key: keyGroupCommitLinger, def: distlog.DefaultGroupCommitLinger, usage: "longest the leader waits, after an entry, for its writers to write again so that their records share the next entry; 0: never wait"},
		option{key: keyProduceStreamWindow, def: server.DefaultProduceStreamWindow, usage: "most records one ProduceStream has in flight on the server; a client with more outstanding waits (gRPC flow control)"},
	)
}

// keygenOptions are the settings of `proglog keygen`.
func keygenOptions() []option {
	return []option{
		{key: keyOut, def: "", usage: "write the key to this file (mode 0600; it must not exist yet) instead of printing it"},
	}
}

// clientOptions are declared by every command that talks to a cluster. Their
// logs are quiet by default: a failure ends the command with one line saying
// why.
func clientOptions() []option {
	return append(commonOptions("error"),
		option{key: keyAddr, def: strings.Split(defaultAddrs, ","), usage: "RPC addresses (host:port, comma-separated) of some cluster members; the client learns the rest"},
		option{key: keyTLSCAFile, def: "", usage: "CA that verifies the servers (default ca.pem in --config-dir)"},
		option{key: keyTLSCertFile, def: "", usage: "client certificate (default root-client.pem in --config-dir)"},
		option{key: keyTLSKeyFile, def: "", usage: "key of --tls-cert-file (default root-client-key.pem in --config-dir)"},
		option{key: keyTimeout, def: defaultClientTimeout, usage: "how long to keep trying a call (retries included) before giving up"},
		option{key: keyAttemptTimeout, def: loadbalance.DefaultAttemptTimeout, usage: "how long one try of a call may wait for a server before it is retried on the server the cluster then names (a paused leader)"},
	)
}

// topicOption is --topic, of the commands that write or read records.
func topicOption() option {
	return option{key: keyTopic, def: "", usage: `topic to write or read (default: the default topic, "default", the book's single log); create others with 'proglog topic create'`}
}

// produceOptions are the settings of `proglog produce`.
func produceOptions() []option {
	return append(clientOptions(), topicOption())
}

// consumeOptions are the settings of `proglog consume`.
func consumeOptions() []option {
	return append(clientOptions(), topicOption(),
		option{key: keyFrom, def: 0, usage: "offset of the first record to print"},
		option{key: keyFollow, short: "f", def: false, usage: "keep waiting for new records, like tail -f"},
		option{key: keyCount, short: "n", def: 0, usage: "stop after this many records (0: no limit)"},
		option{key: keyJSON, def: false, usage: `print one JSON object per record: {"offset": N, "value": "<base64>"}`},
		option{key: keyGroup, short: "g", def: "", usage: "consumer group: start at its committed offset (else --from) and commit as records are printed"},
		option{key: keyCommitEvery, def: 100, usage: "with --group, commit after this many records printed"},
		option{key: keyCommitInterval, def: time.Second, usage: "with --group, commit when a record is printed this long after the last commit"},
	)
}

// groupsListOptions are the settings of `proglog groups list` and
// `proglog groups describe`.
func groupsListOptions() []option {
	return append(clientOptions(),
		option{key: keyJSON, def: false, usage: "print one JSON object per group and topic"},
	)
}

// serversOptions are the settings of `proglog servers`.
func serversOptions() []option {
	return append(clientOptions(),
		option{key: keyExpect, def: 0, usage: "wait (up to --timeout) until the cluster lists at least this many servers and a leader"},
	)
}

// benchOptions are the settings of `proglog bench`.
func benchOptions() []option {
	return append(clientOptions(), topicOption(),
		option{key: keyMode, def: "produce", usage: "what to measure: produce, batch, stream, consume or consume-stream"},
		option{key: keyRecords, def: 10000, usage: "how many records to write or read"},
		option{key: keySize, def: 100, usage: "bytes per record value"},
		option{key: keyConcurrency, def: 8, usage: "concurrent callers (one stream each in stream mode)"},
		option{key: keyBatch, def: 100, usage: "records per ProduceBatch call (batch mode), records in flight per stream (stream mode), or most records per response (consume-stream mode)"},
		option{key: keyJSON, def: false, usage: "print the report as one JSON object"},
		option{key: keyNoCoalesce, def: false, usage: "produce mode: one Produce RPC per record, instead of the client coalescing concurrent calls into ProduceBatch RPCs"},
	)
}

// topicCreateOptions are the settings of `proglog topic create`.
func topicCreateOptions() []option {
	return append(clientOptions(),
		option{key: keyTopicSegmentBytes, def: 0, usage: "store-file size, in bytes, past which the topic's segment is sealed (0: the cluster's default)"},
		option{key: keyTopicMaxRecordBytes, def: 0, usage: "largest record value, in bytes, the topic takes (0: the cluster's limit, which is also the most it may be)"},
		option{key: keyRetentionBytes, def: 0, usage: "delete the oldest sealed segments while the topic holds more bytes than this (0: no limit)"},
		option{key: keyRetentionAge, def: time.Duration(0), usage: "delete sealed segments whose records are all older than this (0: no limit)"},
		option{key: keyTopicSegmentAge, def: time.Duration(0), usage: "seal the topic's segment once its records span this long, with or without a retention age; at least 1s (0: the node's --segment-max-age, for a topic with a retention age only)"},
	)
}

// topicAlterOptions are the settings of `proglog topic alter`.
func topicAlterOptions() []option {
	return append(clientOptions(),
		option{key: keyRetentionBytes, def: 0, usage: "the topic's new size limit in bytes (0: none)"},
		option{key: keyRetentionAge, def: time.Duration(0), usage: "the topic's new age limit (0: none)"},
		option{key: keyTopicSegmentAge, def: time.Duration(0), usage: "the topic's new segment age, at least 1s (0: the node's default)"},
	)
}

// topicListOptions are the settings of `proglog topic list`.
func topicListOptions() []option {
	return append(clientOptions(),
		option{key: keyJSON, def: false, usage: "print one JSON object per topic"},
	)
}

// topicDescribeOptions are the settings of `proglog topic describe`.
func topicDescribeOptions() []option {
	return append(clientOptions(),
		option{key: keyJSON, def: false, usage: "print the topic as one JSON object"},
	)
}

// topicDeleteOptions are the settings of `proglog topic delete`.
func topicDeleteOptions() []option {
	return clientOptions()
}
