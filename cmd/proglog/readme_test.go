package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// readmeSection returns the text of the README section titled heading, up
// to the next "## " heading.
func readmeSection(t *testing.T, readme, heading string) string {
	t.Helper()
	start := strings.Index(readme, "\n"+heading+"\n")
	require.GreaterOrEqual(t, start, 0, "README has no %q section", heading)
	section := readme[start+1:]
	if end := strings.Index(section[len(heading):], "\n## "); end >= 0 {
		section = section[:len(heading)+end]
	}
	return section
}

// TestREADME: the README opens with `make test` and `make run`, and its
// configuration reference documents every setting.
func TestREADME(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	readme := string(data)

	fence := strings.Index(readme, "```sh\n")
	require.GreaterOrEqual(t, fence, 0, "README has no sh block")
	firstBlock := readme[fence:]
	firstBlock = firstBlock[:strings.Index(firstBlock[3:], "```")+3]
	require.Contains(t, firstBlock, "make test")
	require.Contains(t, firstBlock, "make run")

	reference := readmeSection(t, readme, "## Configuration reference")
	for key := range knownKeys() {
		require.Contains(t, reference, "`--"+key+"`", "the configuration reference does not mention --%s", key)
	}
}
