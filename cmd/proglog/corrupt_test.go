package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/agent"
	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

// A disk failure on a follower: with the node killed, a byte flips in a
// sealed segment of its Raft log. Started again, the node refuses to start
// (exit status 1) with one line naming the file and saying what to do,
// instead of cutting its log (which lost acknowledged entries and diverged
// the cluster). Done as the line says (data directory removed, same flags),
// it rejoins and catches up with every record.
func TestAgentRefusesACorruptRaftLogAndRejoinsWiped(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	c := startCluster(t, 3, files)
	settings, client, ctx := killTestClient(t, c, files)

	// More than one Raft segment (1 MiB by default) of entries.
	const batches, perBatch = 24, 64
	var want []string
	for b := range batches {
		values := make([][]byte, perBatch)
		for k := range values {
			v := fmt.Sprintf("b%02d-%02d-%s", b, k, strings.Repeat("x", 1000))
			values[k] = []byte(v)
			want = append(want, v)
		}
		_, err := client.ProduceBatch(ctx, values)
		require.NoError(t, err)
	}

	// A follower that does not bootstrap (node-1 does).
	leader := c.leaderIndex(t)
	victim := 1
	if leader == 1 {
		victim = 2
	}
	dataDir := filepath.Join(c.dir, fmt.Sprintf("node-%d", victim+1))
	segments := filepath.Join(dataDir, "raft", "log", "segments")
	untilNoError(t, exitTimeout, func() error {
		if n := len(storeFiles(t, segments)); n < 2 {
			return fmt.Errorf("%s holds %d store files, want a sealed one", segments, n)
		}
		return nil
	}, "a sealed Raft segment on the follower")
	require.NoError(t, c.nodes[victim].cmd.Process.Signal(syscall.SIGKILL))
	<-c.nodes[victim].exited
	sealed := storeFiles(t, segments)[0]
	b, err := os.ReadFile(sealed)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x01
	require.NoError(t, os.WriteFile(sealed, b, 0o644))

	c.restartNode(t, victim)
	require.Equal(t, 1, c.nodes[victim].wait(t, exitTimeout), "a node with a corrupt Raft log started")
	out, err := os.ReadFile(fmt.Sprintf("%s.restart-%d", c.logs[victim], c.restarts))
	require.NoError(t, err)
	var refusal []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, sealed) {
			refusal = append(refusal, line)
		}
	}
	require.Len(t, refusal, 1, "lines naming the damaged file:\n%s", out)
	t.Logf("the refusal: %s", refusal[0])
	require.True(t, strings.HasPrefix(refusal[0], "proglog: start node "), "%s", refusal[0])
	require.Contains(t, refusal[0], "corrupt data")
	require.Contains(t, refusal[0], "Remove the data directory "+dataDir)
	require.NotContains(t, refusal[0], "--bootstrap", "the hint is for a node that bootstraps")
	after, err := os.ReadFile(sealed)
	require.NoError(t, err)
	require.Equal(t, b, after, "the refused node changed the damaged file")

	// As the line says: an empty data directory, the same flags.
	require.NoError(t, os.RemoveAll(dataDir))
	c.restartNode(t, victim)
	all := sameTopicsOnEveryNode(t, settings, c.rpcAddrs, []string{api.DefaultTopic}, nil)
	require.Equal(t, want, all[api.DefaultTopic])
	off, err := client.Produce(ctx, []byte("after"))
	require.NoError(t, err)
	require.Equal(t, uint64(len(want)), off)
}

// storeFiles returns the store files in dir, oldest segment first.
func storeFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var files []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".store") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(files)
	return files
}

// The refusal of a node that bootstraps tells it to drop the flag: with an
// empty data directory it would bootstrap a new, empty cluster of its own.
func TestCorruptDataHint(t *testing.T) {
	corrupt := fmt.Errorf("agent: set up log: %w", agent.ErrCorruptData)
	tests := []struct {
		name string
		err  error
		as   agentSettings
		want string
	}{
		{"bootstrap", corrupt, agentSettings{bootstrap: true}, "without --bootstrap"},
		{"bootstrap node", corrupt, agentSettings{bootstrapNode: "n1", nodeName: "n1"}, "without --bootstrap"},
		{"joining node", corrupt, agentSettings{bootstrapNode: "n1", nodeName: "n2"}, ""},
		{"another error", fmt.Errorf("boom"), agentSettings{bootstrap: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := corruptDataHint(tt.err, tt.as)
			if tt.want == "" {
				require.Empty(t, got)
				return
			}
			require.Contains(t, got, tt.want)
		})
	}
}
