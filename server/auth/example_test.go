package auth_test

import (
	"log"
	"net/http"

	"google.golang.org/grpc"

	"github.com/proglog/proglog/server/auth"
)

// The authorizer and the authentication hooks, as a node wires them: the
// interceptors put the client certificate's Common Name in each call's
// context, and the service asks the Authorizer about that subject.
func Example() {
	authorizer, err := auth.New("/etc/proglog/model.conf", "/etc/proglog/policy.csv")
	if err != nil {
		log.Fatal(err)
	}
	if err := authorizer.Authorize("nobody", auth.ObjectAll, auth.ActionProduce); err != nil {
		log.Print(err) // codes.PermissionDenied: "nobody is not permitted to produce on *"
	}

	srv := grpc.NewServer(
		// plus grpc.Creds(credentials.NewTLS(serverTLS)) from server/tlsconfig
		grpc.ChainUnaryInterceptor(auth.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(auth.StreamServerInterceptor()),
	)
	defer srv.Stop()

	httpServer := &http.Server{Handler: auth.HTTPMiddleware(http.NewServeMux())}
	_ = httpServer
}
