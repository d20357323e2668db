package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
)

// runInProcess runs the command line args as main would and returns the
// exit status and what it printed.
func runInProcess(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr strings.Builder
	code := run(args, strings.NewReader(stdin), &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// requireOneLine checks that a failure printed exactly one line on stderr,
// starting with "proglog: " and holding want.
func requireOneLine(t *testing.T, r result, want string) {
	t.Helper()
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "stderr is not one line: %q", r.stderr)
	require.True(t, strings.HasPrefix(r.stderr, "proglog: "), "stderr = %q", r.stderr)
	require.Contains(t, r.stderr, want)
	require.NotContains(t, r.stderr, "goroutine ", "a stack trace")
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"agent", "--help"}, {"produce", "--help"}, {"consume", "--help"},
		{"servers", "--help"}, {"bench", "--help"}, {"keygen", "--help"}, {"topic", "--help"}, {"topic", "create", "--help"},
		{"topic", "list", "--help"}, {"topic", "describe", "--help"}, {"topic", "delete", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := runInProcess(t, "", args...)
			require.Equal(t, exitOK, r.code, "stderr: %s", r.stderr)
			require.Contains(t, r.stdout, "Usage:")
			require.Contains(t, r.stdout, "Examples:")
			require.Empty(t, r.stderr)
		})
	}
	r := runInProcess(t, "", "agent", "--help")
	for _, flag := range []string{"--config-file", "--data-dir", "--node-name", "--bind-addr", "--rpc-port", "--http-port",
		"--start-join-addrs", "--bootstrap", "--bootstrap-node", "--advertise-host", "--start-join-timeout", "--acl-model-file", "--acl-policy-file", "--server-tls-cert-file",
		"--server-tls-key-file", "--server-tls-ca-file", "--peer-tls-cert-file", "--peer-tls-key-file",
		"--peer-tls-ca-file", "--log-level", "--gossip-key-file", "--gossip-insecure"} {
		require.Contains(t, r.stdout, flag)
	}
}

// TestUsageErrors: a bad command line is one line on stderr and exit
// status 2, before anything touches the network.
func TestUsageErrors(t *testing.T) {
	clearProglogEnv(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown flag", args: []string{"produce", "--bogus", "x"}, want: "produce: unknown flag: --bogus (see 'proglog produce --help')"},
		{name: "unknown root flag", args: []string{"--bogus"}, want: "unknown flag: --bogus"},
		{name: "unknown command", args: []string{"prodce"}, want: `unknown command "prodce"`},
		{name: "bad flag value", args: []string{"consume", "--from", "x"}, want: "invalid argument"},
		{name: "produce without values", args: []string{"produce"}, want: "produce: needs VALUE arguments"},
		{name: "servers with an argument", args: []string{"servers", "extra"}, want: `takes no arguments, got "extra"`},
		{name: "negative offset", args: []string{"consume", "--from", "-1"}, want: "--from -1 must not be negative"},
		{name: "bench mode", args: []string{"bench", "--mode", "fast"}, want: `--mode "fast"`},
		{name: "bench records", args: []string{"bench", "--records", "0"}, want: "--records 0 must be positive"},
		{name: "address without port", args: []string{"servers", "--addr", "localhost"}, want: "--addr"},
		{name: "zero timeout", args: []string{"servers", "--timeout", "0s"}, want: "--timeout 0s must be positive"},
		{name: "zero attempt timeout", args: []string{"produce", "--attempt-timeout", "0s", "x"}, want: "--attempt-timeout 0s must be positive"},
		{name: "log level", args: []string{"servers", "--log-level", "loud"}, want: `invalid --log-level "loud"`},
		{name: "produce to a bad topic", args: []string{"produce", "--topic", "a/b", "x"}, want: "--topic: invalid topic name \"a/b\": topic names match [A-Za-z0-9._-]{1,249}"},
		{name: "consume a bad topic", args: []string{"consume", "--topic", ".."}, want: "--topic: invalid topic name"},
		{name: "bench a bad topic", args: []string{"bench", "--topic", "a b"}, want: "--topic: invalid topic name"},
		{name: "topic create without a name", args: []string{"topic", "create"}, want: "topic create: needs one topic NAME, got 0 arguments"},
		{name: "topic create with a bad name", args: []string{"topic", "create", "no/slash"}, want: "topic create: invalid topic name \"no/slash\""},
		{name: "topic describe with two names", args: []string{"topic", "describe", "a", "b"}, want: "topic describe: needs one topic NAME, got 2 arguments"},
		{name: "topic list with an argument", args: []string{"topic", "list", "x"}, want: `takes no arguments, got "x"`},
		{name: "topic create negative segment", args: []string{"topic", "create", "t", "--topic-segment-bytes", "-1"}, want: "--topic-segment-bytes -1 must not be negative"},
		{name: "topic create tiny segment age", args: []string{"topic", "create", "t", "--topic-segment-age", "500ms"}, want: "--topic-segment-age 500ms must be 0 (the node's default) or at least 1s"},
		{name: "topic alter negative segment age", args: []string{"topic", "alter", "t", "--topic-segment-age", "-1m"}, want: "--topic-segment-age -1m0s must be 0 (the node's default) or at least 1s"},
		{name: "agent without data dir", args: []string{"agent"}, want: "--data-dir is required"},
		{name: "agent bad port", args: []string{"agent", "--data-dir", "/d", "--rpc-port", "70000"}, want: "--rpc-port 70000"},
		{name: "agent advertise host with port", args: []string{"agent", "--data-dir", "/d", "--advertise-host", "n1:8401"}, want: `--advertise-host "n1:8401": want a host without a port`},
		{name: "agent gossip key and insecure", args: []string{"agent", "--data-dir", "/d", "--gossip-insecure", "--gossip-key-file", "/k"}, want: "--gossip-insecure and --gossip-key-file contradict each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runInProcess(t, "", tt.args...)
			require.Equal(t, exitUsage, r.code, "exit status; stderr: %s", r.stderr)
			requireOneLine(t, r, tt.want)
			require.Empty(t, r.stdout)
		})
	}
}

// TestMissingCertificates: a client or node without its certificates says
// how to make them.
func TestMissingCertificates(t *testing.T) {
	clearProglogEnv(t)
	empty := t.TempDir()
	for _, args := range [][]string{
		{"servers", "--config-dir", empty},
		{"produce", "--config-dir", empty, "x"},
		{"agent", "--config-dir", empty, "--data-dir", t.TempDir()},
	} {
		t.Run(args[0], func(t *testing.T) {
			r := runInProcess(t, "", args...)
			require.Equal(t, exitError, r.code, "stderr: %s", r.stderr)
			requireOneLine(t, r, "run 'make gencert'")
		})
	}
}

// TestUnreachableCluster: every client command fails with one line naming
// the addresses and the cause when nothing listens there, long before its
// --timeout (it gives up after about a second of refused connections).
func TestUnreachableCluster(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	addr := "127.0.0.1:" + strconv.Itoa(testnet.FreePorts(t, 1)[0])
	const timeout = 30 * time.Second
	common := []string{"--addr", addr, "--config-dir", files.Dir, "--timeout", timeout.String()}
	for _, args := range [][]string{
		{"produce", "x"},
		{"consume"},
		{"consume", "--follow"},
		{"servers"},
		{"bench", "--records", "10"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			start := time.Now()
			r := runInProcess(t, "", append(args, common...)...)
			// Not a speed test: without the early give-up it takes the
			// full --timeout.
			require.Less(t, time.Since(start), timeout/2, "a command against nothing took its whole --timeout")
			require.Equal(t, exitError, r.code, "stderr: %s", r.stderr)
			requireOneLine(t, r, "nothing listens at "+addr)
			require.Contains(t, r.stderr, "connection refused")
		})
	}
	// servers --expect waits for a cluster that is starting, so it keeps
	// asking until its --timeout.
	t.Run("servers --expect 3", func(t *testing.T) {
		r := runInProcess(t, "", "servers", "--expect", "3", "--addr", addr, "--config-dir", files.Dir, "--timeout", "1s")
		require.Equal(t, exitError, r.code, "stderr: %s", r.stderr)
		requireOneLine(t, r, "no answer from a cluster at "+addr)
		require.Contains(t, r.stderr, "connection refused")
	})
}

// TestRPCErrorNamesTheCause: a refused connection asks whether the cluster
// runs; a TLS failure names the certificate files instead.
func TestRPCErrorNamesTheCause(t *testing.T) {
	c := clientSettings{
		addrs:   []string{"127.0.0.1:8401"},
		tls:     tlsconfig.Config{CAFile: "/cfg/ca.pem", CertFile: "/cfg/root-client.pem", KeyFile: "/cfg/root-client-key.pem"},
		timeout: 10 * time.Second,
	}
	tests := []struct {
		name, msg, want string
	}{
		{
			name: "connection refused",
			msg:  `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:8401: connect: connection refused"`,
			want: "produce: no answer from a cluster at 127.0.0.1:8401 within 10s (is it running? 'make run' starts one): dial tcp 127.0.0.1:8401: connect: connection refused",
		},
		{
			name: "server certificate from another CA",
			msg:  `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`,
			want: "produce: TLS handshake with the cluster at 127.0.0.1:8401 failed (is /cfg/ca.pem the CA of the servers' certificates, and does the cluster trust the CA of /cfg/root-client.pem? --config-dir picks both): tls: failed to verify certificate: x509: certificate signed by unknown authority",
		},
		{
			name: "client certificate from another CA",
			msg:  `connection error: desc = "error reading server preface: remote error: tls: unknown certificate authority"`,
			want: "produce: TLS handshake with the cluster at 127.0.0.1:8401 failed (is /cfg/ca.pem the CA of the servers' certificates, and does the cluster trust the CA of /cfg/root-client.pem? --config-dir picks both): error reading server preface: remote error: tls: unknown certificate authority",
		},
		{
			name: "cluster without a leader",
			msg:  `loadbalance: produce: gave up after 12 attempts: rpc error: code = Unavailable desc = loadbalance: no leader known: the cluster reports no leader (context deadline exceeded)`,
			want: "produce: the cluster at 127.0.0.1:8401 is up but has no leader, still none after 10s (a majority of its voters is down or cut off from the rest; 'proglog servers' lists the voters, and each node's /readyz says what it sees): loadbalance: produce: gave up after 12 attempts: rpc error: code = Unavailable desc = loadbalance: no leader known: the cluster reports no leader (context deadline exceeded)",
		},
		{
			name: "follower that knows no leader",
			msg:  `not the leader; no leader is known`,
			want: "produce: the cluster at 127.0.0.1:8401 is up but has no leader, still none after 10s (a majority of its voters is down or cut off from the rest; 'proglog servers' lists the voters, and each node's /readyz says what it sees): not the leader; no leader is known",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.rpcError("produce", status.Error(codes.Unavailable, tt.msg))
			require.EqualError(t, err, tt.want)
		})
	}
}

// TestRPCErrorShowsWhatTheServerSaid: an error the client wrapped around a
// server's status prints the server's message once, not the wrapping's
// "rpc error: code = ... desc = ...".
func TestRPCErrorShowsWhatTheServerSaid(t *testing.T) {
	c := clientSettings{tls: tlsconfig.Config{CertFile: "/cfg/nobody-client.pem"}}
	notFound := status.Error(codes.NotFound, `topic "x" does not exist`)
	err := c.rpcError("consume", fmt.Errorf("loadbalance: consume stream at offset 2: %w", notFound))
	require.EqualError(t, err, `consume: NotFound: topic "x" does not exist`)
	denied := status.Error(codes.PermissionDenied, "nobody may not produce")
	err = c.rpcError("produce", fmt.Errorf("loadbalance: produce: %w", denied))
	require.EqualError(t, err, "produce: refused for the client certificate /cfg/nobody-client.pem: nobody may not produce")
}

func TestBriefCause(t *testing.T) {
	tests := []struct{ msg, want string }{
		{
			msg:  `loadbalance: produce: gave up after 7 attempts: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused" (context deadline exceeded)`,
			want: "dial tcp 127.0.0.1:1: connect: connection refused",
		},
		{
			msg:  `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`,
			want: "tls: failed to verify certificate: x509: certificate signed by unknown authority",
		},
		{
			// A cause that quotes something itself: the whole cause, unescaped.
			msg:  `rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA verification failure\" while trying to verify candidate authority certificate \"proglog-ca\")"`,
			want: `tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "proglog-ca")`,
		},
		{msg: "no leader", want: "no leader"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, briefCause(tt.msg), "briefCause(%q)", tt.msg)
	}
}

func TestWriteServers(t *testing.T) {
	var out strings.Builder
	require.NoError(t, writeServers(&out, []*api.Server{
		{Id: "node-2", RpcAddr: "127.0.0.1:8402"},
		{Id: "node-1", RpcAddr: "127.0.0.1:8401", IsLeader: true},
	}))
	require.Equal(t, "ID      ADDRESS         LEADER\n"+
		"node-1  127.0.0.1:8401  yes\n"+
		"node-2  127.0.0.1:8402  no\n", out.String())
}

// TestWriteTopics: topic describe shows the retention and the configuration
// in effect: the topic's own values as they are, the node's marked "(node
// default)", and "default" when the node does not say (a release without
// effective_config).
func TestWriteTopics(t *testing.T) {
	effective := &api.TopicConfig{MaxSegmentBytes: 8388608, MaxRecordBytes: 1048576, RetentionAgeMs: 3600000, SegmentAgeMs: 3600000}
	topics := []*api.TopicInfo{
		{Name: "clicks", Records: 2, HighestOffset: 1, NextOffset: 2, Bytes: 40, Segments: 1,
			Config: &api.TopicConfig{RetentionAgeMs: 3600000}, EffectiveConfig: effective},
		{Name: "metrics", Segments: 1, Config: &api.TopicConfig{MaxSegmentBytes: 4096, SegmentAgeMs: 600000, RetentionBytes: 4096, RetentionAgeMs: 86400000},
			EffectiveConfig: &api.TopicConfig{MaxSegmentBytes: 4096, MaxRecordBytes: 1048576, SegmentAgeMs: 600000, RetentionBytes: 4096, RetentionAgeMs: 86400000}},
		{Name: "plain", Segments: 1, Config: &api.TopicConfig{},
			EffectiveConfig: &api.TopicConfig{MaxSegmentBytes: 8388608, MaxRecordBytes: 1048576}},
		{Name: "old", Segments: 1, Config: &api.TopicConfig{}},
	}
	var out strings.Builder
	require.NoError(t, writeTopics(&out, topics, false))
	require.Equal(t, ""+
		"NAME     OFFSETS  RECORDS  BYTES  SEGMENTS  SEGMENT BYTES           MAX RECORD BYTES        SEGMENT AGE            RETENTION\n"+
		"clicks   0-1      2        40     1         8388608 (node default)  1048576 (node default)  1h0m0s (node default)  1h0m0s\n"+
		"metrics  -        0        0      1         4096                    1048576 (node default)  10m0s                  4096 bytes, 24h0m0s\n"+
		"plain    -        0        0      1         8388608 (node default)  1048576 (node default)  none                   none\n"+
		"old      -        0        0      1         default                 default                 default                none\n", out.String())

	out.Reset()
	require.NoError(t, writeTopics(&out, topics[:1], true))
	require.JSONEq(t, `{"name":"clicks","lowest_offset":0,"highest_offset":1,"next_offset":2,"records":2,"bytes":40,"segments":1,`+
		`"config":{"max_segment_bytes":0,"max_record_bytes":0,"segment_age_ms":0,"retention_age_ms":3600000},`+
		`"effective_config":{"max_segment_bytes":8388608,"max_record_bytes":1048576,"retention_age_ms":3600000,"segment_age_ms":3600000}}`,
		out.String())
	out.Reset()
	require.NoError(t, writeTopics(&out, topics[3:], true))
	require.NotContains(t, out.String(), "effective_config")
}

func TestWriteRecord(t *testing.T) {
	tests := []struct {
		name   string
		record *api.Record
		json   bool
		want   string
	}{
		{name: "raw", record: &api.Record{Value: []byte("hello"), Offset: 3}, want: "hello\n"},
		{name: "json", record: &api.Record{Value: []byte("hello"), Offset: 3}, json: true, want: `{"offset":3,"value":"aGVsbG8="}` + "\n"},
		{name: "json empty", record: &api.Record{Offset: 4}, json: true, want: `{"offset":4,"value":""}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			require.NoError(t, writeRecord(&out, tt.record, tt.json))
			require.Equal(t, tt.want, out.String())
		})
	}
}
