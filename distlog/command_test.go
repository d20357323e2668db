package distlog

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCommandRoundTrip(t *testing.T) {
	values := [][]byte{[]byte("a"), nil, bytes.Repeat([]byte("x"), 300)}
	data := encodeAppend("orders", 1234567, values)
	require.Equal(t, uint64(len(data)), appendCommandSize("orders", []int{1, 0, 300}))
	c, err := decodeCommand(data)
	require.NoError(t, err)
	require.Equal(t, kindAppend, c.kind)
	require.Equal(t, "orders", c.topic)
	require.Equal(t, int64(1234567), c.timestamp)
	require.Len(t, c.values, 3)
	for k, v := range values {
		require.Equal(t, string(v), string(c.values[k]))
	}

	cfg := TopicConfig{MaxRecordBytes: 7, SegmentBytes: 1 << 20}
	c, err = decodeCommand(encodeCreateTopic("t.1", cfg))
	require.NoError(t, err)
	require.Equal(t, command{kind: kindCreateTopic, topic: "t.1", config: cfg}, c)

	c, err = decodeCommand(encodeDeleteTopic("t.1"))
	require.NoError(t, err)
	require.Equal(t, command{kind: kindDeleteTopic, topic: "t.1"}, c)
}

func TestDecodeCommandRejects(t *testing.T) {
	good := encodeAppend("t", 1, [][]byte{[]byte("abc")})
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrBadCommand},
		{"version only", []byte{commandVersion}, ErrBadCommand},
		{"old version", []byte{1, kindAppend, 0}, ErrUnknownCommand},
		{"newer version", []byte{commandVersion + 1, kindAppend}, ErrUnknownCommand},
		{"unknown kind", []byte{commandVersion, 99}, ErrUnknownCommand},
		{"cut", good[:len(good)-1], ErrBadCommand},
		{"trailing", append(bytes.Clone(good), 0), ErrBadCommand},
		{"zero records", encodeAppend("t", 1, nil), ErrBadCommand},
		{"huge count", append(bytes.Clone(good[:len(good)-5]), 0xff, 0xff, 0xff, 0xff, 0x0f), ErrBadCommand},
		{"short config", encodeCreateTopic("t", TopicConfig{})[:10], ErrBadCommand},
		{"long name length", []byte{commandVersion, kindDeleteTopic, 50, 'a'}, ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCommand(tt.data)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(encodeAppend("t", 5, [][]byte{[]byte("a"), []byte("bc")}))
	f.Add(encodeCreateTopic("orders", TopicConfig{MaxRecordBytes: 9}))
	f.Add(encodeDeleteTopic("orders"))
	f.Add(encodeCreateTopic("orders", TopicConfig{SegmentAge: time.Minute}))
	f.Add(encodeAlterTopic("orders", TopicConfig{RetentionBytes: 1}))
	f.Add(encodeAlterTopicAge("orders", TopicConfig{RetentionAge: time.Hour, SegmentAge: time.Minute}))
	f.Add([]byte{commandVersion, kindAppend, 1, 't', 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeCommand(data)
		if err != nil {
			return
		}
		// Whatever decodes survives a round trip (the bytes may differ:
		// varints have non-minimal spellings).
		var again []byte
		switch c.kind {
		case kindAppend:
			again = encodeAppend(c.topic, c.timestamp, c.values)
		case kindCreateTopic, kindCreateTopicConfig:
			// A kind 8 entry with no age encodes again as kind 2.
			again = encodeCreateTopic(c.topic, c.config)
			if c.config.SegmentAge == 0 {
				c.kind = kindCreateTopic
			}
		case kindAlterTopic:
			again = encodeAlterTopic(c.topic, c.config)
		case kindAlterTopicAge:
			again = encodeAlterTopicAge(c.topic, c.config)
		case kindDeleteTopic:
			again = encodeDeleteTopic(c.topic)
		case kindTruncate:
			again = encodeTruncate(c.topic, c.topicID, c.lowest)
		case kindCommitOffset:
			again = encodeCommitOffset(c.group, c.topic, c.offset, c.reset)
		case kindProducerAppend:
			again = encodeProducerAppend(c.topic, c.timestamp, c.limits, c.runs, c.values)
		default:
			t.Fatalf("decoded kind %d", c.kind)
		}
		d, err := decodeCommand(again)
		require.NoError(t, err)
		require.Equal(t, c.kind, d.kind)
		require.Equal(t, c.topic, d.topic)
		require.Equal(t, c.config, d.config)
		require.Equal(t, len(c.values), len(d.values))
		for k := range c.values {
			require.Equal(t, string(c.values[k]), string(d.values[k]))
		}
	})
}

// encodeAlterTopic encodes an alter-topic command (kind 7) as the release
// before SegmentAge wrote it: cfg's retention, leaving the topic's
// SegmentAge as it is.
func encodeAlterTopic(name string, cfg TopicConfig) []byte {
	buf := make([]byte, 0, commandHeaderBytes+binary.MaxVarintLen64+len(name)+topicConfigBytes)
	buf = append(buf, commandVersion, kindAlterTopic)
	buf = appendString(buf, name)
	buf = binary.BigEndian.AppendUint64(buf, cfg.RetentionBytes)
	return binary.BigEndian.AppendUint64(buf, uint64(cfg.RetentionAge))
}
