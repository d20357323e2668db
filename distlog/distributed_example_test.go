package distlog_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog"
)

// A one-node cluster: the node bootstraps itself and leads. A real node
// gives NewStreamLayer its peer TLS configurations and a listener that the
// agent shares with gRPC; more nodes join through the leader's Join.
func ExampleDistributedLog() {
	dir, err := os.MkdirTemp("", "distlog-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}

	var cfg distlog.DistributedConfig
	cfg.Raft.LocalID = "node-1"
	cfg.Raft.StreamLayer = distlog.NewStreamLayer(ln, nil, nil) // plain TCP: examples and tests only
	cfg.Raft.Bootstrap = true
	cfg.Raft.HeartbeatTimeout = 50 * time.Millisecond // elect quickly
	cfg.Raft.ElectionTimeout = 50 * time.Millisecond
	cfg.Raft.LeaderLeaseTimeout = 50 * time.Millisecond
	d, err := distlog.NewDistributedLog(dir, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitForLeader(ctx); err != nil { // the only node: itself
		log.Fatal(err)
	}
	first, err := d.AppendBatch(ctx, "", []*api.Record{{Value: []byte("hello")}, {Value: []byte("world")}})
	if err != nil {
		log.Fatal(err)
	}
	rec, err := d.Read(ctx, "", first+1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d: %s\n", rec.GetOffset(), rec.GetValue())
	servers, err := d.GetServers()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(servers[0].GetId(), servers[0].GetIsLeader())
	// Output:
	// 1: world
	// node-1 true
}
