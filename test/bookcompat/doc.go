// Package bookcompat checks that clients generated from the seed book's
// log.proto (Distributed Services with Go) work against a proglog cluster
// unchanged. Its test runs the book's client flows, on the book's wire
// format (package bookv1, compiled from bookv1/log.proto by make
// compile-proto), against `proglog agent` processes started with the book's
// flags.
//
// The cluster runs as separate processes so that the test binary links only
// the book's generated code: proglog's own api/v1 declares the same
// protobuf names (log.v1.*), and protobuf-go refuses two registrations of
// one name in a binary. Nothing in this package may import api/v1 or a
// package that does.
package bookcompat
