package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/proglog/proglog/loadbalance"
)

// Limits of one ProduceBatch call made by `proglog produce`; they stay under
// the server's defaults (1,000 records, 1 MiB per record).
const (
	produceBatchRecords = 1000
	produceBatchBytes   = 1 << 20
)

// produceSettings are the settings of `proglog produce`.
type produceSettings struct {
	client clientSettings
	// topic is the topic written; "" is the default topic.
	topic string
}

// readProduceSettings reads and validates the settings of `proglog produce`.
func readProduceSettings(s *settings) (produceSettings, error) {
	ps := produceSettings{client: readClientSettings(s)}
	topic, topicErr := readTopic(s)
	if err := s.Err(); err != nil {
		return ps, err
	}
	if topicErr != nil {
		return ps, topicErr
	}
	ps.topic = topic
	return ps, ps.client.validate()
}

func newProduceCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "produce VALUE... | produce -",
		Short: "Append records to the log and print their offsets",
		Long: `Append each VALUE as one record, or with -, each line of standard input (without
its line ending). Prints the offset of each record, one per line, in order.

Values go to the leader through the proglog:/// resolver. Lines read from a
pipe are sent in batches (one Raft entry each) as fast as they arrive; typed
lines are sent one by one as you type them.`,
		Example: `  proglog produce hello world                 # prints 0 and 1 on a fresh cluster
  printf 'a\nb\nc\n' | proglog produce -        # one record per line
  tail -f app.log | proglog produce -           # ship a log as it grows
  proglog produce --addr 10.0.0.1:8401 "$(date)"
  proglog produce --topic orders '{"id": 1}'  # to a topic made with 'proglog topic create'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError(fmt.Errorf("%sneeds VALUE arguments, or - to read lines from standard input (see '%s --help')",
					commandPrefix(cmd), cmd.CommandPath()))
			}
			return nil
		},
		RunE: runProduce,
	}, produceOptions())
}

// runProduce runs `proglog produce`.
func runProduce(cmd *cobra.Command, args []string) error {
	s, err := loadSettings(cmd.Flags(), produceOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ps, err := readProduceSettings(s)
	if err != nil {
		return err
	}
	logger, err := newLogger(ps.client.logLevel, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	client, err := ps.client.dial(logger)
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	defer client.Close()

	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	var next func() ([][]byte, error)
	if len(args) == 1 && args[0] == "-" {
		next = newLineBatcher(cmd.InOrStdin(), produceBatchRecords, produceBatchBytes).next
	} else {
		next = argBatches(args, produceBatchRecords, produceBatchBytes)
	}
	for {
		batch, readErr := next()
		if len(batch) > 0 {
			if err := produceBatch(cmd.Context(), client, ps.topic, batch, out); err != nil {
				return ps.client.rpcError("produce", err)
			}
			if err := out.Flush(); err != nil {
				return fmt.Errorf("produce: write offsets: %w", err)
			}
		}
		if errors.Is(readErr, io.EOF) {
			return nil
		}
		if readErr != nil {
			return fmt.Errorf("produce: read standard input: %w", readErr)
		}
	}
}

// produceBatch appends values to topic, one call for the lot, and prints
// their offsets.
func produceBatch(ctx context.Context, client *loadbalance.Client, topic string, values [][]byte, out io.Writer) error {
	var first uint64
	var err error
	if len(values) == 1 {
		first, err = client.Produce(ctx, values[0], loadbalance.WithTopic(topic))
	} else {
		first, err = client.ProduceBatch(ctx, values, loadbalance.WithTopic(topic))
	}
	if err != nil {
		return err
	}
	for i := range values {
		if _, err := fmt.Fprintln(out, first+uint64(i)); err != nil {
			return fmt.Errorf("write offsets: %w", err)
		}
	}
	return nil
}

// argBatches returns a function that hands out args in batches of at most
// maxRecords values and about maxBytes bytes, then io.EOF.
func argBatches(args []string, maxRecords, maxBytes int) func() ([][]byte, error) {
	return func() ([][]byte, error) {
		var batch [][]byte
		size := 0
		for len(args) > 0 && len(batch) < maxRecords && (len(batch) == 0 || size+len(args[0]) <= maxBytes) {
			batch = append(batch, []byte(args[0]))
			size += len(args[0])
			args = args[1:]
		}
		if len(args) == 0 {
			return batch, io.EOF
		}
		return batch, nil
	}
}

// lineBatcher splits a reader into lines and groups them into batches without
// waiting: a batch holds the next line plus every complete line already
// buffered, so piped input goes out in large batches and typed input goes out
// line by line.
type lineBatcher struct {
	r          *bufio.Reader
	maxRecords int
	maxBytes   int
}

func newLineBatcher(r io.Reader, maxRecords, maxBytes int) *lineBatcher {
	return &lineBatcher{r: bufio.NewReaderSize(r, 64<<10), maxRecords: maxRecords, maxBytes: maxBytes}
}

// next returns the next batch of lines, without their "\n" or "\r\n". The
// error is io.EOF with the last batch, or a read error.
func (b *lineBatcher) next() ([][]byte, error) {
	var batch [][]byte
	size := 0
	for {
		line, err := b.r.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			batch = append(batch, line)
			size += len(line)
		}
		if err != nil {
			return batch, err
		}
		if len(batch) >= b.maxRecords || size >= b.maxBytes || !b.lineBuffered() {
			return batch, nil
		}
	}
}

// lineBuffered reports whether a whole line is buffered, so reading it will
// not block.
func (b *lineBatcher) lineBuffered() bool {
	n := b.r.Buffered()
	if n == 0 {
		return false
	}
	buffered, err := b.r.Peek(n)
	return err == nil && bytes.IndexByte(buffered, '\n') >= 0
}
