package agent

import (
	"context"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog"
	"github.com/proglog/proglog/server"
)

// defaultTopicLog serves the book's single-log API (server.CommitLog) from
// distlog.DefaultTopic of the replicated log. It is the glue until the
// server speaks topics (issue 13).
type defaultTopicLog struct {
	log *distlog.DistributedLog
}

var _ server.CommitLog = defaultTopicLog{}

// Append implements server.CommitLog.
func (l defaultTopicLog) Append(ctx context.Context, record *api.Record) (uint64, error) {
	return l.log.AppendBatch(ctx, distlog.DefaultTopic, []*api.Record{record})
}

// AppendBatch implements server.CommitLog.
func (l defaultTopicLog) AppendBatch(ctx context.Context, records []*api.Record) (uint64, error) {
	return l.log.AppendBatch(ctx, distlog.DefaultTopic, records)
}

// Read implements server.CommitLog.
func (l defaultTopicLog) Read(ctx context.Context, offset uint64) (*api.Record, error) {
	return l.log.Read(ctx, distlog.DefaultTopic, offset)
}

// Appended implements server.CommitLog.
func (l defaultTopicLog) Appended() <-chan struct{} {
	return l.log.Appended(distlog.DefaultTopic)
}
