package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// stream handler, and ProduceStream's reader, must end with its call.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
