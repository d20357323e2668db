package storage

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// The crash test re-executes the test binary as a child that appends
// records to a log until the parent SIGKILLs it.
const (
	crashDirEnv  = "DISTLOG_CRASH_CHILD_DIR"
	crashModeEnv = "DISTLOG_CRASH_CHILD_MODE" // "sync-sometimes", "sync-on-append", "sync-on-append-preallocated", "sync-on-append-prezeroed", "truncating" or "background-sealing"
)

// crashConfig makes segments larger than the store's write buffer (so that
// buffer flushes end mid-frame and a kill leaves torn frames) yet small
// enough that a run crosses several, with an index size that is not a
// multiple of the entry width.
func crashConfig(c *Config) {
	c.Segment.MaxStoreBytes = 4 * storeBufferBytes
	c.Segment.MaxIndexBytes = 1000*entWidth + 7
}

// crashModeConfig is the Config of the crash test's mode (crashConfig and
// what the mode adds).
func crashModeConfig(c *Config, mode string) {
	crashConfig(c)
	c.SyncOnAppend = strings.HasPrefix(mode, "sync-on-append")
	c.Segment.Preallocate = strings.HasPrefix(mode, "sync-on-append-pre")
	c.Segment.ZeroFill = mode == "sync-on-append-prezeroed"
	if mode == "truncating" || mode == "background-sealing" {
		// Segments of 40 records, so that a run removes (or seals) many.
		c.Segment.MaxIndexBytes = crashTruncatingSegmentRecords*entWidth + 7
	}
	c.SyncSealedInBackground = mode == "background-sealing"
}

// The "truncating" child removes segments from a goroutine while it
// appends (every crashTruncateEvery appends it asks for a Truncate keeping
// the last crashKeepRecords records), so that a kill can land in the
// middle of a removal.
const (
	crashTruncatingSegmentRecords = 40
	crashTruncateEvery            = 20
	crashKeepRecords              = 200
)

// crashSyncEvery is how many appends the "sync-sometimes" child makes
// between Syncs: enough to overflow the write buffer in between.
const crashSyncEvery = 300

// crashValue is the value written at off: long enough (and of varying
// length) that write-buffer flushes often end in the middle of a frame.
func crashValue(off uint64) []byte {
	return bytes.Repeat(storageValue(off), 1+int(off%13))
}

// TestStorageCrashChild is the child process of TestCrashRecovery; run
// directly, it skips.
func TestStorageCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashRecovery")
	}
	var c Config
	mode := os.Getenv(crashModeEnv)
	crashModeConfig(&c, mode)
	l, err := NewLog(dir, c)
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("ready %d\n", l.NextOffset())
	truncate := make(chan struct{}, 1)
	if mode == "truncating" {
		go func() { // runs until the kill
			for range truncate {
				if next := l.NextOffset(); next > crashKeepRecords {
					if err := l.Truncate(next - crashKeepRecords); err != nil {
						fmt.Printf("error %v\n", err)
						os.Exit(1)
					}
				}
			}
		}()
	}
	for i := 0; ; i++ {
		if i%crashTruncateEvery == 0 {
			select {
			case truncate <- struct{}{}:
			default:
			}
		}
		next := l.NextOffset()
		if i%5 == 4 {
			batch := make([]*Record, 3)
			for k := range batch {
				batch[k] = &Record{Value: crashValue(next + uint64(k))}
			}
			_, err = l.AppendBatch(batch)
		} else {
			_, err = l.Append(&Record{Value: crashValue(next)})
		}
		periodic := i%crashSyncEvery == crashSyncEvery-1
		if err == nil && !c.SyncOnAppend && periodic {
			err = l.Sync()
		}
		if err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(1)
		}
		// Every record below this offset was acknowledged as synced.
		if c.SyncOnAppend || periodic {
			fmt.Printf("synced %d\n", l.NextOffset())
		}
	}
}

// TestCrashRecovery kills a child process that is appending (SIGKILL: no
// Close, so the index is at its grown size with a zero tail and the store
// may end in a partial frame), reopens the log, and checks that it holds a
// prefix of what was written that contains every synced record; then lets
// a new child carry on from there, several rounds in a row.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for _, mode := range []string{"sync-sometimes", "sync-on-append", "sync-on-append-preallocated", "sync-on-append-prezeroed", "truncating", "background-sealing"} {
		t.Run(mode, func(t *testing.T) {
			maxSyncs := 60
			if !strings.HasPrefix(mode, "sync-on-append") {
				maxSyncs = 4
			}
			dir := t.TempDir()
			var next uint64 // what the log held after the last recovery
			for round := range 5 {
				killDelay := time.Duration(rng.IntN(100_000)) * time.Microsecond
				synced := runCrashChild(t, dir, mode, next, 1+rng.IntN(maxSyncs), killDelay)
				core, logs := observer.New(zap.InfoLevel)
				l := openStorageLog(t, dir, func(c *Config) {
					crashModeConfig(c, mode)
					c.SyncOnAppend = false
					c.Logger = zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
				})
				next = l.NextOffset()
				require.GreaterOrEqual(t, next, synced, "round %d: a synced record was lost", round)
				// A truncating child's log may reopen with fewer or more
				// of the segments it removed, but always contiguous.
				lowest, err := l.LowestOffset()
				require.NoError(t, err)
				for off := lowest; off < next; off++ {
					rec, err := l.Read(off)
					require.NoError(t, err, "round %d: Read(%d)", round, off)
					require.Equal(t, crashValue(off), rec.Value, "round %d: Read(%d)", round, off)
				}
				requireOutOfRange(t, l, next)
				t.Logf("round %d: %d synced, %d..%d recovered, %d torn tails cut, %d indexes rebuilt", round, synced, lowest, next,
					logs.FilterMessage("truncating store after its last valid record").Len(),
					logs.FilterMessage("rebuilt index from store").Len())
				require.NoError(t, l.Close())
			}
		})
	}
}

// runCrashChild starts a child appending to dir, SIGKILLs it killDelay
// after it has reported killAfter syncs (the child keeps appending in the
// meantime: the delay only randomises the moment of death), and returns the
// highest offset it reported synced (every record below it must survive).
func runCrashChild(t *testing.T, dir, mode string, wantNext uint64, killAfter int, killDelay time.Duration) (synced uint64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStorageCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashModeEnv+"="+mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// A deadline, not a synchronisation: a child that stalls is killed and
	// the test fails on the missing output below.
	deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()

	lines := bufio.NewScanner(stdout)
	syncs, ready := 0, false
	for lines.Scan() {
		verb, arg, _ := strings.Cut(lines.Text(), " ")
		switch verb {
		case "ready":
			n, err := strconv.ParseUint(arg, 10, 64)
			require.NoError(t, err)
			require.Equal(t, wantNext, n, "child reopened the log at the wrong offset")
			ready = true
		case "synced":
			n, err := strconv.ParseUint(arg, 10, 64)
			require.NoError(t, err)
			synced = n
			if syncs++; syncs == killAfter {
				time.AfterFunc(killDelay, func() { _ = cmd.Process.Kill() }) // SIGKILL
			}
		case "error":
			t.Fatalf("child: %s", lines.Text())
		}
	}
	err = cmd.Wait()
	require.Error(t, err, "the child only ends by being killed")
	require.True(t, ready, "child never opened the log; stderr:\n%s", stderr.String())
	require.GreaterOrEqual(t, syncs, killAfter, "child died before it was killed; stderr:\n%s", stderr.String())
	return synced
}
