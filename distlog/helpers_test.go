package distlog

import (
	"context"

	api "github.com/proglog/proglog/api/v1"
)

// entWidth is a storage index entry's width: segment sizes in tests are
// counted in records.
const entWidth = 12

// appendOne appends one record to DefaultTopic.
func appendOne(ctx context.Context, d *DistributedLog, rec *api.Record) (uint64, error) {
	return d.AppendBatch(ctx, DefaultTopic, []*api.Record{rec})
}

// nextOffset is DefaultTopic's next offset on d.
func nextOffset(d *DistributedLog) uint64 {
	info, err := d.Topic(DefaultTopic)
	if err != nil {
		return 0
	}
	return info.NextOffset
}
