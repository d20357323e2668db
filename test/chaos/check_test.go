package chaos

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	api "github.com/proglog/proglog/api/v1"
)

// nodeLog is what one node holds.
type nodeLog struct {
	values []string
	gaps   int // records whose offset was not the next one
}

// readNodeLog reads node i's whole log over a direct connection: records
// from 0 on until none has come for quiet.
func (c *cluster) readNodeLog(i int, quiet time.Duration) (nodeLog, error) {
	conn := c.dialNode(i)
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := api.NewLogClient(conn).ConsumeStream(ctx, &api.ConsumeRequest{Offset: 0})
	if err != nil {
		return nodeLog{}, err
	}
	type result struct {
		rec *api.Record
		err error
	}
	records := make(chan result)
	go func() {
		for {
			resp, err := stream.Recv()
			select {
			case records <- result{resp.GetRecord(), err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var out nodeLog
	timer := time.NewTimer(quiet)
	defer timer.Stop()
	for {
		select {
		case r := <-records:
			if r.err != nil {
				return out, r.err
			}
			if r.rec.GetOffset() != uint64(len(out.values)) {
				out.gaps++
			}
			out.values = append(out.values, string(r.rec.GetValue()))
			timer.Reset(quiet)
		case <-timer.C:
			return out, nil
		}
	}
}

// report is the outcome of the checks.
type report struct {
	faults       int
	acked        int // acknowledged writes (records)
	unknown      int // writes whose outcome is unknown
	lost         []string
	divergent    int
	gaps         int
	phantoms     []string // values in the log no client wrote, or whose write was refused
	duplicates   int      // extra copies of values; must be 0: the writers are idempotent producers
	duplicated   []string // every duplicated value with its offsets
	unexplained  []string // duplicated values no unknown attempt explains
	linearizable string   // yes, no, or unknown (timeout)
	lengths      []int
	final        []string // the longest node's log
	stream       []string // what the ConsumeStream consumer got wrong
	streamed     int      // records the ConsumeStream consumer received
}

func (r report) ok() bool {
	return len(r.lost) == 0 && r.divergent == 0 && r.gaps == 0 && len(r.phantoms) == 0 &&
		r.duplicates == 0 && r.linearizable != "no" && len(r.stream) == 0
}

// summary is the one line `make chaos` prints.
func (r report) summary() string {
	return fmt.Sprintf("faults: %d acked: %d lost: %d divergent: %d duplicates: %d linearizable: %s",
		r.faults, r.acked, len(r.lost), r.divergent, r.duplicates, r.linearizable)
}

// details says what went wrong, briefly.
func (r report) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node log lengths %v, unknown writes %d, offset gaps %d, streamed %d\n", r.lengths, r.unknown, r.gaps, r.streamed)
	show := func(name string, items []string) {
		if len(items) > 0 {
			fmt.Fprintf(&b, "%s (%d): %s\n", name, len(items), strings.Join(items[:min(len(items), 10)], "; "))
		}
	}
	show("lost", r.lost)
	show("phantoms", r.phantoms)
	show("duplicates", r.duplicated)
	show("duplicates without an unknown attempt", r.unexplained)
	show("ConsumeStream", r.stream)
	return b.String()
}

// check reads every node's log (all must be running and connected) and
// checks the history against them.
func (c *cluster) check(h *history, linearizabilityTimeout time.Duration) (report, error) {
	var logs []nodeLog
	// Followers may still be catching up: read until every node holds as
	// many records as the longest, within a bound.
	deadline := time.Now().Add(60 * time.Second)
	for {
		logs = logs[:0]
		for i := range c.nodes {
			l, err := c.readNodeLog(i, 1500*time.Millisecond)
			if err != nil {
				return report{}, fmt.Errorf("read node %d: %w", i+1, err)
			}
			logs = append(logs, l)
		}
		longest := 0
		same := true
		for _, l := range logs {
			longest = max(longest, len(l.values))
		}
		for _, l := range logs {
			same = same && len(l.values) == longest
		}
		if same || time.Now().After(deadline) {
			break
		}
	}
	var r report
	ref := logs[0].values
	for _, l := range logs {
		r.lengths = append(r.lengths, len(l.values))
		r.gaps += l.gaps
		if len(l.values) > len(ref) {
			ref = l.values
		}
	}
	for off := range ref {
		for _, l := range logs {
			if off >= len(l.values) || l.values[off] != ref[off] {
				r.divergent++
				break
			}
		}
	}

	ops := h.snapshot()
	written := make(map[string]bool)
	failed := make(map[string]bool) // first values of writes that failed for sure
	for _, o := range ops {
		if o.Kind == opRead {
			continue
		}
		for _, v := range o.Values {
			written[v] = true
		}
		if o.Outcome == outcomeError {
			failed[o.Values[0]] = true
			continue
		}
		if o.Outcome != outcomeOK {
			r.unknown += len(o.Values)
			continue
		}
		r.acked += len(o.Values)
		for k, v := range o.Values {
			off := o.Offset + uint64(k)
			for n, l := range logs {
				if off >= uint64(len(l.values)) || l.values[off] != v {
					got := "nothing"
					if off < uint64(len(l.values)) {
						got = l.values[off]
					}
					r.lost = append(r.lost, fmt.Sprintf("%s at %d: node %d has %s", v, off, n+1, got))
				}
			}
		}
	}
	positions := make(map[string][]uint64)
	for off, v := range ref {
		positions[v] = append(positions[v], uint64(off))
		switch {
		case !written[v]:
			r.phantoms = append(r.phantoms, fmt.Sprintf("%s at %d", v, off))
		case failed[v]:
			r.phantoms = append(r.phantoms, fmt.Sprintf("%s at %d (its write failed with a refusal)", v, off))
		}
	}
	for v, offs := range positions {
		if len(offs) < 2 {
			continue
		}
		r.duplicates += len(offs) - 1
		r.duplicated = append(r.duplicated, fmt.Sprintf("%s at %v", v, offs))
		if h.unknownAttemptsOf(v) == 0 {
			r.unexplained = append(r.unexplained, fmt.Sprintf("%s at %v", v, offs))
		}
	}
	sort.Strings(r.duplicated)
	sort.Strings(r.unexplained)
	r.linearizable = checkLinearizable(ops, ref, positions, linearizabilityTimeout)
	r.final = ref
	return r, nil
}

// Porcupine model of the log: the state is its length; appending n values
// at offset k is possible only when the log is k long; a read of an offset
// returns the value there (from the final log) or out-of-range past the
// end.
type (
	logInput struct {
		read   bool
		n      uint64 // values appended
		offset uint64 // offset read
	}
	logOutput struct {
		offset uint64 // first offset appended
		oor    bool   // the read was out of range
		value  string // the value read
	}
)

func logModel(final []string) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return uint64(0) },
		Step: func(state, input, output any) (bool, any) {
			length := state.(uint64)
			in, out := input.(logInput), output.(logOutput)
			if !in.read {
				return out.offset == length, length + in.n
			}
			if out.oor {
				return in.offset >= length, length
			}
			return in.offset < length && in.offset < uint64(len(final)) && final[in.offset] == out.value, length
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(logInput), output.(logOutput)
			if in.read {
				if out.oor {
					return fmt.Sprintf("read(%d) -> out of range", in.offset)
				}
				return fmt.Sprintf("read(%d) -> %s", in.offset, out.value)
			}
			return fmt.Sprintf("append(%d values) -> %d", in.n, out.offset)
		},
	}
}

// checkLinearizable turns the history into porcupine operations and checks
// them. Writes with an unknown outcome and extra copies of retried values
// become appends at the offsets the final log shows them at, open until
// the end of time (they may have landed any time after their invocation);
// unknown writes that did not land are left out.
func checkLinearizable(ops []op, final []string, positions map[string][]uint64, timeout time.Duration) string {
	if len(ops) == 0 {
		return "yes"
	}
	start := ops[0].Invoke
	for _, o := range ops {
		if o.Invoke.Before(start) {
			start = o.Invoke
		}
	}
	at := func(t time.Time) int64 { return t.Sub(start).Nanoseconds() }
	var history []porcupine.Operation
	for _, o := range ops {
		if o.Kind == opRead {
			out := logOutput{oor: o.Outcome == outcomeOOR}
			if !out.oor {
				out.value = o.Values[0]
			}
			history = append(history, porcupine.Operation{ClientId: o.Client, Input: logInput{read: true, offset: o.Offset},
				Call: at(o.Invoke), Output: out, Return: at(o.Return)})
			continue
		}
		n := uint64(len(o.Values))
		// Every copy of the write in the final log, found by its first
		// value (a batch is appended as a unit).
		for _, off := range positions[o.Values[0]] {
			ret := int64(math.MaxInt64)
			if o.Outcome == outcomeOK && off == o.Offset {
				ret = at(o.Return)
			}
			history = append(history, porcupine.Operation{ClientId: o.Client, Input: logInput{n: n},
				Call: at(o.Invoke), Output: logOutput{offset: off}, Return: ret})
		}
		if o.Outcome == outcomeError {
			continue // checked above: must not be in the log
		}
		if o.Outcome == outcomeOK && !slices.Contains(positions[o.Values[0]], o.Offset) {
			// Acknowledged but not in the log: lost, reported apart; the
			// model must still see the acknowledgement to fail.
			history = append(history, porcupine.Operation{ClientId: o.Client, Input: logInput{n: n},
				Call: at(o.Invoke), Output: logOutput{offset: o.Offset}, Return: at(o.Return)})
		}
	}
	switch porcupine.CheckOperationsTimeout(logModel(final), history, timeout) {
	case porcupine.Ok:
		return "yes"
	case porcupine.Illegal:
		return "no"
	default:
		return fmt.Sprintf("unknown (no answer within %v)", timeout)
	}
}

// fault is one injected fault, for stall figures.
type fault struct {
	kind string
	node int
	// from is when writes were expected to stop (the kill, the pause, the
	// partition; for faults that stop the whole cluster, its restart).
	from time.Time
}

// stall is the longest time without an acknowledged write from f.from
// until window later, and whether writes resumed in it at all.
func stall(completions []time.Time, from time.Time, window time.Duration) (time.Duration, bool) {
	end := from.Add(window)
	last := from
	longest := time.Duration(0)
	resumed := false
	for _, t := range completions {
		if t.Before(from) {
			continue
		}
		if t.After(end) {
			break
		}
		resumed = true
		longest = max(longest, t.Sub(last))
		last = t
	}
	if !resumed {
		return window, false
	}
	return longest, true
}

// stallReport prints stalls per fault kind: median and max.
func stallReport(faults []fault, completions []time.Time, window func(i int) time.Duration) (string, map[string][]time.Duration) {
	sorted := slices.Clone(completions)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	byKind := make(map[string][]time.Duration)
	var kinds []string
	for i, f := range faults {
		d, _ := stall(sorted, f.from, window(i))
		if _, ok := byKind[f.kind]; !ok {
			kinds = append(kinds, f.kind)
		}
		byKind[f.kind] = append(byKind[f.kind], d)
	}
	var b strings.Builder
	for _, k := range kinds {
		ds := byKind[k]
		fmt.Fprintf(&b, "stall %-32s n=%-3d median %-8v max %v\n", k, len(ds), median(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond))
	}
	return b.String(), byKind
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
