package deploy_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// stage is one FROM ... of a multi-stage Dockerfile.
type stage struct {
	from, name   string
	instructions []instruction
}

// parseDockerfile splits the Dockerfile into stages. It understands what
// deploy/Dockerfile uses: comments, backslash continuations, FROM ... AS.
func parseDockerfile(t *testing.T) (args map[string]string, stages []stage) {
	t.Helper()
	f, err := os.Open(dockerfile)
	require.NoError(t, err)
	defer f.Close()
	args = map[string]string{}
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if l, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(l + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	require.NoError(t, sc.Err())
	for _, line := range lines {
		cmd, rest, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(rest)}
		switch {
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case in.cmd == "FROM":
			fields := strings.Fields(in.args)
			s := stage{from: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				s.name = fields[2]
			}
			stages = append(stages, s)
		default:
			require.NotEmpty(t, stages, "instruction before FROM: %s", line)
			stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
		}
	}
	return args, stages
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.instructions {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// imageUser is the user the image runs as (USER uid:gid).
func imageUser(t *testing.T) int64 {
	t.Helper()
	_, stages := parseDockerfile(t)
	users := stages[len(stages)-1].all("USER")
	require.Len(t, users, 1)
	uid, _, _ := strings.Cut(users[0], ":")
	n, err := strconv.ParseInt(uid, 10, 64)
	require.NoError(t, err, "USER %s is numeric, so Kubernetes can check runAsNonRoot", users[0])
	return n
}

// TestDockerfile checks what can be checked without a container engine:
// the image is built by the Makefile's build (a static binary), with the Go
// version of go.mod, onto a minimal base, as a non-root user, with the
// entry point the chart runs, the chart's default ports, and a
// .dockerignore that keeps the context small.
func TestDockerfile(t *testing.T) {
	args, stages := parseDockerfile(t)
	require.Len(t, stages, 2, "a build stage and a runtime stage")
	build, runtime := stages[0], stages[1]

	// The build stage: the Go of go.mod, and `make build`.
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	require.NoError(t, err)
	goDirective := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(data)
	require.NotNil(t, goDirective, "go.mod's go directive")
	goVersion := string(goDirective[1])
	require.Equal(t, "golang:${GO_VERSION}", build.from)
	require.Equal(t, goVersion, args["GO_VERSION"], "the image builds with go.mod's Go version")
	var makeBuild string
	for _, run := range build.all("RUN") {
		if m := regexp.MustCompile(`make build BIN=(\S+)`).FindStringSubmatch(run); m != nil {
			makeBuild = m[1]
		}
	}
	require.NotEmpty(t, makeBuild, "the build stage runs the Makefile's build")
	out := makeDryRun(t, "build", "BIN="+makeBuild)
	require.Contains(t, out, "CGO_ENABLED=0 ", "make build makes a static binary (the runtime image has no C library)")
	require.Contains(t, out, "go build -trimpath -o "+makeBuild+" ./cmd/proglog")
	for _, run := range build.all("RUN") {
		require.NotContains(t, run, "go build", "the image is built by make build, not a build command of its own")
	}

	// The runtime stage: a minimal base, the binary from the build, a
	// non-root user, the entry point the chart runs.
	require.Regexp(t, `^gcr\.io/distroless/static-debian\d+:nonroot$`, runtime.from)
	var binary string
	for _, c := range runtime.all("COPY") {
		if strings.Contains(c, "--from="+build.name+" "+makeBuild+" ") {
			binary = strings.Fields(c)[len(strings.Fields(c))-1]
		}
	}
	require.NotEmpty(t, binary, "the runtime stage copies %s from the build stage", makeBuild)
	require.Equal(t, []string{`["` + binary + `"]`}, runtime.all("ENTRYPOINT"))
	require.NotZero(t, imageUser(t), "the image runs as a non-root user")

	// The chart runs this binary and exposes these ports.
	m := decodeManifests(t, render(t, defaultRelease))
	node := container(t, m.statefulSet(t).Spec.Template.Spec, "proglog")
	require.Equal(t, []string{binary}, node.Command)
	exposed := strings.Join(runtime.all("EXPOSE"), " ")
	for _, p := range node.Ports {
		require.Contains(t, exposed, strconv.Itoa(int(p.ContainerPort))+"/"+strings.ToLower(string(p.Protocol)))
	}

	// The build context: the sources, not the repository's history, build
	// outputs or a local cluster's data.
	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	require.NoError(t, err)
	for _, want := range []string{".git", ".data", "bin"} {
		require.Regexp(t, `(?m)^`+regexp.QuoteMeta(want)+`$`, string(ignore))
	}
}

// makeDryRun returns what `make -n target vars...` would run, from the
// repository's root.
func makeDryRun(t *testing.T, target string, vars ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", append([]string{"-n", "-C", repoRoot, target}, vars...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make -n %s: %s", target, out)
	return string(out)
}
