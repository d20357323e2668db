package agent

import (
	"net"
	"sync"
)

// branchListener is a cmux branch whose Close closes only the branch.
//
// Every cmux branch embeds the root listener, so closing any branch closes
// the root and with it every other branch: grpc.Server.GracefulStop (which
// closes its listener) would cut Raft off from its peers while the node is
// still handing over leadership, and Raft would log the "mux: server closed"
// it gets from Accept as an error. With this wrapper the root stays open
// until the Raft stream layer closes last.
type branchListener struct {
	net.Listener

	accepted chan acceptResult
	done     chan struct{}
	once     sync.Once
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// newBranchListener wraps l. The goroutine it starts forwards l's
// connections until l fails, which happens when the root listener closes;
// wg waits for it.
func newBranchListener(l net.Listener, wg *sync.WaitGroup) *branchListener {
	b := &branchListener{Listener: l, accepted: make(chan acceptResult), done: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			select {
			case b.accepted <- acceptResult{conn, err}:
			case <-b.done:
				if conn != nil {
					_ = conn.Close()
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return b
}

// Accept returns the branch's next connection, or net.ErrClosed once Close
// was called.
func (b *branchListener) Accept() (net.Conn, error) {
	select {
	case r := <-b.accepted:
		return r.conn, r.err
	case <-b.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept without closing the root listener.
func (b *branchListener) Close() error {
	b.once.Do(func() { close(b.done) })
	return nil
}
