package api

import (
	"errors"
	"fmt"
)

// An idempotent producer names itself with a producer id (any nonzero
// number, random per client session) and numbers its produce calls with a
// sequence: 0, 1, 2, … in the order it makes them, one call at a time, the
// same sequence on every retry of a call. The cluster keeps, per producer,
// the last sequence it appended and the offsets of its last few calls, so a
// retry of a call that was appended (its answer lost in a leader change)
// gets the original offsets and appends nothing. Producer id 0 turns this
// off: the call is appended however often it is retried.

// ProducerBatch is one produce call: its records (a Produce call has one,
// a ProduceBatch call many), and the producer id and sequence it carries.
// ProducerID 0 means the call is not idempotent and Sequence is ignored.
type ProducerBatch struct {
	ProducerID uint64
	Sequence   uint64
	Records    []*Record
}

// ProducerResult is the outcome of one ProducerBatch: the offsets its
// records hold (First .. First+Count-1) and whether they were appended by an
// earlier attempt of the same call (Duplicate), or the error that refused it
// (a SequenceError, or any error a plain append can meet).
type ProducerResult struct {
	First     uint64
	Count     uint64
	Duplicate bool
	Err       error
}

// AppendWaiter is an append of ProducerBatches that a log has started and
// not necessarily finished (the server's CommitLog.StartAppend): a
// ProduceStream keeps several in flight and answers them in order.
type AppendWaiter interface {
	// Done is closed once the outcome is known.
	Done() <-chan struct{}
	// Result waits for Done and returns each batch's outcome, or the error
	// that refused them all.
	Result() ([]ProducerResult, error)
}

// ErrOutOfOrderSequence is matched by SequenceError. The server reports it
// as codes.FailedPrecondition (HTTP 409): retrying the same call cannot
// succeed.
var ErrOutOfOrderSequence = errors.New("producer sequence out of order")

// SequenceError refuses a call whose sequence the cluster cannot accept for
// its producer: a gap (Sequence > Expected: a call in between was never
// appended), or a call appended before but older than the dedupe window, so
// its offsets are no longer known (Sequence < Expected, TooOld). Nothing was
// appended either way. A client that meets it should start a new producer
// id.
type SequenceError struct {
	ProducerID uint64
	Sequence   uint64
	// Expected is the sequence the producer's next new call must carry.
	Expected uint64
	// TooOld is set when Sequence was appended before, beyond the window of
	// calls whose offsets the cluster keeps.
	TooOld bool
	// OtherTopic is set when Sequence was appended to another topic.
	OtherTopic bool
}

// Error implements error; it names the sequence expected.
func (e SequenceError) Error() string {
	switch {
	case e.OtherTopic:
		return fmt.Sprintf("producer %016x: sequence %d was appended to another topic; expected sequence %d",
			e.ProducerID, e.Sequence, e.Expected)
	case e.TooOld:
		return fmt.Sprintf("producer %016x: sequence %d was appended before, older than the dedupe window (its offsets are no longer kept); expected sequence %d",
			e.ProducerID, e.Sequence, e.Expected)
	default:
		return fmt.Sprintf("producer %016x: sequence %d out of order; expected sequence %d",
			e.ProducerID, e.Sequence, e.Expected)
	}
}

// Is reports whether target is ErrOutOfOrderSequence.
func (e SequenceError) Is(target error) bool { return target == ErrOutOfOrderSequence }
