package api

import (
	"errors"
	"fmt"
)

// DefaultTopic is the topic of requests that name none: the seed book's API
// (Produce, Consume and their streams without a topic, POST / and GET / over
// HTTP) reads and writes it. Every cluster has it.
const DefaultTopic = "default"

// MaxTopicNameLength is the longest topic name, in bytes.
const MaxTopicNameLength = 249

// TopicNameRule says which topic names are valid, for error messages and
// documentation.
const TopicNameRule = `topic names match [A-Za-z0-9._-]{1,249} and are not "." or ".."`

// Sentinels of the topic errors: each typed error below matches its sentinel
// with errors.Is, so callers that need no details can test for the kind.
var (
	// ErrTopicNotFound is matched by TopicNotFoundError.
	ErrTopicNotFound = errors.New("topic not found")
	// ErrTopicExists is matched by TopicExistsError.
	ErrTopicExists = errors.New("topic already exists")
	// ErrInvalidTopicName is matched by InvalidTopicNameError.
	ErrInvalidTopicName = errors.New("invalid topic name")
	// ErrInvalidTopicConfig is returned by CreateTopic for a TopicConfig the
	// cluster cannot honour (wrapped with the field at fault). The server
	// reports it as codes.InvalidArgument (HTTP 400).
	ErrInvalidTopicConfig = errors.New("invalid topic config")
	// ErrDeleteDefaultTopic is returned by DeleteTopic for DefaultTopic,
	// which the book's API (requests without a topic) needs. The server
	// reports it as codes.FailedPrecondition (HTTP 409).
	ErrDeleteDefaultTopic = errors.New("the default topic cannot be deleted: requests without a topic use it")
)

// TopicNotFoundError is returned for a request that names a topic the
// cluster does not have. The server reports it as codes.NotFound (HTTP 404).
type TopicNotFoundError struct {
	Topic string
}

// Error implements error; it says how to create the topic.
func (e TopicNotFoundError) Error() string {
	name := quoteTopic(e.Topic)
	return fmt.Sprintf("topic %s does not exist; create it first (CreateTopic, PUT /topics/%s, or proglog topic create %s)",
		name, shortTopic(e.Topic), shortTopic(e.Topic))
}

// Is reports whether target is ErrTopicNotFound.
func (e TopicNotFoundError) Is(target error) bool { return target == ErrTopicNotFound }

// TopicExistsError is returned when CreateTopic names a topic that exists
// with another configuration (creating it again with the same configuration
// succeeds). The server reports it as codes.AlreadyExists (HTTP 409).
type TopicExistsError struct {
	Topic string
}

// Error implements error.
func (e TopicExistsError) Error() string {
	return fmt.Sprintf("topic %s already exists with another configuration; describe it to see its configuration, or delete it first",
		quoteTopic(e.Topic))
}

// Is reports whether target is ErrTopicExists.
func (e TopicExistsError) Is(target error) bool { return target == ErrTopicExists }

// InvalidTopicNameError is returned for a topic name that breaks the rule in
// TopicNameRule. The server reports it as codes.InvalidArgument (HTTP 400).
type InvalidTopicNameError struct {
	Topic string
}

// Error implements error; it states the rule.
func (e InvalidTopicNameError) Error() string {
	return fmt.Sprintf("invalid topic name %s: %s", quoteTopic(e.Topic), TopicNameRule)
}

// Is reports whether target is ErrInvalidTopicName.
func (e InvalidTopicNameError) Is(target error) bool { return target == ErrInvalidTopicName }

// ValidateTopicName returns an InvalidTopicNameError when name is not a valid
// topic name (see TopicNameRule), and nil when it is. The empty name is
// invalid here: requests map it to DefaultTopic before they get this far.
func ValidateTopicName(name string) error {
	if len(name) == 0 || len(name) > MaxTopicNameLength || name == "." || name == ".." {
		return InvalidTopicNameError{Topic: name}
	}
	for i := 0; i < len(name); i++ {
		if !isTopicNameByte(name[i]) {
			return InvalidTopicNameError{Topic: name}
		}
	}
	return nil
}

// TopicOrDefault returns topic, or DefaultTopic when topic is empty: how a
// request's optional topic field is read.
func TopicOrDefault(topic string) string {
	if topic == "" {
		return DefaultTopic
	}
	return topic
}

func isTopicNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// messageTopicBytes bounds how much of a (possibly huge, invalid) topic name
// an error message repeats.
const messageTopicBytes = 64

// quoteTopic quotes a topic name for a message, cut to messageTopicBytes.
func quoteTopic(topic string) string {
	if len(topic) > messageTopicBytes {
		return fmt.Sprintf("%q…", topic[:messageTopicBytes])
	}
	return fmt.Sprintf("%q", topic)
}

// shortTopic is topic cut to messageTopicBytes, unquoted, for the examples in
// a message (the name of a topic that was looked up is valid, so it needs no
// quoting).
func shortTopic(topic string) string {
	if len(topic) > messageTopicBytes {
		return topic[:messageTopicBytes] + "…"
	}
	return topic
}
