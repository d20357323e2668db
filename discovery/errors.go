package discovery

import "errors"

// ErrInvalidConfig is returned by New when the Config (or the Handler) cannot
// be used. The wrapping error names the field and the value at fault.
var ErrInvalidConfig = errors.New("discovery: invalid config")

// ErrJoin is returned by New when Config.StartJoinAddrs is not empty and none of
// those addresses answered. The wrapping error lists the addresses tried and
// carries Serf's own errors, one per address.
var ErrJoin = errors.New("discovery: no start-join address answered")

// ErrClosed is returned by Leave after Close: a closed Membership cannot leave
// again, and there is nothing left to leave.
var ErrClosed = errors.New("discovery: membership closed")
