package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// helmModule is the helm the tests run, built with the Go toolchain: nothing
// to install by hand, and the same helm on every machine.
const helmModule = "helm.sh/helm/v3/cmd/helm@v3.22.0"

// Paths from this package's directory.
const (
	repoRoot   = ".."
	chartDir   = "proglog"
	dockerfile = "Dockerfile"
)

// buildTimeout bounds one build: a cold build of helm downloads and compiles
// Kubernetes' client libraries (about 3.5 minutes on 2 cores, 15 s with a
// warm Go build cache).
const buildTimeout = 8 * time.Minute

// tools are the binaries the tests run, built once per test run into a
// directory TestMain removes.
var tools struct {
	dir string

	helmOnce sync.Once
	helm     string
	// helmSkip is why helm could not be had (the Go module proxy cannot be
	// reached); the tests that need helm skip with it.
	helmSkip string
	helmErr  error

	proglogOnce sync.Once
	proglog     string
	proglogErr  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "proglog-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tools.dir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// helmBinary returns the pinned helm, building it on first use. It skips the
// test when the Go module proxy cannot be reached and helm is not in the
// module cache; any other failure fails the test.
func helmBinary(t *testing.T) string {
	t.Helper()
	tools.helmOnce.Do(func() {
		bin := filepath.Join(tools.dir, "bin")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "install", helmModule)
		// go install pkg@version builds outside this module; GOFLAGS from
		// the environment (e.g. -mod=vendor) would not apply to it.
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-buildvcs=false")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			if unreachable(string(out)) {
				tools.helmSkip = fmt.Sprintf("cannot build %s: the Go module proxy is unreachable: %s", helmModule, lastLine(out))
				return
			}
			tools.helmErr = fmt.Errorf("go install %s: %w\n%s", helmModule, err, out)
			return
		}
		tools.helm = filepath.Join(bin, "helm")
		fmt.Fprintf(os.Stderr, "deploy: built %s in %v\n", helmModule, time.Since(start).Round(time.Second))
	})
	if tools.helmSkip != "" {
		t.Skip(tools.helmSkip)
	}
	require.NoError(t, tools.helmErr)
	return tools.helm
}

// unreachable reports whether go's output says it could not reach the
// module proxy.
func unreachable(out string) bool {
	for _, s := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout",
		"network is unreachable", "TLS handshake timeout", "proxyconnect"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// proglogBinary returns bin/proglog built from this tree, building it on
// first use with the plain `go build` that cmd/proglog's tests use, so the
// two share the Go build cache. (The Makefile's build, which the image uses,
// adds CGO_ENABLED=0 and -trimpath: dockerfile_test.go checks that.)
func proglogBinary(t *testing.T) string {
	t.Helper()
	tools.proglogOnce.Do(func() {
		path := filepath.Join(tools.dir, "proglog")
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/proglog")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			tools.proglogErr = fmt.Errorf("go build ./cmd/proglog: %w\n%s", err, out)
			return
		}
		tools.proglog = path
	})
	require.NoError(t, tools.proglogErr)
	return tools.proglog
}

// helmResult is what one helm command printed.
type helmResult struct {
	stdout, stderr string
	err            error
}

// runHelm runs the pinned helm with args, in an empty HOME so that no
// user's repositories or plugins take part.
func runHelm(t *testing.T, args ...string) helmResult {
	t.Helper()
	helm := helmBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm, args...)
	home := t.TempDir()
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"),
		"HELM_CACHE_HOME=" + filepath.Join(home, "cache"), "HELM_CONFIG_HOME=" + filepath.Join(home, "config"),
		"HELM_DATA_HOME=" + filepath.Join(home, "data"),
		// No cluster: a command that tries to reach one fails at once.
		"KUBECONFIG=" + filepath.Join(home, "no-kubeconfig")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return helmResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// release is how the tests install the chart.
type release struct {
	name, namespace string
	// set are --set arguments; valuesFiles are -f files.
	set         []string
	valuesFiles []string
}

// render runs helm template for r and returns its output, failing the test
// on any error.
func render(t *testing.T, r release) string {
	t.Helper()
	res := runHelm(t, r.templateArgs()...)
	require.NoError(t, res.err, "helm %s\n%s", strings.Join(r.templateArgs(), " "), res.stderr)
	return res.stdout
}

func (r release) templateArgs() []string {
	args := []string{"template", r.name, chartDir, "--namespace", r.namespace}
	for _, s := range r.set {
		args = append(args, "--set", s)
	}
	for _, f := range r.valuesFiles {
		args = append(args, "--values", f)
	}
	return args
}
