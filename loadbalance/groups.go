package loadbalance

import (
	"context"

	api "github.com/proglog/proglog/api/v1"
)

// CommitOffset commits group's offset in the topic (WithTopic; default the
// default topic): the offset of the next record the group will process. It
// goes to the leader and retries like Produce; a commit is idempotent (the
// same offset again changes nothing), so a retry is harmless. Commits only
// move forward unless reset; it returns the committed offset after the call.
func (c *Client) CommitOffset(ctx context.Context, group string, offset uint64, reset bool, opts ...CallOption) (uint64, error) {
	o := applyCallOptions(opts)
	var committed uint64
	err := c.retry(ctx, "commit offset", true, func(ctx context.Context) error {
		resp, err := c.log.CommitOffset(ctx, &api.CommitOffsetRequest{Group: group, Topic: o.topic, Offset: offset, Reset_: reset})
		if err != nil {
			return err
		}
		committed = resp.GetOffset()
		return nil
	})
	return committed, err
}

// FromLeader makes FetchOffset read the leader's state instead of a
// follower's, which may be a moment behind the last commit.
func FromLeader() CallOption {
	return func(o *callOptions) { o.fromLeader = true }
}

// FetchOffset returns group's committed offset in the topic (WithTopic) as
// a follower has applied it (the leader with FromLeader), retrying like
// Consume; a group that committed none there is codes.NotFound.
func (c *Client) FetchOffset(ctx context.Context, group string, opts ...CallOption) (uint64, error) {
	o := applyCallOptions(opts)
	if o.fromLeader {
		ctx = withLeaderRead(ctx)
	}
	var off uint64
	err := c.retry(ctx, "fetch offset", false, func(ctx context.Context) error {
		resp, err := c.log.FetchOffset(ctx, &api.FetchOffsetRequest{Group: group, Topic: o.topic})
		if err != nil {
			return err
		}
		off = resp.GetOffset()
		return nil
	})
	return off, err
}

// ListGroups lists the consumer groups, with their offsets and lag in the
// topics the caller may consume, as a follower has applied them.
func (c *Client) ListGroups(ctx context.Context) ([]*api.GroupInfo, error) {
	var groups []*api.GroupInfo
	err := c.retry(ctx, "list groups", false, func(ctx context.Context) error {
		resp, err := c.log.ListGroups(ctx, &api.ListGroupsRequest{})
		if err != nil {
			return err
		}
		groups = resp.GetGroups()
		return nil
	})
	return groups, err
}

// DescribeGroup describes one consumer group as a follower has applied it.
func (c *Client) DescribeGroup(ctx context.Context, group string) (*api.GroupInfo, error) {
	var info *api.GroupInfo
	err := c.retry(ctx, "describe group", false, func(ctx context.Context) error {
		resp, err := c.log.DescribeGroup(ctx, &api.DescribeGroupRequest{Group: group})
		if err != nil {
			return err
		}
		info = resp.GetGroup()
		return nil
	})
	return info, err
}
