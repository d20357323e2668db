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

// TestREADMEGrpcurlExamplesHaveACertificate: grpcurl looks every method up
// through server reflection first, even grpc.health.v1.Health/Check, and
// reflection needs a client certificate (requireReflectionAndHealth checks
// that), so a grpcurl example without -cert fails with Unauthenticated.
func TestREADMEGrpcurlExamplesHaveACertificate(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	section := readmeSection(t, string(data), "## grpcurl")
	start := strings.Index(section, "```sh\n")
	require.GreaterOrEqual(t, start, 0, "README's grpcurl section has no sh block")
	block := section[start+len("```sh\n"):]
	block = block[:strings.Index(block, "```")]
	calls := 0
	for _, line := range strings.Split(block, "\n") {
		if !strings.HasPrefix(line, "grpcurl ") && !strings.HasPrefix(line, "pl ") &&
			!strings.HasPrefix(line, "pl() { grpcurl ") {
			continue
		}
		calls++
		if strings.HasPrefix(line, "grpcurl ") {
			require.Contains(t, line, " -cert ", "README grpcurl example without a client certificate: %s", line)
		}
	}
	require.NotZero(t, calls, "README's grpcurl section has no grpcurl example")
	require.Contains(t, block, "pl() { grpcurl -cacert ~/.proglog/ca.pem -cert ~/.proglog/root-client.pem ")
}
