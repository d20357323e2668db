package auth_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/tlsconfig/tlsconfigtest"
)

// TestAuthorizeGencertPolicy checks the policy `make gencert` installs:
// root may produce, consume and administer every topic, nobody may do
// nothing.
func TestAuthorizeGencertPolicy(t *testing.T) {
	files := tlsconfigtest.Files(t)
	authorizer, err := auth.New(files.ACLModelFile, files.ACLPolicyFile)
	require.NoError(t, err)

	tests := []struct {
		subject, object, action string
		want                    codes.Code
	}{
		{"root", auth.ObjectAll, auth.ActionProduce, codes.OK},
		{"root", auth.ObjectAll, auth.ActionConsume, codes.OK},
		{"root", "default", auth.ActionProduce, codes.OK},
		{"root", "some-topic", auth.ActionConsume, codes.OK},
		{"root", "some-topic", auth.ActionAdmin, codes.OK},
		{"root", auth.ObjectAll, "delete", codes.PermissionDenied},
		{"nobody", "default", auth.ActionConsume, codes.PermissionDenied},
		{"nobody", "some-topic", auth.ActionAdmin, codes.PermissionDenied},
		{"nobody", auth.ObjectAll, auth.ActionProduce, codes.PermissionDenied},
		{"nobody", auth.ObjectAll, auth.ActionConsume, codes.PermissionDenied},
		{"", auth.ObjectAll, auth.ActionConsume, codes.PermissionDenied},
		{"Root", auth.ObjectAll, auth.ActionConsume, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %s", tt.subject, tt.action, tt.object), func(t *testing.T) {
			err := authorizer.Authorize(tt.subject, tt.object, tt.action)
			require.Equal(t, tt.want, status.Code(err), "Authorize(%q, %q, %q) = %v, want %v",
				tt.subject, tt.object, tt.action, err, tt.want)
			if tt.want == codes.PermissionDenied {
				want := fmt.Sprintf("%s is not permitted to %s on %s", tt.subject, tt.action, tt.object)
				require.Equal(t, want, status.Convert(err).Message())
			}
		})
	}
}

// TestAuthorizePolicyFromFile proves the decision comes from the policy file:
// a different file grants different rights.
func TestAuthorizePolicyFromFile(t *testing.T) {
	files := tlsconfigtest.Files(t)
	policy := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(policy, []byte("p, nobody, *, consume\n"), 0o600))
	authorizer, err := auth.New(files.ACLModelFile, policy)
	require.NoError(t, err)

	require.NoError(t, authorizer.Authorize("nobody", auth.ObjectAll, auth.ActionConsume))
	err = authorizer.Authorize("root", auth.ObjectAll, auth.ActionConsume)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "Authorize(root, consume) = %v, want PermissionDenied", err)
}

// TestAuthorizeTopicGlobs: policy objects are globs over topic names, so a
// subject can be granted some topics and not others, and each action is
// granted on its own (admin does not imply produce or consume).
func TestAuthorizeTopicGlobs(t *testing.T) {
	files := tlsconfigtest.Files(t)
	policy := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(policy, []byte(`p, alice, orders.*, consume
p, alice, orders.eu, produce
p, alice, logs-?, consume
p, ops, *, admin
`), 0o600))
	authorizer, err := auth.New(files.ACLModelFile, policy)
	require.NoError(t, err)
	tests := []struct {
		subject, object, action string
		want                    codes.Code
	}{
		{"alice", "orders.eu", auth.ActionConsume, codes.OK},
		{"alice", "orders.us", auth.ActionConsume, codes.OK},
		{"alice", "orders.eu", auth.ActionProduce, codes.OK},
		{"alice", "orders.us", auth.ActionProduce, codes.PermissionDenied},
		{"alice", "orders", auth.ActionConsume, codes.PermissionDenied},
		{"alice", "payments", auth.ActionConsume, codes.PermissionDenied},
		{"alice", "default", auth.ActionConsume, codes.PermissionDenied},
		{"alice", "logs-1", auth.ActionConsume, codes.OK},
		{"alice", "logs-12", auth.ActionConsume, codes.PermissionDenied},
		{"alice", "orders.eu", auth.ActionAdmin, codes.PermissionDenied},
		{"ops", "anything", auth.ActionAdmin, codes.OK},
		{"ops", "anything", auth.ActionConsume, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s %s", tt.subject, tt.action, tt.object), func(t *testing.T) {
			err := authorizer.Authorize(tt.subject, tt.object, tt.action)
			require.Equal(t, tt.want, status.Code(err), "Authorize(%q, %q, %q) = %v, want %v",
				tt.subject, tt.object, tt.action, err, tt.want)
		})
	}
}

func TestNewRejectsBadFiles(t *testing.T) {
	files := tlsconfigtest.Files(t)
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name          string
		model, policy string
		wantInvalid   bool
	}{
		{name: "no model", policy: files.ACLPolicyFile, wantInvalid: true},
		{name: "no policy", model: files.ACLModelFile, wantInvalid: true},
		{name: "missing model", model: missing, policy: files.ACLPolicyFile},
		{name: "missing policy", model: files.ACLModelFile, policy: missing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.New(tt.model, tt.policy)
			require.Error(t, err, "New(%q, %q) = %v, want an error", tt.model, tt.policy, got)
			if tt.wantInvalid {
				require.ErrorIs(t, err, auth.ErrInvalidConfig)
			}
		})
	}
}

func TestAuthorizeConcurrently(t *testing.T) {
	files := tlsconfigtest.Files(t)
	authorizer, err := auth.New(files.ACLModelFile, files.ACLPolicyFile)
	require.NoError(t, err)

	const goroutines, calls = 8, 200
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := []string{"root", "nobody"}[g%2]
			for range calls {
				err := authorizer.Authorize(subject, auth.ObjectAll, auth.ActionProduce)
				if (subject == "root") != (err == nil) {
					errs <- fmt.Errorf("Authorize(%s, produce) = %v", subject, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
