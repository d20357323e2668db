package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// Fault kinds.
const (
	faultKillFollower      = "kill-follower"
	faultKillLeader        = "kill-leader"
	faultStopLeader        = "graceful-stop-leader"
	faultPauseLeader       = "pause-leader"
	faultPauseFollower     = "pause-follower"
	faultKillAll           = "kill-all"
	faultIsolateLeader     = "partition-leader-from-majority"
	faultIsolateFollower   = "partition-follower-from-all"
	faultSplit             = "partition-symmetric-split"
	faultCorruptFollower   = "corrupt-segment-follower"
	faultCorruptLeader     = "corrupt-segment-leader"
	faultDiskFullFollower  = "disk-full-follower"
	faultDiskFailure       = "disk-failure-follower"
	returningNodeKind      = "returning-node-usable"
	pauseBeyondElection    = 3 * time.Second // the default election timeout is 1 s
	progressTimeout        = 90 * time.Second
	returningProbeDuration = 10 * time.Second
)

// Availability targets with the default timeouts (issue 15), by fault kind:
// the median write stall should not exceed them.
var stallTargets = map[string]time.Duration{
	faultKillLeader:   2 * time.Second,
	faultStopLeader:   time.Second,
	faultPauseLeader:  3 * time.Second,
	returningNodeKind: time.Second,
}

// runner injects faults into a cluster under a workload and records them.
type runner struct {
	t    testing.TB
	c    *cluster
	h    *history
	rng  *rand.Rand
	hold time.Duration // how long a fault lasts, at least

	faults    []fault
	returning []time.Duration // returning node: ready → first call it served
}

func (r *runner) logf(format string, args ...any) {
	r.t.Helper()
	r.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// record notes a fault whose stall counts from now.
func (r *runner) record(kind string, node int) {
	r.faults = append(r.faults, fault{kind: kind, node: node, from: time.Now()})
}

// holdFor waits out a fault: the fault's duration, not a synchronisation.
func (r *runner) holdFor(d time.Duration) {
	time.Sleep(d)
}

// inject runs one fault of kind, returning false when it does not apply
// now (e.g. disk-full when the tmpfs node leads).
func (r *runner) inject(kind string) bool {
	r.t.Helper()
	c := r.c
	leader := c.leader()
	pick := func(n int) int { return r.rng.IntN(n) }
	switch kind {
	case faultKillFollower:
		f := c.follower(leader, pick)
		r.logf("%s: node %d", kind, f+1)
		r.record(kind, f)
		c.signal(f, syscall.SIGKILL)
		r.holdFor(r.hold)
		r.restart(f)
	case faultKillLeader, faultStopLeader:
		sig := syscall.SIGKILL
		if kind == faultStopLeader {
			sig = syscall.SIGTERM
		}
		r.logf("%s: node %d", kind, leader+1)
		r.record(kind, leader)
		c.signal(leader, sig)
		r.holdFor(r.hold)
		r.restart(leader)
	case faultPauseLeader, faultPauseFollower:
		victim := leader
		if kind == faultPauseFollower {
			victim = c.follower(leader, pick)
		}
		r.logf("%s: node %d for %v", kind, victim+1, max(r.hold, pauseBeyondElection))
		r.record(kind, victim)
		c.signal(victim, syscall.SIGSTOP)
		r.holdFor(max(r.hold, pauseBeyondElection))
		c.signal(victim, syscall.SIGCONT)
	case faultKillAll:
		r.logf("%s", kind)
		for i := range c.nodes {
			c.signal(i, syscall.SIGKILL)
		}
		r.holdFor(time.Second)
		r.record(kind, -1) // the stall counts from the restart
		for i := range c.nodes {
			c.start(i)
		}
		for i := range c.nodes {
			c.waitReady(i)
		}
	case faultIsolateLeader, faultIsolateFollower, faultSplit:
		groups := r.partitionGroups(kind, leader)
		r.logf("%s: groups %v (leader %d)", kind, oneBased(groups), leader+1)
		r.record(kind, leader)
		c.setPartition(groups)
		start := time.Now()
		if kind != faultIsolateFollower {
			// The leader is on the minority side: the majority must elect
			// another, or the partition did not take (the proxies would
			// not be telling nodes apart).
			majority := groups[len(groups)-1]
			c.waitLeaderOtherThan(majority[0], leader)
		}
		r.holdFor(max(r.hold, pauseBeyondElection) - time.Since(start))
		c.setPartition(nil)
	case faultCorruptFollower, faultCorruptLeader:
		victim := leader
		if kind == faultCorruptFollower {
			victim = c.follower(leader, pick)
		}
		r.logf("%s: node %d", kind, victim+1)
		r.record(kind, victim)
		c.signal(victim, syscall.SIGKILL)
		r.corrupt(victim)
		r.restart(victim)
	case faultDiskFailure:
		return r.diskFailure(leader, pick)
	case faultDiskFullFollower:
		victim := -1
		for _, n := range c.nodes {
			if n.tmpfs {
				victim = n.index
			}
		}
		if victim < 0 || victim == leader {
			return false
		}
		used, err := tmpfsUsed(c.nodes[victim].dataDir)
		require.NoError(r.t, err)
		r.logf("%s: node %d (tmpfs %d KiB in use)", kind, victim+1, used>>10)
		r.record(kind, victim)
		require.NoError(r.t, resizeTmpfs(c.nodes[victim].dataDir, used+16<<10))
		r.holdFor(max(r.hold, pauseBeyondElection))
		require.NoError(r.t, resizeTmpfs(c.nodes[victim].dataDir, tmpfsSize))
		if logData, err := os.ReadFile(c.nodes[victim].logPath); err == nil {
			r.logf("%s: node %d logged %d 'no space left on device' errors", kind, victim+1,
				strings.Count(string(logData), "no space left on device"))
		}
		switch {
		case !c.running(victim) || !r.alive(victim):
			r.logf("%s: node %d exited; starting it again", kind, victim+1)
			c.signal(victim, syscall.SIGKILL)
			r.restart(victim)
		default:
			// A node that failed a write and kept running must recover
			// (catch up) once there is space again, or say on /healthz
			// that it needs a restart, which a supervisor then does.
			if _, _, ok := c.waitReadyWithin(victim, 20*time.Second); ok {
				if live, _ := c.live(victim); live {
					break
				}
			}
			live, why := c.live(victim)
			require.False(r.t, live, "node %d is neither ready after the disk freed up nor failing its liveness probe", victim+1)
			r.logf("%s: node %d fails its liveness probe (%s); restarting it, as a supervisor would", kind, victim+1, why)
			c.signal(victim, syscall.SIGTERM)
			r.restart(victim)
		}
	default:
		r.t.Fatalf("unknown fault %q", kind)
	}
	r.supervise()
	r.waitProgress()
	return true
}

// supervise restarts every running node whose liveness probe fails (503:
// its state machine stopped), as a supervisor such as Kubernetes would. A
// node's state machine can stop after a fault has been judged over (a
// write buffered before the disk filled fails when it is flushed), and a
// node left so never catches up.
func (r *runner) supervise() {
	r.t.Helper()
	c := r.c
	for _, n := range c.nodes {
		c.mu.Lock()
		paused := n.paused
		c.mu.Unlock()
		if paused || !c.running(n.index) {
			continue
		}
		if live, why := c.live(n.index); !live && strings.HasPrefix(why, "state machine stopped") {
			r.logf("node %d fails its liveness probe (%s); restarting it, as a supervisor would", n.index+1, why)
			c.signal(n.index, syscall.SIGTERM)
			r.restart(n.index)
		}
	}
}

// alive reports whether node i's process is still running.
func (r *runner) alive(i int) bool {
	r.c.mu.Lock()
	exited := r.c.nodes[i].exited
	r.c.mu.Unlock()
	select {
	case <-exited:
		r.c.mu.Lock()
		r.c.nodes[i].cmd = nil
		r.c.mu.Unlock()
		return false
	default:
		return true
	}
}

// partitionGroups builds the groups of a partition kind.
func (r *runner) partitionGroups(kind string, leader int) [][]int {
	var others []int
	for _, n := range r.c.nodes {
		if n.index != leader {
			others = append(others, n.index)
		}
	}
	r.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	switch kind {
	case faultIsolateLeader:
		return [][]int{{leader}, others}
	case faultIsolateFollower:
		rest := append([]int{leader}, others[1:]...)
		return [][]int{{others[0]}, rest}
	default: // symmetric split: the leader's side is the smaller half
		half := len(r.c.nodes) / 2
		minority := append([]int{leader}, others[:half-1]...)
		return [][]int{minority, others[half-1:]}
	}
}

func oneBased(groups [][]int) [][]int {
	out := make([][]int, len(groups))
	for g, members := range groups {
		for _, m := range members {
			out[g] = append(out[g], m+1)
		}
	}
	return out
}

// restart starts node i again, waits until it is ready, and measures how
// soon the running clients' calls reach it.
func (r *runner) restart(i int) {
	r.t.Helper()
	r.c.start(i)
	ready := r.c.waitReady(i)
	methods := []string{"Consume", "Produce", "ProduceBatch"}
	base := r.c.handled(i, methods...)
	deadline := ready.Add(returningProbeDuration)
	for time.Now().Before(deadline) {
		if n := r.c.handled(i, methods...); n > base && base >= 0 {
			d := time.Since(ready)
			r.returning = append(r.returning, d)
			r.logf("node %d ready and served its first client call %v later", i+1, d.Round(time.Millisecond))
			return
		}
		time.Sleep(25 * time.Millisecond) // polling another process's metrics
	}
	r.logf("node %d served no client call within %v of being ready", i+1, returningProbeDuration)
	r.returning = append(r.returning, returningProbeDuration)
}

// waitProgress waits until writes are acknowledged again after a fault.
func (r *runner) waitProgress() {
	r.t.Helper()
	before := r.h.acks.Load()
	require.Eventually(r.t, func() bool { return r.h.acks.Load() > before+5 }, progressTimeout, 20*time.Millisecond,
		"no write acknowledged for %v after the fault", progressTimeout)
}

// corrupt damages node i's newest segments while it is stopped, as a torn
// write would: the Raft log's active segment is cut in the middle of its
// last record, and one byte near the end of the default topic's active data
// segment is flipped. Both are the active (newest) segments on purpose: a
// sealed segment was fsynced before the next one began, and damage there
// is a failed disk, not a crash (recovery then cuts everything after it,
// entries this node had acknowledged to the leader, which Raft cannot
// survive on a bare majority; see the note on issue 15).
func (r *runner) corrupt(i int) {
	r.t.Helper()
	dataDir := r.c.nodes[i].dataDir
	cut := newestStoreFile(r.t, filepath.Join(dataDir, "raft", "log", "segments"))
	raw, err := os.ReadFile(cut)
	require.NoError(r.t, err)
	// The Raft log preallocates its active segment: the records end at the
	// last byte that is not zero, not at the file's size.
	end := len(raw)
	for end > 0 && raw[end-1] == 0 {
		end--
	}
	if end > 16 {
		require.NoError(r.t, os.Truncate(cut, int64(end-7)))
		r.logf("truncated %s from %d (records end at %d) to %d bytes", cut, len(raw), end, end-7)
	}
	flip := newestStoreFile(r.t, filepath.Join(dataDir, "topics", "00000000000000000000"))
	data, err := os.ReadFile(flip)
	require.NoError(r.t, err)
	// Only in a record: a segment that holds none yet is its header alone,
	// and a header is written whole before any record (a flipped byte there
	// is a failed disk, which the node rightly refuses to start on).
	if pos := len(data) - 5; pos >= segmentHeaderBytes {
		data[pos] ^= 0xff
		require.NoError(r.t, os.WriteFile(flip, data, 0o644))
		r.logf("flipped byte %d of %s", pos, flip)
	} else {
		r.logf("%s holds no record yet: no byte flipped", flip)
	}
}

// diskFailure damages a sealed segment of a follower while it is stopped,
// as a failing disk would (a crash cannot: a segment is fsynced before the
// next one begins). The node must refuse to start, with one line naming
// the file, rather than cut its log short (which once lost acknowledged
// records); with its data directory removed it must rejoin and catch up.
// The bootstrap node (node 1) is never the victim: wiped, it would start a
// cluster of its own. Prefers a sealed Raft segment (a byte in the middle:
// the Raft log checks every frame at open); without one, a sealed segment
// of a topic with 4 KiB segments written for the purpose (a byte of its
// header: topic logs check headers and boundaries at open, and a frame
// when it is read).
func (r *runner) diskFailure(leader int, pick func(n int) int) bool {
	r.t.Helper()
	c := r.c
	var candidates []int
	for _, n := range c.nodes {
		if n.index != leader && n.index != 0 && c.running(n.index) {
			candidates = append(candidates, n.index)
		}
	}
	if len(candidates) == 0 {
		return false
	}
	victim := candidates[pick(len(candidates))]
	dataDir := c.nodes[victim].dataDir
	target, pos := oldestSealed(filepath.Join(dataDir, "raft", "log", "segments")), -1
	if target == "" {
		r.writeSmallSegments()
		require.Eventually(r.t, func() bool {
			target = sealedTopicSegment(filepath.Join(dataDir, "topics"))
			return target != ""
		}, readyTimeout, 50*time.Millisecond, "node %d never held a sealed topic segment", victim+1)
		pos = 12 // in the header's base offset: its CRC no longer matches
	}
	r.logf("%s: node %d", faultDiskFailure, victim+1)
	r.record(faultDiskFailure, victim)
	c.signal(victim, syscall.SIGKILL)
	data, err := os.ReadFile(target)
	require.NoError(r.t, err)
	if pos < 0 {
		pos = segmentHeaderBytes + (len(data)-segmentHeaderBytes)/2
	}
	data[pos] ^= 0xff
	require.NoError(r.t, os.WriteFile(target, data, 0o644))
	r.logf("flipped byte %d of sealed %s", pos, target)

	c.start(victim)
	c.mu.Lock()
	exited := c.nodes[victim].exited
	c.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(readyTimeout):
		r.t.Fatalf("node %d started on a damaged sealed segment (%s) and kept running", victim+1, target)
	}
	logData, err := os.ReadFile(c.nodes[victim].logPath)
	require.NoError(r.t, err)
	last := string(logData[strings.LastIndex(string(logData), "=== chaos: started"):])
	require.Contains(r.t, last, "corrupt data", "node %d's refusal does not say why", victim+1)
	require.Contains(r.t, last, filepath.Base(target), "node %d's refusal does not name the damaged file", victim+1)
	after, err := os.ReadFile(target)
	require.NoError(r.t, err)
	require.Equal(r.t, data, after, "the refused start changed %s", target)
	r.logf("%s: node %d refused to start, naming %s; removing its data and starting it again", faultDiskFailure, victim+1, filepath.Base(target))
	c.mu.Lock()
	c.nodes[victim].cmd = nil
	c.mu.Unlock()
	entries, err := os.ReadDir(dataDir)
	require.NoError(r.t, err)
	for _, e := range entries { // the directory itself may be a tmpfs mount point
		require.NoError(r.t, os.RemoveAll(filepath.Join(dataDir, e.Name())))
	}
	r.restart(victim)
	r.waitProgress()
	return true
}

// segmentHeaderBytes is the size of a segment store file's header.
const segmentHeaderBytes = 24

// oldestSealed returns the store file of dir's oldest segment when dir
// holds more than one (the newest is the active one), else "".
func oldestSealed(dir string) string {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.store"))
	if len(matches) < 2 {
		return ""
	}
	sort.Strings(matches)
	return matches[0]
}

// sealedTopicSegment returns a sealed store file of any topic under dir,
// or "".
func sealedTopicSegment(dir string) string {
	topics, _ := os.ReadDir(dir)
	for _, t := range topics {
		if s := oldestSealed(filepath.Join(dir, t.Name())); s != "" {
			return s
		}
	}
	return ""
}

// writeSmallSegments creates a topic with 4 KiB segments and writes a few
// of them, so that every node holds sealed topic segments.
func (r *runner) writeSmallSegments() {
	r.t.Helper()
	client := r.c.newClient(loadbalance.Config{})
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	name := fmt.Sprintf("disk-failure-%d", len(r.faults))
	_, err := client.CreateTopic(ctx, name, &api.TopicConfig{MaxSegmentBytes: 4 << 10})
	require.NoError(r.t, err)
	values := make([][]byte, 100)
	for i := range values {
		values[i] = fmt.Appendf(nil, "%s-%03d-%s", name, i, strings.Repeat("x", 100))
	}
	_, err = client.ProduceBatch(ctx, values, loadbalance.WithTopic(name))
	require.NoError(r.t, err)
}

// newestStoreFile returns the store file of dir's active segment: the one
// with the highest base offset (file names are zero-padded base offsets).
func newestStoreFile(t testing.TB, dir string) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "*.store"))
	require.NoError(t, err)
	require.NotEmpty(t, matches, "no segment store files in %s", dir)
	sort.Strings(matches)
	return matches[len(matches)-1]
}

// summarize prints stalls per fault kind and the returning-node figures,
// and returns the targets missed.
func (r *runner) summarize(report func(string)) []string {
	windows := func(i int) time.Duration {
		w := 20 * time.Second
		if i+1 < len(r.faults) {
			w = min(w, r.faults[i+1].from.Sub(r.faults[i].from))
		}
		return w
	}
	text, byKind := stallReport(r.faults, r.h.okCompletions(), windows)
	report(text)
	if len(r.returning) > 0 {
		byKind[returningNodeKind] = r.returning
		report(fmt.Sprintf("%-38s n=%-3d median %-8v max %v\n", returningNodeKind, len(r.returning),
			median(r.returning).Round(time.Millisecond), slices.Max(r.returning).Round(time.Millisecond)))
	}
	var missed []string
	for kind, target := range stallTargets {
		if ds, ok := byKind[kind]; ok && median(ds) > target {
			missed = append(missed, fmt.Sprintf("%s: median %v > target %v", kind, median(ds).Round(time.Millisecond), target))
		}
	}
	slices.Sort(missed)
	return missed
}
