package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

// TestBenchStreamSurvivesLeaderKill: `proglog bench --mode stream` rides out
// a SIGKILL of the leader as the other write modes do: its streams fail over
// to the new leader and resend what was not acknowledged, so the run reports
// no error and the topic holds every record once. (Its streams were plain
// gRPC streams, reopened at once when they broke: while the client still
// named the dead leader every new stream broke too, and the run burnt through
// the rest of its records as errors within a second.)
func TestBenchStreamSurvivesLeaderKill(t *testing.T) {
	files := tlsconfigtest.Files(t) // before clearing PROGLOG_CONFIG_DIR
	clearProglogEnv(t)
	c := startCluster(t, 3, files)
	const topic = "streamed"
	const records = 300000
	c.mustRun(t, "", "topic", "create", topic)
	_, client, ctx := killTestClient(t, c, files)

	args := append([]string{"bench", "--mode", benchStream, "--topic", topic, "--records", strconv.Itoa(records),
		"--size", "16", "--concurrency", "4", "--json"}, c.clientArgs()...)
	bench := startProcess(t, c.bin, "", args...)

	// Kill the leader once the streams are under way.
	untilNoError(t, commandTimeout, func() error {
		select {
		case <-bench.exited:
			return nil // reported below
		default:
		}
		info, err := client.DescribeTopic(ctx, topic)
		if err != nil {
			return err
		}
		if info.GetRecords() < 5000 {
			return fmt.Errorf("%d records written", info.GetRecords())
		}
		return nil
	}, "the bench under way")
	select {
	case <-bench.exited:
		t.Fatalf("the bench ended before the leader was killed (make --records larger): stdout %s; stderr %s",
			bench.stdout, bench.stderr)
	default:
	}
	leader := c.leaderIndex(t)
	require.NoError(t, c.nodes[leader].cmd.Process.Signal(syscall.SIGKILL))
	<-c.nodes[leader].exited

	code := bench.wait(t, 2*commandTimeout)
	var got benchResult
	require.NoError(t, json.NewDecoder(strings.NewReader(bench.stdout.String())).Decode(&got),
		"bench printed %q; stderr %s", bench.stdout, bench.stderr)
	require.Equal(t, 0, code, "bench exit status; stderr: %s", bench.stderr)
	require.EqualValues(t, 0, got.Errors, "bench errors; stderr: %s", bench.stderr)
	require.EqualValues(t, records, got.Records, "records written")

	// Every record once: the streams' resends after the failover appended
	// nothing twice.
	untilNoError(t, commandTimeout, func() error {
		info, err := client.DescribeTopic(ctx, topic)
		if err != nil {
			return err
		}
		if info.GetRecords() != records {
			return fmt.Errorf("the topic holds %d records, want %d", info.GetRecords(), records)
		}
		return nil
	}, "the topic's records")
}
