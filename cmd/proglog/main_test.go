package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// binary is the proglog binary the end-to-end tests run, built once per
// test process into a directory TestMain removes.
var binary struct {
	dir  string
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "proglog-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary.dir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// proglogBinary builds cmd/proglog (once) and returns its path.
func proglogBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		path := filepath.Join(binary.dir, "proglog")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", path, ".").CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		binary.path = path
	})
	require.NoError(t, binary.err)
	return binary.path
}

// freePorts returns n distinct ports that were free on 127.0.0.1 (TCP and
// UDP: Serf uses both) a moment ago, picked at random below the kernel's
// ephemeral range (see ephemeralPortsFrom), or from it where that range
// leaves too little room below.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	low, high := 10000, ephemeralPortsFrom()
	if high-low < 1000 {
		return ephemeralFreePorts(t, n)
	}
	seen := map[int]bool{}
	var ports []int
	for len(ports) < n {
		port := low + rand.IntN(high-low)
		if seen[port] {
			continue
		}
		seen[port] = true
		tcp, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		udp, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		require.NoError(t, tcp.Close())
		if err != nil {
			continue
		}
		require.NoError(t, udp.Close())
		ports = append(ports, port)
	}
	return ports
}

// ephemeralPortsFrom is the first port of the kernel's ephemeral range,
// which ":0" listeners and outgoing connections take ports from; 0 when it
// cannot tell. Ports picked below it are not taken by another test's ":0"
// between the pick and the use (TestRunLocal's second start once found
// one of its ports so taken).
func ephemeralPortsFrom() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	first, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return first
}

// ephemeralFreePorts returns n ports the kernel picked as free.
func ephemeralFreePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	listeners := make([]net.Listener, n)
	for i := range listeners {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		listeners[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range listeners {
		require.NoError(t, l.Close())
	}
	return ports
}

// result is what a finished command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

// runBinary runs the proglog binary with args and stdin, bounded by
// timeout, and returns what it printed and its exit code.
func runBinary(t *testing.T, bin string, stdin string, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "proglog %s did not finish within %v; stderr: %s", strings.Join(args, " "), timeout, stderr.String())
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	} else {
		require.NoError(t, err, "run proglog %s", strings.Join(args, " "))
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// joinPorts formats ports as "127.0.0.1:p1,127.0.0.1:p2".
func joinPorts(ports []int) string {
	addrs := make([]string, len(ports))
	for i, p := range ports {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return strings.Join(addrs, ",")
}
