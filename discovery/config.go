package discovery

import (
	"fmt"
	"maps"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"go.uber.org/zap"
)

// RPCAddrTag is the Serf tag every member must carry: the host:port of the
// member's RPC port (Raft and gRPC). Handler.Join receives its value as addr.
const RPCAddrTag = "rpc_addr"

// DefaultBindAddr is the address Serf gossips on when Config.BindAddr is empty:
// every interface, port 8401 (the port the seed book uses).
const DefaultBindAddr = "0.0.0.0:8401"

// Defaults for Config.RetryJoinInterval.
const (
	// DefaultRetryJoinInterval is how often an isolated member with somewhere
	// to rejoin tries again, under ProfileLAN and ProfileWAN.
	DefaultRetryJoinInterval = 5 * time.Second
	// LocalRetryJoinInterval is the same under ProfileLocal.
	LocalRetryJoinInterval = time.Second
)

// Profile names a set of gossip and failure-detection timings. The zero value
// (empty string) means ProfileLAN.
type Profile string

const (
	// ProfileLAN is Serf's and memberlist's own default for a data-centre LAN
	// (memberlist.DefaultLANConfig): probe every 1 s, gossip every 200 ms,
	// leave propagation wait 1 s, failed and left members kept for 24 h.
	// Measured on loopback with three members: a crash is reported after
	// about 6 s, and Leave takes about 1.6 s.
	ProfileLAN Profile = "lan"

	// ProfileWAN is memberlist.DefaultWANConfig with Serf's defaults: slower
	// probes (5 s, 3 s timeout) and gossip (500 ms) for links with high latency.
	ProfileWAN Profile = "wan"

	// ProfileLocal is for tests and for clusters whose nodes share one host or
	// a fast, quiet network: memberlist.DefaultLocalConfig made faster still
	// (probe every 500 ms with a 200 ms timeout, gossip every 50 ms, push/pull
	// every 5 s, TCP timeout 1 s) and Serf's waits shortened (leave
	// propagation 200 ms, broadcast timeout 2 s, reap every 1 s, reconnect
	// every 2 s, failed and left members forgotten after 1 min). Measured on
	// loopback with three members: a crash is reported after about 2.5 s, and
	// Leave takes about 0.3 s. Too eager for a loaded production network,
	// where it would mistake pauses for failures.
	ProfileLocal Profile = "local"
)

// Config configures a Membership. The zero value of every field but NodeName
// and Tags is a usable default; New fills the defaults in and validates.
type Config struct {
	// NodeName is this member's name, unique in the cluster. The agent uses its
	// Raft server ID so that Handler.Join and Handler.Leave can pass it straight
	// to Raft. Required.
	NodeName string

	// BindAddr is the host:port Serf listens on for gossip, over both TCP and
	// UDP. The host must be an IP literal; an empty host means every interface.
	// Port 0 asks the kernel for a free port; Membership.Addr reports the real
	// one. Default DefaultBindAddr.
	BindAddr string

	// AdvertiseAddr is the host:port other members use to reach this one, for
	// when BindAddr is not reachable as such (a wildcard host, NAT, a
	// container). The host must be an IP literal. Port 0 means the bound port,
	// and so does any port when BindAddr's port is 0. Default: BindAddr's host
	// when it is not a wildcard, else a private IP of this host that
	// memberlist picks.
	AdvertiseAddr string

	// Tags are gossiped with this member. They must hold RPCAddrTag, the
	// host:port of this node's RPC port. Serf limits their encoded size to
	// 512 bytes. New copies the map.
	Tags map[string]string

	// StartJoinAddrs are the Serf addresses (host:port) of existing members to
	// join through. New fails with ErrJoin if none of them answers, unless
	// the snapshot (SnapshotPath) names members to rejoin instead. Empty: this
	// member starts a cluster of its own (others join it), or, with a
	// snapshot, rejoins the members it names.
	StartJoinAddrs []string

	// SnapshotPath is the file where Serf records the members this one knows
	// (and its Lamport clocks), so that a restarted member finds its cluster
	// again without StartJoinAddrs: on start, it contacts every member the
	// snapshot names, in the background (see RetryJoinInterval). Its
	// directory is created if missing. One Membership per file. Default "":
	// no snapshot; a restarted member joins only through StartJoinAddrs.
	SnapshotPath string

	// Rejoin says this member was part of a cluster before (its Raft state
	// says so), even when the snapshot names nobody: Serf writes the
	// snapshot through a buffer, and a process killed soon after it joined
	// can lose the members' lines. Then no answer from StartJoinAddrs is
	// not an error either: New keeps trying them in the background, as it
	// does the snapshot's members, since they may be restarting too.
	Rejoin bool

	// RejoinAfterLeave makes a member that left gracefully (Leave, Close) rejoin
	// the members of its snapshot when it starts again, as one that crashed
	// does: for a node that is stopped and started again, not decommissioned.
	// False (Serf's default): a leave empties the snapshot's members, and the
	// next start joins only through StartJoinAddrs. Used only with
	// SnapshotPath.
	RejoinAfterLeave bool

	// RetryJoinInterval is how often a member whose snapshot names other
	// members, but which reached none of them (nor any StartJoinAddrs) when it
	// started, tries all of them again, until one answers, it sees another
	// member alive, or it leaves. This is how a whole cluster restarted in
	// any order finds itself again: whichever members start first wait for
	// the others. Default DefaultRetryJoinInterval, LocalRetryJoinInterval
	// under ProfileLocal.
	RetryJoinInterval time.Duration

	// Profile selects the gossip timings. Default ProfileLAN.
	Profile Profile

	// GossipKeys encrypt and authenticate gossip (AES-GCM, memberlist's
	// keyring): GossipKeys[0] is the primary key, which encrypts; every key
	// listed decrypts, which is what lets a cluster rotate its key without
	// a pause (SetGossipKeys). Each key is 16, 24 or 32 bytes. A member
	// without the key cannot join, and its packets are dropped; members
	// with keys refuse plaintext gossip. Empty: gossip is plaintext and
	// unauthenticated, so anyone who reaches BindAddr can join; the agent
	// asks for that explicitly (--gossip-insecure). New copies the keys.
	GossipKeys [][]byte

	// Logger receives this package's logs and Serf's and memberlist's, each
	// under its own name ("discovery", "discovery.serf",
	// "discovery.memberlist") and with a "node" field. Default zap.NewNop().
	Logger *zap.Logger
}

// withDefaults returns a copy of c with every default filled in: the one place
// defaults live.
func (c Config) withDefaults() Config {
	if c.BindAddr == "" {
		c.BindAddr = DefaultBindAddr
	}
	if c.Profile == "" {
		c.Profile = ProfileLAN
	}
	if c.RetryJoinInterval == 0 {
		c.RetryJoinInterval = DefaultRetryJoinInterval
		if c.Profile == ProfileLocal {
			c.RetryJoinInterval = LocalRetryJoinInterval
		}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	// Copies, so that a caller changing its map or slice later cannot race
	// with Serf reading them.
	c.Tags = maps.Clone(c.Tags)
	c.StartJoinAddrs = append([]string(nil), c.StartJoinAddrs...)
	if c.GossipKeys != nil {
		keys := make([][]byte, len(c.GossipKeys))
		for i, k := range c.GossipKeys {
			keys[i] = append([]byte(nil), k...)
		}
		c.GossipKeys = keys
	}
	return c
}

// validate checks a Config that withDefaults has filled in.
func (c Config) validate() error {
	if c.NodeName == "" {
		return invalid("NodeName", c.NodeName, "must not be empty")
	}
	if _, _, err := splitIPPort(c.BindAddr, false); err != nil {
		return invalid("BindAddr", c.BindAddr, err.Error())
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitIPPort(c.AdvertiseAddr, true); err != nil {
			return invalid("AdvertiseAddr", c.AdvertiseAddr, err.Error())
		}
	}
	rpcAddr, ok := c.Tags[RPCAddrTag]
	if !ok || rpcAddr == "" {
		return invalid("Tags["+RPCAddrTag+"]", rpcAddr, "must be set to this node's RPC host:port")
	}
	if _, _, err := net.SplitHostPort(rpcAddr); err != nil {
		return invalid("Tags["+RPCAddrTag+"]", rpcAddr, err.Error())
	}
	for i, addr := range c.StartJoinAddrs {
		if addr == "" {
			return invalid(fmt.Sprintf("StartJoinAddrs[%d]", i), addr, "must not be empty")
		}
	}
	switch c.Profile {
	case ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		return invalid("Profile", string(c.Profile), `must be "lan", "wan" or "local"`)
	}
	if c.RetryJoinInterval < 0 {
		return invalid("RetryJoinInterval", c.RetryJoinInterval.String(), "must not be negative")
	}
	for i, key := range c.GossipKeys {
		// The value is a secret: the error shows its size only.
		if err := checkGossipKey(key); err != nil {
			return fmt.Errorf("%w: GossipKeys[%d]: %v", ErrInvalidConfig, i, err)
		}
		for j := range i {
			if string(c.GossipKeys[j]) == string(key) {
				return fmt.Errorf("%w: GossipKeys[%d] repeats GossipKeys[%d]", ErrInvalidConfig, i, j)
			}
		}
	}
	return nil
}

func invalid(field, value, reason string) error {
	return fmt.Errorf("%w: %s = %q: %s", ErrInvalidConfig, field, value, reason)
}

// splitIPPort splits a host:port whose host is an IP literal (memberlist
// accepts nothing else). An empty host means every interface, which only a
// bind address may ask for: an advertised address must be reachable.
func splitIPPort(hostport string, advertise bool) (string, int, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		if advertise {
			return "", 0, fmt.Errorf("host must be an IP address")
		}
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("host %q is not an IP address", host)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number in 0..65535", portStr)
	}
	return host, port, nil
}

// serfConfig builds the Serf configuration for c (defaults filled in and
// validated), sending events to eventCh and logs to logger through gate, and
// encrypting gossip with keyring (nil: plaintext).
func (c Config) serfConfig(eventCh chan<- serf.Event, logger *zap.Logger, gate *logGate, keyring *memberlist.Keyring) *serf.Config {
	sc := serf.DefaultConfig()
	switch c.Profile {
	case ProfileWAN:
		sc.MemberlistConfig = memberlist.DefaultWANConfig()
	case ProfileLocal:
		ml := memberlist.DefaultLocalConfig()
		ml.GossipInterval = 50 * time.Millisecond
		ml.ProbeInterval = 500 * time.Millisecond
		ml.ProbeTimeout = 200 * time.Millisecond
		ml.PushPullInterval = 5 * time.Second
		ml.GossipToTheDeadTime = 5 * time.Second
		ml.TCPTimeout = time.Second
		sc.MemberlistConfig = ml
		sc.LeavePropagateDelay = 200 * time.Millisecond
		sc.BroadcastTimeout = 2 * time.Second
		sc.ReapInterval = time.Second
		sc.ReconnectInterval = 2 * time.Second
		sc.ReconnectTimeout = time.Minute
		sc.TombstoneTimeout = time.Minute
	}

	sc.NodeName = c.NodeName
	sc.Tags = c.Tags
	sc.EventCh = eventCh
	sc.SnapshotPath = c.SnapshotPath
	sc.RejoinAfterLeave = c.RejoinAfterLeave
	// Serf and memberlist refuse LogOutput and Logger together; DefaultConfig
	// sets LogOutput to stderr.
	sc.LogOutput = nil
	sc.Logger = newStdLogger(logger.Named("serf"), "serf", gate)
	sc.MemberlistConfig.LogOutput = nil
	sc.MemberlistConfig.Logger = newStdLogger(logger.Named("memberlist"), "memberlist", gate)
	// With a keyring, memberlist encrypts everything it sends and, with
	// GossipVerifyIncoming (on in every preset, and set here so that no
	// preset can turn it off), drops whatever arrives unencrypted or under
	// a key it does not hold.
	sc.MemberlistConfig.Keyring = keyring
	sc.MemberlistConfig.GossipVerifyIncoming = true
	sc.MemberlistConfig.GossipVerifyOutgoing = true

	// validate has checked both addresses.
	bindHost, bindPort, _ := splitIPPort(c.BindAddr, false)
	sc.MemberlistConfig.BindAddr = bindHost
	sc.MemberlistConfig.BindPort = bindPort
	// memberlist advertises AdvertisePort; with BindPort 0 it overwrites it
	// with the port the kernel picked.
	sc.MemberlistConfig.AdvertisePort = bindPort
	if c.AdvertiseAddr != "" {
		advHost, advPort, _ := splitIPPort(c.AdvertiseAddr, true)
		sc.MemberlistConfig.AdvertiseAddr = advHost
		if advPort != 0 {
			sc.MemberlistConfig.AdvertisePort = advPort
		}
	}
	return sc
}
