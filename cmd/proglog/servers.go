package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// expectPollInterval is how often `servers --expect` asks again.
const expectPollInterval = 100 * time.Millisecond

// serversSettings are the settings of `proglog servers`.
type serversSettings struct {
	client clientSettings
	// expect makes the command wait for that many servers and a leader.
	expect int
}

// readServersSettings reads and validates the settings of `proglog servers`.
func readServersSettings(s *settings) (serversSettings, error) {
	ss := serversSettings{client: readClientSettings(s), expect: s.Int(keyExpect)}
	if err := s.Err(); err != nil {
		return ss, err
	}
	if ss.expect < 0 {
		return ss, usageError(fmt.Errorf("--expect %d must not be negative", ss.expect))
	}
	return ss, ss.client.validate()
}

func newServersCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "servers",
		Short: "List the cluster's servers and which one leads",
		Long: `Print the servers of the cluster's Raft configuration: node name, RPC address,
and whether it is the leader. With --expect N, first wait (up to --timeout)
until the cluster lists at least N servers and one of them leads: scripts use
it to wait for a cluster to form.`,
		Example: `  proglog servers
  proglog servers --addr 10.0.0.1:8401
  proglog servers --expect 3 --timeout 60s   # wait for a three-node cluster`,
		RunE: runServers,
	}, serversOptions())
}

// runServers runs `proglog servers`.
func runServers(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd.Flags(), serversOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ss, err := readServersSettings(s)
	if err != nil {
		return err
	}
	client, err := ss.client.connect(cmd, "servers")
	if err != nil {
		return err
	}
	defer client.Close()

	var servers []*api.Server
	if ss.expect == 0 {
		servers, err = client.GetServers(cmd.Context())
	} else {
		servers, err = waitForServers(cmd.Context(), client, ss.expect, ss.client.timeout)
	}
	if err != nil {
		return ss.client.rpcError("servers", err)
	}
	return writeServers(cmd.OutOrStdout(), servers)
}

// waitForServers asks for the servers until at least n are listed with a
// leader among them, or timeout passes.
func waitForServers(ctx context.Context, client *loadbalance.Client, n int, timeout time.Duration) ([]*api.Server, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(expectPollInterval)
	defer ticker.Stop()
	var servers []*api.Server
	// lastErr is the last failure that says more than "deadline exceeded",
	// which the last call, cut short by the overall timeout, usually says.
	var lastErr error
	for {
		callCtx, callCancel := context.WithTimeout(ctx, time.Second)
		var err error
		servers, err = client.GetServers(callCtx)
		callCancel()
		if err == nil && len(servers) >= n && hasLeader(servers) {
			return servers, nil
		}
		if err != nil && (lastErr == nil || status.Code(err) != codes.DeadlineExceeded) {
			lastErr = err
		}
		if err == nil {
			lastErr = nil
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return nil, lastErr
			}
			return nil, fmt.Errorf("the cluster lists %d servers (leader known: %t) after %v; want %d with a leader",
				len(servers), hasLeader(servers), timeout, n)
		case <-ticker.C:
		}
	}
}

// hasLeader reports whether one of servers is the leader.
func hasLeader(servers []*api.Server) bool {
	for _, s := range servers {
		if s.GetIsLeader() {
			return true
		}
	}
	return false
}

// writeServers prints servers as a table sorted by id.
func writeServers(w io.Writer, servers []*api.Server) error {
	sorted := append([]*api.Server(nil), servers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetId() < sorted[j].GetId() })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tLEADER")
	for _, s := range sorted {
		leader := "no"
		if s.GetIsLeader() {
			leader = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.GetId(), s.GetRpcAddr(), leader)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("servers: write: %w", err)
	}
	return nil
}
