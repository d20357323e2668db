package tlsconfig_test

import (
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/proglog/proglog/server/tlsconfig"
)

// A node's gRPC server, and a client presenting the "root" certificate, on
// the files `make gencert` writes.
func ExampleSetupTLSConfig() {
	files := tlsconfig.Files(tlsconfig.ConfigDir())
	if err := files.Check(); err != nil {
		log.Fatal(err) // says to run make gencert
	}

	serverTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files.ServerCertFile,
		KeyFile:  files.ServerKeyFile,
		CAFile:   files.CAFile,
		Server:   true,
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	defer srv.Stop()

	clientTLS, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile:      files.RootClientCertFile,
		KeyFile:       files.RootClientKeyFile,
		CAFile:        files.CAFile,
		ServerAddress: "127.0.0.1",
	})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("127.0.0.1:8400", grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}
