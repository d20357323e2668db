package api_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	api "github.com/proglog/proglog/api/v1"
)

func TestValidateTopicName(t *testing.T) {
	tests := []struct {
		name  string
		topic string
		valid bool
	}{
		{"default topic", api.DefaultTopic, true},
		{"every allowed character", "Az09._-", true},
		{"longest", strings.Repeat("a", api.MaxTopicNameLength), true},
		{"one dot inside", "orders.v2", true},
		{"three dots", "...", true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", api.MaxTopicNameLength+1), false},
		{"dot", ".", false},
		{"dot dot", "..", false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"non-ASCII", "caf\u00e9", false},
		{"NUL", "a\x00", false},
		{"wildcard", "*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := api.ValidateTopicName(tt.topic)
			if tt.valid {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, api.ErrInvalidTopicName)
			var typed api.InvalidTopicNameError
			require.True(t, errors.As(err, &typed), "ValidateTopicName(%q) = %T, want InvalidTopicNameError", tt.topic, err)
			require.Equal(t, tt.topic, typed.Topic)
			require.Contains(t, err.Error(), "[A-Za-z0-9._-]{1,249}", "the message states the rule")
		})
	}
}

func TestTopicErrors(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		sentinel error
		contains []string
	}{
		{"not found", api.TopicNotFoundError{Topic: "orders"}, api.ErrTopicNotFound,
			[]string{`"orders"`, "proglog topic create orders", "PUT /topics/orders"}},
		{"exists", api.TopicExistsError{Topic: "orders"}, api.ErrTopicExists,
			[]string{`"orders"`, "another configuration"}},
		{"invalid name", api.InvalidTopicNameError{Topic: "a/b"}, api.ErrInvalidTopicName,
			[]string{`"a/b"`, "[A-Za-z0-9._-]{1,249}"}},
	}
	sentinels := []error{api.ErrTopicNotFound, api.ErrTopicExists, api.ErrInvalidTopicName}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wrapped := fmt.Errorf("produce: %w", tt.err)
			for _, s := range sentinels {
				if s == tt.sentinel {
					require.ErrorIs(t, wrapped, s)
				} else {
					require.NotErrorIs(t, wrapped, s)
				}
			}
			for _, want := range tt.contains {
				require.Contains(t, tt.err.Error(), want)
			}
		})
	}
}

func TestTopicErrorMessageBounded(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	for _, err := range []error{api.TopicNotFoundError{Topic: huge}, api.TopicExistsError{Topic: huge}, api.InvalidTopicNameError{Topic: huge}} {
		require.Less(t, len(err.Error()), 1024, "%T repeats a huge name whole", err)
	}
}

func TestTopicOrDefault(t *testing.T) {
	require.Equal(t, api.DefaultTopic, api.TopicOrDefault(""))
	require.Equal(t, "orders", api.TopicOrDefault("orders"))
}
