package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
	"github.com/proglog/proglog/test/testnet"
)

// runLocalScript is `make run`'s script, from this package's directory.
const runLocalScript = "../../deploy/run-local.sh"

// runLocalReadyLine is the script's last line once the cluster runs.
const runLocalReadyLine = "Ctrl-C stops every node."

// runLocal is one run of deploy/run-local.sh.
type runLocal struct {
	cmd    *exec.Cmd
	output *syncBuffer
	// stdout is the read end of the script's standard output.
	stdout io.Closer
	lines  chan string
	exited chan struct{}
	// pids are the nodes' process ids, from the script's banner.
	pids []int
}

// startRunLocal starts the script with the binary, directories and ports
// given, and waits until it says the cluster runs. A t.Cleanup kills the
// script and its nodes if they still run.
func startRunLocal(t *testing.T, env []string) *runLocal {
	t.Helper()
	rl := &runLocal{
		cmd:    exec.Command("bash", runLocalScript),
		output: &syncBuffer{},
		lines:  make(chan string, 1024),
		exited: make(chan struct{}),
	}
	rl.cmd.Env = append(os.Environ(), env...)
	stdout, err := rl.cmd.StdoutPipe()
	require.NoError(t, err)
	rl.stdout = stdout
	rl.cmd.Stderr = rl.output
	require.NoError(t, rl.cmd.Start())
	go func() {
		// Copy the output into the buffer, and each line to the test.
		scanner := bufio.NewScanner(io.TeeReader(stdout, rl.output))
		for scanner.Scan() {
			select {
			case rl.lines <- scanner.Text():
			default: // the test stopped listening
			}
		}
		_ = rl.cmd.Wait()
		close(rl.exited)
	}()
	t.Cleanup(func() {
		// The nodes run in their own process groups: kill them by pid.
		for _, pid := range rl.pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = rl.cmd.Process.Kill()
		<-rl.exited
		if t.Failed() {
			t.Logf("run-local.sh printed:\n%s", rl.output)
		}
	})

	pidLine := regexp.MustCompile(`^\s+node-\d+\s+pid (\d+)\s`)
	deadline := time.After(2 * clusterFormTimeout)
	for {
		select {
		case line := <-rl.lines:
			if m := pidLine.FindStringSubmatch(line); m != nil {
				pid, err := strconv.Atoi(m[1])
				require.NoError(t, err)
				rl.pids = append(rl.pids, pid)
			}
			if line == runLocalReadyLine {
				return rl
			}
		case <-rl.exited:
			t.Fatalf("run-local.sh exited before the cluster was ready:\n%s", rl.output)
		case <-deadline:
			t.Fatalf("run-local.sh did not say %q within %v:\n%s", runLocalReadyLine, 2*clusterFormTimeout, rl.output)
		}
	}
}

// interrupt sends SIGINT, as Ctrl-C does, and waits for the script to stop
// every node and exit.
func (rl *runLocal) interrupt(t *testing.T) {
	t.Helper()
	require.NoError(t, rl.cmd.Process.Signal(os.Interrupt))
	select {
	case <-rl.exited:
	case <-time.After(2 * exitTimeout):
		t.Fatalf("run-local.sh did not exit within %v of SIGINT:\n%s", 2*exitTimeout, rl.output)
	}
	require.Equal(t, 0, rl.cmd.ProcessState.ExitCode(), "run-local.sh exit status:\n%s", rl.output)
	require.Contains(t, rl.output.String(), "every node stopped")
	for _, pid := range rl.pids {
		// The script waited for its children, so they are gone, not zombies.
		err := syscall.Kill(pid, 0)
		require.True(t, errors.Is(err, syscall.ESRCH), "node pid %d still exists after the script exited (kill 0: %v)", pid, err)
	}
}

// TestRunLocal runs `make run`'s script on free ports, produces and consumes
// through the CLI, stops it with SIGINT and checks every node exited
// cleanly; then starts it again on the same data, which must still be there.
func TestRunLocal(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	bin := proglogBinary(t)
	ports := testnet.FreePorts(t, 9)
	dir := t.TempDir()
	env := runLocalEnv(bin, dir, files.Dir, ports)
	client := []string{"--addr", joinPorts(ports[0:3]), "--config-dir", files.Dir}
	mustRun := func(stdin string, args ...string) string {
		t.Helper()
		r := runBinary(t, bin, stdin, commandTimeout, append(args, client...)...)
		require.Equal(t, 0, r.code, "proglog %s: stderr: %s", strings.Join(args, " "), r.stderr)
		return r.stdout
	}

	rl := startRunLocal(t, env)
	require.Len(t, rl.pids, 3, "node pids in the banner")
	out := rl.output.String()
	require.Contains(t, out, "--addr "+joinPorts(ports[0:3]), "the banner shows the flags for these ports")
	require.Equal(t, "0\n1\n", mustRun("", "produce", "first", "second"))
	require.Equal(t, "first\nsecond\n", mustRun("", "consume"))
	// The banner's topic example, as printed.
	require.Contains(t, out, "topic create --addr "+joinPorts(ports[0:3]))
	require.Contains(t, out, "--topic orders o1")
	mustRun("", "topic", "create", "orders")
	require.Equal(t, "0\n", mustRun("", "produce", "--topic", "orders", "o1"))
	rl.interrupt(t)
	for i := 1; i <= 3; i++ {
		log, err := os.ReadFile(filepath.Join(dir, "node-"+strconv.Itoa(i)+".log"))
		require.NoError(t, err)
		require.Contains(t, string(log), `"msg":"agent stopped"`, "node-%d stopped gracefully", i)
		require.Contains(t, string(log), "run-local: started as: ", "node-%d's log shows how to start it again", i)
		require.Contains(t, string(log), "--node-name node-"+strconv.Itoa(i)+" ", "node-%d's command line", i)
	}

	// `make run` again: the same cluster, with its data.
	rl = startRunLocal(t, env)
	require.Equal(t, "first\nsecond\n", mustRun("", "consume"))
	require.Equal(t, "2\n", mustRun("", "produce", "third"))
	rl.interrupt(t)
}

// TestRunLocalStopsNodesWhenItsOutputIsGone: `make run | tee run.log` and
// Ctrl-C, which kills tee as well. The script's output is then a pipe
// nobody reads; writing to it must not kill the script before it has stopped
// the nodes, which run in their own process groups and would otherwise be
// left running on their ports.
func TestRunLocalStopsNodesWhenItsOutputIsGone(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	bin := proglogBinary(t)
	ports := testnet.FreePorts(t, 9)
	rl := startRunLocal(t, runLocalEnv(bin, t.TempDir(), files.Dir, ports))
	require.Len(t, rl.pids, 3, "node pids in the banner")

	require.NoError(t, rl.stdout.Close()) // tee is gone
	require.NoError(t, rl.cmd.Process.Signal(os.Interrupt))
	select {
	case <-rl.exited:
	case <-time.After(2 * exitTimeout):
		t.Fatalf("run-local.sh did not exit within %v of SIGINT:\n%s", 2*exitTimeout, rl.output)
	}
	for i, pid := range rl.pids {
		err := syscall.Kill(pid, 0)
		require.True(t, errors.Is(err, syscall.ESRCH),
			"node-%d (pid %d) still runs after the script exited (kill 0: %v); script output:\n%s", i+1, pid, err, rl.output)
	}
}

// TestRunLocalReportsNodesThatDie: an operator kills every node with
// SIGKILL; the script says which node exited with which status, and exits
// with status 1, without waiting a second time for nodes it has reaped.
func TestRunLocalReportsNodesThatDie(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	bin := proglogBinary(t)
	ports := testnet.FreePorts(t, 9)
	rl := startRunLocal(t, runLocalEnv(bin, t.TempDir(), files.Dir, ports))
	require.Len(t, rl.pids, 3, "node pids in the banner")

	for _, pid := range rl.pids {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	select {
	case <-rl.exited:
	case <-time.After(exitTimeout):
		t.Fatalf("run-local.sh did not exit within %v of its nodes dying:\n%s", exitTimeout, rl.output)
	}
	require.Equal(t, 1, rl.cmd.ProcessState.ExitCode(), "run-local.sh exit status:\n%s", rl.output)
	out := rl.output.String()
	for i := 1; i <= 3; i++ {
		require.Contains(t, out, fmt.Sprintf("node-%d exited on its own with status 137", i))
	}
	require.Contains(t, out, "every node exited on its own")
	require.NotContains(t, out, "not a child", "the script waited again for a node it had reaped")
	require.NotContains(t, out, "status 127", "the script waited again for a node it had reaped")
	require.NotContains(t, out, "stopping", "the script announced stopping nodes that had all exited")
	require.NotContains(t, out, "every node stopped", "the script announced stopping nodes that had all exited")
}

// TestRunLocalRefusesPortsInUse: a second `make run` on the ports of a
// running one must not take the running cluster's answers for its own
// nodes' and claim to run; it fails at once, naming the port.
func TestRunLocalRefusesPortsInUse(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	bin := proglogBinary(t)
	ports := testnet.FreePorts(t, 9)
	first := startRunLocal(t, runLocalEnv(bin, t.TempDir(), files.Dir, ports))
	require.Len(t, first.pids, 3, "node pids in the banner")

	second := exec.Command("bash", runLocalScript)
	second.Env = append(os.Environ(), runLocalEnv(bin, t.TempDir(), files.Dir, ports)...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		defer close(done)
		out, err = second.CombinedOutput()
	}()
	select {
	case <-done:
	case <-time.After(exitTimeout):
		_ = second.Process.Kill()
		<-done
		t.Fatalf("a second run-local.sh on the same ports did not exit within %v:\n%s", exitTimeout, out)
	}
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "second run-local.sh: %s", out)
	require.Equal(t, 1, exitErr.ExitCode(), "second run-local.sh:\n%s", out)
	require.NotContains(t, string(out), runLocalReadyLine, "the second script claimed a cluster")
	require.Contains(t, string(out), fmt.Sprintf("127.0.0.1:%d (a port of node-1) is in use", ports[0]))

	first.interrupt(t) // the first cluster was left alone
}

// runLocalEnv is the environment that runs deploy/run-local.sh with bin, data
// in dir, certificates in configDir, and nine ports: three RPC, three HTTP,
// three Serf.
func runLocalEnv(bin, dir, configDir string, ports []int) []string {
	join := func(ps []int) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = strconv.Itoa(p)
		}
		return strings.Join(s, " ")
	}
	return []string{
		"RUN_BIN=" + bin,
		"RUN_DIR=" + dir,
		"RUN_CONFIG_DIR=" + configDir,
		"RUN_RPC_PORTS=" + join(ports[0:3]),
		"RUN_HTTP_PORTS=" + join(ports[3:6]),
		"RUN_SERF_PORTS=" + join(ports[6:9]),
		"RUN_READY_TIMEOUT=" + strconv.Itoa(int(clusterFormTimeout.Seconds())),
	}
}

// TestMakeRunCallsTheScript: `make run` builds, makes certificates, and
// passes its variables to deploy/run-local.sh.
func TestMakeRunCallsTheScript(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	out, err := exec.Command("make", "-C", "../..", "-n", "run",
		"RUN_DIR=/tmp/x", "RPC_PORTS=1 2 3", "HTTP_PORTS=4 5 6", "SERF_PORTS=7 8 9", "CONFIG_DIR=/tmp/cfg").CombinedOutput()
	require.NoError(t, err, "make -n run: %s", out)
	for _, want := range []string{
		"go build -trimpath -o bin/proglog ./cmd/proglog",
		"gencert",
		"RUN_BIN='bin/proglog'", "RUN_DIR='/tmp/x'", "RUN_CONFIG_DIR='/tmp/cfg'",
		"RUN_RPC_PORTS='1 2 3'", "RUN_HTTP_PORTS='4 5 6'", "RUN_SERF_PORTS='7 8 9'",
		"bash deploy/run-local.sh",
	} {
		require.Contains(t, string(out), want)
	}
}
