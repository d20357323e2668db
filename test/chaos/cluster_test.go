package chaos

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
)

// Bounds of the harness's own waits.
const (
	readyTimeout = 60 * time.Second // a node started until /readyz says 200
	stopTimeout  = 15 * time.Second // a graceful stop before SIGKILL
	callTimeout  = 5 * time.Second
)

// node is one proglog agent process and the proxy in front of its RPC port.
type node struct {
	index    int
	name     string
	rpcPort  int
	httpPort int
	serfPort int
	advHost  string // the loopback address its RPC port is advertised on (the proxy's)
	dataDir  string
	logPath  string
	proxy    *proxy
	tmpfs    bool // dataDir is a tmpfs mount (disk-full scenario)
	started  bool // started at least once (set by start)

	// Guarded by cluster.mu.
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	paused bool
}

func (n *node) rpcAddr() string  { return net.JoinHostPort(n.advHost, strconv.Itoa(n.rpcPort)) }
func (n *node) realAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.rpcPort)) }
func (n *node) httpAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.httpPort)) }
func (n *node) serfAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.serfPort)) }

// cluster is n proglog processes on this machine.
type cluster struct {
	t     testing.TB
	bin   string
	dir   string
	files tlsconfig.FileSet
	extra []string // extra agent flags (gossip key)
	tls   *tls.Config
	nodes []*node

	mu sync.Mutex
	// partition, when set, reports whether traffic from node a to node b is
	// cut. Guarded by mu.
	partition func(a, b int) bool
}

// clusterOptions tunes newCluster.
type clusterOptions struct {
	nodes int
	// tmpfsNode is the node whose data dir is a tmpfs (disk-full); -1 none.
	tmpfsNode int
}

// newCluster starts n nodes, node 0 bootstrapping, and returns when all are
// in the cluster, one leads, and each says it is ready. Every node is
// stopped (SIGKILL) with the test; data and logs stay in dir when it fails.
func newCluster(t testing.TB, bin, dir string, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: bin, dir: dir}
	c.files = writeCertificates(t, dir, opts.nodes)
	c.extra = gossipFlags(t, bin, c.files.Dir)
	tlsConfig, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CAFile: c.files.CAFile, CertFile: c.files.RootClientCertFile, KeyFile: c.files.RootClientKeyFile,
	})
	require.NoError(t, err)
	c.tls = tlsConfig
	ports := testnet.FreePorts(t, 3*opts.nodes)
	for i := range opts.nodes {
		n := &node{
			index:    i,
			name:     fmt.Sprintf("node-%d", i+1),
			rpcPort:  ports[3*i],
			httpPort: ports[3*i+1],
			serfPort: ports[3*i+2],
			advHost:  fmt.Sprintf("127.0.1.%d", i+1),
		}
		n.dataDir = filepath.Join(dir, n.name)
		n.logPath = filepath.Join(dir, n.name+".log")
		require.NoError(t, os.MkdirAll(n.dataDir, 0o755))
		if i == opts.tmpfsNode {
			n.tmpfs = mountTmpfs(t, n.dataDir, tmpfsSize)
		}
		n.proxy, err = newProxy(i, n.rpcAddr(), n.realAddr(), c.sourceOf)
		require.NoError(t, err)
		c.nodes = append(c.nodes, n)
	}
	t.Cleanup(c.shutdown)
	for i := range c.nodes {
		c.start(i)
		if i == 0 {
			c.waitReady(0)
		}
	}
	for i := range c.nodes {
		c.waitReady(i)
	}
	c.waitServers(len(c.nodes))
	return c
}

// shutdown kills every node and closes the proxies.
func (c *cluster) shutdown() {
	for _, n := range c.nodes {
		c.mu.Lock()
		cmd, exited, paused := n.cmd, n.exited, n.paused
		c.mu.Unlock()
		if cmd != nil {
			_ = cmd.Process.Kill()
			if paused {
				_ = cmd.Process.Signal(syscall.SIGCONT)
			}
			<-exited
		}
		n.proxy.close()
		if n.tmpfs {
			// The tmpfs node's data goes with the mount; its log is
			// outside it and stays.
			unmountTmpfs(c.t, n.dataDir)
		}
	}
}

// sourceOf names the node that opened a connection from local to peer, or
// clientSource for this process's own clients. A lookup that
// finds no owner is tried again for a short while (a node restarted a
// moment ago, a socket the kernel has not listed yet) before the connection
// is taken for a client's: a node's connection taken for a client's would
// never be cut by a partition.
func (c *cluster) sourceOf(local, peer *net.TCPAddr) int {
	deadline := time.Now().Add(200 * time.Millisecond)
	for {
		c.mu.Lock()
		pids := map[int]int{os.Getpid(): clientSource}
		for _, n := range c.nodes {
			if n.cmd != nil {
				pids[n.cmd.Process.Pid] = n.index
			}
		}
		c.mu.Unlock()
		if owner, ok := socketOwner(local, peer, pids); ok || time.Now().After(deadline) {
			if !ok {
				return clientSource
			}
			return owner
		}
		time.Sleep(5 * time.Millisecond) // a bounded retry of a /proc lookup, not synchronisation
	}
}

// args are node i's agent flags.
func (c *cluster) args(i int) []string {
	n := c.nodes[i]
	args := []string{"agent",
		"--node-name", n.name,
		"--data-dir", n.dataDir,
		"--config-dir", c.files.Dir,
		"--bind-addr", n.serfAddr(),
		"--rpc-port", strconv.Itoa(n.rpcPort),
		"--http-port", strconv.Itoa(n.httpPort),
		"--advertise-host", n.advHost,
	}
	if i == 0 {
		args = append(args, "--bootstrap")
		if !n.started {
			// The first node of a new cluster has nobody to join yet.
			return append(args, c.extra...)
		}
	}
	var join []string
	for _, other := range c.nodes {
		if other.index != i {
			join = append(join, other.serfAddr())
		}
	}
	args = append(args, "--start-join-addrs", strings.Join(join, ","), "--start-join-timeout", "1m")
	return append(args, c.extra...)
}

// start starts node i's process (again), its output appended to its log.
func (c *cluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(c.t, err)
	fmt.Fprintf(f, "=== chaos: started %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(c.bin, c.args(i)...)
	n.started = true
	cmd.Stdout, cmd.Stderr = f, f
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PROGLOG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	require.NoError(c.t, cmd.Start())
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // a killed node's exit status is the point
		_ = f.Close()
		close(exited)
	}()
	c.mu.Lock()
	n.cmd, n.exited, n.paused = cmd, exited, false
	c.mu.Unlock()
}

// signal sends sig to node i and, for SIGKILL and SIGTERM, waits for it to
// exit (killing it after stopTimeout).
func (c *cluster) signal(i int, sig syscall.Signal) {
	c.t.Helper()
	n := c.nodes[i]
	c.mu.Lock()
	cmd, exited := n.cmd, n.exited
	switch sig {
	case syscall.SIGSTOP:
		n.paused = true
	case syscall.SIGCONT:
		n.paused = false
	}
	c.mu.Unlock()
	require.NotNil(c.t, cmd, "node %d is not running", i)
	select {
	case <-exited:
		// It exited by itself (a crash the checks will judge): there is
		// nothing to signal, and a stop is done.
		if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
			c.mu.Lock()
			n.cmd = nil
			c.mu.Unlock()
		}
		return
	default:
	}
	require.NoError(c.t, cmd.Process.Signal(sig))
	if sig != syscall.SIGKILL && sig != syscall.SIGTERM {
		return
	}
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
	c.mu.Lock()
	n.cmd = nil
	c.mu.Unlock()
}

func (c *cluster) running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].cmd != nil
}

// waitReady waits until node i's /readyz answers 200 and returns when it
// did.
func (c *cluster) waitReady(i int) time.Time {
	c.t.Helper()
	at, last, ok := c.waitReadyWithin(i, readyTimeout)
	if !ok {
		c.t.Fatalf("node %d not ready after %v: %s (log %s)", i+1, readyTimeout, last, c.nodes[i].logPath)
	}
	return at
}

// live reports what node i's /healthz (liveness) says.
func (c *cluster) live(i int) (bool, string) {
	client := c.httpClient()
	defer client.CloseIdleConnections()
	res, err := client.Get("https://" + c.nodes[i].httpAddr() + "/healthz")
	if err != nil {
		return false, err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode == http.StatusOK, strings.TrimSpace(string(body))
}

// waitReadyWithin waits up to timeout for node i's /readyz to answer 200;
// it returns when it did, or the last answer.
func (c *cluster) waitReadyWithin(i int, timeout time.Duration) (time.Time, string, bool) {
	client := c.httpClient()
	defer client.CloseIdleConnections()
	var last string
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		res, err := client.Get("https://" + c.nodes[i].httpAddr() + "/readyz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return time.Now(), "", true
			}
			last = res.Status
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond) // polling an outside process: nothing to wait on
	}
	return time.Time{}, last, false
}

func (c *cluster) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls.Clone()}, Timeout: 2 * time.Second}
}

// waitServers waits until the cluster lists n servers with a leader.
func (c *cluster) waitServers(n int) {
	c.t.Helper()
	client := c.newClient(loadbalance.Config{})
	defer client.Close()
	require.Eventually(c.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		servers, err := client.GetServers(ctx)
		return err == nil && len(servers) == n && hasLeader(servers)
	}, readyTimeout, 50*time.Millisecond, "the cluster never listed %d servers with a leader", n)
}

func hasLeader(servers []*api.Server) bool {
	for _, s := range servers {
		if s.GetIsLeader() {
			return true
		}
	}
	return false
}

// leader returns the index of the node the cluster names leader, waiting
// for one.
func (c *cluster) leader() int {
	c.t.Helper()
	client := c.newClient(loadbalance.Config{})
	defer client.Close()
	leader := -1
	require.Eventually(c.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		servers, err := client.GetServers(ctx)
		if err != nil {
			return false
		}
		for _, s := range servers {
			if !s.GetIsLeader() {
				continue
			}
			for _, n := range c.nodes {
				if n.rpcAddr() == s.GetRpcAddr() && c.running(n.index) {
					leader = n.index
					return true
				}
			}
		}
		return false
	}, readyTimeout, 50*time.Millisecond, "no leader")
	return leader
}

// waitLeaderOtherThan waits until node i, asked directly, names a leader
// other than node old.
func (c *cluster) waitLeaderOtherThan(i, old int) {
	c.t.Helper()
	conn := c.dialNode(i)
	defer conn.Close()
	client := api.NewLogClient(conn)
	var last string
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		res, err := client.GetServers(ctx, &api.GetServersRequest{})
		cancel()
		last = "no leader"
		if err != nil {
			last = err.Error()
		}
		for _, s := range res.GetServers() {
			if s.GetIsLeader() {
				if s.GetRpcAddr() != c.nodes[old].rpcAddr() {
					return
				}
				last = "node " + strconv.Itoa(old+1)
			}
		}
		time.Sleep(50 * time.Millisecond) // polling another process
	}
	c.t.Fatalf("node %d never named a leader other than node %d within %v (last: %s)", i+1, old+1, readyTimeout, last)
}

// follower returns a running node other than leader, picked by pick.
func (c *cluster) follower(leader int, pick func(n int) int) int {
	var out []int
	for _, n := range c.nodes {
		if n.index != leader && c.running(n.index) {
			out = append(out, n.index)
		}
	}
	return out[pick(len(out))]
}

// seeds are the advertised RPC addresses of every node.
func (c *cluster) seeds() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.rpcAddr())
	}
	return out
}

// newClient is a balanced client of the cluster, with cfg's other settings.
func (c *cluster) newClient(cfg loadbalance.Config) *loadbalance.Client {
	c.t.Helper()
	cfg.Seeds = c.seeds()
	cfg.TLSConfig = c.tls.Clone()
	client, err := loadbalance.New(cfg)
	require.NoError(c.t, err)
	return client
}

// dialNode connects to node i's real RPC port, bypassing the proxy.
func (c *cluster) dialNode(i int) *grpc.ClientConn {
	c.t.Helper()
	cfg := c.tls.Clone()
	cfg.ServerName = "127.0.0.1"
	conn, err := grpc.NewClient(c.nodes[i].realAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	require.NoError(c.t, err)
	return conn
}

// setPartition cuts traffic between nodes in different groups; nil heals.
func (c *cluster) setPartition(groups [][]int) {
	group := make(map[int]int)
	for g, members := range groups {
		for _, m := range members {
			group[m] = g
		}
	}
	for _, n := range c.nodes {
		target := n.index
		if groups == nil {
			n.proxy.setBlocked(func(int) bool { return false })
			continue
		}
		n.proxy.setBlocked(func(src int) bool { return group[src] != group[target] })
	}
}

// handled returns how many calls node i answered with OK, over the methods
// given, from its Prometheus metrics; -1 when it cannot tell.
func (c *cluster) handled(i int, methods ...string) int {
	client := c.httpClient()
	defer client.CloseIdleConnections()
	res, err := client.Get("https://" + c.nodes[i].httpAddr() + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	total := 0
	scanner := bufio.NewScanner(res.Body)
	scanner.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "grpc_server_handled_total{") || !strings.Contains(line, `grpc_code="OK"`) {
			continue
		}
		for _, m := range methods {
			if strings.Contains(line, `grpc_method="`+m+`"`) {
				fields := strings.Fields(line)
				if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
					total += int(v)
				}
			}
		}
	}
	return total
}

// writeCertificates makes a CA, a server certificate valid for 127.0.0.1
// and every node's advertised address, and the root client certificate,
// and copies the ACL files, into dir/config.
func writeCertificates(t testing.TB, dir string, nodes int) tlsconfig.FileSet {
	t.Helper()
	files := tlsconfig.Files(filepath.Join(dir, "config"))
	require.NoError(t, os.MkdirAll(files.Dir, 0o755))
	ca := tlsconfigtest.NewCA(t, "proglog chaos CA")
	hosts := []string{"localhost", "127.0.0.1"}
	for i := range nodes {
		hosts = append(hosts, fmt.Sprintf("127.0.1.%d", i+1))
	}
	copyFile := func(from, to string) {
		data, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to, data, 0o600))
	}
	copyFile(ca.CertFile, files.CAFile)
	cert, key := ca.Issue(t, tlsconfigtest.CertOptions{CommonName: "127.0.0.1", Hosts: hosts})
	copyFile(cert, files.ServerCertFile)
	copyFile(key, files.ServerKeyFile)
	cert, key = ca.Issue(t, tlsconfigtest.CertOptions{CommonName: "root"})
	copyFile(cert, files.RootClientCertFile)
	copyFile(key, files.RootClientKeyFile)
	cert, key = ca.Issue(t, tlsconfigtest.CertOptions{CommonName: "nobody"})
	copyFile(cert, files.NobodyClientCertFile)
	copyFile(key, files.NobodyClientKeyFile)
	copyFile(filepath.Join("..", "model.conf"), files.ACLModelFile)
	copyFile(filepath.Join("..", "policy.csv"), files.ACLPolicyFile)
	return files
}

// gossipFlags returns the agent flags for gossip encryption when the binary
// has them: a key made by `proglog keygen` in the config dir.
func gossipFlags(t testing.TB, bin, configDir string) []string {
	t.Helper()
	help, err := exec.Command(bin, "agent", "--help").CombinedOutput()
	require.NoError(t, err, "%s agent --help: %s", bin, help)
	if !strings.Contains(string(help), "--gossip-key-file") {
		return nil
	}
	keyFile := filepath.Join(configDir, "gossip.key")
	out, err := exec.Command(bin, "keygen").Output()
	require.NoError(t, err, "proglog keygen")
	require.NoError(t, os.WriteFile(keyFile, out, 0o600))
	return []string{"--gossip-key-file", keyFile}
}

// tmpfsSize is the size of a tmpfs data dir before it is shrunk.
const tmpfsSize = 256 << 20

// canMountTmpfs reports whether this process may mount (root on Linux).
func canMountTmpfs() bool { return os.Geteuid() == 0 }

func mountTmpfs(t testing.TB, dir string, size int64) bool {
	t.Helper()
	err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size))
	require.NoError(t, err, "mount tmpfs on %s", dir)
	return true
}

// resizeTmpfs sets the size of the tmpfs at dir.
func resizeTmpfs(dir string, size int64) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, fmt.Sprintf("size=%d", size))
}

// tmpfsUsed returns the bytes in use on the file system of dir.
func tmpfsUsed(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}

func unmountTmpfs(t testing.TB, dir string) {
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		t.Logf("unmount %s: %v", dir, err)
	}
}
