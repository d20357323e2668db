package discovery

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidConfig is returned by New when the Config (or the Handler) cannot
// be used. The wrapping error names the field and the value at fault.
var ErrInvalidConfig = errors.New("discovery: invalid config")

// ErrJoin is returned by New when Config.StartJoinAddrs is not empty, none of
// those addresses answered, and the snapshot (Config.SnapshotPath) names no
// member to rejoin instead. The wrapping error lists the addresses tried and
// carries Serf's own errors, one per address.
var ErrJoin = errors.New("discovery: no start-join address answered")

// ErrClosed is returned by Leave after Close: a closed Membership cannot leave
// again, and there is nothing left to leave.
var ErrClosed = errors.New("discovery: membership closed")

// joinError is what New returns when no start-join address answered. It
// matches ErrJoin with errors.Is and unwraps to Serf's errors, one per
// address, which it prints on one line (Serf's own error is a multi-line
// list).
type joinError struct {
	addrs  []string
	causes []error
}

func newJoinError(addrs []string, err error) *joinError {
	e := &joinError{addrs: addrs}
	// memberlist returns a *multierror.Error; unpack it without importing it.
	if multi, ok := err.(interface{ WrappedErrors() []error }); ok {
		e.causes = multi.WrappedErrors()
	} else if err != nil {
		e.causes = []error{err}
	}
	return e
}

// Error implements error.
func (e *joinError) Error() string {
	causes := make([]string, len(e.causes))
	for i, c := range e.causes {
		causes[i] = c.Error()
	}
	msg := fmt.Sprintf("%v: tried %s: %s", ErrJoin, strings.Join(e.addrs, ", "), strings.Join(causes, "; "))
	if e.keyMismatch() {
		msg += " (the members' gossip keys differ: this member needs one of the cluster's keys, or all must run without)"
	}
	return msg
}

// keyMismatch reports whether a cause says the other side could not read
// this member's gossip, or this member its: a missing or different gossip
// key. memberlist's errors are plain strings ("no installed keys could
// decrypt the message", "remote state is encrypted and encryption is not
// configured", "encryption is configured but remote state is not
// encrypted"), so this looks at their text.
func (e *joinError) keyMismatch() bool {
	for _, c := range e.causes {
		if msg := c.Error(); strings.Contains(msg, "decrypt") || strings.Contains(msg, "encrypt") {
			return true
		}
	}
	return false
}

// Unwrap returns ErrJoin and the causes, for errors.Is and errors.As.
func (e *joinError) Unwrap() []error {
	return append([]error{ErrJoin}, e.causes...)
}

// ErrInvalidGossipKey is returned for a gossip key or key file that cannot
// be used: not base64, not 16, 24 or 32 bytes, listed twice, or no key at
// all. The wrapping error says which; it never contains the key.
var ErrInvalidGossipKey = errors.New("discovery: invalid gossip key")

// ErrNotEncrypted is returned by SetGossipKeys on a member started without
// Config.GossipKeys: memberlist cannot turn encryption on in a running
// member, so it must be restarted with keys.
var ErrNotEncrypted = errors.New("discovery: gossip is not encrypted on this member")
