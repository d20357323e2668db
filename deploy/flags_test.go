package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// flagLine matches a flag in cobra's "Flags:" section: "  -f, --follow" or
// "      --data-dir string".
var flagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)`)

// commandFlags returns the flags `proglog <command> --help` lists.
func commandFlags(t *testing.T, command string) []string {
	t.Helper()
	out, err := runProglog(t, command, "--help")
	require.NoError(t, err, "proglog %s --help: %s", command, out)
	var flags []string
	inFlags := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasSuffix(line, "Flags:"):
			inFlags = true
		case inFlags && line == "":
			inFlags = false
		case inFlags:
			if m := flagLine.FindStringSubmatch(line); m != nil {
				flags = append(flags, m[1])
			}
		}
	}
	require.Contains(t, flags, "help", "parsed the Flags section of proglog %s --help", command)
	return flags
}

func runProglog(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, proglogBinary(t), args...)
	cmd.Env = []string{"HOME=" + t.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// unknownFlags returns the flags of args (--name or --name=value) that are
// not in known.
func unknownFlags(args, known []string) []string {
	var unknown []string
	for _, a := range args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if !slices.Contains(known, name) {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

// TestChartFlagsAreProglogFlags: every flag the chart passes to proglog, in
// the nodes' and in the helm test pod's command lines, for the default and
// for custom values, is a flag of this proglog, and the command line as a
// whole parses (types included): `proglog <args> --help` parses every flag
// before it prints the help. A flag renamed or removed in the binary, or
// misspelt in the chart, fails here.
func TestChartFlagsAreProglogFlags(t *testing.T) {
	agentFlags := commandFlags(t, "agent")
	serversFlags := commandFlags(t, "servers")
	// The check catches what it must: a flag the binary lacks.
	require.Equal(t, []string{"no-such-flag"}, unknownFlags([]string{"--data-dir=/d", "--no-such-flag=1", "agent"}, agentFlags))

	for name, r := range map[string]release{"default": defaultRelease, "custom": customRelease(t)} {
		t.Run(name, func(t *testing.T) {
			m := decodeManifests(t, render(t, r))
			commands := map[string][]string{}
			node := container(t, m.statefulSet(t).Spec.Template.Spec, "proglog")
			commands["node"] = node.Args
			for _, p := range m.pods {
				commands["test pod "+p.Name] = container(t, p.Spec, "servers").Args
			}
			if name == "default" {
				require.Len(t, commands, 2, "a node and the helm test pod")
			}
			for what, args := range commands {
				require.NotEmpty(t, args, what)
				sub := args[0]
				known := map[string][]string{"agent": agentFlags, "servers": serversFlags}[sub]
				require.NotNil(t, known, "%s runs proglog %s", what, sub)
				require.Empty(t, unknownFlags(args[1:], known), "%s: flags proglog %s does not have", what, sub)
				out, err := runProglog(t, append(slices.Clone(args), "--help")...)
				require.NoError(t, err, "%s: proglog %s refuses its command line: %s", what, strings.Join(args, " "), firstLine(out))
			}
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return fmt.Sprint(line)
}
