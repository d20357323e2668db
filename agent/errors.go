package agent

import (
	"errors"

	"github.com/proglog/proglog/distlog"
)

// ErrPeerRefused is what the leader's verification of a joining member
// (verify.go) fails with when the member's identity does not qualify it as
// a Raft voter: its certificate does not chain to the cluster's CA, is not
// a server certificate for its address, names a subject the policy does not
// let join, or the member refused this node's certificate (ErrPeerDistrusts).
// The wrapping error says which. A refused member is removed from Serf,
// unless only ErrPeerDistrusts is to blame.
var ErrPeerRefused = errors.New("agent: member refused as a raft voter")

// ErrPeerUnreachable is what the verification fails with when the member's
// RPC port does not complete a TLS handshake for another reason (connection
// refused, timeout). Such a member is not added either, but stays in Serf
// and is verified again later.
var ErrPeerUnreachable = errors.New("agent: member unreachable for verification")

// ErrPeerDistrusts is wrapped, together with ErrPeerRefused, when the
// member's certificate passed but the member refused this node's: it trusts
// another CA. Such a member may be one of the cluster's own nodes with a
// wrong CA file, so it is not removed from Serf: the leader verifies it
// again every RefusedRetryInterval, and adds it once its CA is fixed.
var ErrPeerDistrusts = errors.New("agent: the member refused this node's certificate")

// ErrCorruptData is what New fails with when the node's logs are damaged
// where no crash leaves damage (distlog.ErrCorruptData, which it is): the
// node does not start, and the message says which file is damaged and how
// to rebuild the node from the others.
var ErrCorruptData = distlog.ErrCorruptData
