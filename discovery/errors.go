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
	return fmt.Sprintf("%v: tried %s: %s", ErrJoin, strings.Join(e.addrs, ", "), strings.Join(causes, "; "))
}

// Unwrap returns ErrJoin and the causes, for errors.Is and errors.As.
func (e *joinError) Unwrap() []error {
	return append([]error{ErrJoin}, e.causes...)
}
