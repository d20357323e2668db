package deploy_test

import (
	"path"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// gossipKey is a key as `proglog keygen` prints it (32 bytes, base64).
const gossipKey = "R3NzaXAga2V5IGZvciB0aGUgY2hhcnQgdGVzdHMhISE="

// TestGossipKey: the pods read the gossip key from the Secret the values
// name (default <fullname>-gossip), mounted read-only where --gossip-key-file
// points, which the chart makes from gossip.key when that is set; with
// gossip.insecure they run --gossip-insecure and mount nothing.
func TestGossipKey(t *testing.T) {
	tests := []struct {
		name       string
		set        []string
		wantSecret string // "" when no key is mounted
	}{
		{name: "default", wantSecret: "proglog-gossip"},
		{name: "named Secret", set: []string{"gossip.keySecret=my-gossip-key"}, wantSecret: "my-gossip-key"},
		{name: "insecure", set: []string{"gossip.insecure=true"}},
		{name: "key from values", set: []string{"gossip.key=" + gossipKey}, wantSecret: "proglog-gossip"},
		{name: "insecure wins over a key", set: []string{"gossip.insecure=true", "gossip.key=" + gossipKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := decodeManifests(t, render(t, release{name: "proglog", namespace: "default", set: tt.set}))
			// A key in the values becomes the Secret the pods mount; without
			// one, the chart makes no Secret.
			if slices.Contains(tt.set, "gossip.key="+gossipKey) && tt.wantSecret != "" {
				require.Len(t, m.secrets, 1)
				require.Equal(t, tt.wantSecret, m.secrets[0].Name)
				require.Equal(t, gossipKey+"\n", string(m.secrets[0].Data["gossip.key"]))
			} else {
				require.Empty(t, m.secrets)
			}
			spec := m.statefulSet(t).Spec.Template.Spec
			node := container(t, spec, "proglog")
			keyFile, hasKeyFile := flagValue(node.Args, "gossip-key-file")
			insecure := slices.Contains(node.Args, "--gossip-insecure")
			if tt.wantSecret == "" {
				require.True(t, insecure, "--gossip-insecure in %q", node.Args)
				require.False(t, hasKeyFile, "--gossip-key-file with gossip.insecure")
				for _, v := range spec.Volumes {
					require.NotEqual(t, "gossip", v.Name, "a gossip key volume with gossip.insecure")
				}
				return
			}
			require.False(t, insecure, "--gossip-insecure without gossip.insecure")
			require.True(t, hasKeyFile, "--gossip-key-file in %q", node.Args)
			v := volume(t, spec, "gossip")
			require.NotNil(t, v.Secret)
			require.Equal(t, tt.wantSecret, v.Secret.SecretName)
			require.Len(t, v.Secret.Items, 1)
			require.Equal(t, "gossip.key", v.Secret.Items[0].Key)
			require.Equal(t, path.Join(mountPath(t, node, "gossip"), v.Secret.Items[0].Path), keyFile)
			for _, vm := range node.VolumeMounts {
				if vm.Name == "gossip" {
					require.True(t, vm.ReadOnly, "the gossip key is mounted writable")
				}
			}
		})
	}
}
