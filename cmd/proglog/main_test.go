package main

import (
	"bytes"
	"context"
	"fmt"
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
