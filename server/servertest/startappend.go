package servertest

import (
	"context"

	api "github.com/proglog/proglog/api/v1"
)

// StartAppend appends as AppendProduced does, before it returns, and
// returns the outcome as a finished api.AppendWaiter (appends are
// therefore in the order they were started). A call refused as a whole is
// the waiter's error, as the replicated log reports errors found once the
// append is under way.
func (l *Log) StartAppend(ctx context.Context, topicName string, batches []api.ProducerBatch) (api.AppendWaiter, error) {
	results, err := l.AppendProduced(ctx, topicName, batches)
	return doneAppend{results: results, err: err}, nil
}

// doneAppend is a finished append.
type doneAppend struct {
	results []api.ProducerResult
	err     error
}

// Done returns a closed channel.
func (d doneAppend) Done() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// Result returns the outcome.
func (d doneAppend) Result() ([]api.ProducerResult, error) { return d.results, d.err }
