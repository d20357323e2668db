// Package telemetry makes a proglog node observable: structured call logs,
// Prometheus metrics, OpenTelemetry traces and health reporting. It holds
// no global state — every node builds its own pieces, so several nodes in
// one process (as in tests) report apart.
//
// # Logs
//
// CallLogger's gRPC interceptors log each call once, when it ends, with the
// constant message "grpc call" and the fields method, code, duration, peer
// and subject; the level follows the code (DefaultCallLevel), and the
// logger's own level (cmd/proglog's --log-level) decides what is written.
//
// # Metrics
//
// Metrics holds a prometheus.Registry per node with the gRPC server
// metrics of go-grpc-middleware (grpc_server_handled_total,
// grpc_server_handling_seconds, … by grpc_service, grpc_method and
// grpc_code), proglog_records_appended_total and
// proglog_bytes_appended_total by topic (counted by the CommitLog wrapper
// CountAppends), and any collector added with Register. StatsCollector
// reads gauges at scrape time — each topic's offsets, records, bytes and
// segments, Raft state, term and indexes, last contact, Serf members —
// through functions the caller supplies, so this package needs neither Raft
// nor Serf. The topic label is bounded by TopicLabels (MetricsConfig.
// MaxTopicLabels, default 100): topics past the cap share the value
// "(other)", since clients create topics and each label value is a series.
//
// # Traces
//
// Tracing builds a TracerProvider on the exporter its config names (none,
// stdout or OTLP/gRPC) and the otelgrpc stats handlers that make one span
// per call on the server and on clients.
//
// # Health
//
// Health publishes the node's readiness through the standard
// grpc.health.v1 service and the HTTP handlers for /healthz and /readyz.
// The caller decides what ready means (the agent: a known Raft leader and
// the log applied up to the commit index seen at start).
//
// # Wiring
//
//	metrics, _ := telemetry.NewMetrics(telemetry.MetricsConfig{Logger: logger})
//	tracing, _ := telemetry.NewTracing(ctx, telemetry.TracingConfig{Exporter: "otlp"})
//	calls := telemetry.NewCallLogger(telemetry.CallLogConfig{Logger: logger})
//	srv, _ := server.NewGRPCServer(&server.Config{CommitLog: metrics.CountAppends(log), ...},
//		grpc.StatsHandler(tracing.ServerHandler()),
//		grpc.ChainUnaryInterceptor(calls.UnaryServerInterceptor(), metrics.UnaryServerInterceptor(),
//			auth.UnaryServerInterceptor(), calls.UnarySubjectInterceptor()),
//		grpc.ChainStreamInterceptor(calls.StreamServerInterceptor(), metrics.StreamServerInterceptor(),
//			auth.StreamServerInterceptor(), calls.StreamSubjectInterceptor()))
//	health := telemetry.NewHealth("log.v1.Log")
//	health.Register(srv)
//	metrics.InitializeGRPC(srv)
//	mux.Handle("/metrics", metrics.Handler())
//	mux.Handle("/healthz", health.LivenessHandler())
//	mux.Handle("/readyz", health.ReadinessHandler())
package telemetry
