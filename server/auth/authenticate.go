package auth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// healthServicePrefix starts every method of the standard gRPC health
// service, which answers without a client certificate so that load
// balancers and Kubernetes probes can reach it over TLS.
const healthServicePrefix = "/grpc.health.v1.Health/"

// isHealthPath reports whether an HTTP path is a health endpoint, which
// answers without a client certificate for the same probes.
func isHealthPath(path string) bool {
	return path == "/healthz" || path == "/readyz"
}

// UnaryServerInterceptor authenticates every unary call: the Common Name of
// the caller's verified client certificate becomes the subject of the
// call's context (see Subject). A call without one fails with
// codes.Unauthenticated, except calls to the gRPC health service.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		authCtx, err := authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(authCtx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls: the
// handler's stream carries the authenticated context.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		authCtx, err := authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &authenticatedStream{ServerStream: ss, ctx: authCtx})
	}
}

// authenticatedStream replaces a stream's context with the authenticated one.
type authenticatedStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the context carrying the subject.
func (s *authenticatedStream) Context() context.Context { return s.ctx }

// authenticate returns ctx with the subject of the peer's verified
// certificate. A health-service call without one passes unchanged.
func authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	subject, err := grpcSubject(ctx)
	if err != nil {
		if strings.HasPrefix(fullMethod, healthServicePrefix) {
			return ctx, nil
		}
		return nil, err
	}
	return WithSubject(ctx, subject), nil
}

// grpcSubject reads the Common Name of the peer's verified certificate.
func grpcSubject(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer information")
	}
	tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "connection is not TLS")
	}
	subject, err := certificateSubject(&tlsInfo.State)
	if err != nil {
		return "", status.Error(codes.Unauthenticated, err.Error())
	}
	return subject, nil
}

// authError is an authentication failure whose message is shown to the
// caller as is.
type authError string

func (e authError) Error() string { return string(e) }

// certificateSubject returns the Common Name of the leaf of the first
// verified chain. Only verified chains count: PeerCertificates alone may be
// anything the client sent.
func certificateSubject(state *tls.ConnectionState) (string, error) {
	if state == nil {
		return "", authError("connection is not TLS")
	}
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", authError("no verified client certificate")
	}
	subject := state.VerifiedChains[0][0].Subject.CommonName
	if subject == "" {
		return "", authError("client certificate has no common name")
	}
	return subject, nil
}

// HTTPMiddleware authenticates every HTTP request as the interceptors do a
// call: the subject of the verified client certificate goes into the
// request's context, and a request without one gets 401 with a JSON body
// {"error": "..."}. /healthz and /readyz pass without a certificate.
func HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject, err := certificateSubject(r.TLS)
		if err != nil {
			if isHealthPath(r.URL.Path) {
				next.ServeHTTP(w, r)
				return
			}
			writeUnauthenticated(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithSubject(r.Context(), subject)))
	})
}

// writeUnauthenticated answers 401 with a JSON error message.
func writeUnauthenticated(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	// The status line has gone out; a failed body write leaves nothing to do.
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{Error: err.Error()})
}
