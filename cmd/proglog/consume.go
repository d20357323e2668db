package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
)

// consumeSettings are the settings of `proglog consume`.
type consumeSettings struct {
	client clientSettings
	// from is the offset of the first record.
	from uint64
	// follow keeps waiting for new records.
	follow bool
	// count stops after that many records; 0 means no limit.
	count int
	// json prints JSON lines instead of raw values.
	json bool
}

// readConsumeSettings reads and validates the settings of `proglog consume`.
func readConsumeSettings(s *settings) (consumeSettings, error) {
	from := s.Int(keyFrom)
	cs := consumeSettings{
		client: readClientSettings(s),
		follow: s.Bool(keyFollow),
		count:  s.Int(keyCount),
		json:   s.Bool(keyJSON),
	}
	if err := s.Err(); err != nil {
		return cs, err
	}
	if from < 0 {
		return cs, usageError(fmt.Errorf("--from %d must not be negative", from))
	}
	if cs.count < 0 {
		return cs, usageError(fmt.Errorf("--count %d must not be negative", cs.count))
	}
	cs.from = uint64(from)
	return cs, cs.client.validate()
}

func newConsumeCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "consume",
		Short: "Print records of the log, from an offset on",
		Long: `Print the records from offset --from to the end of the log, one value per
line. With --follow, keep waiting for new records like tail -f, until
interrupted or --count records were printed. With --json, print one JSON object
per line, {"offset": N, "value": "<base64>"}, the value encoded as in the HTTP
API.

Reads are spread over the followers through the proglog:/// resolver.`,
		Example: `  proglog consume                        # the whole log
  proglog consume --from 100 --count 10  # offsets 100..109
  proglog consume --from 0 --follow      # everything, then new records as they come
  proglog consume --json | jq -r '.value | @base64d'`,
		RunE: runConsume,
	}, consumeOptions())
}

// errEnough ends a stream once --count records were printed.
var errEnough = errors.New("enough records")

// runConsume runs `proglog consume`.
func runConsume(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd.Flags(), consumeOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	cs, err := readConsumeSettings(s)
	if err != nil {
		return err
	}
	logger, err := newLogger(cs.client.logLevel, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	client, err := cs.client.dial(logger)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer client.Close()

	ctx := cmd.Context()
	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	printed := 0
	emit := func(record *api.Record) error {
		if err := writeRecord(out, record, cs.json); err != nil {
			return fmt.Errorf("consume: write: %w", err)
		}
		printed++
		if cs.count > 0 && printed >= cs.count {
			return errEnough
		}
		return nil
	}

	if cs.follow {
		err := client.ConsumeStream(ctx, cs.from, func(record *api.Record) error {
			if err := emit(record); err != nil {
				return err
			}
			// Someone is watching: show each record as it comes.
			return out.Flush()
		})
		switch {
		case errors.Is(err, errEnough), errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return nil // enough records, or interrupted by the user
		case err != nil:
			return cs.client.rpcError("consume", err)
		}
		return nil
	}

	for offset := cs.from; ; offset++ {
		record, err := client.Consume(ctx, offset)
		if status.Code(err) == codes.OutOfRange {
			return nil // the end of the log
		}
		if err != nil {
			return cs.client.rpcError("consume", err)
		}
		if err := emit(record); errors.Is(err, errEnough) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// recordJSON is one line of `proglog consume --json`.
type recordJSON struct {
	Offset uint64 `json:"offset"`
	// Value is base64, as in the HTTP API: records are bytes.
	Value []byte `json:"value"`
}

// writeRecord prints record's value on a line, or its JSON line.
func writeRecord(w io.Writer, record *api.Record, asJSON bool) error {
	if asJSON {
		value := record.GetValue()
		if value == nil {
			value = []byte{} // "", not null
		}
		line, err := json.Marshal(recordJSON{Offset: record.GetOffset(), Value: value})
		if err != nil {
			return err
		}
		line = append(line, '\n')
		_, err = w.Write(line)
		return err
	}
	if _, err := w.Write(record.GetValue()); err != nil {
		return err
	}
	_, err := w.Write([]byte{'\n'})
	return err
}
