// Package server serves a commit log: the gRPC Log service (Produce, Consume,
// ConsumeStream, ProduceStream, ProduceBatch, GetServers) and the seed book's
// JSON-over-HTTP API, both on a CommitLog — the local distlog.Log or the
// Raft-replicated distlog.DistributedLog.
//
// # Authentication and authorization
//
// The server does not authenticate: the caller installs the interceptors (and
// HTTP middleware) of server/auth, which put the verified client
// certificate's Common Name in the context. The server authorizes every call
// with Config.Authorizer: (subject, "*", "produce") for Produce, ProduceBatch,
// ProduceStream and POST; (subject, "*", "consume") for Consume,
// ConsumeStream and GET. A stream is authorized once, when it opens.
// GetServers needs no action.
//
// # Errors
//
// One function turns every error into a gRPC status: the api package's typed
// errors keep their codes (OutOfRange past the end of the log, Unavailable
// with the leader's address on a follower), invalid input is
// InvalidArgument, context errors are Canceled or DeadlineExceeded, and
// anything else is Internal with a generic message (the details, and any
// handler panic, are logged). The HTTP API maps those codes to HTTP statuses.
//
// # Stopping
//
// grpc.Server.GracefulStop waits for every call to end, and streams do not
// end by themselves. To stop a server, close Config.Stopping (open streams
// then return codes.Unavailable), then call GracefulStop with a deadline:
//
//	stopping := make(chan struct{})
//	srv, err := server.NewGRPCServer(&server.Config{
//		CommitLog:  commitLog,
//		Authorizer: authorizer,
//		Stopping:   stopping,
//	}, grpc.Creds(creds), grpc.ChainUnaryInterceptor(...), grpc.ChainStreamInterceptor(...))
//	...
//	go srv.Serve(listener)
//	...
//	close(stopping)
//	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//	defer cancel()
//	err = server.GracefulStop(ctx, srv) // falls back to srv.Stop at the deadline
package server
