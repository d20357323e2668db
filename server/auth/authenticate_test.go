package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/server/auth"
)

const (
	produceMethod = "/log.v1.Log/Produce"
	healthMethod  = "/grpc.health.v1.Health/Check"
)

// verified returns a TLS state whose verified chain has a leaf with the
// given Common Name.
func verified(commonName string) *tls.ConnectionState {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: commonName}}
	return &tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{leaf},
		VerifiedChains:   [][]*x509.Certificate{{leaf, {Subject: pkix.Name{CommonName: "CA"}}}},
	}
}

// unverifiedState is what a server with VerifyClientCertIfGiven sees from a
// client that sent no certificate.
var unverifiedState = &tls.ConnectionState{}

// nonTLS is a non-TLS credentials.AuthInfo.
type nonTLS struct{}

func (nonTLS) AuthType() string { return "insecure" }

type connCase struct {
	name        string
	ctx         context.Context
	wantSubject string     // when the call goes through with a subject
	wantCode    codes.Code // for a non-health method
}

func connCases() []connCase {
	withPeer := func(info credentials.AuthInfo) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{
			Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234},
			AuthInfo: info,
		})
	}
	withTLS := func(state *tls.ConnectionState) context.Context {
		return withPeer(credentials.TLSInfo{State: *state})
	}
	return []connCase{
		{name: "verified root", ctx: withTLS(verified("root")), wantSubject: "root", wantCode: codes.OK},
		{name: "verified nobody", ctx: withTLS(verified("nobody")), wantSubject: "nobody", wantCode: codes.OK},
		{name: "no peer", ctx: context.Background(), wantCode: codes.Unauthenticated},
		{name: "plaintext peer", ctx: withPeer(nonTLS{}), wantCode: codes.Unauthenticated},
		{name: "peer without auth info", ctx: withPeer(nil), wantCode: codes.Unauthenticated},
		{name: "TLS without client certificate", ctx: withTLS(unverifiedState), wantCode: codes.Unauthenticated},
		{name: "TLS with unverified certificate", ctx: withTLS(&tls.ConnectionState{
			PeerCertificates: verified("root").PeerCertificates}), wantCode: codes.Unauthenticated},
		{name: "empty verified chain", ctx: withTLS(&tls.ConnectionState{
			VerifiedChains: [][]*x509.Certificate{{}}}), wantCode: codes.Unauthenticated},
		{name: "certificate without common name", ctx: withTLS(verified("")), wantCode: codes.Unauthenticated},
	}
}

func TestUnaryServerInterceptor(t *testing.T) {
	interceptor := auth.UnaryServerInterceptor()
	for _, tt := range connCases() {
		for _, method := range []string{produceMethod, healthMethod} {
			t.Run(tt.name+" "+method, func(t *testing.T) {
				var called bool
				var gotSubject string
				handler := func(ctx context.Context, req any) (any, error) {
					called = true
					gotSubject, _ = auth.Subject(ctx)
					return "response", nil
				}
				resp, err := interceptor(tt.ctx, "request", &grpc.UnaryServerInfo{FullMethod: method}, handler)
				wantCode := tt.wantCode
				if method == healthMethod {
					wantCode = codes.OK // health answers everybody
				}
				require.Equal(t, wantCode, status.Code(err), "interceptor(%s) error = %v, want %v", method, err, wantCode)
				require.Equal(t, wantCode == codes.OK, called, "handler called")
				if wantCode == codes.OK {
					require.Equal(t, "response", resp)
				}
				require.Equal(t, tt.wantSubject, gotSubject, "Subject(ctx)")
			})
		}
	}
}

// fakeStream is a grpc.ServerStream that only has a context.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestStreamServerInterceptor(t *testing.T) {
	interceptor := auth.StreamServerInterceptor()
	for _, tt := range connCases() {
		for _, method := range []string{"/log.v1.Log/ConsumeStream", "/grpc.health.v1.Health/Watch"} {
			t.Run(tt.name+" "+method, func(t *testing.T) {
				var called bool
				var gotSubject string
				handler := func(srv any, ss grpc.ServerStream) error {
					called = true
					gotSubject, _ = auth.Subject(ss.Context())
					return nil
				}
				err := interceptor(nil, fakeStream{ctx: tt.ctx}, &grpc.StreamServerInfo{FullMethod: method}, handler)
				wantCode := tt.wantCode
				if method == "/grpc.health.v1.Health/Watch" {
					wantCode = codes.OK
				}
				require.Equal(t, wantCode, status.Code(err), "interceptor(%s) error = %v, want %v", method, err, wantCode)
				require.Equal(t, wantCode == codes.OK, called, "handler called")
				require.Equal(t, tt.wantSubject, gotSubject, "Subject(stream.Context())")
			})
		}
	}
}

func TestHTTPMiddleware(t *testing.T) {
	tests := []struct {
		name        string
		path        string
		tls         *tls.ConnectionState
		wantStatus  int
		wantSubject string
	}{
		{name: "verified root", path: "/", tls: verified("root"), wantStatus: http.StatusOK, wantSubject: "root"},
		{name: "verified nobody", path: "/", tls: verified("nobody"), wantStatus: http.StatusOK, wantSubject: "nobody"},
		{name: "plaintext", path: "/", wantStatus: http.StatusUnauthorized},
		{name: "no client certificate", path: "/", tls: unverifiedState, wantStatus: http.StatusUnauthorized},
		{name: "unverified certificate", path: "/", tls: &tls.ConnectionState{
			PeerCertificates: verified("root").PeerCertificates}, wantStatus: http.StatusUnauthorized},
		{name: "no common name", path: "/", tls: verified(""), wantStatus: http.StatusUnauthorized},
		{name: "metrics without certificate", path: "/metrics", tls: unverifiedState, wantStatus: http.StatusUnauthorized},
		{name: "healthz without certificate", path: "/healthz", tls: unverifiedState, wantStatus: http.StatusOK},
		{name: "readyz without certificate", path: "/readyz", tls: unverifiedState, wantStatus: http.StatusOK},
		{name: "readyz with certificate", path: "/readyz", tls: verified("root"), wantStatus: http.StatusOK, wantSubject: "root"},
		{name: "health lookalike", path: "/healthz/x", tls: unverifiedState, wantStatus: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotSubject string
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotSubject, _ = auth.Subject(r.Context())
				w.WriteHeader(http.StatusOK)
			})
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			req.TLS = tt.tls
			rec := httptest.NewRecorder()
			auth.HTTPMiddleware(next).ServeHTTP(rec, req)

			require.Equal(t, tt.wantStatus, rec.Code, "GET %s status", tt.path)
			require.Equal(t, tt.wantSubject, gotSubject, "Subject(r.Context())")
			if tt.wantStatus == http.StatusUnauthorized {
				require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
				var body struct {
					Error string `json:"error"`
				}
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "body %q", rec.Body.String())
				require.NotEmpty(t, body.Error, "error message")
			}
		})
	}
}
