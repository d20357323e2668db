package server

import (
	"context"
	"fmt"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/auth"
)

// Consumer groups: committing or reading a group's offset in a topic needs
// consume on the topic; listing and describing show only the topics the
// caller may consume. The operations are shared by the gRPC and HTTP APIs.

// CommitOffset commits a consumer group's offset in a topic.
func (s *logService) CommitOffset(ctx context.Context, req *api.CommitOffsetRequest) (*api.CommitOffsetResponse, error) {
	off, err := commitOffset(ctx, s.cfg, req.GetGroup(), req.GetTopic(), req.GetOffset(), req.GetReset_())
	if err != nil {
		return nil, s.status(err)
	}
	return &api.CommitOffsetResponse{Offset: off}, nil
}

// FetchOffset returns a consumer group's committed offset in a topic.
func (s *logService) FetchOffset(ctx context.Context, req *api.FetchOffsetRequest) (*api.FetchOffsetResponse, error) {
	off, err := fetchOffset(ctx, s.cfg, req.GetGroup(), req.GetTopic())
	if err != nil {
		return nil, s.status(err)
	}
	return &api.FetchOffsetResponse{Offset: off}, nil
}

// ListGroups lists the consumer groups, each with the topics the caller may
// consume.
func (s *logService) ListGroups(ctx context.Context, _ *api.ListGroupsRequest) (*api.ListGroupsResponse, error) {
	groups, err := s.cfg.CommitLog.ListGroups(ctx)
	if err != nil {
		return nil, s.status(err)
	}
	var visible []*api.GroupInfo
	for _, g := range groups {
		if g = visibleGroup(ctx, s.cfg.Authorizer, g); g != nil {
			visible = append(visible, g)
		}
	}
	return &api.ListGroupsResponse{Groups: visible}, nil
}

// DescribeGroup describes one consumer group, in the topics the caller may
// consume.
func (s *logService) DescribeGroup(ctx context.Context, req *api.DescribeGroupRequest) (*api.DescribeGroupResponse, error) {
	if err := api.ValidateGroupName(req.GetGroup()); err != nil {
		return nil, s.status(err)
	}
	g, err := s.cfg.CommitLog.DescribeGroup(ctx, req.GetGroup())
	if err != nil {
		return nil, s.status(err)
	}
	if g = visibleGroup(ctx, s.cfg.Authorizer, g); g == nil {
		return nil, s.status(fmt.Errorf("group %q: %w", req.GetGroup(), api.ErrGroupNotFound))
	}
	return &api.DescribeGroupResponse{Group: g}, nil
}

// commitOffset checks and commits group's offset in topic.
func commitOffset(ctx context.Context, cfg Config, group, topic string, offset uint64, reset bool) (uint64, error) {
	if err := api.ValidateGroupName(group); err != nil {
		return 0, err
	}
	topic, err := authorizeTopic(ctx, cfg.Authorizer, topic, ConsumeAction)
	if err != nil {
		return 0, err
	}
	return cfg.CommitLog.CommitOffset(ctx, group, topic, offset, reset)
}

// fetchOffset checks and reads group's committed offset in topic.
func fetchOffset(ctx context.Context, cfg Config, group, topic string) (uint64, error) {
	if err := api.ValidateGroupName(group); err != nil {
		return 0, err
	}
	topic, err := authorizeTopic(ctx, cfg.Authorizer, topic, ConsumeAction)
	if err != nil {
		return 0, err
	}
	return cfg.CommitLog.FetchOffset(ctx, group, topic)
}

// visibleGroup returns g with only the topics the caller may consume, or
// nil when none is left.
func visibleGroup(ctx context.Context, authorizer Authorizer, g *api.GroupInfo) *api.GroupInfo {
	subject, _ := auth.Subject(ctx)
	out := &api.GroupInfo{Name: g.GetName()}
	for _, t := range g.GetTopics() {
		if authorizer.Authorize(subject, t.GetTopic(), ConsumeAction) == nil {
			out.Topics = append(out.Topics, t)
		}
	}
	if len(out.Topics) == 0 {
		return nil
	}
	return out
}
