package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/auth"
)

// CreateTopic creates a topic; creating it again with the same configuration
// succeeds, and answers with the topic as this node has applied it.
func (s *logService) CreateTopic(ctx context.Context, req *api.CreateTopicRequest) (*api.CreateTopicResponse, error) {
	info, err := createTopic(ctx, s.cfg, req.GetName(), req.GetConfig())
	if err != nil {
		return nil, s.status(err)
	}
	return &api.CreateTopicResponse{Topic: info}, nil
}

// DeleteTopic deletes a topic and its records.
func (s *logService) DeleteTopic(ctx context.Context, req *api.DeleteTopicRequest) (*api.DeleteTopicResponse, error) {
	if err := deleteTopic(ctx, s.cfg, req.GetName()); err != nil {
		return nil, s.status(err)
	}
	return &api.DeleteTopicResponse{}, nil
}

// ListTopics lists the topics the caller may consume.
func (s *logService) ListTopics(ctx context.Context, _ *api.ListTopicsRequest) (*api.ListTopicsResponse, error) {
	topics, err := listTopics(ctx, s.cfg)
	if err != nil {
		return nil, s.status(err)
	}
	return &api.ListTopicsResponse{Topics: topics}, nil
}

// DescribeTopic describes one topic the caller may consume.
func (s *logService) DescribeTopic(ctx context.Context, req *api.DescribeTopicRequest) (*api.DescribeTopicResponse, error) {
	info, err := describeTopic(ctx, s.cfg, req.GetName())
	if err != nil {
		return nil, s.status(err)
	}
	return &api.DescribeTopicResponse{Topic: info}, nil
}

// The topic operations below are shared by the gRPC and HTTP APIs.

// adminTopic checks a topic name that an admin request must state (no
// default applies) and authorizes action on it.
func adminTopic(ctx context.Context, cfg Config, name, action string) error {
	if err := api.ValidateTopicName(name); err != nil {
		return err
	}
	_, err := authorizeTopic(ctx, cfg.Authorizer, name, action)
	return err
}

// createTopic creates name with config and describes it.
func createTopic(ctx context.Context, cfg Config, name string, config *api.TopicConfig) (*api.TopicInfo, error) {
	if err := adminTopic(ctx, cfg, name, AdminAction); err != nil {
		return nil, err
	}
	if config == nil {
		config = &api.TopicConfig{}
	}
	if err := cfg.CommitLog.CreateTopic(ctx, name, config); err != nil {
		return nil, err
	}
	return cfg.CommitLog.DescribeTopic(ctx, name)
}

// deleteTopic deletes name.
func deleteTopic(ctx context.Context, cfg Config, name string) error {
	if err := adminTopic(ctx, cfg, name, AdminAction); err != nil {
		return err
	}
	return cfg.CommitLog.DeleteTopic(ctx, name)
}

// AlterTopic changes a topic's retention and segment age.
func (s *logService) AlterTopic(ctx context.Context, req *api.AlterTopicRequest) (*api.AlterTopicResponse, error) {
	info, err := alterTopic(ctx, s.cfg, req.GetName(), req.GetConfig())
	if err != nil {
		return nil, s.status(err)
	}
	return &api.AlterTopicResponse{Topic: info}, nil
}

// alterTopic sets name's retention and segment age to config's and
// describes it; it needs the admin action. The fields fixed at creation must be 0 or
// unchanged.
func alterTopic(ctx context.Context, cfg Config, name string, config *api.TopicConfig) (*api.TopicInfo, error) {
	if err := adminTopic(ctx, cfg, name, AdminAction); err != nil {
		return nil, err
	}
	current, err := cfg.CommitLog.DescribeTopic(ctx, name)
	if err != nil {
		return nil, err
	}
	if seg := config.GetMaxSegmentBytes(); seg != 0 && seg != current.GetConfig().GetMaxSegmentBytes() {
		return nil, fmt.Errorf("%w: max_segment_bytes is fixed at creation (%d); only retention and segment_age_ms can change",
			api.ErrInvalidTopicConfig, current.GetConfig().GetMaxSegmentBytes())
	}
	if rec := config.GetMaxRecordBytes(); rec != 0 && rec != current.GetConfig().GetMaxRecordBytes() {
		return nil, fmt.Errorf("%w: max_record_bytes is fixed at creation (%d); only retention and segment_age_ms can change",
			api.ErrInvalidTopicConfig, current.GetConfig().GetMaxRecordBytes())
	}
	if err := cfg.CommitLog.AlterTopic(ctx, name, config); err != nil {
		return nil, err
	}
	return cfg.CommitLog.DescribeTopic(ctx, name)
}

// describeTopic describes name; it needs the consume action on it.
func describeTopic(ctx context.Context, cfg Config, name string) (*api.TopicInfo, error) {
	if err := adminTopic(ctx, cfg, name, ConsumeAction); err != nil {
		return nil, err
	}
	return cfg.CommitLog.DescribeTopic(ctx, name)
}

// listTopics lists the topics the caller may consume, as Kafka lists the
// topics a client may describe: a subject granted some topics sees those
// and learns nothing about the others. A refusal other than
// PermissionDenied (Unauthenticated, or an Authorizer failing) fails the
// call rather than hiding topics.
func listTopics(ctx context.Context, cfg Config) ([]*api.TopicInfo, error) {
	subject, _ := auth.Subject(ctx)
	topics, err := cfg.CommitLog.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	visible := make([]*api.TopicInfo, 0, len(topics))
	for _, topic := range topics {
		err := cfg.Authorizer.Authorize(subject, topic.GetName(), ConsumeAction)
		switch {
		case err == nil:
			visible = append(visible, topic)
		case status.Code(err) == codes.PermissionDenied:
		default:
			return nil, err
		}
	}
	return visible, nil
}
