// Package server serves a commit log of named topics: the gRPC Log service
// (Produce, Consume, ConsumeStream, ProduceStream, ProduceBatch, GetServers,
// CreateTopic, DeleteTopic, ListTopics, DescribeTopic) and the JSON-over-HTTP
// API (the seed book's POST / and GET / on the default topic, and
// /topics/{name}), both on a CommitLog — the Raft-replicated
// distlog.DistributedLog through the agent's adapter, or servertest.Log in
// tests. A request that names no topic uses api.DefaultTopic.
//
// # Authentication and authorization
//
// The server does not authenticate: the caller installs the interceptors (and
// HTTP middleware) of server/auth, which put the verified client
// certificate's Common Name in the context. The server authorizes every call
// with Config.Authorizer, the object being the topic the call names:
// (subject, topic, "produce") for Produce, ProduceBatch, ProduceStream and
// POST; (subject, topic, "consume") for Consume, ConsumeStream,
// DescribeTopic and GET; (subject, topic, "admin") for CreateTopic,
// DeleteTopic, PUT and DELETE. ListTopics keeps the topics the subject may
// consume. A ConsumeStream is authorized once, when it opens; a
// ProduceStream once per topic its requests name. GetServers needs no
// action.
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
