package distlog

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	api "github.com/proglog/proglog/api/v1"
)

// Consumer groups. A commit-offset entry sets a group's offset in a topic:
// the offset of the next record the group will process. Commits are
// monotonic (a lower offset leaves the committed one as it is) unless the
// entry says reset; an offset past the topic's end is refused. The offsets
// live in the metadata table (and so in snapshots); they are not written to
// disk at each commit: after a restart Raft replays the commits after the
// table's applied index, which set them again.

// groupKey names a group's offset in a topic.
type groupKey struct {
	group, topic string
}

// GroupTopic is a consumer group's position in one topic.
type GroupTopic struct {
	Topic string
	// Committed is the offset of the next record the group will process.
	Committed uint64
	// NextOffset is the topic's next offset on this node; Lag is
	// NextOffset - Committed.
	NextOffset uint64
	Lag        uint64
}

// GroupInfo is a consumer group's committed offsets, by topic name.
type GroupInfo struct {
	Name   string
	Topics []GroupTopic
}

// commitOffsetLocked applies a commit-offset entry at index.
func (f *fsm) commitOffsetLocked(index uint64, cmd command) applyResult {
	if index <= f.meta.applied {
		return applyResult{skipped: true}
	}
	if err := api.ValidateGroupName(cmd.group); err != nil {
		return applyResult{err: err}
	}
	t, ok := f.topics[cmd.topic]
	if !ok || t.log == nil {
		return applyResult{err: api.TopicNotFoundError{Topic: cmd.topic}}
	}
	if next := t.log.NextOffset(); cmd.offset > next {
		return applyResult{err: fmt.Errorf("commit past the end of topic %q (next offset %d): %w", cmd.topic, next, api.ErrOffsetOutOfRange{Offset: cmd.offset})}
	}
	key := groupKey{group: cmd.group, topic: cmd.topic}
	if cur, ok := f.offsets[key]; ok && cmd.offset < cur && !cmd.reset {
		return applyResult{first: cur}
	}
	f.offsets[key] = cmd.offset
	return applyResult{first: cmd.offset}
}

// forgetTopicOffsets drops every group's offset in topic (deleted).
func (f *fsm) forgetTopicOffsetsLocked(topic string) {
	for k := range f.offsets {
		if k.topic == topic {
			delete(f.offsets, k)
		}
	}
}

// committedOffset returns group's committed offset in topic on this node.
func (f *fsm) committedOffset(group, topic string) (uint64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	off, ok := f.offsets[groupKey{group: group, topic: topic}]
	return off, ok
}

// groupInfos returns every group (only group, when not empty), sorted by
// name, with its topics sorted by name.
func (f *fsm) groupInfos(group string) []GroupInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	byName := map[string]*GroupInfo{}
	for k, off := range f.offsets {
		if group != "" && k.group != group {
			continue
		}
		g := byName[k.group]
		if g == nil {
			g = &GroupInfo{Name: k.group}
			byName[k.group] = g
		}
		gt := GroupTopic{Topic: k.topic, Committed: off}
		if t, ok := f.topics[k.topic]; ok && t.log != nil {
			gt.NextOffset = t.log.NextOffset()
			if gt.NextOffset > off {
				gt.Lag = gt.NextOffset - off
			}
		}
		g.Topics = append(g.Topics, gt)
	}
	out := make([]GroupInfo, 0, len(byName))
	for _, g := range byName {
		slices.SortFunc(g.Topics, func(a, b GroupTopic) int { return strings.Compare(a.Topic, b.Topic) })
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b GroupInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// appendOffsets encodes the consumer offsets section of the metadata
// table, sorted by group then topic:
//
//	[4-byte count] count × ([2-byte group length][group][2-byte topic length][topic][8-byte offset])
func appendOffsets(buf []byte, offsets map[groupKey]uint64) []byte {
	keys := make([]groupKey, 0, len(offsets))
	for k := range offsets {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b groupKey) int {
		return cmp.Or(strings.Compare(a.group, b.group), strings.Compare(a.topic, b.topic))
	})
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(keys)))
	for _, k := range keys {
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(k.group)))
		buf = append(buf, k.group...)
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(k.topic)))
		buf = append(buf, k.topic...)
		buf = binary.BigEndian.AppendUint64(buf, offsets[k])
	}
	return buf
}

// decodeOffsets decodes an offsets section and returns what follows it.
func decodeOffsets(b []byte) (map[groupKey]uint64, []byte, error) {
	offsets := map[groupKey]uint64{}
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: offsets section cut short", ErrBadMetadata)
	}
	count := binary.BigEndian.Uint32(b)
	rest := b[4:]
	if uint64(count)*(2+2+8) > uint64(len(rest)) {
		return nil, nil, fmt.Errorf("%w: %d offsets in %d bytes", ErrBadMetadata, count, len(rest))
	}
	str := func() (string, bool) {
		if len(rest) < 2 {
			return "", false
		}
		n := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+n {
			return "", false
		}
		s := string(rest[2 : 2+n])
		rest = rest[2+n:]
		return s, true
	}
	for i := uint32(0); i < count; i++ {
		group, ok1 := str()
		topic, ok2 := str()
		if !ok1 || !ok2 || len(rest) < 8 {
			return nil, nil, fmt.Errorf("%w: offset %d cut short", ErrBadMetadata, i)
		}
		offsets[groupKey{group: group, topic: topic}] = binary.BigEndian.Uint64(rest)
		rest = rest[8:]
	}
	return offsets, rest, nil
}
