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

// ErrAttemptTimeout is wrapped in the error of an attempt that got no answer
// within Config.AttemptTimeout (the client then retries it, and returns it
// wrapped only when the call's deadline passes too). status.Code of such an
// error is still codes.DeadlineExceeded.
var ErrAttemptTimeout = errors.New("loadbalance: no answer within the attempt timeout")

// errLeaderChanged ends a write attempt in flight when the resolver learns
// of a new leader; the client retries it there.
var errLeaderChanged = errors.New("loadbalance: the leader changed while the write was in flight")

// ErrNothingListens is wrapped in the error of a call that gave up early
// because no server ever answered the client and every connection was
// refused (Config.FailFastWhenRefused).
var ErrNothingListens = errors.New("loadbalance: nothing listens at the cluster's addresses")

// ErrClosed is wrapped in the error of a Produce call still queued for a
// coalesced batch when the Client was closed.
var ErrClosed = errors.New("loadbalance: client closed")
