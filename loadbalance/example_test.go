package loadbalance_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// The Client: writes retried at the leader, a stream that survives a node
// going away.
func ExampleNew() {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS13} // with RootCAs and a client certificate
	client, err := loadbalance.New(loadbalance.Config{
		Seeds:        []string{"10.0.0.1:8400", "10.0.0.2:8400"},
		TLSConfig:    tlsConfig,
		RetryTimeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ctx := context.Background()
	offset, err := client.Produce(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	err = client.ConsumeStream(ctx, offset, func(r *api.Record) error {
		fmt.Printf("%d: %s\n", r.GetOffset(), r.GetValue())
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// The resolver and balancer on a plain gRPC connection.
func ExampleNewBuilder() {
	loadbalance.Register() // once, before creating gRPC clients
	builder, err := loadbalance.NewBuilder(loadbalance.ResolverConfig{ResolveInterval: 3 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS13} // with RootCAs and a client certificate
	conn, err := grpc.NewClient("proglog:///10.0.0.1:8400,10.0.0.2:8400",
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithResolvers(builder))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// Produce goes to the leader, Consume to a follower.
	_, _ = api.NewLogClient(conn).Produce(context.Background(),
		&api.ProduceRequest{Record: &api.Record{Value: []byte("hello")}})
}
