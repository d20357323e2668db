package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server"
	"github.com/proglog/proglog/server/servertest"
)

// allowEveryone is an Authorizer without access control.
type allowEveryone struct{}

func (allowEveryone) Authorize(string, string, string) error { return nil }

// A server on an in-memory log: produce, consume a stream, then stop the server
// with a stream still open.
func ExampleNewGRPCServer() {
	log := servertest.NewLog()

	stopping := make(chan struct{})
	srv, err := server.NewGRPCServer(&server.Config{
		CommitLog:  log,
		Authorizer: allowEveryone{},
		Stopping:   stopping,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	client := api.NewLogClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	produced, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("hello")}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("produced at offset", produced.Offset)

	stream, err := client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
	if err != nil {
		fmt.Println(err)
		return
	}
	consumed, err := stream.Recv()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("consumed %q\n", consumed.Record.Value)

	// The stream now waits for the next record. Closing stopping ends it,
	// so that the graceful stop does not wait for the client.
	close(stopping)
	if err := server.GracefulStop(ctx, srv); err != nil {
		fmt.Println(err)
	}
	_, err = stream.Recv()
	fmt.Println("stream ended with", status.Code(err))
	fmt.Println("Serve returned", <-served)
	// Output:
	// produced at offset 0
	// consumed "hello"
	// stream ended with Unavailable
	// Serve returned <nil>
}

// The seed book's JSON API.
func ExampleNewHTTPHandler() {
	log := servertest.NewLog()
	handler, err := server.NewHTTPHandler(&server.Config{CommitLog: log, Authorizer: allowEveryone{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()

	call := func(method, url, body string) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			fmt.Println(err)
			return
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer res.Body.Close()
		answer, err := io.ReadAll(res.Body)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %d %s", method, res.StatusCode, answer)
	}
	call(http.MethodPost, srv.URL, `{"record": {"value": "TGV0J3MgR28gIzEK"}}`)
	call(http.MethodGet, srv.URL, `{"offset": 0}`)
	call(http.MethodGet, srv.URL+"/?offset=1", ``)
	// Output:
	// POST 200 {"offset":0}
	// GET 200 {"record":{"value":"TGV0J3MgR28gIzEK","offset":0}}
	// GET 404 {"error":"offset out of range: 1"}
}
