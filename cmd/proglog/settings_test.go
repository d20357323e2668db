package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/distlog"
	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/server"
	"github.com/proglog/proglog/server/tlsconfig"
)

// commandReader is what the tests need of a command: its options and the
// function that turns its settings into the struct it runs on.
type commandReader struct {
	opts []option
	read func(*settings) (any, error)
}

// commandReaders lists every command of the binary; a test fails when a
// command is missing, so a new command cannot skip the checks below.
func commandReaders() map[string]commandReader {
	return map[string]commandReader{
		"agent":           {agentOptions("host-name"), func(s *settings) (any, error) { return readAgentSettings(s) }},
		"produce":         {produceOptions(), func(s *settings) (any, error) { return readProduceSettings(s) }},
		"consume":         {consumeOptions(), func(s *settings) (any, error) { return readConsumeSettings(s) }},
		"servers":         {serversOptions(), func(s *settings) (any, error) { return readServersSettings(s) }},
		"bench":           {benchOptions(), func(s *settings) (any, error) { return readBenchSettings(s) }},
		"keygen":          {keygenOptions(), func(s *settings) (any, error) { return readKeygenSettings(s) }},
		"topic create":    {topicCreateOptions(), func(s *settings) (any, error) { return readTopicCreateSettings(s) }},
		"topic list":      {topicListOptions(), func(s *settings) (any, error) { return readTopicListSettings(s) }},
		"topic describe":  {topicDescribeOptions(), func(s *settings) (any, error) { return readTopicListSettings(s) }},
		"topic delete":    {topicDeleteOptions(), func(s *settings) (any, error) { return readTopicDeleteSettings(s) }},
		"topic alter":     {topicAlterOptions(), func(s *settings) (any, error) { return readTopicAlterSettings(s) }},
		"groups list":     {groupsListOptions(), func(s *settings) (any, error) { return readGroupsListSettings(s) }},
		"groups describe": {groupsListOptions(), func(s *settings) (any, error) { return readGroupsListSettings(s) }},
	}
}

// clearProglogEnv unsets every PROGLOG_* variable for the test, so the
// developer's environment cannot change what the tests read.
func clearProglogEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) {
			t.Setenv(name, "") // restores the value after the test
			require.NoError(t, os.Unsetenv(name))
		}
	}
}

// load parses args as the flags of opts and loads the settings.
func load(t *testing.T, opts []option, args ...string) (*settings, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	require.NoError(t, declareOptions(fs, opts))
	require.NoError(t, fs.Parse(args))
	return loadSettings(fs, opts, io.Discard)
}

// writeConfig writes a YAML config file and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "proglog.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	return path
}

func TestEveryCommandHasAReader(t *testing.T) {
	root, err := newRootCmd(strings.NewReader(""), io.Discard, io.Discard)
	require.NoError(t, err)
	readers := commandReaders()
	var check func(cmds []*cobra.Command)
	check = func(cmds []*cobra.Command) {
		for _, cmd := range cmds {
			if cmd.Hidden || cmd.Name() == "help" || cmd.Name() == "completion" {
				continue
			}
			if cmd.HasSubCommands() {
				// A group (topic): its subcommands run, it does not.
				require.Nil(t, cmd.RunE, "command group %q runs", cmd.Name())
				check(cmd.Commands())
				continue
			}
			name := strings.TrimPrefix(cmd.CommandPath(), root.Name()+" ")
			_, ok := readers[name]
			require.True(t, ok, "command %q has no entry in commandReaders", name)
		}
	}
	check(root.Commands())
}

// TestEveryDeclaredKeyIsRead: each command reads every setting it declares
// (the book's --acl-model-file was declared but read as "acl-mode-file").
func TestEveryDeclaredKeyIsRead(t *testing.T) {
	clearProglogEnv(t)
	for name, cr := range commandReaders() {
		t.Run(name, func(t *testing.T) {
			s, err := load(t, cr.opts)
			require.NoError(t, err)
			_, _ = cr.read(s) // validation may fail; every key is read first
			var declared, read []string
			for _, o := range cr.opts {
				declared = append(declared, o.key)
			}
			for k := range s.read {
				read = append(read, k)
			}
			sort.Strings(declared)
			sort.Strings(read)
			require.Equal(t, declared, read, "keys read by %s", name)
		})
	}
}

// otherValue returns a flag value different from o's default.
func otherValue(o option) string {
	switch def := o.def.(type) {
	case string:
		return "other-" + o.key
	case bool:
		return fmt.Sprint(!def)
	case int:
		return fmt.Sprint(def + 7)
	case time.Duration:
		return (def + 3*time.Second).String()
	case []string:
		return "other-" + o.key + ":1"
	}
	return ""
}

// TestEveryFlagChangesTheSettings: setting any one flag (but --config-file,
// which names where the others come from) changes what the command runs
// on, so no flag is declared and then ignored.
func TestEveryFlagChangesTheSettings(t *testing.T) {
	clearProglogEnv(t)
	for name, cr := range commandReaders() {
		s, err := load(t, cr.opts)
		require.NoError(t, err)
		base, _ := cr.read(s)
		for _, o := range cr.opts {
			if o.key == keyConfigFile {
				continue
			}
			t.Run(name+"/"+o.key, func(t *testing.T) {
				s, err := load(t, cr.opts, "--"+o.key+"="+otherValue(o))
				require.NoError(t, err)
				got, _ := cr.read(s)
				require.False(t, reflect.DeepEqual(base, got), "--%s=%s changed nothing: %+v", o.key, otherValue(o), got)
			})
		}
	}
}

// TestAgentFlagsMapToFields: each agent flag lands in its own field (a
// peer flag does not set a server field).
func TestAgentFlagsMapToFields(t *testing.T) {
	clearProglogEnv(t)
	s, err := load(t, agentOptions("host-name"),
		"--data-dir", "/d", "--node-name", "n1", "--bind-addr", "10.0.0.1:7946",
		"--advertise-host", "n1.example", "--bootstrap-node", "n0",
		"--rpc-port", "9401", "--http-port", "9080", "--start-join-addrs", "10.0.0.2:7946,10.0.0.3:7946", "--start-join-timeout", "2m",
		"--bootstrap", "--acl-model-file", "/acl/m", "--acl-policy-file", "/acl/p",
		"--server-tls-cert-file", "/s/cert", "--server-tls-key-file", "/s/key", "--server-tls-ca-file", "/s/ca",
		"--peer-tls-cert-file", "/p/cert", "--peer-tls-key-file", "/p/key", "--peer-tls-ca-file", "/p/ca",
		"--log-level", "debug", "--max-record-bytes", "4096", "--max-batch-records", "7", "--max-consume-bytes", "65536",
		"--trace-exporter", "otlp", "--otlp-endpoint", "collector:4317", "--otlp-insecure",
		"--gossip-key-file", "/g/key",
		"--raft-heartbeat-timeout", "2s", "--raft-election-timeout", "3s", "--raft-leader-lease-timeout", "1s", "--raft-trailing-bytes", "-1",
		"--pprof-addr", "127.0.0.1:6060", "--segment-max-age", "10m",
		"--group-commit-in-flight", "2", "--group-commit-linger", "250us", "--produce-stream-window", "64")
	require.NoError(t, err)
	got, err := readAgentSettings(s)
	require.NoError(t, err)
	want := agentSettings{
		dataDir: "/d", nodeName: "n1", bindAddr: "10.0.0.1:7946", advertiseHost: "n1.example", bootstrapNode: "n0", rpcPort: 9401, httpPort: 9080,
		startJoinAddrs: []string{"10.0.0.2:7946", "10.0.0.3:7946"}, startJoinTimeout: 2 * time.Minute, bootstrap: true,
		aclModelFile: "/acl/m", aclPolicyFile: "/acl/p",
		serverTLS:      tlsconfig.Config{CertFile: "/s/cert", KeyFile: "/s/key", CAFile: "/s/ca", Server: true},
		peerTLS:        tlsconfig.Config{CertFile: "/p/cert", KeyFile: "/p/key", CAFile: "/p/ca", Peer: true},
		logLevel:       "debug",
		maxRecordBytes: 4096, maxBatchRecords: 7, maxConsumeBytes: 65536,
		traceExporter: "otlp", otlpEndpoint: "collector:4317", otlpInsecure: true,
		gossipKeyFile: "/g/key", gossipKeyFileSet: true,
		raftHeartbeatTimeout: 2 * time.Second, raftElectionTimeout: 3 * time.Second, raftLeaderLeaseTimeout: time.Second, raftTrailingBytes: -1,
		pprofAddr: "127.0.0.1:6060", segmentMaxAge: 10 * time.Minute,
		groupCommitInFlight: 2, groupCommitLinger: 250 * time.Microsecond, produceStreamWindow: 64,
	}
	require.Equal(t, want, got)
}

// TestBootstrapNode: --bootstrap-node makes only the node it names
// bootstrap, so that one command line serves every pod of a StatefulSet.
func TestBootstrapNode(t *testing.T) {
	for _, tt := range []struct {
		nodeName, bootstrapNode string
		bootstrap, want         bool
	}{
		{nodeName: "proglog-0", bootstrapNode: "proglog-0", want: true},
		{nodeName: "proglog-1", bootstrapNode: "proglog-0", want: false},
		{nodeName: "proglog-1", bootstrapNode: "", want: false},
		{nodeName: "proglog-1", bootstrapNode: "proglog-0", bootstrap: true, want: true},
	} {
		as := agentSettings{nodeName: tt.nodeName, bootstrapNode: tt.bootstrapNode, bootstrap: tt.bootstrap}
		require.Equal(t, tt.want, as.bootstraps(), "%+v", tt)
	}
}

// TestAgentDefaults: without flags, TLS and ACL files are the ones `make
// gencert` writes into the config dir.
func TestAgentDefaults(t *testing.T) {
	clearProglogEnv(t)
	s, err := load(t, agentOptions("host-name"), "--data-dir", "/d", "--config-dir", "/cfg")
	require.NoError(t, err)
	got, err := readAgentSettings(s)
	require.NoError(t, err)
	files := tlsconfig.Files("/cfg")
	want := agentSettings{
		dataDir: "/d", nodeName: "host-name", bindAddr: "127.0.0.1:8301", rpcPort: 8401, httpPort: 8080,
		aclModelFile: files.ACLModelFile, aclPolicyFile: files.ACLPolicyFile,
		serverTLS:      tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile, Server: true},
		peerTLS:        tlsconfig.Config{CertFile: files.ServerCertFile, KeyFile: files.ServerKeyFile, CAFile: files.CAFile, Peer: true},
		logLevel:       "info",
		maxRecordBytes: 1 << 20, maxBatchRecords: 1000, maxConsumeBytes: 1 << 20, traceExporter: "none",
		gossipKeyFile:        files.GossipKeyFile,
		raftHeartbeatTimeout: distlog.DefaultHeartbeatTimeout, raftElectionTimeout: distlog.DefaultElectionTimeout,
		raftLeaderLeaseTimeout: distlog.DefaultLeaderLeaseTimeout, raftTrailingBytes: distlog.DefaultTrailingBytes,
		segmentMaxAge:       distlog.DefaultTopicSegmentMaxAge,
		groupCommitInFlight: distlog.DefaultGroupCommitInFlight, groupCommitLinger: distlog.DefaultGroupCommitLinger,
		produceStreamWindow: server.DefaultProduceStreamWindow,
	}
	require.Equal(t, want, got)
}

// TestAgentRefusesBadRaftTimeouts: a lease longer than the heartbeat
// timeout, a timeout raft cannot use, or a trailing byte budget neither
// positive nor -1, is a usage error naming the flag.
func TestAgentRefusesBadRaftTimeouts(t *testing.T) {
	for _, args := range [][]string{
		{"--raft-leader-lease-timeout", "2s"},
		{"--raft-heartbeat-timeout", "1ms"},
		{"--raft-election-timeout", "0s"},
		{"--raft-trailing-bytes", "0"},
		{"--raft-trailing-bytes", "-2"},
		{"--group-commit-in-flight", "0"},
		{"--group-commit-linger", "-1ms"},
		{"--produce-stream-window", "0"},
	} {
		clearProglogEnv(t)
		s, err := load(t, agentOptions("host-name"), append([]string{"--data-dir", "/d"}, args...)...)
		require.NoError(t, err)
		_, err = readAgentSettings(s)
		require.Error(t, err, "%v", args)
		require.Contains(t, err.Error(), args[0], "%v", args)
	}
}

// TestClientDefaults: the client commands talk to `make run`'s cluster with
// the root client certificate.
func TestClientDefaults(t *testing.T) {
	clearProglogEnv(t)
	s, err := load(t, produceOptions(), "--config-dir", "/cfg")
	require.NoError(t, err)
	got, err := readProduceSettings(s)
	require.NoError(t, err)
	files := tlsconfig.Files("/cfg")
	want := clientSettings{
		addrs:          []string{"127.0.0.1:8401", "127.0.0.1:8402", "127.0.0.1:8403"},
		tls:            tlsconfig.Config{CAFile: files.CAFile, CertFile: files.RootClientCertFile, KeyFile: files.RootClientKeyFile},
		timeout:        defaultClientTimeout,
		attemptTimeout: loadbalance.DefaultAttemptTimeout,
		logLevel:       "error",
	}
	require.Equal(t, want, got.client)
}

// TestPrecedence: flag > PROGLOG_* variable > config file > default, for a
// scalar and a list.
func TestPrecedence(t *testing.T) {
	tests := []struct {
		name              string
		file, env, flag   bool
		wantPort          int
		wantJoin          []string
		wantConfigDirFrom string
	}{
		{name: "default", wantPort: 8401, wantJoin: nil},
		{name: "file", file: true, wantPort: 1001, wantJoin: []string{"file:1", "file:2"}},
		{name: "env over file", file: true, env: true, wantPort: 2002, wantJoin: []string{"env:1", "env:2"}},
		{name: "env", env: true, wantPort: 2002, wantJoin: []string{"env:1", "env:2"}},
		{name: "flag over env and file", file: true, env: true, flag: true, wantPort: 3003, wantJoin: []string{"flag:1"}},
		{name: "flag over file", file: true, flag: true, wantPort: 3003, wantJoin: []string{"flag:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearProglogEnv(t)
			args := []string{"--data-dir", "/d"}
			if tt.file {
				args = append(args, "--config-file", writeConfig(t, "rpc-port: 1001\nstart-join-addrs:\n  - file:1\n  - file:2\n"))
			}
			if tt.env {
				t.Setenv("PROGLOG_RPC_PORT", "2002")
				t.Setenv("PROGLOG_START_JOIN_ADDRS", "env:1,env:2")
			}
			if tt.flag {
				args = append(args, "--rpc-port", "3003", "--start-join-addrs", "flag:1")
			}
			s, err := load(t, agentOptions("h"), args...)
			require.NoError(t, err)
			got, err := readAgentSettings(s)
			require.NoError(t, err)
			require.Equal(t, tt.wantPort, got.rpcPort, "rpc port")
			require.Equal(t, tt.wantJoin, got.startJoinAddrs, "start join addrs")
		})
	}
}

// TestConfigFileFromEnv: PROGLOG_CONFIG_FILE names the config file, and
// PROGLOG_CONFIG_DIR (tlsconfig's variable) is the config-dir setting.
func TestConfigFileFromEnv(t *testing.T) {
	clearProglogEnv(t)
	t.Setenv("PROGLOG_CONFIG_FILE", writeConfig(t, "data-dir: /from-file\n"))
	t.Setenv(tlsconfig.ConfigDirEnv, "/env-cfg")
	s, err := load(t, agentOptions("h"))
	require.NoError(t, err)
	got, err := readAgentSettings(s)
	require.NoError(t, err)
	require.Equal(t, "/from-file", got.dataDir)
	require.Equal(t, tlsconfig.Files("/env-cfg").CAFile, got.serverTLS.CAFile)
}

// TestConfigFileRefusesUnknownKeys: a misspelt key is an error that names
// it, not a setting silently left at its default.
func TestConfigFileRefusesUnknownKeys(t *testing.T) {
	clearProglogEnv(t)
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "the book's misspelling", yaml: "acl-mode-file: /etc/model.conf\n", wantErr: `"acl-mode-file"`},
		{name: "underscores", yaml: "data_dir: /d\n", wantErr: `"data_dir"`},
		{name: "nested", yaml: "agent:\n  data-dir: /d\n", wantErr: `"agent.data-dir"`},
		{name: "not YAML", yaml: "data-dir: [\n", wantErr: "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, agentOptions("h"), "--config-file", writeConfig(t, tt.yaml))
			require.Error(t, err)
			require.ErrorIs(t, err, errUsage)
			require.Contains(t, err.Error(), tt.wantErr)
		})
	}

	t.Run("another command's key", func(t *testing.T) {
		// One file may serve the agent and the client commands.
		path := writeConfig(t, "data-dir: /d\naddr: 10.0.0.1:8401\n")
		s, err := load(t, produceOptions(), "--config-file", path)
		require.NoError(t, err)
		got, err := readProduceSettings(s)
		require.NoError(t, err)
		require.Equal(t, []string{"10.0.0.1:8401"}, got.client.addrs)
	})

	t.Run("missing file", func(t *testing.T) {
		_, err := load(t, agentOptions("h"), "--config-file", filepath.Join(t.TempDir(), "nope.yaml"))
		require.Error(t, err)
		require.Contains(t, err.Error(), "nope.yaml")
	})
}

// TestInvalidValues: a value of the wrong type from the environment or the
// config file is an error naming the setting, not a zero.
func TestInvalidValues(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		yaml    string
		wantErr string
	}{
		{name: "env int", env: map[string]string{"PROGLOG_RPC_PORT": "abc"}, wantErr: "--rpc-port"},
		{name: "env bool", env: map[string]string{"PROGLOG_BOOTSTRAP": "maybe"}, wantErr: "--bootstrap"},
		{name: "file int", yaml: "http-port: eighty\n", wantErr: "--http-port"},
		{name: "port out of range", env: map[string]string{"PROGLOG_RPC_PORT": "70000"}, wantErr: "--rpc-port 70000"},
		{name: "log level", env: map[string]string{"PROGLOG_LOG_LEVEL": "loud"}, wantErr: "--log-level"},
		{name: "join addr", env: map[string]string{"PROGLOG_START_JOIN_ADDRS": "nohost"}, wantErr: "--start-join-addrs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearProglogEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := []string{"--data-dir", "/d"}
			if tt.yaml != "" {
				args = append(args, "--config-file", writeConfig(t, tt.yaml))
			}
			s, err := load(t, agentOptions("h"), args...)
			require.NoError(t, err)
			_, err = readAgentSettings(s)
			require.Error(t, err)
			require.ErrorIs(t, err, errUsage)
			require.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

// TestUndeclaredKey: reading a key the command did not declare is an
// error, never a silent zero.
func TestUndeclaredKey(t *testing.T) {
	clearProglogEnv(t)
	s, err := load(t, produceOptions())
	require.NoError(t, err)
	require.Equal(t, "", s.String(keyDataDir))
	require.Error(t, s.Err())
	require.Contains(t, s.Err().Error(), `"data-dir"`)
}

func TestListSetting(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string
		yaml string
		want []string
	}{
		{name: "flag, commas", args: []string{"--addr", "a:1,b:2"}, want: []string{"a:1", "b:2"}},
		{name: "flag, repeated", args: []string{"--addr", "a:1", "--addr", "b:2"}, want: []string{"a:1", "b:2"}},
		{name: "env, commas and blanks", env: " a:1 , b:2,,", want: []string{"a:1", "b:2"}},
		{name: "yaml list", yaml: "addr: [a:1, b:2]\n", want: []string{"a:1", "b:2"}},
		{name: "yaml string", yaml: "addr: a:1,b:2\n", want: []string{"a:1", "b:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearProglogEnv(t)
			if tt.env != "" {
				t.Setenv("PROGLOG_ADDR", tt.env)
			}
			args := tt.args
			if tt.yaml != "" {
				args = append(args, "--config-file", writeConfig(t, tt.yaml))
			}
			s, err := load(t, produceOptions(), args...)
			require.NoError(t, err)
			require.Equal(t, tt.want, s.List(keyAddr))
			require.NoError(t, s.Err())
		})
	}
}

func TestEnvName(t *testing.T) {
	tests := []struct{ key, want string }{
		{keyDataDir, "PROGLOG_DATA_DIR"},
		{keyServerTLSCertFile, "PROGLOG_SERVER_TLS_CERT_FILE"},
		{keyConfigDir, tlsconfig.ConfigDirEnv},
		{keyAddr, "PROGLOG_ADDR"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, envName(tt.key), "envName(%q)", tt.key)
	}
}

func TestWarnUnknownEnv(t *testing.T) {
	var out strings.Builder
	warnUnknownEnv([]string{"PROGLOG_DATA_DIR=/d", "PROGLOG_ACL_MODE_FILE=x", "HOME=/root", "PROGLOG_CONFIG_DIR=/c"},
		knownKeys(), &out)
	require.Equal(t, "proglog: warning: PROGLOG_ACL_MODE_FILE is not a proglog setting; ignored\n", out.String())
}

// TestOptionTables: keys are unique per command and every default has a
// type declareOptions knows.
func TestOptionTables(t *testing.T) {
	for name, cr := range commandReaders() {
		seen := map[string]bool{}
		for _, o := range cr.opts {
			require.False(t, seen[o.key], "%s declares %q twice", name, o.key)
			seen[o.key] = true
			require.NotEmpty(t, o.usage, "%s --%s has no help text", name, o.key)
			// pflag would take a back-quoted word for the value's name.
			require.NotContains(t, o.usage, "`", "%s --%s", name, o.key)
		}
		fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
		require.NoError(t, declareOptions(fs, cr.opts))
	}
	err := declareOptions(pflag.NewFlagSet("x", pflag.ContinueOnError), []option{{key: "f", def: 1.5}})
	require.Error(t, err)
}

func TestUsageError(t *testing.T) {
	base := errors.New("bad flag")
	err := usageError(base)
	require.ErrorIs(t, err, errUsage)
	require.ErrorIs(t, err, base)
	require.Equal(t, "bad flag", err.Error())
}
