package distlog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The distributed crash test re-executes the test binary as a child that
// runs a one-node DistributedLog and appends, to the default topic and to
// topic "second", creating and deleting other topics now and then, until
// the parent SIGKILLs it. The topics' logs do not fsync (their default), so
// a kill loses their buffered tails: Raft's replay must restore them, in
// every topic, without appending anything twice.
const (
	distCrashDirEnv  = "DISTLOG_DIST_CRASH_DIR"
	distCrashAddrEnv = "DISTLOG_DIST_CRASH_ADDR"
	distCrashSeqEnv  = "DISTLOG_DIST_CRASH_SEQ" // first value sequence number
)

// distCrashConfig is the node configuration of the child and of the parent
// that reopens its directory.
func distCrashConfig(ln net.Listener, logger *zap.Logger) DistributedConfig {
	cfg := DistributedConfig{Logger: logger}
	cfg.Log.Segment.MaxIndexBytes = 100 * entWidth
	cfg.Raft.LocalID = "crash"
	cfg.Raft.StreamLayer = NewStreamLayer(ln, nil, nil)
	cfg.Raft.Bootstrap = true
	cfg.Raft.HeartbeatTimeout = 100 * time.Millisecond
	cfg.Raft.ElectionTimeout = 100 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 100 * time.Millisecond
	cfg.Raft.CommitTimeout = 5 * time.Millisecond
	cfg.Raft.SnapshotThreshold = 200 // some runs restore a snapshot on start
	cfg.Raft.SnapshotInterval = 50 * time.Millisecond
	cfg.Raft.TrailingLogs = 50
	cfg.Raft.TrailingBytes = -1 // a fixed count: these entries are small
	return cfg
}

func crashSeqValue(seq uint64) []byte { return []byte(fmt.Sprintf("v-%d", seq)) }

// crashTopics are the topics the child appends to ("" is the default).
var crashTopics = []string{"", "second"}

// TestDistributedCrashChild is the child of TestDistributedLogCrashRecovery;
// run directly, it skips. It reports every acknowledged append on stdout as
// "ack <topic index> <first offset> <count> <first seq>".
func TestDistributedCrashChild(t *testing.T) {
	dir := os.Getenv(distCrashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestDistributedLogCrashRecovery")
	}
	seq, err := strconv.ParseUint(os.Getenv(distCrashSeqEnv), 10, 64)
	if err != nil {
		fmt.Printf("error bad seq: %v\n", err)
		return
	}
	ln, err := net.Listen("tcp", os.Getenv(distCrashAddrEnv))
	if err != nil {
		fmt.Printf("error listen: %v\n", err)
		return
	}
	d, err := NewDistributedLog(dir, distCrashConfig(ln, zap.NewNop()))
	if err != nil {
		fmt.Printf("error open: %v\n", err)
		return
	}
	ctx := context.Background()
	// fatal reports err unless it is the node not leading yet, and then
	// waits for it to lead.
	fatal := func(what string, err error) bool {
		var notLeader api.ErrNotLeader
		if !errors.As(err, &notLeader) {
			fmt.Printf("error %s: %v\n", what, err)
			return true
		}
		if err := d.WaitForLeader(ctx); err != nil {
			fmt.Printf("error wait: %v\n", err)
			return true
		}
		return false
	}
	for {
		err := d.CreateTopic(ctx, "second", TopicConfig{})
		if err == nil {
			break
		}
		if fatal("create", err) {
			return
		}
	}
	for k := 0; ; k++ {
		if k%40 == 39 {
			// Topic churn: the metadata table changes under the kills too.
			name := fmt.Sprintf("churn-%d", seq)
			if err := d.CreateTopic(ctx, name, TopicConfig{}); err != nil {
				if fatal("create", err) {
					return
				}
				continue
			}
			if _, err := d.AppendBatch(ctx, name, []*api.Record{{Value: []byte("x")}}); err != nil && fatal("append churn", err) {
				return
			}
			if err := d.DeleteTopic(ctx, name); err != nil && fatal("delete", err) {
				return
			}
		}
		count := 1
		if k%2 == 1 {
			count = 2 + k%7
		}
		batch := make([]*api.Record, count)
		for j := range batch {
			batch[j] = &api.Record{Value: crashSeqValue(seq + uint64(j))}
		}
		topic := k % 3 % 2 // default twice as often as "second"
		first, err := d.AppendBatch(ctx, crashTopics[topic], batch)
		if err != nil {
			// Until the node has elected itself; anything else is fatal.
			var notLeader api.ErrNotLeader
			if !errors.As(err, &notLeader) {
				fmt.Printf("error append: %v\n", err)
				return
			}
			if err := d.WaitForLeader(ctx); err != nil {
				fmt.Printf("error wait: %v\n", err)
				return
			}
			continue
		}
		fmt.Printf("ack %d %d %d %d\n", topic, first, count, seq)
		seq += uint64(count)
	}
}

// crashAck is one acknowledged append: values seq.. at offsets first.. of
// crashTopics[topic].
type crashAck struct{ topic, first, count, seq uint64 }

// runDistCrashChild runs a child on dir and addr, SIGKILLs it at a random
// moment after it acknowledged killAfter appends, and returns what it
// acknowledged.
func runDistCrashChild(t *testing.T, dir, addr string, seq uint64, killAfter int) []crashAck {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDistributedCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), distCrashDirEnv+"="+dir, distCrashAddrEnv+"="+addr,
		distCrashSeqEnv+"="+strconv.FormatUint(seq, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// A deadline, not a synchronisation: a child that stalls is killed and
	// the test fails on the missing output below.
	deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()

	var acks []crashAck
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "ack":
			require.Len(t, fields, 5, "child line %q", lines.Text())
			var a crashAck
			for k, p := range []*uint64{&a.topic, &a.first, &a.count, &a.seq} {
				*p, err = strconv.ParseUint(fields[k+1], 10, 64)
				require.NoError(t, err)
			}
			acks = append(acks, a)
			if len(acks) == killAfter {
				delay := time.Duration(rand.IntN(20)) * time.Millisecond
				time.AfterFunc(delay, func() { _ = cmd.Process.Kill() }) // SIGKILL
			}
		case "error":
			t.Fatalf("child: %s; stderr:\n%s", lines.Text(), stderr.String())
		}
	}
	require.Error(t, cmd.Wait(), "the child only ends by being killed")
	require.GreaterOrEqual(t, len(acks), killAfter, "child died before it was killed; stderr:\n%s", stderr.String())
	return acks
}

// TestDistributedLogCrashRecovery kills a node twice in the middle of
// appending and checks that, after each restart, the log holds every
// acknowledged record at its acknowledged offset, nothing twice, and that
// appends go on at the next offset.
func TestDistributedLogCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	dir := t.TempDir()
	// Reserve an address for the node: it keeps it across restarts.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	var acks []crashAck
	for run, seq := range []uint64{0, 1_000_000} {
		acks = append(acks, runDistCrashChild(t, dir, addr, seq, 150+run*50)...)
	}

	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	d, err := NewDistributedLog(dir, distCrashConfig(ln, zaptest.NewLogger(t)))
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close()) }()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, d.WaitForLeader(ctx))
	var next uint64
	require.Eventually(t, func() bool {
		next, err = appendOne(ctx, d, &api.Record{Value: []byte("after")})
		return err == nil
	}, waitTimeout, 10*time.Millisecond)

	// Every acknowledged record is where it was acknowledged, in its topic.
	for _, a := range acks {
		for j := uint64(0); j < a.count; j++ {
			rec, err := d.Read(ctx, crashTopics[a.topic], a.first+j)
			require.NoError(t, err, "Read(%q, %d)", crashTopics[a.topic], a.first+j)
			require.Equal(t, string(crashSeqValue(a.seq+j)), string(rec.GetValue()), "Read(%q, %d)", crashTopics[a.topic], a.first+j)
		}
	}
	// Nothing twice: the values, written by one sequential writer per run,
	// strictly increase from offset 0 to the end of each topic (records
	// committed but not acknowledged before a kill may be there, once).
	for k, topic := range crashTopics {
		info, err := d.Topic(topic)
		require.NoError(t, err)
		end := info.NextOffset
		if topic == "" {
			end = next
		}
		var acked uint64
		for _, a := range acks {
			if a.topic == uint64(k) {
				acked = max(acked, a.first+a.count)
			}
		}
		require.GreaterOrEqual(t, end, acked, "topic %q", topic)
		prev := int64(-1)
		for off := uint64(0); off < end; off++ {
			rec, err := d.Read(ctx, topic, off)
			require.NoError(t, err, "Read(%q, %d)", topic, off)
			seq, err := strconv.ParseInt(strings.TrimPrefix(string(rec.GetValue()), "v-"), 10, 64)
			require.NoError(t, err, "Read(%q, %d) = %q", topic, off, rec.GetValue())
			require.Greater(t, seq, prev, "Read(%q, %d) = %q after seq %d: duplicate or reordered", topic, off, rec.GetValue(), prev)
			prev = seq
		}
	}
	rec, err := d.Read(ctx, "", next)
	require.NoError(t, err)
	require.Equal(t, "after", string(rec.GetValue()))
	require.Equal(t, next+1, nextOffset(d))
	// At most the churn topic a kill caught between create and delete is
	// left besides the two.
	topics := d.Topics()
	require.LessOrEqual(t, len(topics), 4)
	for _, info := range topics {
		if info.Name != DefaultTopic && info.Name != "second" {
			require.True(t, strings.HasPrefix(info.Name, "churn-"), "topic %q", info.Name)
			require.LessOrEqual(t, info.Records, uint64(1))
		}
	}
	t.Logf("%d acknowledged appends over two crashes; %d records in the default topic, %d topics", len(acks), next, len(topics))
}
