package distlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"strings"
	"time"
)

// The metadata table is the state machine's state besides the topics'
// records: the topics and their config, the idempotent producers' state
// (see producers.go; next: consumer offsets), and the Raft index it
// reflects. It is stored in the file
// "metadata" of the data directory (replaced atomically at every change)
// and at the head of every snapshot:
//
//	[7 bytes "PLGMETA"][1 byte version = 5][8-byte applied index][4-byte topic count]
//	count × ([2-byte name length][name][8-byte id][8-byte MaxRecordBytes][8-byte SegmentBytes])
//	[producer section, see appendProducers]
//	[consumer offsets section, see appendOffsets]
//	[retention section: per topic, in order, [8-byte RetentionBytes][8-byte RetentionAge, ns][8-byte lowest offset]]
//	[segment age section: per topic, in order, [8-byte SegmentAge, ns]]
//	[4-byte CRC32-C of everything before]
//
// Integers are big-endian; topics are sorted by name. Versions 1 (no
// producer section), 2 (no offsets section), 3 (no retention section) and
// 4 (no segment age section) are still read, as tables without them. A topic's id is the
// Raft index of the entry that created it (0 for DefaultTopic) and names its
// directory, so a topic deleted and created again never meets the old one's
// files.
const (
	metaMagic                 = "PLGMETA"
	metaVersion          byte = 5
	metaVersionRetention byte = 4 // before segment ages
	metaVersionOffsets   byte = 3 // before retention
	metaVersionProducers byte = 2 // before consumer offsets
	metaVersionTopics    byte = 1 // before idempotent producers
	metaFileName              = "metadata"
	metaFixedBytes            = len(metaMagic) + 1 + 8 + 4
	metaTopicBytes            = 2 + 8 + 16
	metaChecksumBytes         = 4
)

// ErrBadMetadata is returned for a metadata table (file or snapshot) that
// fails its checks; it is never half-read.
var ErrBadMetadata = errors.New("distlog: invalid metadata table")

// metadata is the decoded metadata table.
type metadata struct {
	// applied is the Raft index of the last entry that changed the table,
	// or of the snapshot it was restored from. Entries at or below it are
	// not applied to the table again.
	applied uint64
	topics  []topicMeta // sorted by name
	// producers is the idempotent producers' state; its byID may be nil
	// (no producers).
	producers producerTable
	// offsets are the consumer groups' committed offsets; may be nil.
	offsets map[groupKey]uint64
}

// topicMeta is one topic of the metadata table.
type topicMeta struct {
	name   string
	id     uint64
	config TopicConfig
	// lowest is the topic's lowest offset as retention set it (the last
	// truncate entry): reads below it are out of range on every node, even
	// where a segment holding some of them is still on disk.
	lowest uint64
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (m metadata) encode() []byte {
	topics := slices.Clone(m.topics)
	slices.SortFunc(topics, func(a, b topicMeta) int { return strings.Compare(a.name, b.name) })
	buf := make([]byte, 0, metaFixedBytes+len(topics)*(metaTopicBytes+maxTopicNameBytes)+metaChecksumBytes)
	buf = append(buf, metaMagic...)
	buf = append(buf, metaVersion)
	buf = binary.BigEndian.AppendUint64(buf, m.applied)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(topics)))
	for _, t := range topics {
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(t.name)))
		buf = append(buf, t.name...)
		buf = binary.BigEndian.AppendUint64(buf, t.id)
		buf = binary.BigEndian.AppendUint64(buf, t.config.MaxRecordBytes)
		buf = binary.BigEndian.AppendUint64(buf, t.config.SegmentBytes)
	}
	buf = appendProducers(buf, m.producers)
	buf = appendOffsets(buf, m.offsets)
	for _, t := range topics {
		buf = binary.BigEndian.AppendUint64(buf, t.config.RetentionBytes)
		buf = binary.BigEndian.AppendUint64(buf, uint64(t.config.RetentionAge))
		buf = binary.BigEndian.AppendUint64(buf, t.lowest)
	}
	for _, t := range topics {
		buf = binary.BigEndian.AppendUint64(buf, uint64(t.config.SegmentAge))
	}
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
}

func decodeMetadata(b []byte) (metadata, error) {
	if len(b) < metaFixedBytes+metaChecksumBytes || string(b[:len(metaMagic)]) != metaMagic {
		return metadata{}, fmt.Errorf("%w: not a metadata table", ErrBadMetadata)
	}
	version := b[len(metaMagic)]
	if version < metaVersionTopics || version > metaVersion {
		return metadata{}, fmt.Errorf("%w: version %d, this release reads %d to %d", ErrBadMetadata, version, metaVersionTopics, metaVersion)
	}
	body, sum := b[:len(b)-metaChecksumBytes], binary.BigEndian.Uint32(b[len(b)-metaChecksumBytes:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return metadata{}, fmt.Errorf("%w: checksum %#08x, stored %#08x", ErrBadMetadata, got, sum)
	}
	m := metadata{applied: binary.BigEndian.Uint64(body[len(metaMagic)+1:])}
	count := binary.BigEndian.Uint32(body[len(metaMagic)+9:])
	rest := body[metaFixedBytes:]
	if uint64(count)*metaTopicBytes > uint64(len(rest)) {
		return metadata{}, fmt.Errorf("%w: %d topics in %d bytes", ErrBadMetadata, count, len(rest))
	}
	for i := uint32(0); i < count; i++ {
		if len(rest) < 2 {
			return metadata{}, fmt.Errorf("%w: topic %d cut short", ErrBadMetadata, i)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < metaTopicBytes+n {
			return metadata{}, fmt.Errorf("%w: topic %d cut short", ErrBadMetadata, i)
		}
		t := topicMeta{name: string(rest[2 : 2+n])}
		rest = rest[2+n:]
		t.id = binary.BigEndian.Uint64(rest)
		t.config.MaxRecordBytes = binary.BigEndian.Uint64(rest[8:])
		t.config.SegmentBytes = binary.BigEndian.Uint64(rest[16:])
		rest = rest[24:]
		if !validTopicName(t.name) {
			return metadata{}, fmt.Errorf("%w: topic name %q", ErrBadMetadata, t.name)
		}
		m.topics = append(m.topics, t)
	}
	m.producers = newProducerTable()
	m.offsets = map[groupKey]uint64{}
	var err error
	if version >= metaVersionProducers {
		if m.producers, rest, err = decodeProducers(rest); err != nil {
			return metadata{}, err
		}
	}
	if version >= metaVersionOffsets {
		if m.offsets, rest, err = decodeOffsets(rest); err != nil {
			return metadata{}, err
		}
	}
	if version >= metaVersionRetention {
		if len(rest) < len(m.topics)*24 {
			return metadata{}, fmt.Errorf("%w: retention section cut short", ErrBadMetadata)
		}
		for i := range m.topics {
			m.topics[i].config.RetentionBytes = binary.BigEndian.Uint64(rest)
			m.topics[i].config.RetentionAge = time.Duration(binary.BigEndian.Uint64(rest[8:]))
			m.topics[i].lowest = binary.BigEndian.Uint64(rest[16:])
			rest = rest[24:]
		}
	}
	if version >= metaVersion {
		if len(rest) < len(m.topics)*8 {
			return metadata{}, fmt.Errorf("%w: segment age section cut short", ErrBadMetadata)
		}
		for i := range m.topics {
			age := binary.BigEndian.Uint64(rest)
			if age > math.MaxInt64 {
				return metadata{}, fmt.Errorf("%w: topic %q: segment age %d ns overflows a duration", ErrBadMetadata, m.topics[i].name, age)
			}
			m.topics[i].config.SegmentAge = time.Duration(age)
			rest = rest[8:]
		}
	}
	if len(rest) != 0 {
		return metadata{}, fmt.Errorf("%w: %d trailing bytes", ErrBadMetadata, len(rest))
	}
	return m, nil
}
