package bookcompat_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/test/bookcompat/bookv1"
	"github.com/proglog/proglog/test/testnet"
)

// Deadlines of the test.
const (
	clusterTimeout = 60 * time.Second
	callTimeout    = 10 * time.Second
	stopTimeout    = 20 * time.Second
)

// cluster is n `proglog agent` processes on 127.0.0.1.
type cluster struct {
	files     tlsconfig.FileSet
	rpcAddrs  []string
	httpAddrs []string
	logs      []string
}

// startCluster builds bin/proglog and starts n agents with the book's peer
// flags (the root client certificate as the Raft peer certificate): node-1
// bootstraps, the others join it. It returns once every node is in the Raft
// configuration, one leads, and every node's health service says SERVING.
func startCluster(t *testing.T, n int, files tlsconfig.FileSet) *cluster {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "proglog")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/proglog/proglog/cmd/proglog").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	c := &cluster{files: files}
	ports := testnet.FreePorts(t, 3*n)
	serfAddr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[3*i+2]) }
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs(t)
		}
	})
	for i := range n {
		name := fmt.Sprintf("node-%d", i+1)
		args := []string{"agent",
			"--node-name", name,
			"--data-dir", filepath.Join(dir, name),
			"--config-dir", files.Dir,
			"--bind-addr", serfAddr(i),
			"--rpc-port", strconv.Itoa(ports[3*i]),
			"--http-port", strconv.Itoa(ports[3*i+1]),
			// The book's agent flags: the root client certificate is the
			// certificate a node dials its Raft peers with.
			"--peer-tls-cert-file", files.RootClientCertFile,
			"--peer-tls-key-file", files.RootClientKeyFile,
			"--peer-tls-ca-file", files.CAFile,
		}
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--start-join-addrs", serfAddr(0))
		}
		c.rpcAddrs = append(c.rpcAddrs, "127.0.0.1:"+strconv.Itoa(ports[3*i]))
		c.httpAddrs = append(c.httpAddrs, "127.0.0.1:"+strconv.Itoa(ports[3*i+1]))
		c.logs = append(c.logs, filepath.Join(dir, name+".log"))
		startAgent(t, bin, c.logs[i], args)
		if i == 0 {
			// The others join node-1 through Serf: it must be up first.
			c.waitForServers(t, 1)
		}
	}
	c.waitForServers(t, n)
	for i := range n {
		health := healthpb.NewHealthClient(c.dial(t, i, "", ""))
		require.Eventuallyf(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
			return err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING
		}, clusterTimeout, 50*time.Millisecond, "node %d never SERVING", i+1)
	}
	return c
}

// startAgent starts the agent process with its output in logFile. The
// cleanup stops it with SIGINT (a graceful stop) and kills it if it is still
// running after stopTimeout.
func startAgent(t *testing.T, bin, logFile string, args []string) {
	t.Helper()
	f, err := os.Create(logFile)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// The agent reads PROGLOG_* variables: none of the test's may leak in.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PROGLOG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status of a stopped agent is not under test
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = f.Close()
	})
}

// waitForServers waits until node-1 lists n servers, one of them leading.
func (c *cluster) waitForServers(t *testing.T, n int) {
	t.Helper()
	client := bookv1.NewLogClient(c.dial(t, 0, c.files.RootClientCertFile, c.files.RootClientKeyFile))
	var last string
	require.Eventuallyf(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		res, err := client.GetServers(ctx, &bookv1.GetServersRequest{})
		if err != nil {
			last = err.Error()
			return false
		}
		last = fmt.Sprint(res.GetServers())
		leaders := 0
		for _, s := range res.GetServers() {
			if s.GetIsLeader() {
				leaders++
			}
		}
		return len(res.GetServers()) == n && leaders == 1
	}, clusterTimeout, 50*time.Millisecond, "cluster never listed %d servers with a leader; last: %s", n, &last)
}

// tlsConfig is a client TLS configuration presenting certFile (none when
// empty), verifying the servers' certificate for 127.0.0.1.
func (c *cluster) tlsConfig(certFile, keyFile string) tlsconfig.Config {
	return tlsconfig.Config{CertFile: certFile, KeyFile: keyFile, CAFile: c.files.CAFile, ServerAddress: "127.0.0.1"}
}

// creds are the transport credentials of a client presenting certFile.
func (c *cluster) creds(t *testing.T, certFile, keyFile string) credentials.TransportCredentials {
	t.Helper()
	cfg, err := tlsconfig.SetupTLSConfig(c.tlsConfig(certFile, keyFile))
	require.NoError(t, err)
	return credentials.NewTLS(cfg)
}

// dial connects to node i's RPC port as the client of certFile (anonymous
// when empty); the connection is closed with the test.
func (c *cluster) dial(t *testing.T, i int, certFile, keyFile string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(c.rpcAddrs[i], grpc.WithTransportCredentials(c.creds(t, certFile, keyFile)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// handled returns how many calls of method node i has answered with OK, from
// its Prometheus metrics (grpc_server_handled_total).
func (c *cluster) handled(t *testing.T, i int, method string) int {
	t.Helper()
	cfg, err := tlsconfig.SetupTLSConfig(c.tlsConfig(c.files.RootClientCertFile, c.files.RootClientKeyFile))
	require.NoError(t, err)
	transport := &http.Transport{TLSClientConfig: cfg}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: callTimeout}
	res, err := client.Get("https://" + c.httpAddrs[i] + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	total := 0
	scanner := bufio.NewScanner(res.Body)
	scanner.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "grpc_server_handled_total{") ||
			!strings.Contains(line, `grpc_code="OK"`) ||
			!strings.Contains(line, `grpc_method="`+method+`"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		require.NoError(t, err, "metric line %q", line)
		total += int(v)
	}
	require.NoError(t, scanner.Err())
	return total
}

// dumpLogs logs the end of each node's log, to see why a test failed.
func (c *cluster) dumpLogs(t *testing.T) {
	for _, path := range c.logs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		t.Logf("--- the end of %s:\n%s", path, strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
}
