package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	api "github.com/proglog/proglog/api/v1"
)

// groupsListSettings are the settings of `proglog groups list` and `proglog
// groups describe`.
type groupsListSettings struct {
	client clientSettings
	json   bool
}

// readGroupsListSettings reads and validates them.
func readGroupsListSettings(s *settings) (groupsListSettings, error) {
	gs := groupsListSettings{client: readClientSettings(s), json: s.Bool(keyJSON)}
	if err := s.Err(); err != nil {
		return gs, err
	}
	return gs, gs.client.validate()
}

// groupArg checks the GROUP argument of `proglog groups describe`.
func groupArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError(fmt.Errorf("%sneeds one GROUP, got %d arguments (see '%s --help')",
			commandPrefix(cmd), len(args), cmd.CommandPath()))
	}
	if err := api.ValidateGroupName(args[0]); err != nil {
		return usageError(fmt.Errorf("%s%w", commandPrefix(cmd), err))
	}
	return nil
}

func newGroupsCmd() (*cobra.Command, error) {
	groups := &cobra.Command{
		Use:   "groups",
		Short: "List and describe consumer groups",
		Long: `A consumer group commits, per topic, the offset of the next record it will
process (proglog consume --group G does as it prints), so that a consumer that
restarts resumes there. Commits are replicated like writes and never move back
unless reset. These commands show each group's committed offset, the topic's
end and the lag between them, in the topics you may consume.`,
		Example: `  proglog consume --group billing --follow
  proglog groups list
  proglog groups describe billing`,
		Args: noArgs,
	}
	for _, build := range []func() (*cobra.Command, error){newGroupsListCmd, newGroupsDescribeCmd} {
		cmd, err := build()
		if err != nil {
			return nil, err
		}
		groups.AddCommand(cmd)
	}
	return groups, nil
}

func newGroupsListCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "list",
		Short: "List consumer groups with their offsets and lag",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runGroups(cmd, "")
		},
	}, groupsListOptions())
}

func newGroupsDescribeCmd() (*cobra.Command, error) {
	return newCommand(&cobra.Command{
		Use:   "describe GROUP",
		Short: "Show a consumer group's offset and lag in each topic",
		Args:  groupArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGroups(cmd, args[0])
		},
	}, groupsListOptions())
}

// runGroups runs `proglog groups list` (group "") and `proglog groups
// describe GROUP`.
func runGroups(cmd *cobra.Command, group string) error {
	op := "groups list"
	if group != "" {
		op = "groups describe"
	}
	s, err := loadSettings(cmd.Flags(), groupsListOptions(), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	gs, err := readGroupsListSettings(s)
	if err != nil {
		return err
	}
	client, err := gs.client.connect(cmd, op)
	if err != nil {
		return err
	}
	defer client.Close()
	var groups []*api.GroupInfo
	if group == "" {
		groups, err = client.ListGroups(cmd.Context())
	} else {
		var g *api.GroupInfo
		g, err = client.DescribeGroup(cmd.Context(), group)
		groups = []*api.GroupInfo{g}
	}
	if err != nil {
		return gs.client.rpcError(op, err)
	}
	return writeGroups(cmd.OutOrStdout(), groups, gs.json)
}

// groupJSON is one line of `--json` output: a group's position in a topic.
type groupJSON struct {
	Group      string `json:"group"`
	Topic      string `json:"topic"`
	Committed  uint64 `json:"committed"`
	NextOffset uint64 `json:"next_offset"`
	Lag        uint64 `json:"lag"`
}

// writeGroups prints one line per group and topic, as a table or JSON.
func writeGroups(w io.Writer, groups []*api.GroupInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, g := range groups {
			for _, t := range g.GetTopics() {
				if err := enc.Encode(groupJSON{Group: g.GetName(), Topic: t.GetTopic(), Committed: t.GetCommitted(),
					NextOffset: t.GetNextOffset(), Lag: t.GetLag()}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tTOPIC\tCOMMITTED\tEND\tLAG")
	for _, g := range groups {
		for _, t := range g.GetTopics() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", g.GetName(), t.GetTopic(), t.GetCommitted(), t.GetNextOffset(), t.GetLag())
		}
	}
	return tw.Flush()
}
