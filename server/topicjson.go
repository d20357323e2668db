package server

import api "github.com/proglog/proglog/api/v1"

// TopicConfigJSON is a topic's configuration in the HTTP API's topic
// documents and in the body of PUT /topics/{name}; `proglog topic --json`
// prints the same. Sizes are bytes, ages milliseconds; 0 is the node's
// default (no retention, for the retention fields, which are left out
// then).
type TopicConfigJSON struct {
	MaxSegmentBytes uint64 `json:"max_segment_bytes"`
	MaxRecordBytes  uint64 `json:"max_record_bytes"`
	SegmentAgeMs    uint64 `json:"segment_age_ms"`
	RetentionBytes  uint64 `json:"retention_bytes,omitempty"`
	RetentionAgeMs  uint64 `json:"retention_age_ms,omitempty"`
}

// NewTopicConfigJSON is the JSON view of c.
func NewTopicConfigJSON(c *api.TopicConfig) TopicConfigJSON {
	return TopicConfigJSON{
		MaxSegmentBytes: c.GetMaxSegmentBytes(),
		MaxRecordBytes:  c.GetMaxRecordBytes(),
		SegmentAgeMs:    c.GetSegmentAgeMs(),
		RetentionBytes:  c.GetRetentionBytes(),
		RetentionAgeMs:  c.GetRetentionAgeMs(),
	}
}

// proto is the TopicConfig j describes.
func (j TopicConfigJSON) proto() *api.TopicConfig {
	return &api.TopicConfig{
		MaxSegmentBytes: j.MaxSegmentBytes,
		MaxRecordBytes:  j.MaxRecordBytes,
		SegmentAgeMs:    j.SegmentAgeMs,
		RetentionBytes:  j.RetentionBytes,
		RetentionAgeMs:  j.RetentionAgeMs,
	}
}

// TopicJSON is a topic document of the HTTP API (GET /topics,
// GET and PUT /topics/{name}); `proglog topic --json` prints the same.
type TopicJSON struct {
	Name   string          `json:"name"`
	Config TopicConfigJSON `json:"config"`
	// EffectiveConfig is the configuration the answering node applies,
	// its defaults filled in; absent when the node's release does not fill
	// it in.
	EffectiveConfig *TopicConfigJSON `json:"effective_config,omitempty"`
	LowestOffset    uint64           `json:"lowest_offset"`
	HighestOffset   uint64           `json:"highest_offset"`
	NextOffset      uint64           `json:"next_offset"`
	Records         uint64           `json:"records"`
	Bytes           uint64           `json:"bytes"`
	Segments        uint64           `json:"segments"`
}

// NewTopicJSON is the JSON view of info.
func NewTopicJSON(info *api.TopicInfo) TopicJSON {
	var effective *TopicConfigJSON
	if e := info.GetEffectiveConfig(); e != nil {
		j := NewTopicConfigJSON(e)
		effective = &j
	}
	return TopicJSON{
		Name:            info.GetName(),
		Config:          NewTopicConfigJSON(info.GetConfig()),
		EffectiveConfig: effective,
		LowestOffset:    info.GetLowestOffset(),
		HighestOffset:   info.GetHighestOffset(),
		NextOffset:      info.GetNextOffset(),
		Records:         info.GetRecords(),
		Bytes:           info.GetBytes(),
		Segments:        info.GetSegments(),
	}
}
