package loadbalance

import (
	"context"

	api "github.com/proglog/proglog/api/v1"
)

// CallOption configures one Produce, ProduceBatch, Consume, ConsumeStream
// or ProduceStream call.
type CallOption func(*callOptions)

// callOptions is what the CallOptions of a call set.
type callOptions struct {
	// topic is the topic the call writes or reads; "" is the default topic.
	topic string
	// fromLeader sends a read to the leader (see FromLeader).
	fromLeader bool
	// batchRecords and batchBytes are the batch limits a ConsumeStream
	// asks for (see WithBatches); batchRecords 0: no batches.
	batchRecords uint32
	batchBytes   uint32
}

// WithBatches makes ConsumeStream ask the server for batches: responses of
// up to maxRecords records and maxBytes bytes of record values (0: the
// server's limit, which also caps larger values; a single larger record
// still comes). A consumer that is behind then gets many records per
// message instead of one, which is what makes a stream read fast;
// ConsumeBatches always asks for batches. maxRecords 0 turns batches off.
func WithBatches(maxRecords, maxBytes uint32) CallOption {
	return func(o *callOptions) { o.batchRecords, o.batchBytes = maxRecords, maxBytes }
}

// WithTopic makes a call write to or read from topic instead of the default
// topic (api.DefaultTopic, the topic of the book's API). The topic must
// exist: otherwise the call fails with codes.NotFound (create it with
// CreateTopic).
func WithTopic(topic string) CallOption {
	return func(o *callOptions) { o.topic = topic }
}

// applyCallOptions returns the options opts set.
func applyCallOptions(opts []CallOption) callOptions {
	var o callOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// CreateTopic creates topic name with config (nil: the cluster's defaults)
// at the leader and returns it as the leader describes it. It is
// idempotent, so it retries like Produce without the risk of a duplicate:
// creating a topic that exists with the same config succeeds; with another
// config it fails with codes.AlreadyExists.
func (c *Client) CreateTopic(ctx context.Context, name string, config *api.TopicConfig) (*api.TopicInfo, error) {
	var info *api.TopicInfo
	err := c.retry(ctx, "create topic", true, func(ctx context.Context) error {
		resp, err := c.log.CreateTopic(ctx, &api.CreateTopicRequest{Name: name, Config: config})
		if err != nil {
			return err
		}
		info = resp.GetTopic()
		return nil
	})
	return info, err
}

// AlterTopic changes topic name's retention (RetentionBytes and
// RetentionAgeMs of config) at the leader and returns the topic. It
// retries like Produce; altering is idempotent.
func (c *Client) AlterTopic(ctx context.Context, name string, config *api.TopicConfig) (*api.TopicInfo, error) {
	var info *api.TopicInfo
	err := c.retry(ctx, "alter topic", true, func(ctx context.Context) error {
		resp, err := c.log.AlterTopic(ctx, &api.AlterTopicRequest{Name: name, Config: config})
		if err != nil {
			return err
		}
		info = resp.GetTopic()
		return nil
	})
	return info, err
}

// DeleteTopic deletes topic name and its records at the leader. It retries
// like Produce; when an attempt whose answer was lost had deleted the topic,
// the retry fails with codes.NotFound.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	return c.retry(ctx, "delete topic", true, func(ctx context.Context) error {
		_, err := c.log.DeleteTopic(ctx, &api.DeleteTopicRequest{Name: name})
		return err
	})
}

// ListTopics lists the topics the caller may consume, as a follower has
// applied them (a topic created a moment ago may be missing), retrying like
// Consume.
func (c *Client) ListTopics(ctx context.Context) ([]*api.TopicInfo, error) {
	var topics []*api.TopicInfo
	err := c.retry(ctx, "list topics", false, func(ctx context.Context) error {
		resp, err := c.log.ListTopics(ctx, &api.ListTopicsRequest{})
		if err != nil {
			return err
		}
		topics = resp.GetTopics()
		return nil
	})
	return topics, err
}

// DescribeTopic describes topic name as a follower has applied it, retrying
// like Consume.
func (c *Client) DescribeTopic(ctx context.Context, name string) (*api.TopicInfo, error) {
	var info *api.TopicInfo
	err := c.retry(ctx, "describe topic", false, func(ctx context.Context) error {
		resp, err := c.log.DescribeTopic(ctx, &api.DescribeTopicRequest{Name: name})
		if err != nil {
			return err
		}
		info = resp.GetTopic()
		return nil
	})
	return info, err
}
