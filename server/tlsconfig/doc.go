// Package tlsconfig builds the *tls.Config of every proglog connection from
// PEM files, and locates the files `make gencert` writes.
//
// Four shapes come out of one Config:
//
//   - a client that verifies the server (CAFile, ServerAddress);
//   - a client that also presents its certificate (CertFile, KeyFile): mTLS;
//   - a server (Server) that verifies client certificates against CAFile when
//     they are given (tls.VerifyClientCertIfGiven). Health probes connect
//     without one; every other call is refused by the authentication
//     interceptors of package auth, which need a verified certificate;
//   - a peer (Peer, for Raft) that requires and verifies a certificate in
//     both directions: the accepting side uses tls.RequireAndVerifyClientCert.
//
// Every shape refuses anything older than TLS 1.2.
//
// Certificate paths never live in package variables: Files(dir) names the
// files in a directory, and ConfigDir says which directory the Makefile
// uses.
package tlsconfig
