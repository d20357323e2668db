package auth

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

// TestAuthorizeCachesBoundedDecisions: answers given again from the cache
// are the policy's (allowed and denied alike), and requests naming ever new
// topics do not grow the cache past its bound.
func TestAuthorizeCachesBoundedDecisions(t *testing.T) {
	files := tlsconfigtest.Files(t)
	a, err := New(files.ACLModelFile, files.ACLPolicyFile)
	require.NoError(t, err)
	for round := range 2 {
		require.NoError(t, a.Authorize("root", "orders", ActionProduce), "round %d", round)
		require.Equal(t, codes.PermissionDenied, status.Code(a.Authorize("nobody", "orders", ActionProduce)), "round %d", round)
	}
	for k := range 3 * maxCachedDecisions {
		require.NoError(t, a.Authorize("root", fmt.Sprintf("topic-%d", k), ActionConsume))
		require.LessOrEqual(t, len(a.decisions), maxCachedDecisions)
	}
	require.Equal(t, codes.PermissionDenied, status.Code(a.Authorize("nobody", "orders", ActionProduce)))
}
