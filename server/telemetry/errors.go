package telemetry

import "errors"

// ErrInvalidConfig is wrapped by the constructors when a configuration
// field has a value they cannot use; the message names the field.
var ErrInvalidConfig = errors.New("telemetry: invalid config")
