package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/distlog"
	"github.com/proglog/proglog/server"
)

// readTopic reads --topic: "" is the default topic. A name that cannot be a
// topic is a usage error, caught before anything is sent.
func readTopic(s *settings) (string, error) {
	topic := s.String(keyTopic)
	if topic == "" {
		return "", nil
	}
	if err := api.ValidateTopicName(topic); err != nil {
		return "", usageError(fmt.Errorf("--topic: %w", err))
	}
	return topic, nil
}

// topicArg checks the NAME argument of the topic subcommands.
func topicArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError(fmt.Errorf("%sneeds one topic NAME, got %d arguments (see '%s --help')",
			commandPrefix(cmd), len(args), cmd.CommandPath()))
	}
	if err := api.ValidateTopicName(args[0]); err != nil {
		return usageError(fmt.Errorf("%s%w", commandPrefix(cmd), err))
	}
	return nil
}

// topicCreateSettings are the settings of `proglog topic create`.
type topicCreateSettings struct {
	client clientSettings
	config *api.TopicConfig
}

// readTopicCreateSettings reads and validates the settings of `proglog
// topic create`.
func readTopicCreateSettings(s *settings) (topicCreateSettings, error) {
	segmentBytes, recordBytes := s.Int(keyTopicSegmentBytes), s.Int(keyTopicMaxRecordBytes)
	ts := topicCreateSettings{client: readClientSettings(s)}
	retention, err := readRetention(s)
	if err := s.Err(); err != nil {
		return ts, err
	}
	if err != nil {
		return ts, err
	}
	if segmentBytes < 0 {
		return ts, usageError(fmt.Errorf("--%s %d must not be negative", keyTopicSegmentBytes, segmentBytes))
	}
	if recordBytes < 0 {
		return ts, usageError(fmt.Errorf("--%s %d must not be negative", keyTopicMaxRecordBytes, recordBytes))
	}
	ts.config = &api.TopicConfig{MaxSegmentBytes: uint64(segmentBytes), MaxRecordBytes: uint64(recordBytes),
		RetentionBytes: retention.GetRetentionBytes(), RetentionAgeMs: retention.GetRetentionAgeMs(),
		SegmentAgeMs: retention.GetSegmentAgeMs()}
	return ts, ts.client.validate()
}

// readRetention reads the changeable fields of a topic's configuration:
// --retention-bytes, --retention-age and --topic-segment-age.
func readRetention(s *settings) (*api.TopicConfig, error) {
	bytes, age, segmentAge := s.Int(keyRetentionBytes), s.Duration(keyRetentionAge), s.Duration(keyTopicSegmentAge)
	if bytes < 0 {
		return nil, usageError(fmt.Errorf("--%s %d must not be negative", keyRetentionBytes, bytes))
	}
	if age < 0 || (age > 0 && age < time.Millisecond) {
		return nil, usageError(fmt.Errorf("--%s %v must be 0 or at least 1ms", keyRetentionAge, age))
	}
	// distlog's bound, checked here too so that the mistake is a usage
	// error, before anything is sent.
	if segmentAge < 0 || (segmentAge > 0 && segmentAge < distlog.MinTopicSegmentAge) {
		return nil, usageError(fmt.Errorf("--%s %v must be 0 (the node's default) or at least %v",
			keyTopicSegmentAge, segmentAge, distlog.MinTopicSegmentAge))
	}
	return &api.TopicConfig{RetentionBytes: uint64(bytes), RetentionAgeMs: uint64(age / time.Millisecond),
		SegmentAgeMs: uint64(segmentAge / time.Millisecond)}, nil
}

// topicAlterSettings are the settings of `proglog topic alter`.
type topicAlterSettings struct {
	client    clientSettings
	retention *api.TopicConfig
}

// readTopicAlterSettings reads and validates the settings of `proglog
// topic alter`.
func readTopicAlterSettings(s *settings) (topicAlterSettings, error) {
	ts := topicAlterSettings{client: readClientSettings(s)}
	retention, err := readRetention(s)
	if err := s.Err(); err != nil {
		return ts, err
	}
	if err != nil {
		return ts, err
	}
	ts.retention = retention
	return ts, ts.client.validate()
}

func newTopicAlterCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "alter NAME",
		Short: "Change a topic's retention and segment age",
		Long: `Set topic NAME's retention to the limits given: --retention-bytes and
--retention-age, and its --topic-segment-age (a setting not given is removed:
a limit goes, the segment age becomes the node's default). The leader then
deletes the oldest sealed segments past either limit, on every node; the
active segment is never deleted. Every node rolls segments by the new age
from the same record on. Needs the "admin" action on the topic.`,
		Example: `  proglog topic alter orders --retention-bytes 1073741824
  proglog topic alter orders --retention-age 168h --topic-segment-age 1h`,
		Args: topicArg,
		RunE: runTopicAlter,
	}, topicAlterOptions())
}

// runTopicAlter runs `proglog topic alter`.
func runTopicAlter(cmd *cobra.Command, args []string) error {
	s, err := loadSettings(cmd.Flags(), topicAlterOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ts, err := readTopicAlterSettings(s)
	if err != nil {
		return err
	}
	client, err := ts.client.connect(cmd, "topic alter")
	if err != nil {
		return err
	}
	defer client.Close()
	info, err := client.AlterTopic(cmd.Context(), args[0], ts.retention)
	if err != nil {
		return ts.client.rpcError("topic alter", err)
	}
	return writeTopics(cmd.OutOrStdout(), []*api.TopicInfo{info}, false)
}

// topicListSettings are the settings of `proglog topic list` and
// `proglog topic describe`.
type topicListSettings struct {
	client clientSettings
	json   bool
}

// readTopicListSettings reads and validates the settings of `proglog topic
// list` and `proglog topic describe`.
func readTopicListSettings(s *settings) (topicListSettings, error) {
	ts := topicListSettings{client: readClientSettings(s), json: s.Bool(keyJSON)}
	if err := s.Err(); err != nil {
		return ts, err
	}
	return ts, ts.client.validate()
}

// topicDeleteSettings are the settings of `proglog topic delete`.
type topicDeleteSettings struct {
	client clientSettings
}

// readTopicDeleteSettings reads and validates the settings of `proglog
// topic delete`.
func readTopicDeleteSettings(s *settings) (topicDeleteSettings, error) {
	ts := topicDeleteSettings{client: readClientSettings(s)}
	if err := s.Err(); err != nil {
		return ts, err
	}
	return ts, ts.client.validate()
}

func newTopicCmd() (*cobra.Command, error) {
	topic := &cobra.Command{
		Use:   "topic",
		Short: "Create, list, describe and delete topics",
		Long: `A topic is a named log with offsets of its own, from 0. Every cluster has the
topic "default", which the book's API (requests without a topic, POST / and
GET / over HTTP) reads and writes; produce, consume and bench take --topic for
the others. Topic names match [A-Za-z0-9._-]{1,249} and are not "." or "..".

Creating and deleting a topic needs the "admin" action on it in the ACL
policy; describing it, and seeing it in the list, needs "consume".`,
		Example: `  proglog topic create orders
  proglog produce --topic orders '{"id": 1}'
  proglog consume --topic orders
  proglog topic list
  proglog topic describe orders
  proglog topic delete orders`,
		Args: noArgs,
	}
	for _, build := range []func() (*cobra.Command, error){
		newTopicCreateCmd, newTopicListCmd, newTopicDescribeCmd, newTopicAlterCmd, newTopicDeleteCmd,
	} {
		cmd, err := build()
		if err != nil {
			return nil, err
		}
		topic.AddCommand(cmd)
	}
	return topic, nil
}

func newTopicCreateCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "create NAME",
		Short: "Create a topic",
		Long: `Create topic NAME and print it. Creating a topic that exists with the same
configuration does nothing (it succeeds); with another configuration it fails.
--topic-segment-age rolls the topic's segments by age (Kafka's segment.ms)
whether or not it has a retention age; without it only a topic with a
retention age rolls by age, at the node's --segment-max-age.`,
		Example: `  proglog topic create orders
  proglog topic create audit --topic-segment-bytes 67108864
  proglog topic create clicks --retention-bytes 10737418240 --retention-age 168h
  proglog topic create metrics --topic-segment-age 10m`,
		Args: topicArg,
		RunE: runTopicCreate,
	}, topicCreateOptions())
}

func newTopicListCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "list",
		Short: "List the topics",
		Long: `List the topics you may consume, with their offsets, size and configuration,
as a follower has applied them (a topic created a moment ago may be missing).`,
		Example: `  proglog topic list
  proglog topic list --json | jq -r .name`,
		RunE: runTopicList,
	}, topicListOptions())
}

func newTopicDescribeCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "describe NAME",
		Short: "Describe a topic",
		Long: `Print topic NAME's offsets, size and configuration. The configuration shown is
the one the answering node applies: a setting the topic takes from the node
reads "(node default)" after the node's value, and SEGMENT AGE is "none" for
a topic whose segments roll by size only. --json gives the topic's own
settings as "config" (0: the node's) and the values in effect as
"effective_config".`,
		Example: `  proglog topic describe orders`,
		Args:    topicArg,
		RunE:    runTopicDescribe,
	}, topicDescribeOptions())
}

func newTopicDeleteCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a topic and its records",
		Long: `Delete topic NAME and every record in it, on every node. The default topic
cannot be deleted.`,
		Example: `  proglog topic delete orders`,
		Args:    topicArg,
		RunE:    runTopicDelete,
	}, topicDeleteOptions())
}

// runTopicCreate runs `proglog topic create`.
func runTopicCreate(cmd *cobra.Command, args []string) error {
	s, err := loadSettings(cmd.Flags(), topicCreateOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ts, err := readTopicCreateSettings(s)
	if err != nil {
		return err
	}
	client, err := ts.client.connect(cmd, "topic create")
	if err != nil {
		return err
	}
	defer client.Close()
	info, err := client.CreateTopic(cmd.Context(), args[0], ts.config)
	if err != nil {
		return ts.client.rpcError("topic create", err)
	}
	return writeTopics(cmd.OutOrStdout(), []*api.TopicInfo{info}, false)
}

// runTopicList runs `proglog topic list`.
func runTopicList(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd.Flags(), topicListOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ts, err := readTopicListSettings(s)
	if err != nil {
		return err
	}
	client, err := ts.client.connect(cmd, "topic list")
	if err != nil {
		return err
	}
	defer client.Close()
	topics, err := client.ListTopics(cmd.Context())
	if err != nil {
		return ts.client.rpcError("topic list", err)
	}
	return writeTopics(cmd.OutOrStdout(), topics, ts.json)
}

// runTopicDescribe runs `proglog topic describe`.
func runTopicDescribe(cmd *cobra.Command, args []string) error {
	s, err := loadSettings(cmd.Flags(), topicDescribeOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ts, err := readTopicListSettings(s)
	if err != nil {
		return err
	}
	client, err := ts.client.connect(cmd, "topic describe")
	if err != nil {
		return err
	}
	defer client.Close()
	info, err := client.DescribeTopic(cmd.Context(), args[0])
	if err != nil {
		return ts.client.rpcError("topic describe", err)
	}
	return writeTopics(cmd.OutOrStdout(), []*api.TopicInfo{info}, ts.json)
}

// runTopicDelete runs `proglog topic delete`.
func runTopicDelete(cmd *cobra.Command, args []string) error {
	s, err := loadSettings(cmd.Flags(), topicDeleteOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ts, err := readTopicDeleteSettings(s)
	if err != nil {
		return err
	}
	client, err := ts.client.connect(cmd, "topic delete")
	if err != nil {
		return err
	}
	defer client.Close()
	if err := client.DeleteTopic(cmd.Context(), args[0]); err != nil {
		return ts.client.rpcError("topic delete", err)
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "deleted topic %s\n", args[0])
	return err
}

// writeTopics prints topics as a table, or as JSON lines.
func writeTopics(w io.Writer, topics []*api.TopicInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, t := range topics {
			j := server.NewTopicJSON(t) // the HTTP API's topic document
			if err := enc.Encode(j); err != nil {
				return fmt.Errorf("topic: write: %w", err)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOFFSETS\tRECORDS\tBYTES\tSEGMENTS\tSEGMENT BYTES\tMAX RECORD BYTES\tSEGMENT AGE\tRETENTION")
	for _, t := range topics {
		offsets := "-" // empty
		if t.GetRecords() > 0 {
			offsets = fmt.Sprintf("%d-%d", t.GetLowestOffset(), t.GetHighestOffset())
		}
		own, effective := t.GetConfig(), t.GetEffectiveConfig()
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", t.GetName(), offsets, t.GetRecords(), t.GetBytes(), t.GetSegments(),
			configValue(own.GetMaxSegmentBytes(), effective.GetMaxSegmentBytes(), effective != nil, formatUint),
			configValue(own.GetMaxRecordBytes(), effective.GetMaxRecordBytes(), effective != nil, formatUint),
			configValue(own.GetSegmentAgeMs(), effective.GetSegmentAgeMs(), effective != nil, formatAgeMs),
			formatRetention(own))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("topic: write: %w", err)
	}
	return nil
}

// configValue prints a config value: the topic's own when it has one (not
// 0); otherwise the node's value in effect marked "(node default)" (just
// the value when it is 0: nothing is in effect), or "default" when the
// node does not say (known is false: a node of a release without
// TopicInfo.effective_config).
func configValue(own, effective uint64, known bool, format func(uint64) string) string {
	switch {
	case own != 0:
		return format(own)
	case !known:
		return "default"
	case effective == 0:
		return format(0)
	default:
		return format(effective) + " (node default)"
	}
}

func formatUint(v uint64) string { return strconv.FormatUint(v, 10) }

// formatRetention prints a topic's retention: its byte bound and its age,
// whichever it has, or "none" (it keeps every record).
func formatRetention(c *api.TopicConfig) string {
	var limits []string
	if b := c.GetRetentionBytes(); b != 0 {
		limits = append(limits, formatUint(b)+" bytes")
	}
	if ms := c.GetRetentionAgeMs(); ms != 0 {
		limits = append(limits, formatAgeMs(ms))
	}
	if len(limits) == 0 {
		return "none"
	}
	return strings.Join(limits, ", ")
}

// formatAgeMs prints an age in milliseconds as a duration; 0 is "none"
// (segments roll by size only).
func formatAgeMs(ms uint64) string {
	if ms == 0 {
		return "none"
	}
	if ms > math.MaxInt64/uint64(time.Millisecond) {
		return time.Duration(math.MaxInt64).String()
	}
	return (time.Duration(ms) * time.Millisecond).String()
}
