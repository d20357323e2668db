package discovery_test

import (
	"fmt"
	"time"

	"github.com/proglog/proglog/discovery"
)

// printJoins tells of each member that joins, on a channel so that the example
// can wait for it. Its sends never block: a Handler that blocks would hold up
// every later event and Close.
type printJoins chan string

func (p printJoins) Join(name, addr string) error {
	select {
	case p <- fmt.Sprintf("%s joined; its RPC address is %s", name, addr):
	default:
	}
	return nil
}

func (p printJoins) Leave(name string) error { return nil }

func Example() {
	joins := make(printJoins, 1)
	first, err := discovery.New(joins, discovery.Config{
		NodeName: "node-1",
		BindAddr: "127.0.0.1:0", // any free port; first.Addr() tells which
		Tags:     map[string]string{discovery.RPCAddrTag: "127.0.0.1:8400"},
		Profile:  discovery.ProfileLocal,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer first.Close()

	second, err := discovery.New(make(printJoins), discovery.Config{
		NodeName:       "node-2",
		BindAddr:       "127.0.0.1:0",
		Tags:           map[string]string{discovery.RPCAddrTag: "127.0.0.1:8500"},
		StartJoinAddrs: []string{first.Addr()},
		Profile:        discovery.ProfileLocal,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer second.Close() // leaves gracefully: node-1's handler hears Leave("node-2")

	select {
	case msg := <-joins:
		fmt.Println(msg)
	case <-time.After(10 * time.Second):
		fmt.Println("node-1 never saw node-2")
	}
	// Output: node-2 joined; its RPC address is 127.0.0.1:8500
}
