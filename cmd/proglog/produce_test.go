package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// strs turns a batch into strings for comparison.
func strs(batch [][]byte) []string {
	out := make([]string, len(batch))
	for i, b := range batch {
		out[i] = string(b)
	}
	return out
}

func TestLineBatcher(t *testing.T) {
	tests := []struct {
		name       string
		input      string
		maxRecords int
		maxBytes   int
		want       [][]string
	}{
		{name: "lines", input: "a\nb\nc\n", maxRecords: 10, maxBytes: 100, want: [][]string{{"a", "b", "c"}}},
		// A last line without "\n" is not known to be whole until EOF: it is
		// read on its own.
		{name: "no final newline", input: "a\nb", maxRecords: 10, maxBytes: 100, want: [][]string{{"a"}, {"b"}}},
		{name: "CRLF and empty lines", input: "a\r\n\r\n\nb\n", maxRecords: 10, maxBytes: 100, want: [][]string{{"a", "", "", "b"}}},
		{name: "record limit", input: "1\n2\n3\n4\n5\n", maxRecords: 2, maxBytes: 100, want: [][]string{{"1", "2"}, {"3", "4"}, {"5"}}},
		{name: "byte limit", input: "aaaa\nbbbb\ncccc\n", maxRecords: 10, maxBytes: 8, want: [][]string{{"aaaa", "bbbb"}, {"cccc"}}},
		{name: "empty input", input: "", maxRecords: 10, maxBytes: 100, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newLineBatcher(strings.NewReader(tt.input), tt.maxRecords, tt.maxBytes)
			var got [][]string
			for {
				batch, err := b.next()
				if len(batch) > 0 {
					got = append(got, strs(batch))
				}
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

// TestLineBatcherDoesNotWaitForMore: a typed line goes out at once, without
// waiting for the next line or the end of the input.
func TestLineBatcherDoesNotWaitForMore(t *testing.T) {
	r, w := io.Pipe()
	defer r.Close()
	b := newLineBatcher(r, 100, 1<<20)
	type batchResult struct {
		batch [][]byte
		err   error
	}
	results := make(chan batchResult, 1)
	go func() {
		batch, err := b.next()
		results <- batchResult{batch, err}
	}()
	_, err := w.Write([]byte("typed\n"))
	require.NoError(t, err)
	select {
	case res := <-results:
		require.NoError(t, res.err)
		require.Equal(t, []string{"typed"}, strs(res.batch))
	case <-time.After(10 * time.Second):
		t.Fatal("next() waited for more input after a whole line")
	}
	require.NoError(t, w.Close())
}

func TestArgBatches(t *testing.T) {
	next := argBatches([]string{"aa", "bb", "cc", "dd", "ee"}, 2, 100)
	var got [][]string
	for {
		batch, err := next()
		got = append(got, strs(batch))
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.Equal(t, [][]string{{"aa", "bb"}, {"cc", "dd"}, {"ee"}}, got)

	// A value over the byte limit still goes, alone.
	next = argBatches([]string{"big-value", "x"}, 10, 4)
	batch, err := next()
	require.NoError(t, err)
	require.Equal(t, []string{"big-value"}, strs(batch))
	batch, err = next()
	require.Equal(t, io.EOF, err)
	require.Equal(t, []string{"x"}, strs(batch))
}
