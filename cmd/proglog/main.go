// Command proglog runs a node of a proglog cluster (proglog agent) and talks
// to a running cluster: produce, consume, servers and bench. Run
// `proglog --help` for the commands and `proglog COMMAND --help` for their
// settings, which come from flags, PROGLOG_* environment variables and a YAML
// config file, in that order of precedence.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	// exitUsage is for a bad flag, argument or setting, as with most Unix
	// tools.
	exitUsage = 2
)

// run executes the command line args and returns the exit status. The first
// SIGINT or SIGTERM cancels the command's context (an agent then shuts down
// gracefully); a second one kills the process the default way, for a
// shutdown that hangs.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore the default action: the next signal kills
	}()

	root, err := newRootCmd(stdin, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "proglog: %s\n", oneLine(err))
		return exitError
	}
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "proglog: %s\n", oneLine(err))
		if errors.Is(err, errUsage) || strings.HasPrefix(err.Error(), "unknown command") {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// oneLine folds a message onto one line: cobra's suggestions and some gRPC
// messages span several.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
