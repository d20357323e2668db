package server_test

// End-to-end security tests (issue 4): a gRPC server and the HTTP handler,
// built the way the agent builds them (TLS credentials, the auth
// interceptors and middleware, the Casbin policy from the files `make
// gencert` installs), called by clients with every kind of certificate.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server"
	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/servertest"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

// securityTimeout bounds every call of these tests, so that a regression
// fails instead of hanging.
const securityTimeout = 10 * time.Second

// secureServer is one node's gRPC server and HTTP server over TLS.
type secureServer struct {
	grpcAddr string
	httpURL  string
	log      *servertest.Log
}

// secureServerOptions changes the defaults of newSecureServer.
type secureServerOptions struct {
	// caFile verifies client certificates. Default: the gencert CA.
	caFile string
	// policyFile is the Casbin policy. Default: the gencert policy.csv.
	policyFile string
}

// newSecureServer starts the gRPC server and the HTTP server on 127.0.0.1:0
// as the agent does, and stops both when the test ends.
func newSecureServer(t *testing.T, files tlsconfig.FileSet, opts secureServerOptions) *secureServer {
	t.Helper()
	if opts.caFile == "" {
		opts.caFile = files.CAFile
	}
	if opts.policyFile == "" {
		opts.policyFile = files.ACLPolicyFile
	}
	authorizer, err := auth.New(files.ACLModelFile, opts.policyFile)
	require.NoError(t, err)
	serverTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files.ServerCertFile,
		KeyFile:  files.ServerKeyFile,
		CAFile:   opts.caFile,
		Server:   true,
	})
	require.NoError(t, err)

	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	commitLog := servertest.NewLog()
	stopping := make(chan struct{})
	cfg := &server.Config{
		CommitLog:  commitLog,
		Authorizer: authorizer,
		ID:         "node-0",
		RPCAddr:    grpcLn.Addr().String(),
		Stopping:   stopping,
		Logger:     zaptest.NewLogger(t),
	}
	grpcServer, err := server.NewGRPCServer(cfg,
		grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(auth.StreamServerInterceptor()),
	)
	require.NoError(t, err)
	healthpb.RegisterHealthServer(grpcServer, health.NewServer())

	apiHandler, err := server.NewHTTPHandler(cfg)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/", apiHandler)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("/healthz", ok)
	mux.Handle("/readyz", ok)
	httpServer := &http.Server{
		Handler:           auth.HTTPMiddleware(mux),
		TLSConfig:         serverTLS,
		ReadHeaderTimeout: securityTimeout,
		// TLS handshake failures are expected here: log them with the test.
		ErrorLog: zap.NewStdLog(zaptest.NewLogger(t)),
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = grpcServer.Serve(grpcLn) // returns when stopped below
	}()
	go func() {
		defer wg.Done()
		_ = httpServer.ServeTLS(httpLn, "", "") // ErrServerClosed after Shutdown
	}()
	t.Cleanup(func() {
		close(stopping)
		ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
		defer cancel()
		require.NoError(t, server.GracefulStop(ctx, grpcServer))
		require.NoError(t, httpServer.Shutdown(ctx))
		wg.Wait()
	})
	return &secureServer{
		grpcAddr: grpcLn.Addr().String(),
		httpURL:  "https://" + httpLn.Addr().String() + "/",
		log:      commitLog,
	}
}

// clientTLS builds a client's TLS config that trusts the gencert CA and
// presents certFile (if any). With force, the client presents its
// certificate even when it does not match the CAs the server asks for, as a
// hostile client would; Go's client otherwise withholds it.
func clientTLS(t *testing.T, files tlsconfig.FileSet, certFile, keyFile string, force bool) *tls.Config {
	t.Helper()
	cfg, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile:      certFile,
		KeyFile:       keyFile,
		CAFile:        files.CAFile,
		ServerAddress: "127.0.0.1",
	})
	require.NoError(t, err)
	if force {
		require.Len(t, cfg.Certificates, 1)
		cert := cfg.Certificates[0]
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cfg
}

// grpcClient dials addr with the given transport credentials.
func grpcClient(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// httpClient returns an HTTPS client with the given TLS config.
func httpClient(t *testing.T, cfg *tls.Config) *http.Client {
	t.Helper()
	transport := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: securityTimeout}
}

// rpcNames lists every RPC of the Log service, in the order callRPC knows.
// TestRPCNamesCoverTheService keeps it complete.
var rpcNames = []string{"Produce", "ProduceBatch", "ProduceStream", "Consume", "ConsumeStream", "GetServers",
	"CreateTopic", "DeleteTopic", "ListTopics", "DescribeTopic",
	"CommitOffset", "FetchOffset", "ListGroups", "DescribeGroup", "AlterTopic"} // CommitOffset first: the others read its commit

// TestRPCNamesCoverTheService: a new RPC must be added to rpcNames (and
// callRPC), so that the security tests call it as root and as nobody.
func TestRPCNamesCoverTheService(t *testing.T) {
	var service []string
	for _, m := range api.Log_ServiceDesc.Methods {
		service = append(service, m.MethodName)
	}
	for _, s := range api.Log_ServiceDesc.Streams {
		service = append(service, s.StreamName)
	}
	require.ElementsMatch(t, service, rpcNames)
}

// callRPC makes one call of the named RPC and returns its error: for a
// stream, the error of the first response.
func callRPC(ctx context.Context, client api.LogClient, name string) error {
	record := &api.Record{Value: []byte("secret")}
	switch name {
	case "Produce":
		_, err := client.Produce(ctx, &api.ProduceRequest{Record: record})
		return err
	case "ProduceBatch":
		_, err := client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: []*api.Record{record, record}})
		return err
	case "ProduceStream":
		stream, err := client.ProduceStream(ctx)
		if err != nil {
			return err
		}
		// A refused stream may end before the send; the status then comes
		// from Recv, so the Send error (io.EOF) is not the answer.
		if err := stream.Send(&api.ProduceRequest{Record: record}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		_, err = stream.Recv()
		return err
	case "Consume":
		_, err := client.Consume(ctx, &api.ConsumeRequest{Offset: 0})
		return err
	case "ConsumeStream":
		stream, err := client.ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	case "GetServers":
		_, err := client.GetServers(ctx, &api.GetServersRequest{})
		return err
	case "CreateTopic":
		_, err := client.CreateTopic(ctx, &api.CreateTopicRequest{Name: "secret-topic"})
		return err
	case "DeleteTopic":
		_, err := client.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: "secret-topic"})
		return err
	case "ListTopics":
		_, err := client.ListTopics(ctx, &api.ListTopicsRequest{})
		return err
	case "DescribeTopic":
		_, err := client.DescribeTopic(ctx, &api.DescribeTopicRequest{Name: api.DefaultTopic})
		return err
	case "AlterTopic":
		_, err := client.AlterTopic(ctx, &api.AlterTopicRequest{Name: api.DefaultTopic, Config: &api.TopicConfig{}})
		return err
	case "CommitOffset":
		_, err := client.CommitOffset(ctx, &api.CommitOffsetRequest{Group: "g", Offset: 0})
		return err
	case "FetchOffset":
		_, err := client.FetchOffset(ctx, &api.FetchOffsetRequest{Group: "g"})
		return err
	case "ListGroups":
		_, err := client.ListGroups(ctx, &api.ListGroupsRequest{})
		return err
	case "DescribeGroup":
		_, err := client.DescribeGroup(ctx, &api.DescribeGroupRequest{Group: "g"})
		return err
	default:
		return fmt.Errorf("unknown RPC %q", name)
	}
}

// httpCall is one request of the JSON API.
type httpCall struct {
	name   string
	method string
	url    string // relative to the server's root
	body   string
}

var httpCalls = []httpCall{
	{name: "POST", method: http.MethodPost, url: "", body: `{"record": {"value": "TGV0J3MgR28gIzEK"}}`},
	{name: "GET", method: http.MethodGet, url: "?offset=0"},
	{name: "POST topic", method: http.MethodPost, url: "topics/default", body: `{"record": {"value": "TGV0J3MgR28gIzEK"}}`},
	{name: "GET topic", method: http.MethodGet, url: "topics/default?offset=0"},
	{name: "PUT topic", method: http.MethodPut, url: "topics/secret-topic"},
	{name: "DELETE topic", method: http.MethodDelete, url: "topics/secret-topic"},
}

// do sends an httpCall and returns the status and the decoded JSON error
// message, if any.
func (c httpCall) do(t *testing.T, client *http.Client, base string) (int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, c.method, base+c.url, strings.NewReader(c.body))
	require.NoError(t, err)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var doc struct {
		Error string `json:"error"`
	}
	if resp.StatusCode != http.StatusOK {
		require.NoError(t, json.Unmarshal(body, &doc), "%s %s: body %q is not JSON", c.method, c.url, body)
	}
	return resp.StatusCode, doc.Error, nil
}

func TestSecurityRootProducesAndConsumes(t *testing.T) {
	files := tlsconfigtest.Files(t)
	srv := newSecureServer(t, files, secureServerOptions{})
	rootTLS := clientTLS(t, files, files.RootClientCertFile, files.RootClientKeyFile, false)
	client := api.NewLogClient(grpcClient(t, srv.grpcAddr, credentials.NewTLS(rootTLS)))
	ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
	defer cancel()

	produced, err := client.Produce(ctx, &api.ProduceRequest{Record: &api.Record{Value: []byte("first")}})
	require.NoError(t, err)
	require.Equal(t, uint64(0), produced.GetOffset(), "Produce offset")
	batch, err := client.ProduceBatch(ctx, &api.ProduceBatchRequest{Records: []*api.Record{{Value: []byte("second")}, {Value: []byte("third")}}})
	require.NoError(t, err)
	require.Equal(t, uint64(1), batch.GetFirstOffset(), "ProduceBatch first offset")

	produceStream, err := client.ProduceStream(ctx)
	require.NoError(t, err)
	require.NoError(t, produceStream.Send(&api.ProduceRequest{Record: &api.Record{Value: []byte("fourth")}}))
	streamed, err := produceStream.Recv()
	require.NoError(t, err)
	require.Equal(t, uint64(3), streamed.GetOffset(), "ProduceStream offset")
	require.NoError(t, produceStream.CloseSend())

	want := []string{"first", "second", "third", "fourth"}
	for offset, value := range want {
		got, err := client.Consume(ctx, &api.ConsumeRequest{Offset: uint64(offset)})
		require.NoError(t, err)
		require.Equal(t, value, string(got.GetRecord().GetValue()), "Consume(%d)", offset)
	}
	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	consumeStream, err := client.ConsumeStream(streamCtx, &api.ConsumeRequest{Offset: 0})
	require.NoError(t, err)
	for offset, value := range want {
		got, err := consumeStream.Recv()
		require.NoError(t, err)
		require.Equal(t, value, string(got.GetRecord().GetValue()), "ConsumeStream record %d", offset)
	}
	stopStream()

	servers, err := client.GetServers(ctx, &api.GetServersRequest{})
	require.NoError(t, err)
	require.Len(t, servers.GetServers(), 1, "GetServers")

	// The JSON API, same certificate.
	httpRoot := httpClient(t, rootTLS)
	code, msg, err := httpCalls[0].do(t, httpRoot, srv.httpURL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, "POST as root: %s", msg)
	code, msg, err = httpCall{method: http.MethodGet, url: "?offset=4"}.do(t, httpRoot, srv.httpURL)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, "GET as root: %s", msg)
	require.Equal(t, 5, srv.log.Len(api.DefaultTopic), "records in the log")
}

func TestSecurityNobodyIsDenied(t *testing.T) {
	files := tlsconfigtest.Files(t)
	srv := newSecureServer(t, files, secureServerOptions{})
	nobodyTLS := clientTLS(t, files, files.NobodyClientCertFile, files.NobodyClientKeyFile, false)
	client := api.NewLogClient(grpcClient(t, srv.grpcAddr, credentials.NewTLS(nobodyTLS)))

	for _, name := range rpcNames {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
			defer cancel()
			err := callRPC(ctx, client, name)
			switch name {
			case "GetServers":
				require.NoError(t, err, "GetServers needs only authentication")
				return
			case "ListTopics":
				// Lists what the subject may consume: nothing.
				list, err := client.ListTopics(ctx, &api.ListTopicsRequest{})
				require.NoError(t, err)
				require.Empty(t, list.GetTopics(), "ListTopics as nobody")
				return
			case "ListGroups":
				// Groups in topics the subject may consume: none.
				list, err := client.ListGroups(ctx, &api.ListGroupsRequest{})
				require.NoError(t, err)
				require.Empty(t, list.GetGroups(), "ListGroups as nobody")
				return
			case "DescribeGroup":
				// A group is visible only in topics the subject may consume.
				require.Equal(t, codes.NotFound, status.Code(err), "DescribeGroup as nobody = %v", err)
				return
			}
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%s as nobody = %v, want PermissionDenied", name, err)
			require.Contains(t, status.Convert(err).Message(), "nobody", "%s error names the subject", name)
		})
	}
	httpNobody := httpClient(t, nobodyTLS)
	for _, call := range httpCalls {
		t.Run("HTTP "+call.name, func(t *testing.T) {
			code, msg, err := call.do(t, httpNobody, srv.httpURL)
			require.NoError(t, err)
			require.Equal(t, http.StatusForbidden, code, "%s as nobody: %s", call.name, msg)
			require.Contains(t, msg, "nobody", "error names the subject")
		})
	}
	require.Equal(t, 0, srv.log.Len(api.DefaultTopic), "records in the log after nobody's calls")
}

// TestSecurityPolicyFromFile runs the server on another policy file: the
// rights follow the file, not the code.
func TestSecurityPolicyFromFile(t *testing.T) {
	files := tlsconfigtest.Files(t)
	policy := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(policy, []byte("p, nobody, *, consume\n"), 0o600))
	srv := newSecureServer(t, files, secureServerOptions{policyFile: policy})
	ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
	defer cancel()

	nobody := api.NewLogClient(grpcClient(t, srv.grpcAddr,
		credentials.NewTLS(clientTLS(t, files, files.NobodyClientCertFile, files.NobodyClientKeyFile, false))))
	root := api.NewLogClient(grpcClient(t, srv.grpcAddr,
		credentials.NewTLS(clientTLS(t, files, files.RootClientCertFile, files.RootClientKeyFile, false))))

	err := callRPC(ctx, root, "Produce")
	require.Equal(t, codes.PermissionDenied, status.Code(err), "Produce as root = %v, want PermissionDenied", err)
	err = callRPC(ctx, nobody, "Consume")
	require.Equal(t, codes.OutOfRange, status.Code(err), "Consume(0) of an empty log as nobody = %v, want OutOfRange", err)
}

// TestSecurityTopicPolicy: with the gencert model (topics matched as globs)
// and a policy that lets nobody consume the topics public.* and produce to
// public.news only, over mTLS: nobody reads public.news and not private,
// writes public.news and not public.other, administers nothing, and lists
// only the public topics; over HTTP the same.
func TestSecurityTopicPolicy(t *testing.T) {
	files := tlsconfigtest.Files(t)
	policy := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(policy, []byte(`p, root, *, admin
p, root, *, produce
p, nobody, public.*, consume
p, nobody, public.news, produce
`), 0o600))
	srv := newSecureServer(t, files, secureServerOptions{policyFile: policy})
	ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
	defer cancel()
	nobodyTLS := clientTLS(t, files, files.NobodyClientCertFile, files.NobodyClientKeyFile, false)
	nobody := api.NewLogClient(grpcClient(t, srv.grpcAddr, credentials.NewTLS(nobodyTLS)))
	root := api.NewLogClient(grpcClient(t, srv.grpcAddr,
		credentials.NewTLS(clientTLS(t, files, files.RootClientCertFile, files.RootClientKeyFile, false))))
	for _, topic := range []string{"public.news", "public.other", "private"} {
		_, err := root.CreateTopic(ctx, &api.CreateTopicRequest{Name: topic})
		require.NoError(t, err, "CreateTopic(%s) as root", topic)
		_, err = root.Produce(ctx, &api.ProduceRequest{Topic: topic, Record: &api.Record{Value: []byte(topic)}})
		require.NoError(t, err, "Produce(%s) as root", topic)
	}

	got, err := nobody.Consume(ctx, &api.ConsumeRequest{Topic: "public.news"})
	require.NoError(t, err, "nobody consumes public.news")
	require.Equal(t, "public.news", string(got.GetRecord().GetValue()))
	_, err = nobody.Consume(ctx, &api.ConsumeRequest{Topic: "private"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "nobody consumes private: %v", err)
	require.Contains(t, status.Convert(err).Message(), "nobody is not permitted to consume on private")
	_, err = nobody.Consume(ctx, &api.ConsumeRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "nobody consumes the default topic: %v", err)
	_, err = nobody.Produce(ctx, &api.ProduceRequest{Topic: "public.news", Record: &api.Record{Value: []byte("x")}})
	require.NoError(t, err, "nobody produces to public.news")
	_, err = nobody.Produce(ctx, &api.ProduceRequest{Topic: "public.other", Record: &api.Record{Value: []byte("x")}})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "nobody produces to public.other: %v", err)
	_, err = nobody.CreateTopic(ctx, &api.CreateTopicRequest{Name: "public.new"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "nobody creates a topic: %v", err)
	_, err = nobody.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: "public.news"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "nobody deletes a topic: %v", err)
	list, err := nobody.ListTopics(ctx, &api.ListTopicsRequest{})
	require.NoError(t, err)
	var names []string
	for _, topic := range list.GetTopics() {
		names = append(names, topic.GetName())
	}
	require.Equal(t, []string{"public.news", "public.other"}, names, "ListTopics as nobody")

	httpNobody := httpClient(t, nobodyTLS)
	for _, tt := range []struct {
		call httpCall
		want int
	}{
		{httpCall{name: "GET public.news", method: http.MethodGet, url: "topics/public.news?offset=0"}, http.StatusOK},
		{httpCall{name: "GET private", method: http.MethodGet, url: "topics/private?offset=0"}, http.StatusForbidden},
		{httpCall{name: "POST public.other", method: http.MethodPost, url: "topics/public.other", body: `{"record": {"value": "eA=="}}`}, http.StatusForbidden},
		{httpCall{name: "PUT", method: http.MethodPut, url: "topics/public.new"}, http.StatusForbidden},
	} {
		code, msg, err := tt.call.do(t, httpNobody, srv.httpURL)
		require.NoError(t, err)
		require.Equal(t, tt.want, code, "HTTP %s as nobody: %s", tt.call.name, msg)
	}
	require.Equal(t, 1, srv.log.Len("private"), "records in private")
	require.Equal(t, 1, srv.log.Len("public.other"), "records in public.other")
	require.Equal(t, 2, srv.log.Len("public.news"), "records in public.news")
}

// TestSecurityUnauthenticatedClients checks that a client without a valid
// certificate can call nothing, over gRPC and HTTP, while a valid
// certificate from the same second CA as the expired one gets in.
func TestSecurityUnauthenticatedClients(t *testing.T) {
	files := tlsconfigtest.Files(t)

	// The server trusts the gencert CA and a second CA made here, which can
	// sign the expired certificate (only make gencert has the first CA's
	// key). A third CA is trusted by nobody.
	secondCA := tlsconfigtest.NewCA(t, "second trusted CA")
	otherCA := tlsconfigtest.NewCA(t, "untrusted CA")
	bundle := filepath.Join(t.TempDir(), "ca-bundle.pem")
	require.NoError(t, os.WriteFile(bundle, concatFiles(t, files.CAFile, secondCA.CertFile), 0o600))
	srv := newSecureServer(t, files, secureServerOptions{caFile: bundle})

	expiredCert, expiredKey := secondCA.Issue(t, tlsconfigtest.CertOptions{
		CommonName: "root",
		NotBefore:  time.Now().Add(-48 * time.Hour),
		NotAfter:   time.Now().Add(-24 * time.Hour),
	})
	validCert, validKey := secondCA.Issue(t, tlsconfigtest.CertOptions{CommonName: "root"})
	otherCert, otherKey := otherCA.Issue(t, tlsconfigtest.CertOptions{CommonName: "root"})

	tests := []struct {
		name     string
		tls      *tls.Config
		wantGRPC codes.Code // for every RPC
		wantHTTP int        // 0: the request itself fails (handshake)
	}{
		{name: "no certificate", tls: clientTLS(t, files, "", "", false),
			wantGRPC: codes.Unauthenticated, wantHTTP: http.StatusUnauthorized},
		// Go's client withholds a certificate the server's CA list does not
		// cover and connects anonymously.
		{name: "certificate from another CA, withheld", tls: clientTLS(t, files, otherCert, otherKey, false),
			wantGRPC: codes.Unauthenticated, wantHTTP: http.StatusUnauthorized},
		{name: "certificate from another CA, sent", tls: clientTLS(t, files, otherCert, otherKey, true),
			wantGRPC: codes.Unavailable},
		{name: "expired certificate", tls: clientTLS(t, files, expiredCert, expiredKey, true),
			wantGRPC: codes.Unavailable},
		{name: "valid certificate from the second CA (control)", tls: clientTLS(t, files, validCert, validKey, true),
			wantGRPC: codes.OK, wantHTTP: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := api.NewLogClient(grpcClient(t, srv.grpcAddr, credentials.NewTLS(tt.tls)))
			for _, name := range rpcNames {
				ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
				err := callRPC(ctx, client, name)
				cancel()
				require.Equal(t, tt.wantGRPC, status.Code(err), "%s = %v, want %v", name, err, tt.wantGRPC)
			}
			httpC := httpClient(t, tt.tls)
			for _, call := range httpCalls {
				code, msg, err := call.do(t, httpC, srv.httpURL)
				if tt.wantHTTP == 0 {
					require.Error(t, err, "HTTP %s = %d %q, want a failed handshake", call.name, code, msg)
					continue
				}
				require.NoError(t, err, "HTTP %s", call.name)
				require.Equal(t, tt.wantHTTP, code, "HTTP %s: %s", call.name, msg)
			}
		})
	}
	// Only the control client's produces (Produce, 2 in ProduceBatch,
	// ProduceStream, POST /, POST /topics/default) reached the log.
	require.Equal(t, 6, srv.log.Len(api.DefaultTopic), "records in the log")
}

func TestSecurityPlaintextClient(t *testing.T) {
	files := tlsconfigtest.Files(t)
	srv := newSecureServer(t, files, secureServerOptions{})

	client := api.NewLogClient(grpcClient(t, srv.grpcAddr, insecure.NewCredentials()))
	healthClient := healthpb.NewHealthClient(grpcClient(t, srv.grpcAddr, insecure.NewCredentials()))
	ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
	defer cancel()
	for _, name := range rpcNames {
		err := callRPC(ctx, client, name)
		require.Equal(t, codes.Unavailable, status.Code(err), "plaintext %s = %v, want Unavailable", name, err)
	}
	_, err := healthClient.Check(ctx, &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err), "plaintext health Check = %v, want Unavailable", err)

	// Go's TLS server answers a plaintext HTTP request with a bare 400 and
	// closes the connection; nothing reaches the handler.
	plainURL := "http://" + strings.TrimPrefix(srv.httpURL, "https://")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, plainURL, bytes.NewReader([]byte(httpCalls[0].body)))
	require.NoError(t, err)
	plain := &http.Client{Timeout: securityTimeout}
	resp, err := plain.Do(req)
	if err == nil {
		_ = resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plaintext POST status")
	}
	require.Equal(t, 0, srv.log.Len(api.DefaultTopic), "records in the log after plaintext calls")
}

// TestSecurityHealthWithoutCertificate checks that probes without a client
// certificate reach the health endpoints, and nothing else.
func TestSecurityHealthWithoutCertificate(t *testing.T) {
	files := tlsconfigtest.Files(t)
	srv := newSecureServer(t, files, secureServerOptions{})
	anonymous := clientTLS(t, files, "", "", false)
	ctx, cancel := context.WithTimeout(context.Background(), securityTimeout)
	defer cancel()

	healthClient := healthpb.NewHealthClient(grpcClient(t, srv.grpcAddr, credentials.NewTLS(anonymous)))
	resp, err := healthClient.Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus(), "health Check")

	httpC := httpClient(t, anonymous)
	for _, path := range []string{"healthz", "readyz"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.httpURL+path, nil)
		require.NoError(t, err)
		resp, err := httpC.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "GET /%s without a certificate", path)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.httpURL+"metrics", nil)
	require.NoError(t, err)
	metricsResp, err := httpC.Do(req)
	require.NoError(t, err)
	_ = metricsResp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, metricsResp.StatusCode, "GET /metrics without a certificate")
}

// concatFiles returns the contents of the files, one after the other.
func concatFiles(t *testing.T, paths ...string) []byte {
	t.Helper()
	var out []byte
	for _, path := range paths {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		out = append(out, data...)
	}
	return out
}
