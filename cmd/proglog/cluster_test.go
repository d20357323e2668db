package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/server"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
)

// Deadlines of the end-to-end tests.
const (
	clusterFormTimeout = 60 * time.Second
	commandTimeout     = 60 * time.Second
	exitTimeout        = 30 * time.Second
)

// syncBuffer is a bytes.Buffer safe to write from a process's output copier
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a proglog process running in the background.
type process struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	// exited is closed when the process has exited and waitErr is set.
	exited  chan struct{}
	waitErr error
}

// startProcess starts bin with args; its output goes to the buffers, or to
// logFile when given. A t.Cleanup kills it if it still runs.
func startProcess(t *testing.T, bin, logFile string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	if logFile != "" {
		f, err := os.Create(logFile)
		require.NoError(t, err)
		t.Cleanup(func() { _ = f.Close() })
		p.cmd.Stdout, p.cmd.Stderr = f, f
	} else {
		p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	}
	require.NoError(t, p.cmd.Start())
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // fails harmlessly when it already exited
		<-p.exited
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("%v did not exit within %v; stdout: %s; stderr: %s", p.cmd.Args, timeout, p.stdout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// testCluster is a cluster of `proglog agent` processes on free ports of
// 127.0.0.1, with the certificates of `make gencert`.
type testCluster struct {
	bin       string
	configDir string
	dir       string
	rpcAddrs  []string
	logs      []string
	nodes     []*process
	// restarts counts restartNode calls, to name each run's log file.
	restarts int
}

// startCluster starts n agents with the certificates of files: node-1
// bootstraps, the others join it. It returns once every node is in the Raft
// configuration and one leads.
func startCluster(t *testing.T, n int, files tlsconfig.FileSet) *testCluster {
	t.Helper()
	return startClusterWith(t, n, files)
}

// startClusterWith is startCluster with extra flags for every agent.
func startClusterWith(t *testing.T, n int, files tlsconfig.FileSet, agentFlags ...string) *testCluster {
	t.Helper()
	c := &testCluster{bin: proglogBinary(t), configDir: files.Dir, dir: t.TempDir()}
	ports := testnet.FreePorts(t, 3*n)
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
	})
	serfAddr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[3*i+2]) }
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("node-%d", i+1)
		args := []string{"agent",
			"--node-name", name,
			"--data-dir", filepath.Join(c.dir, name),
			"--config-dir", c.configDir,
			"--bind-addr", serfAddr(i),
			"--rpc-port", strconv.Itoa(ports[3*i]),
			"--http-port", strconv.Itoa(ports[3*i+1]),
		}
		args = append(args, agentFlags...)
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--start-join-addrs", serfAddr(0))
		}
		c.rpcAddrs = append(c.rpcAddrs, "127.0.0.1:"+strconv.Itoa(ports[3*i]))
		c.logs = append(c.logs, filepath.Join(c.dir, name+".log"))
		c.nodes = append(c.nodes, startProcess(t, c.bin, c.logs[i], args...))
		if i == 0 {
			// The others join node-1 by Serf: it must be up first.
			r := runBinary(t, c.bin, "", clusterFormTimeout, "servers", "--addr", c.rpcAddrs[0],
				"--config-dir", c.configDir, "--expect", "1", "--timeout", clusterFormTimeout.String())
			require.Equal(t, 0, r.code, "node-1 did not come up: %s", r.stderr)
		}
	}
	r := c.run(t, "", "servers", "--expect", strconv.Itoa(n), "--timeout", clusterFormTimeout.String())
	require.Equal(t, 0, r.code, "the cluster did not form: %s", r.stderr)
	return c
}

// clientArgs are the flags that point a client command at the cluster.
func (c *testCluster) clientArgs() []string {
	return []string{"--addr", strings.Join(c.rpcAddrs, ","), "--config-dir", c.configDir}
}

// run runs a client command against the cluster and returns its result.
func (c *testCluster) run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runBinary(t, c.bin, stdin, commandTimeout, append(args, c.clientArgs()...)...)
}

// mustRun is run that requires exit status 0.
func (c *testCluster) mustRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := c.run(t, stdin, args...)
	require.Equal(t, 0, r.code, "proglog %s: exit status %d; stderr: %s", strings.Join(args, " "), r.code, r.stderr)
	return r
}

// dumpLogs logs the end of each node's log, and of the logs of its
// restarts (restartNode), to see why a test failed.
func (c *testCluster) dumpLogs(t *testing.T) {
	var paths []string
	for _, path := range c.logs {
		restarts, _ := filepath.Glob(path + ".restart-*")
		paths = append(append(paths, path), restarts...)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		t.Logf("--- the end of %s:\n%s", path, strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}

// TestCommandsAgainstACluster drives the client commands as a user would,
// against three `proglog agent` processes.
func TestCommandsAgainstACluster(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	c := startCluster(t, 3, files)

	// produce: arguments, then standard input, one record per line.
	r := c.mustRun(t, "", "produce", "hello", "world")
	require.Equal(t, "0\n1\n", r.stdout)
	r = c.mustRun(t, "a\nb\r\n\nc", "produce", "-")
	require.Equal(t, "2\n3\n4\n5\n", r.stdout)

	// consume without --follow: to the end of the log, then exit.
	r = c.mustRun(t, "", "consume")
	require.Equal(t, "hello\nworld\na\nb\n\nc\n", r.stdout)
	r = c.mustRun(t, "", "consume", "--from", "1", "--count", "2")
	require.Equal(t, "world\na\n", r.stdout)
	r = c.mustRun(t, "", "consume", "--from", "3", "--json")
	require.Equal(t, `{"offset":3,"value":"Yg=="}`+"\n"+`{"offset":4,"value":""}`+"\n"+`{"offset":5,"value":"Yw=="}`+"\n", r.stdout)
	r = c.mustRun(t, "", "consume", "--from", "6")
	require.Empty(t, r.stdout, "past the end")

	// The end of the log comes from the leader: consume does not wait out a
	// follower's read wait (2 s) for a record that will not come. Reads go
	// round-robin over the followers, so each run likely meets one.
	for i := 0; i < 3; i++ {
		start := time.Now()
		c.mustRun(t, "", "consume", "--from", "4")
		require.Less(t, time.Since(start), 1500*time.Millisecond, "consume took %v to find the end of the log", time.Since(start))
	}

	// consume --follow waits for records produced after it started and ends
	// after --count of them.
	follow := startProcess(t, c.bin, "", append([]string{"consume", "--from", "6", "--follow", "--count", "2"}, c.clientArgs()...)...)
	c.mustRun(t, "", "produce", "x", "y")
	require.Equal(t, 0, follow.wait(t, exitTimeout), "consume --follow: stderr: %s", follow.stderr)
	require.Equal(t, "x\ny\n", follow.stdout.String())

	// consume --follow without --count runs until interrupted (Ctrl-C), then
	// exits with status 0.
	tail := startProcess(t, c.bin, "", append([]string{"consume", "--follow"}, c.clientArgs()...)...)
	require.Eventually(t, func() bool { return strings.Count(tail.stdout.String(), "\n") == 8 },
		exitTimeout, 10*time.Millisecond, "consume --follow printed %q", tail.stdout)
	require.NoError(t, tail.cmd.Process.Signal(os.Interrupt))
	require.Equal(t, 0, tail.wait(t, exitTimeout), "consume --follow after SIGINT: stderr: %s", tail.stderr)
	require.Equal(t, "hello\nworld\na\nb\n\nc\nx\ny\n", tail.stdout.String())

	// servers: a table of every node, one leader.
	r = c.mustRun(t, "", "servers")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 4, "servers printed %q", r.stdout)
	require.Equal(t, []string{"ID", "ADDRESS", "LEADER"}, strings.Fields(lines[0]))
	leaders := 0
	for i, line := range lines[1:] {
		fields := strings.Fields(line)
		require.Len(t, fields, 3, "line %q", line)
		require.Equal(t, fmt.Sprintf("node-%d", i+1), fields[0])
		require.Equal(t, c.rpcAddrs[i], fields[1])
		if fields[2] == "yes" {
			leaders++
		}
	}
	require.Equal(t, 1, leaders, "servers printed %q", r.stdout)

	// bench, every mode: the JSON report of the issue.
	for _, mode := range []string{benchProduce, benchBatch, benchStream, benchConsume, benchConsumeStream} {
		t.Run("bench "+mode, func(t *testing.T) {
			r := c.mustRun(t, "", "bench", "--mode", mode, "--records", "200", "--size", "64",
				"--concurrency", "4", "--batch", "20", "--json")
			require.Empty(t, r.stderr, "no progress bar when stderr is not a terminal")
			var got benchResult
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			require.NoError(t, dec.Decode(&got), "bench printed %q", r.stdout)
			require.False(t, dec.More(), "one JSON object")
			require.Equal(t, mode, got.Mode)
			require.EqualValues(t, 200, got.Records)
			require.EqualValues(t, 0, got.Errors)
			require.Positive(t, got.Seconds)
			require.InDelta(t, 200/got.Seconds, got.RecordsPerSec, 1e-6*got.RecordsPerSec)
			require.InDelta(t, 200*64/1e6/got.Seconds, got.MBPerSec, 1e-6*got.MBPerSec)
			l := got.LatencyMS
			require.Positive(t, l.P50)
			require.True(t, l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max, "latencies %+v", l)
		})
	}

	// What the README's grpcurl examples rely on: server reflection for a
	// client with a certificate, the health service for any TLS client.
	t.Run("grpcurl", func(t *testing.T) {
		requireReflectionAndHealth(t, c.rpcAddrs[0], c.configDir)
	})

	// The bench records are in the log: 8 + 200 (produce) + 200 (batch) +
	// 200 (stream) + 200 (consume's setup) + 200 (consume-stream's).
	r = c.mustRun(t, "", "consume", "--from", "1007", "--json")
	require.Equal(t, `"offset":1007`, strings.Split(strings.TrimPrefix(r.stdout, "{"), ",")[0])
	require.Equal(t, 1, strings.Count(r.stdout, "\n"), "the log ends at 1007")

	t.Run("topics", func(t *testing.T) { testTopicCommands(t, c) })
	t.Run("groups", func(t *testing.T) { testGroupCommands(t, c) })
}

// groupCommitted is group's committed offset in topic as `groups describe
// --json` reports it (-1 when the group has none there).
func groupCommitted(t *testing.T, c *testCluster, group, topic string) int64 {
	r := c.run(t, "", "groups", "describe", group, "--json")
	if r.code != 0 {
		return -1
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var g groupJSON
		if json.Unmarshal([]byte(line), &g) == nil && g.Topic == topic {
			return int64(g.Committed)
		}
	}
	return -1
}

// testGroupCommands drives `consume --group` and `proglog groups`: a consumer
// resumes where its group committed, SIGKILLed it repeats at most what it
// printed since its last commit and skips nothing, and Ctrl-C commits.
func testGroupCommands(t *testing.T, c *testCluster) {
	c.mustRun(t, "", "topic", "create", "events")
	var values []string
	for i := range 40 {
		values = append(values, fmt.Sprintf("e%02d", i))
	}
	c.mustRun(t, strings.Join(values[:30], "\n"), "produce", "--topic", "events", "-")

	// A new group starts at --from; on exit it commits what it printed.
	r := c.mustRun(t, "", "consume", "--topic", "events", "--group", "g", "--count", "10")
	require.Equal(t, strings.Join(values[:10], "\n")+"\n", r.stdout)
	untilTrue(t, exitTimeout, func() bool { return groupCommitted(t, c, "g", "events") == 10 }, "commit on exit")
	// groups list answers from a follower, which may not have applied the
	// last records or the commit yet: wait until one has.
	var lines []string
	untilTrue(t, exitTimeout, func() bool {
		r := c.run(t, "", "groups", "list")
		lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
		return r.code == 0 && len(lines) == 2 && slices.Equal(strings.Fields(lines[1]), []string{"g", "events", "10", "30", "20"})
	}, "groups list")
	require.Equal(t, []string{"GROUP", "TOPIC", "COMMITTED", "END", "LAG"}, strings.Fields(lines[0]))

	// A follower committing every 7 records, SIGKILLed: it printed
	// e10..e29 (20 records, committed at 17, 24 and then never again), so
	// the next consumer starts at 24 and repeats e24..e29 — the
	// uncommitted tail — and skips nothing.
	follow := startProcess(t, c.bin, "", append([]string{"consume", "--topic", "events", "--group", "g", "--follow",
		"--commit-every", "7", "--commit-interval", "1h"}, c.clientArgs()...)...)
	require.Eventually(t, func() bool { return strings.Count(follow.stdout.String(), "\n") == 20 },
		exitTimeout, 10*time.Millisecond, "consume --group --follow printed %q", follow.stdout)
	untilTrue(t, exitTimeout, func() bool { return groupCommitted(t, c, "g", "events") == 24 }, "periodic commit")
	require.NoError(t, follow.cmd.Process.Kill())
	follow.wait(t, exitTimeout)
	require.Equal(t, strings.Join(values[10:30], "\n")+"\n", follow.stdout.String())
	c.mustRun(t, strings.Join(values[30:], "\n"), "produce", "--topic", "events", "-")
	r = c.mustRun(t, "", "consume", "--topic", "events", "--group", "g", "--count", "8")
	require.Equal(t, strings.Join(values[24:32], "\n")+"\n", r.stdout, "resumed at the last commit")

	// Ctrl-C commits what was printed.
	tail := startProcess(t, c.bin, "", append([]string{"consume", "--topic", "events", "--group", "g", "--follow",
		"--commit-every", "1000", "--commit-interval", "1h"}, c.clientArgs()...)...)
	require.Eventually(t, func() bool { return strings.Count(tail.stdout.String(), "\n") == 8 },
		exitTimeout, 10*time.Millisecond, "consume --group --follow printed %q", tail.stdout)
	require.NoError(t, tail.cmd.Process.Signal(os.Interrupt))
	require.Equal(t, 0, tail.wait(t, exitTimeout), "stderr: %s", tail.stderr)
	require.Equal(t, strings.Join(values[32:], "\n")+"\n", tail.stdout.String())
	untilTrue(t, exitTimeout, func() bool { return groupCommitted(t, c, "g", "events") == 40 }, "commit on Ctrl-C")

	// Retention: a topic created with a size limit keeps about that much;
	// consume from below its lowest offset says so.
	c.mustRun(t, "", "topic", "create", "logs", "--topic-segment-bytes", "1024", "--retention-bytes", "4096")
	c.mustRun(t, strings.Repeat(strings.Repeat("l", 100)+"\n", 100), "produce", "--topic", "logs", "-")
	var described server.TopicJSON
	untilTrue(t, exitTimeout, func() bool {
		r := c.run(t, "", "topic", "describe", "logs", "--json")
		described = server.TopicJSON{}
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &described) == nil && described.LowestOffset > 0
	}, "retention on topic logs")
	require.EqualValues(t, 4096, described.Config.RetentionBytes)
	// consume reads from a follower, which may not have applied the
	// truncation the answer above came from yet: wait until it has.
	untilTrue(t, exitTimeout, func() bool {
		r = c.run(t, "", "consume", "--topic", "logs")
		return r.code == exitError
	}, "consume below the lowest offset fails")
	require.Contains(t, r.stderr, "below the lowest offset")
	r = c.mustRun(t, "", "topic", "alter", "logs", "--retention-age", "1h", "--topic-segment-age", "2h")
	require.Contains(t, r.stdout, "logs")
	require.Contains(t, r.stdout, "2h0m0s", "alter prints the topic's new segment age")
	// A segment age of its own, and what describe shows of it.
	c.mustRun(t, "", "topic", "create", "metrics", "--topic-segment-age", "10m")
	untilTrue(t, exitTimeout, func() bool {
		r := c.run(t, "", "topic", "describe", "metrics", "--json")
		described = server.TopicJSON{}
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &described) == nil
	}, "describe topic metrics")
	require.EqualValues(t, 600000, described.Config.SegmentAgeMs)
	require.NotNil(t, described.EffectiveConfig)
	require.EqualValues(t, 600000, described.EffectiveConfig.SegmentAgeMs)
	require.Zero(t, described.Config.MaxSegmentBytes, "the topic's own: the node's")
	require.Positive(t, described.EffectiveConfig.MaxSegmentBytes, "in effect: the node's value")

	r = c.run(t, "", "groups", "describe", "nobody-here")
	require.Equal(t, exitError, r.code)
	requireOneLine(t, r, `groups describe: NotFound: group "nobody-here": group has no committed offset`)
}

// untilTrue calls cond, on the test's goroutine (cond may fail the test),
// every 50 ms until it returns true, and fails the test after timeout.
func untilTrue(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: condition not met within %v", what, timeout)
		}
		<-ticker.C
	}
}

// testTopicCommands drives `proglog topic` and --topic on a cluster whose
// default topic holds 1008 records.
func testTopicCommands(t *testing.T, c *testCluster) {
	r := c.mustRun(t, "", "topic", "create", "orders")
	require.Contains(t, r.stdout, "orders", "topic create prints the topic")
	require.Contains(t, r.stdout, "(node default)", "topic create prints the node's values in effect")
	c.mustRun(t, "", "topic", "create", "orders") // again, same config: no change

	// A topic's offsets are its own, from 0.
	r = c.mustRun(t, "", "produce", "--topic", "orders", "first", "second")
	require.Equal(t, "0\n1\n", r.stdout)
	r = c.mustRun(t, "a\nb\n", "produce", "--topic", "orders", "-")
	require.Equal(t, "2\n3\n", r.stdout)
	r = c.mustRun(t, "", "consume", "--topic", "orders")
	require.Equal(t, "first\nsecond\na\nb\n", r.stdout)
	follow := startProcess(t, c.bin, "", append([]string{"consume", "--topic", "orders", "--from", "4", "--follow", "--count", "1"}, c.clientArgs()...)...)
	c.mustRun(t, "", "produce", "not-in-orders") // the default topic: the follower must not see it
	c.mustRun(t, "", "produce", "--topic", "orders", "third")
	require.Equal(t, 0, follow.wait(t, exitTimeout), "consume --topic --follow: stderr: %s", follow.stderr)
	require.Equal(t, "third\n", follow.stdout.String())

	r = c.mustRun(t, "", "bench", "--topic", "orders", "--mode", benchBatch, "--records", "100", "--batch", "10", "--json")
	require.Contains(t, r.stdout, `"records":100`)

	// describe and list answer from a follower's applied state, which may
	// be a moment behind the leader's: ask until the last batch shows.
	var described server.TopicJSON
	untilTrue(t, exitTimeout, func() bool {
		r := c.run(t, "", "topic", "describe", "orders", "--json")
		described = server.TopicJSON{}
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &described) == nil && described.Records == 105
	}, "topic describe orders")
	require.Equal(t, "orders", described.Name)
	require.EqualValues(t, 104, described.HighestOffset, "orders: 5 produced + 100 benched")

	var lines []string
	untilTrue(t, exitTimeout, func() bool {
		r := c.run(t, "", "topic", "list")
		lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
		return r.code == 0 && len(lines) == 3 && strings.Contains(lines[2], " 105 ")
	}, "topic list")
	require.Equal(t, "NAME", strings.Fields(lines[0])[0])
	require.Equal(t, []string{"default", "0-1008", "1009"}, strings.Fields(lines[1])[:3], "default topic line")
	require.Equal(t, []string{"orders", "0-104", "105"}, strings.Fields(lines[2])[:3], "orders line")

	// A topic that does not exist: one line that says how to create it.
	r = c.run(t, "", "consume", "--topic", "missing")
	require.Equal(t, exitError, r.code, "stderr: %s", r.stderr)
	requireOneLine(t, r, `consume: NotFound: topic "missing" does not exist; create it first (CreateTopic, PUT /topics/missing, or proglog topic create missing)`)
	r = c.run(t, "", "topic", "create", "orders", "--topic-segment-bytes", "4096")
	require.Equal(t, exitError, r.code)
	requireOneLine(t, r, `topic create: AlreadyExists: topic "orders" already exists with another configuration`)

	r = c.mustRun(t, "", "topic", "delete", "orders")
	require.Equal(t, "deleted topic orders\n", r.stdout)
	untilTrue(t, exitTimeout, func() bool { // until the follower asked has applied the deletion
		r := c.run(t, "", "topic", "describe", "orders")
		return r.code == exitError && strings.Contains(r.stderr, `topic "orders" does not exist`)
	}, "topic describe after delete")
	r = c.run(t, "", "topic", "delete", "default")
	require.Equal(t, exitError, r.code)
	requireOneLine(t, r, "topic delete: FailedPrecondition: the default topic cannot be deleted")
}

// requireReflectionAndHealth checks that the node at addr lists the Log
// service through server reflection to the root client, and answers the
// health service to a client without a certificate.
func requireReflectionAndHealth(t *testing.T, addr, configDir string) {
	t.Helper()
	files := tlsconfig.Files(configDir)
	dial := func(cfg tlsconfig.Config) *grpc.ClientConn {
		tlsConfig, err := tlsconfig.SetupTLSConfig(cfg)
		require.NoError(t, err)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()

	root := dial(tlsconfig.Config{CAFile: files.CAFile, CertFile: files.RootClientCertFile, KeyFile: files.RootClientKeyFile})
	stream, err := reflectionpb.NewServerReflectionClient(root).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	require.Contains(t, services, "log.v1.Log")
	require.NoError(t, stream.CloseSend())

	anonymous := dial(tlsconfig.Config{CAFile: files.CAFile})
	health, err := healthpb.NewHealthClient(anonymous).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())

	// Reflection is not open without a certificate, which is why the
	// README's certificate-less health check uses grpc-health-probe, not
	// grpcurl (TestREADMEGrpcurlExamplesHaveACertificate).
	anonStream, err := reflectionpb.NewServerReflectionClient(anonymous).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	// Send may already see the refusal as io.EOF; Recv returns the status.
	_ = anonStream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	})
	_, err = anonStream.Recv()
	require.Equal(t, codes.Unauthenticated, status.Code(err), "reflection without a client certificate: %v", err)
}
