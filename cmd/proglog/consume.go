package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
)

// consumeSettings are the settings of `proglog consume`.
type consumeSettings struct {
	client clientSettings
	// topic is the topic read; "" is the default topic.
	topic string
	// from is the offset of the first record.
	from uint64
	// follow keeps waiting for new records.
	follow bool
	// count stops after that many records; 0 means no limit.
	count int
	// json prints JSON lines instead of raw values.
	json bool
	// group is the consumer group ("": none); with one, consume starts at
	// its committed offset and commits every commitEvery records or, at a
	// record, commitInterval after the last commit, and on exit.
	group          string
	commitEvery    int
	commitInterval time.Duration
}

// readConsumeSettings reads and validates the settings of `proglog consume`.
func readConsumeSettings(s *settings) (consumeSettings, error) {
	from := s.Int(keyFrom)
	cs := consumeSettings{
		client: readClientSettings(s),
		follow: s.Bool(keyFollow),
		count:  s.Int(keyCount),
		json:   s.Bool(keyJSON),

		group:          s.String(keyGroup),
		commitEvery:    s.Int(keyCommitEvery),
		commitInterval: s.Duration(keyCommitInterval),
	}
	topic, topicErr := readTopic(s)
	if err := s.Err(); err != nil {
		return cs, err
	}
	if topicErr != nil {
		return cs, topicErr
	}
	cs.topic = topic
	if from < 0 {
		return cs, usageError(fmt.Errorf("--from %d must not be negative", from))
	}
	if cs.count < 0 {
		return cs, usageError(fmt.Errorf("--count %d must not be negative", cs.count))
	}
	cs.from = uint64(from)
	if cs.group != "" {
		if err := api.ValidateGroupName(cs.group); err != nil {
			return cs, usageError(fmt.Errorf("--group: %w", err))
		}
	}
	if cs.commitEvery < 1 {
		return cs, usageError(fmt.Errorf("--%s %d must be at least 1", keyCommitEvery, cs.commitEvery))
	}
	if cs.commitInterval <= 0 {
		return cs, usageError(fmt.Errorf("--%s %v must be positive", keyCommitInterval, cs.commitInterval))
	}
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

With --group G, consume starts at the group's committed offset in the topic
(the next record it has not processed; --from when it has none) and commits,
after printing, every --commit-every records, at a record printed
--commit-interval after the last commit, and on exit (end, --count, Ctrl-C).
A consumer killed and started again resumes there: no record is skipped, and at
most the records printed since the last commit are printed again.

Reads are spread over the followers through the proglog:/// resolver; without
--follow, the end of the log is where the leader says it is, so every record
committed before consume got there is printed.`,
		Example: `  proglog consume                        # the whole log
  proglog consume --from 100 --count 10  # offsets 100..109
  proglog consume --from 0 --follow      # everything, then new records as they come
  proglog consume --json | jq -r '.value | @base64d'
  proglog consume --topic orders --follow  # a topic other than the default one
  proglog consume --group billing --follow # resume where group billing left off`,
		RunE: runConsume,
	}, consumeOptions())
}

// errEnough ends a stream once --count records were printed.
var errEnough = errors.New("enough records")

// runConsume runs `proglog consume`.
// followBatchRecords is the most records one response of `consume
// --follow`'s stream carries, and consumeBatchRecords one Consume call's
// without --follow.
const (
	followBatchRecords  = 1000
	consumeBatchRecords = 1000
)

func runConsume(cmd *cobra.Command, _ []string) (err error) {
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
	var committer *groupCommitter
	if cs.group != "" {
		committer = &groupCommitter{client: client, settings: cs, out: out, lastCommit: time.Now()}
		from, err := committer.start(ctx)
		if err != nil {
			return err
		}
		cs.from = from
		// Whatever ends consume, what was printed is committed.
		defer func() {
			if cerr := committer.commit(context.Background()); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	printed := 0
	emit := func(record *api.Record) error {
		if err := writeRecord(out, record, cs.json); err != nil {
			return fmt.Errorf("consume: write: %w", err)
		}
		printed++
		if committer != nil {
			if err := committer.printed(ctx, record.GetOffset()); err != nil {
				return err
			}
		}
		if cs.count > 0 && printed >= cs.count {
			return errEnough
		}
		return nil
	}

	if cs.follow {
		// In batches: a follower sends what it holds at once, so catching
		// up costs a message per batch, not per record.
		err := client.ConsumeBatches(ctx, cs.from, func(records []*api.Record) error {
			for _, record := range records {
				if err := emit(record); err != nil {
					return err
				}
			}
			// Someone is watching: show the records as they come.
			return out.Flush()
		}, loadbalance.WithTopic(cs.topic), loadbalance.WithBatches(followBatchRecords, 0))
		switch {
		case errors.Is(err, errEnough), errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return nil // enough records, or interrupted by the user
		case err != nil:
			return cs.client.rpcError("consume", err)
		}
		return nil
	}

	reader := &hedgedReader{client: client, settings: cs.client, topic: cs.topic}
	defer reader.close()
	for offset := cs.from; ; {
		records, err := reader.consume(ctx, offset)
		if status.Code(err) == codes.OutOfRange && !strings.Contains(status.Convert(err).Message(), "below the lowest offset") {
			return nil // the end of the log
		}
		if err != nil {
			return cs.client.rpcError("consume", err)
		}
		for _, record := range records {
			if err := emit(record); errors.Is(err, errEnough) {
				return nil
			} else if err != nil {
				return err
			}
		}
		offset += uint64(len(records))
	}
}

// groupCommitter commits a consumer group's offset as consume prints
// records: what is committed has been written out (flushed) first, so a
// consumer that dies repeats records, never skips them.
type groupCommitter struct {
	client   *loadbalance.Client
	settings consumeSettings
	out      *bufio.Writer
	// next is the offset after the last record printed; dirty is set when
	// it was not committed yet.
	next        uint64
	dirty       bool
	sinceCommit int
	lastCommit  time.Time
}

// start returns the offset to start at: the group's committed one, or
// --from when it has none.
func (g *groupCommitter) start(ctx context.Context) (uint64, error) {
	// From the leader: a follower may not have applied the last commit of
	// the consumer that ran before this one.
	off, err := g.client.FetchOffset(ctx, g.settings.group, loadbalance.WithTopic(g.settings.topic), loadbalance.FromLeader())
	switch {
	case status.Code(err) == codes.NotFound && strings.Contains(status.Convert(err).Message(), api.ErrGroupNotFound.Error()):
		g.next = g.settings.from
	case err != nil:
		return 0, g.settings.client.rpcError("consume", err)
	default:
		g.next = off
	}
	return g.next, nil
}

// printed notes that the record at offset was written out, and commits when
// enough records or time have passed.
func (g *groupCommitter) printed(ctx context.Context, offset uint64) error {
	g.next = offset + 1
	g.dirty = true
	g.sinceCommit++
	if g.sinceCommit >= g.settings.commitEvery || time.Since(g.lastCommit) >= g.settings.commitInterval {
		return g.commit(ctx)
	}
	return nil
}

// commit flushes the output and commits the offset after the last record
// printed, if it moved.
func (g *groupCommitter) commit(ctx context.Context) error {
	if !g.dirty {
		return nil
	}
	if err := g.out.Flush(); err != nil {
		return fmt.Errorf("consume: write: %w", err)
	}
	if ctx.Err() != nil {
		// Interrupted: the final commit still goes, within --timeout.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), g.settings.client.timeout)
		defer cancel()
	}
	if _, err := g.client.CommitOffset(ctx, g.settings.group, g.next, false, loadbalance.WithTopic(g.settings.topic)); err != nil {
		return g.settings.client.rpcError("consume: commit", err)
	}
	g.dirty = false
	g.sinceCommit = 0
	g.lastCommit = time.Now()
	return nil
}

// hedgeDelay is how long a read may take at a follower before the leader is
// asked too. A record a follower holds comes back in a millisecond or two; a
// follower asked for an offset past its end waits (up to the distributed
// log's ReadWaitTimeout, 2 s by default) for a record that may be committed
// but not yet applied there.
const hedgeDelay = 100 * time.Millisecond

// hedgedReader reads records through the balanced client (from followers)
// and, when an answer is slow, asks the leader as well and takes the first
// answer. A consume without --follow thus ends as soon as the leader says
// the log ends there, instead of waiting out a follower's read wait on the
// last offset, and still prints every record committed before it got there.
type hedgedReader struct {
	client   *loadbalance.Client
	settings clientSettings
	topic    string // "" is the default topic
	// leader is a direct connection to the leader, made at the first hedge;
	// nil until then, or when no leader could be found.
	leader     api.LogClient
	leaderConn *grpc.ClientConn
	triedDial  bool
}

// consume reads the records from offset on, up to consumeBatchRecords of
// them, at consecutive offsets (at least the one at offset).
func (h *hedgedReader) consume(ctx context.Context, offset uint64) ([]*api.Record, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the call that lost the race
	type answer struct {
		records []*api.Record
		err     error
	}
	answers := make(chan answer, 2) // both senders always find room and exit
	go func() {
		records, err := h.client.ConsumeBatch(ctx, offset, loadbalance.WithTopic(h.topic), loadbalance.WithBatches(consumeBatchRecords, 0))
		answers <- answer{records, err}
	}()
	pending := 1
	hedge := time.NewTimer(hedgeDelay)
	defer hedge.Stop()
	var firstErr error
	for {
		select {
		case a := <-answers:
			pending--
			switch {
			case a.err == nil:
				return a.records, nil
			case status.Code(a.err) == codes.OutOfRange:
				return nil, a.err
			case firstErr == nil:
				firstErr = a.err
			}
			if pending == 0 {
				return nil, firstErr
			}
		case <-hedge.C:
			if leader := h.leaderClient(ctx); leader != nil {
				pending++
				go func() {
					resp, err := leader.Consume(ctx, &api.ConsumeRequest{Topic: h.topic, Offset: offset, MaxRecords: consumeBatchRecords})
					if err == nil && (len(resp.GetRecords()) == 0 || resp.GetRecords()[0].GetOffset() != offset) {
						err = fmt.Errorf("consume at %d: the leader answered without the record", offset)
					}
					answers <- answer{resp.GetRecords(), err}
				}()
			}
		}
	}
}

// leaderClient connects to the leader the first time it is called and
// returns nil when that failed: the balanced read then decides alone.
func (h *hedgedReader) leaderClient(ctx context.Context) api.LogClient {
	if h.triedDial {
		return h.leader
	}
	h.triedDial = true
	servers, err := h.client.GetServers(ctx)
	if err != nil {
		return nil
	}
	for _, s := range servers {
		if !s.GetIsLeader() {
			continue
		}
		conn, err := h.settings.dialDirect(s.GetRpcAddr())
		if err != nil {
			return nil
		}
		h.leaderConn, h.leader = conn, api.NewLogClient(conn)
		break
	}
	return h.leader
}

// close closes the connection to the leader, if one was made.
func (h *hedgedReader) close() {
	if h.leaderConn != nil {
		_ = h.leaderConn.Close()
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
