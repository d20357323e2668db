package api

import (
	"errors"
	"fmt"
)

// A consumer group is a name under which consumers commit, per topic, the
// offset of the next record they will process, so that a consumer that
// restarts (or another one of the group) resumes there. Commits are
// replicated like writes and readable on every node.

// GroupNameRule says which group names are valid: the topic-name rule.
const GroupNameRule = `group names match [A-Za-z0-9._-]{1,249} and are not "." or ".."`

// ErrInvalidGroupName is returned for a request that names a consumer
// group with an invalid name. The server reports it as InvalidArgument
// (HTTP 400).
var ErrInvalidGroupName = errors.New("invalid group name")

// ErrGroupNotFound is returned by DescribeGroup and FetchOffset for a group
// that has committed nothing (in that topic). The server reports it as
// NotFound (HTTP 404).
var ErrGroupNotFound = errors.New("group has no committed offset")

// ValidateGroupName returns nil for a valid group name, and an error
// matching ErrInvalidGroupName that states GroupNameRule otherwise.
func ValidateGroupName(name string) error {
	if ValidateTopicName(name) != nil {
		return fmt.Errorf("%w %q: %s", ErrInvalidGroupName, name, GroupNameRule)
	}
	return nil
}
