package agent

import (
	"errors"
	"fmt"
	"net"
)

// Crash stops the node the way a killed process looks to the rest of the
// cluster, for fault tests: the RPC port stops accepting, every gRPC
// connection is cut at once (calls in flight fail on the client with
// Unavailable instead of finishing), and Raft stops without handing over
// leadership. Serf is not told: the node stays alive in gossip, so the
// leader keeps it as a voter, as it would a crashed node that may come back.
//
// The HTTP server, Serf and the reconcile loop keep running until Shutdown,
// which the test must still call (it then leaves Serf and stops the rest).
// A crashed node cannot be restarted in the same process: its Serf still
// holds its gossip port.
func (a *Agent) Crash() error {
	var errs []error
	if err := a.rpcListener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, fmt.Errorf("close rpc listener: %w", err))
	}
	a.grpcServer.Stop()
	if err := a.log.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close log: %w", err))
	}
	return errors.Join(errs...)
}
