package loadbalance

import "errors"

// ErrNoSeeds is returned when a target or Config names no seed address.
var ErrNoSeeds = errors.New("loadbalance: no seed addresses")

// ErrNoServers is returned (and reported to gRPC) when a server answers
// GetServers with an empty list.
var ErrNoServers = errors.New("loadbalance: GetServers returned no servers")

// ErrNoCredentials is returned when the resolver has no transport
// credentials to dial seeds with: neither ResolverConfig.Credentials nor the
// ClientConn's own.
var ErrNoCredentials = errors.New("loadbalance: no transport credentials for the resolver")
