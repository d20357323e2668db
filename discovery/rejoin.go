package discovery

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/serf/serf"
	"go.uber.org/zap"
)

// snapshotMembers returns the members a Serf snapshot at path names as
// alive, other than self, as "name/host:port" join addresses (memberlist
// then checks that the member answering is the one expected), sorted. A
// missing file, or an empty path, names nobody.
//
// Serf keeps what it reads from its snapshot to itself, and New needs it
// first, to decide whether a start-join failure is fatal; so this reads the
// file the way Serf's replay does (serf/snapshot.go): "alive: <name> <addr>"
// adds a member, "not-alive: <name>" removes it, and "leave" forgets them
// all unless rejoinAfterLeave. Every other line (clocks, comments) is
// irrelevant here. The file is only read: Serf alone writes it.
func snapshotMembers(path string, rejoinAfterLeave bool, self string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery: read snapshot %s: %w", path, err)
	}
	defer f.Close()

	alive := map[string]string{}
	reader := bufio.NewReader(f)
	for {
		line, err := reader.ReadString('\n')
		if errors.Is(err, io.EOF) {
			break // a last line without its newline is torn: Serf skips it too
		}
		if err != nil {
			return nil, fmt.Errorf("discovery: read snapshot %s: %w", path, err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "alive: "):
			// The name may hold spaces; the address never does.
			info := strings.TrimPrefix(line, "alive: ")
			if i := strings.LastIndex(info, " "); i > 0 {
				alive[info[:i]] = info[i+1:]
			}
		case strings.HasPrefix(line, "not-alive: "):
			delete(alive, strings.TrimPrefix(line, "not-alive: "))
		case line == "leave" && !rejoinAfterLeave:
			clear(alive)
		}
	}
	delete(alive, self)
	if len(alive) == 0 {
		return nil, nil
	}
	members := make([]string, 0, len(alive))
	for name, addr := range alive {
		members = append(members, name+"/"+addr)
	}
	slices.Sort(members)
	return members, nil
}

// rejoinTargets is startJoin followed by the snapshot's members (as
// snapshotMembers returns them) at other addresses.
func rejoinTargets(startJoin, members []string) []string {
	targets := slices.Clone(startJoin)
	for _, member := range members {
		addr := member[strings.LastIndex(member, "/")+1:]
		if !slices.Contains(startJoin, addr) {
			targets = append(targets, member)
		}
	}
	return targets
}

// ensureSnapshotDir creates the directory of the snapshot file, which Serf
// expects to exist.
func ensureSnapshotDir(path string) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("discovery: create snapshot directory: %w", err)
	}
	return nil
}

// rejoin is the goroutine New starts when the snapshot names other members.
// Its first pass, at once, joins every target, one after the other: each
// member that remembers this one as gone tells it so in the exchange, which
// makes this member refute that with a newer incarnation that the whole
// cluster accepts. (Serf's own rejoin stops at the first member that answers;
// should that member have been restarted too and not know this one, the
// others would ignore this member's return until their next push/pull, 30 s
// under ProfileLAN.) If no target answers, it tries again every interval,
// until one does or this member sees another one alive (it was joined
// meanwhile). It returns then, or when stop is closed; a join in progress
// runs to its end first (at most the profile's TCP timeout), as memberlist
// cannot cancel it.
func (m *Membership) rejoin(targets []string, interval time.Duration, stop <-chan struct{}) {
	defer m.retryDone.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			if m.seesOthers() {
				m.logger.Info("rejoined cluster", zap.Int("attempts", attempt-1))
				return
			}
		}
		var answered []string
		for _, addr := range targets {
			select {
			case <-stop:
				return
			default:
			}
			n, err := m.serf.Join([]string{addr}, true)
			if n == 0 {
				m.logger.Debug("rejoin attempt failed", zap.String("addr", addr), zap.Error(err))
				continue
			}
			answered = append(answered, addr)
		}
		if len(answered) > 0 || m.seesOthers() {
			m.logger.Info("rejoined cluster", zap.Strings("through", answered), zap.Int("attempts", attempt))
			return
		}
		if attempt == 1 {
			m.logger.Warn("no member to rejoin answered; retrying",
				zap.Strings("addrs", targets), zap.Duration("every", interval))
		}
	}
}

// seesOthers reports whether Serf knows another member that is alive.
func (m *Membership) seesOthers() bool {
	for _, member := range m.serf.Members() {
		if member.Name != m.cfg.NodeName && member.Status == serf.StatusAlive {
			return true
		}
	}
	return false
}

// stopRetryLocked stops the rejoin goroutine, if any, and waits for it. The
// caller holds m.mu.
func (m *Membership) stopRetryLocked() {
	if m.retryStop != nil {
		close(m.retryStop)
		m.retryStop = nil
	}
	m.retryDone.Wait()
}
