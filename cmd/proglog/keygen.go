package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/proglog/proglog/discovery"
)

// keygenSettings are the settings of `proglog keygen`.
type keygenSettings struct {
	// out is the file to write the key to; empty prints it.
	out string
}

// readKeygenSettings reads the settings of `proglog keygen`.
func readKeygenSettings(s *settings) (keygenSettings, error) {
	ks := keygenSettings{out: s.String(keyOut)}
	return ks, s.Err()
}

func newKeygenCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "keygen",
		Short: "Make a new gossip encryption key",
		Long: `Print a new random gossip encryption key (32 bytes, base64: AES-256), or write
it to a new file with --out. Every node of a cluster needs the same key in its
gossip key file (--gossip-key-file, default gossip.key in --config-dir, which
'make gencert' writes if it is missing).

To rotate a running cluster's key: add the new key as a second line of every
node's key file and send each node SIGHUP; then move it to the first line
(it encrypts from then on) and SIGHUP every node; then delete the old line
and SIGHUP every node. Wait for each round to reach every node before the next.`,
		Example: `  proglog keygen                             # prints a key
  proglog keygen --out ~/.proglog/gossip.key # writes a new key file`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd.Flags(), keygenOptions(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ks, err := readKeygenSettings(s)
			if err != nil {
				return err
			}
			key, err := discovery.GenerateGossipKey()
			if err != nil {
				return err
			}
			if ks.out == "" {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), key)
				return err
			}
			return writeKeyFile(ks.out, key)
		},
	}, keygenOptions())
}

// writeKeyFile creates path, readable by its owner only, with key on one
// line. It refuses to replace an existing file: that would cut the node
// off from its cluster.
func writeKeyFile(path, key string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("keygen: %s exists; not replacing a key the cluster may use (to rotate, add the new key as a line of it: see 'proglog keygen --help')", path)
	}
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	_, err = fmt.Fprintln(f, key)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return errors.Join(fmt.Errorf("keygen: write %s: %w", path, err), os.Remove(path))
	}
	return nil
}
