package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// newRootCmd builds the proglog command tree, reading from stdin and writing
// to stdout and stderr.
func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) (*cobra.Command, error) {
	root := &cobra.Command{
		Use:   "proglog",
		Short: "A Raft-replicated commit log",
		Long: `proglog runs a node of a replicated commit log (proglog agent) and talks to a
running cluster (produce, consume, servers, bench, topic).

Every setting is a flag, a PROGLOG_* environment variable (PROGLOG_ and the
flag name upper-cased, dashes as underscores: --rpc-port is PROGLOG_RPC_PORT)
and a key of the YAML file given with --config-file, in that order of
precedence. The client commands default to the local cluster 'make run'
starts and to the root client certificate 'make gencert' writes.`,
		Example: `  make run                      # a three-node cluster on 127.0.0.1, in another terminal
  proglog produce hello world   # prints the offsets: 0, 1
  proglog consume --from 0      # prints hello, world
  proglog servers               # who is in the cluster, who leads
  proglog topic create orders   # a topic of its own, offsets from 0
  proglog produce --topic orders new-order
  proglog bench --mode batch    # load test`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%s%w (see '%s --help')", commandPrefix(c), err, c.CommandPath()))
	})

	hostname, err := os.Hostname()
	if err != nil {
		hostname = ""
	}
	for _, build := range []func() (*cobra.Command, error){
		func() (*cobra.Command, error) { return newAgentCmd(hostname) },
		newProduceCmd,
		newConsumeCmd,
		newServersCmd,
		newBenchCmd,
		newKeygenCmd,
		newTopicCmd,
		newGroupsCmd,
	} {
		cmd, err := build()
		if err != nil {
			return nil, err
		}
		root.AddCommand(cmd)
	}
	return root, nil
}

// newCommand returns cmd with its options declared as flags.
func newCommand(cmd *cobra.Command, opts []option) (*cobra.Command, error) {
	if err := declareOptions(cmd.Flags(), opts); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.Name(), err)
	}
	if cmd.Args == nil {
		cmd.Args = noArgs
	}
	return cmd, nil
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(fmt.Errorf("%stakes no arguments, got %q (see '%s --help')",
			commandPrefix(cmd), args[0], cmd.CommandPath()))
	}
	return nil
}

// commandPrefix starts an error message about cmd: "produce: ", or nothing
// for the root, whose name main prints anyway.
func commandPrefix(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return ""
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ") + ": "
}
