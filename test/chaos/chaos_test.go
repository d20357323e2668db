package chaos

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// Flags of `make chaos` (TestChaos). Without -chaos.duration, TestChaos is
// skipped.
var (
	chaosDuration = flag.Duration("chaos.duration", 0, "run randomized faults for this long (TestChaos); 0 skips it")
	chaosNodes    = flag.Int("chaos.nodes", 3, "cluster size for TestChaos")
	chaosSeed     = flag.Uint64("chaos.seed", 0, "seed of TestChaos's choices; 0 picks one from the clock")
	chaosKeep     = flag.Bool("chaos.keep", false, "keep the data, logs and history even when the run passes")
)

// proglogBin is the proglog binary built once for the package's tests.
var proglogBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if runtime.GOOS != "linux" {
		fmt.Println("chaos: skipped: the harness needs Linux (/proc, 127.0.1.x loopback, tmpfs)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "proglog-chaos-bin-")
	if err != nil {
		fmt.Println("chaos:", err)
		os.Exit(1)
	}
	proglogBin = filepath.Join(dir, "proglog")
	out, err := exec.Command("go", "build", "-o", proglogBin, "github.com/proglog/proglog/cmd/proglog").CombinedOutput()
	if err != nil {
		fmt.Printf("chaos: go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("time.Sleep")); err != nil {
			fmt.Println("chaos: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runDir is where a run keeps its nodes' data and logs and its history:
// removed when the test passes (unless -chaos.keep), kept and named when
// it fails.
func runDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "proglog-chaos-"+t.Name()+"-")
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() || *chaosKeep {
			t.Logf("data, node logs and history kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

// shortWorkload is the load of the suite's scenarios: one writer of each
// kind and a reader, paced to leave the CPU to the nodes.
var shortWorkload = workloadOptions{produce: 1, batch: 1, stream: 1, readers: 1, pause: 20 * time.Millisecond}

// runScenario starts a cluster, runs the workload through the faults in
// order, and checks the outcome.
func runScenario(t *testing.T, nodes int, faults []string, tmpfs bool) {
	dir := runDir(t)
	tmpfsNode := -1
	if tmpfs {
		tmpfsNode = nodes - 1
	}
	c := newCluster(t, proglogBin, dir, clusterOptions{nodes: nodes, tmpfsNode: tmpfsNode})
	h := newHistory()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := &runner{t: t, c: c, h: h, rng: rand.New(rand.NewPCG(seed, seed)), hold: 2 * time.Second}
	w := startWorkload(c, h, shortWorkload)
	r.waitProgress()
	for _, kind := range faults {
		if !r.inject(kind) {
			t.Logf("%s: does not apply now; skipped", kind)
		}
	}
	r.supervise()
	r.waitProgress()
	w.stop()
	finish(t, r, w, dir, 30*time.Second)
}

// finish checks the run, prints its figures and fails the test on a
// violation.
func finish(t *testing.T, r *runner, w *workload, dir string, linearizabilityTimeout time.Duration) report {
	t.Helper()
	require.NoError(t, r.h.save(filepath.Join(dir, "history.jsonl")))
	rep, err := r.c.check(r.h, linearizabilityTimeout)
	require.NoError(t, err)
	rep.faults = len(r.faults)
	rep.stream = w.checkStream(rep.final)
	rep.streamed = w.streamedCount()
	t.Log(rep.summary())
	t.Logf("the ConsumeStream consumer received %d of %d records in order", rep.streamed, len(rep.final))
	missed := r.summarize(func(s string) { t.Log("\n" + s) })
	for _, m := range missed {
		t.Logf("availability target missed (not asserted): %s", m)
	}
	if !rep.ok() {
		t.Errorf("checks failed: %s\n%s", rep.summary(), rep.details())
	}
	require.Positive(t, rep.acked, "no write was acknowledged")
	return rep
}

// TestFaultsThreeNodes: every single-cluster fault once, short, on three
// nodes (part of make test).
func TestFaultsThreeNodes(t *testing.T) {
	faults := []string{
		faultKillFollower, faultKillLeader, faultStopLeader, faultPauseLeader, faultPauseFollower,
		faultIsolateLeader, faultIsolateFollower, faultCorruptFollower, faultCorruptLeader, faultDiskFailure, faultKillAll,
	}
	tmpfs := canMountTmpfs()
	if tmpfs {
		// First: the tmpfs node (the last) is still a follower then; it
		// applies only to a follower.
		faults = append([]string{faultDiskFullFollower}, faults...)
	} else {
		t.Log("disk-full-follower skipped: mounting a tmpfs needs root")
	}
	runScenario(t, 3, faults, tmpfs)
}

// TestFaultsFiveNodes: a leader crash and a symmetric split, with the
// leader on the minority side, on five nodes (part of make test).
func TestFaultsFiveNodes(t *testing.T) {
	runScenario(t, 5, []string{faultKillLeader, faultSplit}, false)
}

// TestFaultsDiskFull: only the disk-full fault (for debugging it alone;
// TestFaultsThreeNodes includes it).
func TestFaultsDiskFull(t *testing.T) {
	if !canMountTmpfs() || testing.Short() {
		t.Skip("needs root (tmpfs); covered by TestFaultsThreeNodes")
	}
	if os.Getenv("CHAOS_DISK_FULL_ALONE") == "" {
		t.Skip("set CHAOS_DISK_FULL_ALONE=1 to run it alone; TestFaultsThreeNodes includes it")
	}
	runScenario(t, 3, []string{faultDiskFullFollower, faultDiskFullFollower}, true)
}

// TestChaos runs randomized faults for -chaos.duration (make chaos).
func TestChaos(t *testing.T) {
	if *chaosDuration <= 0 {
		t.Skip("set -chaos.duration (make chaos DURATION=10m) to run randomized faults")
	}
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	dir := runDir(t)
	t.Cleanup(func() {
		if t.Failed() {
			fmt.Printf("chaos: FAILED; replay with: make chaos DURATION=%v NODES=%d SEED=%d\nchaos: history and node logs in %s\n",
				*chaosDuration, *chaosNodes, seed, dir)
		}
	})
	fmt.Printf("chaos: seed %d, %d nodes, %v\n", seed, *chaosNodes, *chaosDuration)
	tmpfs := canMountTmpfs()
	tmpfsNode := -1
	if tmpfs {
		tmpfsNode = *chaosNodes - 1
	} else {
		fmt.Println("chaos: disk-full faults skipped: mounting a tmpfs needs root")
	}
	c := newCluster(t, proglogBin, dir, clusterOptions{nodes: *chaosNodes, tmpfsNode: tmpfsNode})
	h := newHistory()
	rng := rand.New(rand.NewPCG(seed, seed))
	r := &runner{t: t, c: c, h: h, rng: rng, hold: 2 * time.Second}
	kinds := []string{
		faultKillFollower, faultKillLeader, faultStopLeader, faultPauseLeader, faultPauseFollower,
		faultIsolateLeader, faultIsolateFollower, faultCorruptFollower, faultCorruptLeader, faultDiskFailure, faultKillAll,
	}
	if *chaosNodes >= 4 {
		kinds = append(kinds, faultSplit)
	}
	if tmpfs {
		kinds = append(kinds, faultDiskFullFollower)
	}
	w := startWorkload(c, h, workloadOptions{produce: 2, batch: 1, stream: 1, readers: 1, pause: 5 * time.Millisecond})
	r.waitProgress()
	end := time.Now().Add(*chaosDuration)
	for time.Now().Before(end) {
		kind := kinds[rng.IntN(len(kinds))]
		r.hold = time.Duration(1+rng.IntN(5)) * time.Second
		r.inject(kind)
		r.holdFor(time.Duration(rng.IntN(3000)) * time.Millisecond)
	}
	r.supervise()
	r.waitProgress()
	w.stop()
	rep := finish(t, r, w, dir, 5*time.Minute)
	fmt.Println(rep.summary())
	missed := r.summarize(func(s string) { fmt.Print(s) })
	for _, m := range missed {
		fmt.Printf("chaos: availability target missed: %s\n", m)
	}
}
