package distlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// A Raft command entry's Data is one command: a version, a kind, and the
// kind's fields, all length-checked when decoded.
//
//	[1 byte version = 2][1 byte kind][fields]
//
//	append (1):        [uvarint topic length][topic][8-byte timestamp, Unix ns][uvarint count][count × (uvarint length, value)]
//	create-topic (2):  [uvarint name length][name][8-byte MaxRecordBytes][8-byte SegmentBytes]
//	delete-topic (3):  [uvarint name length][name]
//	truncate (4):      [uvarint topic length][topic][8-byte topic id][8-byte lowest offset]
//	alter-topic (7):   [uvarint name length][name][8-byte RetentionBytes][8-byte RetentionAge, ns]
//	create-topic-config (8): [uvarint name length][name][8-byte MaxRecordBytes][8-byte SegmentBytes][8-byte SegmentAge, ns]
//	                   [8-byte RetentionBytes][8-byte RetentionAge, ns]
//	alter-topic-age (9):  [uvarint name length][name][8-byte RetentionBytes][8-byte RetentionAge, ns][8-byte SegmentAge, ns]
//	commit-offset (5): [uvarint group length][group][uvarint topic length][topic][8-byte offset][1 byte reset]
//	producer-append (6): [uvarint topic length][topic][8-byte timestamp, Unix ns]
//	                   [uvarint window][uvarint max producers][8-byte idle expiry, ns]
//	                   [uvarint run count][runs × ([8-byte producer id][uvarint sequence][uvarint records])]
//	                   [values of every run in order, each (uvarint length, value)]
//
// Integers are big-endian. Version 1 was the previous release's
// append-batch command ([1][uvarint count][values], no topic). The
// timestamp is stamped once by the leader that proposes the entry, so
// every replica stores the same bytes. Offsets are not in the command:
// every node assigns the same ones because it applies the same entries in
// the same order.
//
// Kind 8 is kind 2 with the rest of a TopicConfig (SegmentAge and
// retention), so that a topic is created with all of it in one entry (the
// release before wrote a create-topic entry and then an alter-topic entry
// for the retention: a leader that failed between the two left a topic
// without its retention, and the client's retry then found it "with
// another configuration"). Kind 9 is kind 7 with SegmentAge. A field added
// to a kind takes a new kind: the version byte is the whole command's, and
// raising it would make a node of the previous release stop at every entry
// of a newer leader, where a new kind stops it only at the entries that
// need the new fields. Kinds 2 and 7 are still decoded, and kind 2 still
// written for a topic created with neither (every release since topics
// reads it): a create-topic entry is a topic with neither, and an
// alter-topic entry leaves the topic's SegmentAge as it is (the release
// that wrote it had none).
//
// A command this version does not know (another version, or a kind it
// does not have) stops
// the state machine (ErrUnknownCommand): skipping it would let this node's
// state diverge from the nodes that applied it. A change to a kind's fields
// takes a new version for that reason; a node never reads past the fields
// it knows.
const (
	commandVersion byte = 2

	kindAppend      byte = 1
	kindCreateTopic byte = 2
	kindDeleteTopic byte = 3
	// kindTruncate sets a topic's lowest offset (retention, decided by the
	// leader); every node deletes its whole segments below it.
	kindTruncate byte = 4
	// kindCommitOffset commits a consumer group's offset in a topic.
	kindCommitOffset byte = 5
	// kindProducerAppend is an append of produce calls that may carry a
	// producer id and sequence (see producers.go); the producer limits of
	// the leader that proposed it travel with it, so every node decides
	// duplicates and expiry alike.
	kindProducerAppend byte = 6
	// kindAlterTopic changes a topic's retention; its SegmentAge stays.
	kindAlterTopic byte = 7
	// kindCreateTopicConfig is kindCreateTopic with the whole TopicConfig:
	// SegmentAge and retention too.
	kindCreateTopicConfig byte = 8
	// kindAlterTopicAge changes a topic's retention and SegmentAge.
	kindAlterTopicAge byte = 9

	// commandHeaderBytes is the version and kind.
	commandHeaderBytes = 2
	// topicConfigBytes bounds the encoded TopicConfig of a create-topic
	// or alter-topic command.
	topicConfigBytes = 40
)

// ErrBadCommand is returned (through the Apply response) for a Raft entry
// of a known version and kind whose fields do not decode. Every node
// decodes the same bytes, so every node refuses it alike and nothing
// changes.
var ErrBadCommand = errors.New("distlog: malformed raft command")

// ErrUnknownCommand stops the state machine: a Raft entry holds a command
// version or kind this release does not know (written by a newer release).
// The node applies nothing more until it is restarted with a release that
// knows it.
var ErrUnknownCommand = errors.New("distlog: raft command of an unknown version or kind; this node stops applying: upgrade it to the release the leader runs")

// command is a decoded Raft command.
type command struct {
	kind byte
	// topic is the append's topic, or the name of the topic created or
	// deleted.
	topic string
	// append
	timestamp int64
	values    [][]byte
	// create-topic and alter-topic
	config TopicConfig
	// keepSegmentAge: an alter-topic (7) entry, which leaves the topic's
	// SegmentAge as it is.
	keepSegmentAge bool
	// producer-append: the runs (one per produce call) whose values are
	// values, in order, and the limits the leader proposed them with.
	runs   []producerRun
	limits producerLimits
	// truncate: the topic's id and new lowest offset (lowest)
	topicID uint64
	lowest  uint64
	// commit-offset
	group  string
	offset uint64
	reset  bool
}

// producerRun is one produce call in a producer-append command: records
// values from the producer's call number sequence (producer 0: a call
// without a producer).
type producerRun struct {
	producer uint64
	sequence uint64
	records  uint64
}

// encodeAppend encodes an append command of values to topic, stamped ts.
func encodeAppend(topic string, ts int64, values [][]byte) []byte {
	size := commandHeaderBytes + binary.MaxVarintLen64 + len(topic) + 8 + binary.MaxVarintLen64
	for _, v := range values {
		size += binary.MaxVarintLen64 + len(v)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, commandVersion, kindAppend)
	buf = appendString(buf, topic)
	buf = binary.BigEndian.AppendUint64(buf, uint64(ts))
	buf = binary.AppendUvarint(buf, uint64(len(values)))
	for _, v := range values {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	return buf
}

// appendCommandSize is the encoded size of an append command of values of
// these lengths to topic, computed without encoding it.
func appendCommandSize(topic string, lengths []int) uint64 {
	size := uint64(commandHeaderBytes + uvarintLen(uint64(len(topic))) + len(topic) + 8 + uvarintLen(uint64(len(lengths))))
	for _, n := range lengths {
		size += uint64(uvarintLen(uint64(n)) + n)
	}
	return size
}

// maxAppendFramingBytes bounds what an append or producer-append command
// of one value adds to the value, for a topic name of at most
// maxTopicNameBytes: the producer-append's header (topic, timestamp,
// limits, run count), one run and the value's length.
const maxAppendFramingBytes = commandHeaderBytes + binary.MaxVarintLen64 + maxTopicNameBytes + 8 +
	2*binary.MaxVarintLen64 + 8 + binary.MaxVarintLen64 + producerRunMaxBytes + binary.MaxVarintLen64

// encodeProducerAppend encodes a producer-append command of runs, whose
// values are values in order, to topic, stamped ts, with limits.
func encodeProducerAppend(topic string, ts int64, limits producerLimits, runs []producerRun, values [][]byte) []byte {
	size := commandHeaderBytes + binary.MaxVarintLen64 + len(topic) + 8 + 2*binary.MaxVarintLen64 + 8 +
		binary.MaxVarintLen64 + len(runs)*(8+2*binary.MaxVarintLen64)
	for _, v := range values {
		size += binary.MaxVarintLen64 + len(v)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, commandVersion, kindProducerAppend)
	buf = appendString(buf, topic)
	buf = binary.BigEndian.AppendUint64(buf, uint64(ts))
	buf = binary.AppendUvarint(buf, limits.window)
	buf = binary.AppendUvarint(buf, limits.maxProducers)
	buf = binary.BigEndian.AppendUint64(buf, uint64(limits.idle))
	buf = binary.AppendUvarint(buf, uint64(len(runs)))
	for _, r := range runs {
		buf = binary.BigEndian.AppendUint64(buf, r.producer)
		buf = binary.AppendUvarint(buf, r.sequence)
		buf = binary.AppendUvarint(buf, r.records)
	}
	for _, v := range values {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	return buf
}

// producerAppendCommandSize bounds the encoded size of a producer-append
// command of runs with values of these lengths to topic.
func producerAppendCommandSize(topic string, runs int, lengths []int) uint64 {
	return producerAppendHeaderBytes(topic) + callBytes(runs, lengths)
}

// producerRunMaxBytes bounds the encoding of one run of a producer-append
// command.
const producerRunMaxBytes = 8 + 2*binary.MaxVarintLen64

// producerAppendHeaderBytes bounds what a producer-append command to topic
// takes besides its runs and values.
func producerAppendHeaderBytes(topic string) uint64 {
	return uint64(commandHeaderBytes+uvarintLen(uint64(len(topic)))+len(topic)+8+2*binary.MaxVarintLen64+8) +
		binary.MaxVarintLen64
}

// encodeTruncate encodes a truncate command.
func encodeTruncate(topic string, id, lowest uint64) []byte {
	buf := make([]byte, 0, commandHeaderBytes+binary.MaxVarintLen64+len(topic)+16)
	buf = append(buf, commandVersion, kindTruncate)
	buf = appendString(buf, topic)
	buf = binary.BigEndian.AppendUint64(buf, id)
	return binary.BigEndian.AppendUint64(buf, lowest)
}

// encodeAlterTopicAge encodes an alter-topic-age command (kind 9): cfg's
// retention and SegmentAge.
func encodeAlterTopicAge(name string, cfg TopicConfig) []byte {
	buf := make([]byte, 0, commandHeaderBytes+binary.MaxVarintLen64+len(name)+topicConfigBytes)
	buf = append(buf, commandVersion, kindAlterTopicAge)
	buf = appendString(buf, name)
	buf = binary.BigEndian.AppendUint64(buf, cfg.RetentionBytes)
	buf = binary.BigEndian.AppendUint64(buf, uint64(cfg.RetentionAge))
	return binary.BigEndian.AppendUint64(buf, uint64(cfg.SegmentAge))
}

// encodeCommitOffset encodes a commit-offset command.
func encodeCommitOffset(group, topic string, offset uint64, reset bool) []byte {
	buf := make([]byte, 0, commandHeaderBytes+2*binary.MaxVarintLen64+len(group)+len(topic)+9)
	buf = append(buf, commandVersion, kindCommitOffset)
	buf = appendString(buf, group)
	buf = appendString(buf, topic)
	buf = binary.BigEndian.AppendUint64(buf, offset)
	var r byte
	if reset {
		r = 1
	}
	return append(buf, r)
}

// encodeCreateTopic encodes a create-topic command of cfg: kind 2 (its
// fixed fields) when cfg has no SegmentAge and no retention, which every
// release since topics reads, otherwise kind 8 (all of it).
func encodeCreateTopic(name string, cfg TopicConfig) []byte {
	kind := kindCreateTopic
	if cfg.SegmentAge != 0 || cfg.RetentionBytes != 0 || cfg.RetentionAge != 0 {
		kind = kindCreateTopicConfig
	}
	buf := make([]byte, 0, commandHeaderBytes+binary.MaxVarintLen64+len(name)+topicConfigBytes)
	buf = append(buf, commandVersion, kind)
	buf = appendString(buf, name)
	buf = binary.BigEndian.AppendUint64(buf, cfg.MaxRecordBytes)
	buf = binary.BigEndian.AppendUint64(buf, cfg.SegmentBytes)
	if kind == kindCreateTopicConfig {
		buf = binary.BigEndian.AppendUint64(buf, uint64(cfg.SegmentAge))
		buf = binary.BigEndian.AppendUint64(buf, cfg.RetentionBytes)
		buf = binary.BigEndian.AppendUint64(buf, uint64(cfg.RetentionAge))
	}
	return buf
}

// encodeDeleteTopic encodes a delete-topic command.
func encodeDeleteTopic(name string) []byte {
	buf := make([]byte, 0, commandHeaderBytes+binary.MaxVarintLen64+len(name))
	buf = append(buf, commandVersion, kindDeleteTopic)
	return appendString(buf, name)
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// decodeCommand decodes a command entry. An unknown version or kind is
// ErrUnknownCommand; fields that do not decode are ErrBadCommand. Values
// alias data.
func decodeCommand(data []byte) (command, error) {
	if len(data) < commandHeaderBytes {
		return command{}, fmt.Errorf("%w: %d bytes, shorter than a command header", ErrBadCommand, len(data))
	}
	if data[0] != commandVersion {
		return command{}, fmt.Errorf("%w: version %d (this release knows %d)", ErrUnknownCommand, data[0], commandVersion)
	}
	d := decoder{rest: data[commandHeaderBytes:]}
	c := command{kind: data[1]}
	switch c.kind {
	case kindAppend:
		c.topic = d.string("topic")
		c.timestamp = int64(d.uint64("timestamp"))
		count := d.uvarint("record count")
		// Each value takes at least its one-byte length: a count beyond
		// that is a lie, and must not size an allocation.
		if d.err == nil && (count == 0 || count > uint64(len(d.rest))) {
			d.fail(fmt.Sprintf("record count %d with %d bytes left", count, len(d.rest)))
		}
		if d.err == nil {
			c.values = make([][]byte, 0, count)
		}
		for i := uint64(0); d.err == nil && i < count; i++ {
			v, ok := d.value()
			if !ok {
				// Formatted only on failure: this loop is the apply path.
				d.fail(fmt.Sprintf("record %d of %d: bad length", i, count))
			}
			c.values = append(c.values, v)
		}
	case kindProducerAppend:
		c.topic = d.string("topic")
		c.timestamp = int64(d.uint64("timestamp"))
		c.limits.window = d.uvarint("window")
		c.limits.maxProducers = d.uvarint("max producers")
		c.limits.idle = int64(d.uint64("idle expiry"))
		runs := d.uvarint("run count")
		// A run takes at least ten bytes: a count beyond that is a lie.
		if d.err == nil && (runs == 0 || runs > uint64(len(d.rest))/10) {
			d.fail(fmt.Sprintf("run count %d with %d bytes left", runs, len(d.rest)))
		}
		var total uint64
		if d.err == nil {
			c.runs = make([]producerRun, 0, runs)
		}
		for i := uint64(0); d.err == nil && i < runs; i++ {
			r := producerRun{producer: d.uint64("producer"), sequence: d.uvarint("sequence"), records: d.uvarint("records")}
			if d.err == nil && (r.records == 0 || r.records > uint64(len(d.rest))) {
				d.fail(fmt.Sprintf("run %d of %d: %d records with %d bytes left", i, runs, r.records, len(d.rest)))
			}
			total += r.records
			c.runs = append(c.runs, r)
		}
		if d.err == nil && total > uint64(len(d.rest)) {
			d.fail(fmt.Sprintf("%d records with %d bytes left", total, len(d.rest)))
		}
		if d.err == nil {
			c.values = make([][]byte, 0, total)
		}
		for i := uint64(0); d.err == nil && i < total; i++ {
			v, ok := d.value()
			if !ok {
				d.fail(fmt.Sprintf("record %d of %d: bad length", i, total))
			}
			c.values = append(c.values, v)
		}
	case kindTruncate:
		c.topic = d.string("topic")
		c.topicID = d.uint64("topic id")
		c.lowest = d.uint64("lowest")
	case kindAlterTopic, kindAlterTopicAge:
		c.topic = d.string("name")
		c.config.RetentionBytes = d.uint64("RetentionBytes")
		// Not d.duration: the previous release wrote what it was given.
		c.config.RetentionAge = time.Duration(d.uint64("RetentionAge"))
		if c.kind == kindAlterTopicAge {
			c.config.SegmentAge = d.duration("SegmentAge")
		} else {
			c.keepSegmentAge = true
		}
	case kindCommitOffset:
		c.group = d.string("group")
		c.topic = d.string("topic")
		c.offset = d.uint64("offset")
		switch {
		case d.err != nil:
		case len(d.rest) < 1 || d.rest[0] > 1:
			d.fail("bad reset flag")
		default:
			c.reset = d.rest[0] == 1
			d.rest = d.rest[1:]
		}
	case kindCreateTopic, kindCreateTopicConfig:
		c.topic = d.string("name")
		c.config.MaxRecordBytes = d.uint64("MaxRecordBytes")
		c.config.SegmentBytes = d.uint64("SegmentBytes")
		if c.kind == kindCreateTopicConfig {
			c.config.SegmentAge = d.duration("SegmentAge")
			c.config.RetentionBytes = d.uint64("RetentionBytes")
			c.config.RetentionAge = d.duration("RetentionAge")
		}
	case kindDeleteTopic:
		c.topic = d.string("name")
	default:
		return command{}, fmt.Errorf("%w: kind %d of version %d", ErrUnknownCommand, c.kind, commandVersion)
	}
	if d.err == nil && len(d.rest) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.rest)))
	}
	if d.err != nil {
		return command{}, d.err
	}
	return c, nil
}

// decoder reads length-checked fields; the first failure sticks.
type decoder struct {
	rest []byte
	err  error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadCommand, what)
	}
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.rest)
	if n <= 0 {
		d.fail("bad " + field)
		return 0
	}
	d.rest = d.rest[n:]
	return v
}

func (d *decoder) uint64(field string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.rest) < 8 {
		d.fail("short " + field)
		return 0
	}
	v := binary.BigEndian.Uint64(d.rest)
	d.rest = d.rest[8:]
	return v
}

// duration reads a duration in nanoseconds; a negative one (past
// math.MaxInt64) is malformed (a field no release wrote so).
func (d *decoder) duration(field string) time.Duration {
	v := d.uint64(field)
	if d.err == nil && v > math.MaxInt64 {
		d.fail(fmt.Sprintf("%s %d ns overflows a duration", field, v))
		return 0
	}
	return time.Duration(v)
}

func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.rest)) {
		d.fail(fmt.Sprintf("%s: length %d with %d bytes left", field, n, len(d.rest)))
		return nil
	}
	v := d.rest[:n:n]
	d.rest = d.rest[n:]
	return v
}

// value reads a length-prefixed value; false when it does not fit.
func (d *decoder) value() ([]byte, bool) {
	n, width := binary.Uvarint(d.rest)
	if width <= 0 || n > uint64(len(d.rest)-width) {
		return nil, false
	}
	v := d.rest[width : width+int(n) : width+int(n)]
	d.rest = d.rest[width+int(n):]
	return v, true
}

func (d *decoder) string(field string) string {
	return string(d.bytes(field))
}
