package distlog

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	api "github.com/proglog/proglog/api/v1"
)

// Idempotent producers. A produce call may carry a producer id and a
// sequence (api.ProducerBatch). The state machine keeps, per producer, the
// last sequence appended and the offsets of its last few calls (its spans),
// and decides every call of a producer-append command against them:
//
//   - an unknown producer (never seen, or expired) starts at whatever
//     sequence its call carries;
//   - the next sequence (last + 1) is appended;
//   - a sequence at or below the last one is a retry of a call appended
//     before: its original offsets are returned and nothing is appended, or,
//     when it is older than the spans kept, it is refused (TooOld) — it is
//     never appended twice;
//   - a sequence past last + 1 is refused: a call in between never arrived.
//
// Everything here is decided on every node from the same entries in the same
// order, and from nothing else: time is the largest timestamp the leaders
// stamped on the append entries applied so far (producerTable.clock), never
// a local clock, and the limits (how many spans per producer, how many
// producers, how long an idle one is kept) come in each command, as the
// leader that proposed it was configured. So every node keeps, expires and
// evicts the same producers at the same entries.

// producerLimits bounds the producer state; it travels in each
// producer-append command.
type producerLimits struct {
	// window is the number of a producer's last calls whose offsets are
	// kept (a retry of an older one is refused, TooOld).
	window uint64
	// maxProducers is the number of producers kept; past it the one idle
	// longest goes.
	maxProducers uint64
	// idle is how long, in ns of the leaders' timestamps, a producer with no
	// call is kept.
	idle int64
}

// ProducerConfig bounds the state the cluster keeps for idempotent
// producers. The leader's settings travel with every write, so every node
// applies the same ones; a node's own settings take effect when it leads.
type ProducerConfig struct {
	// Window is the number of a producer's last calls whose offsets are
	// kept, so that a retry of one of them returns its offsets. Default 5.
	Window int
	// MaxProducers is the number of producers kept; a new one beyond it
	// evicts the one idle the longest (whose retries are then appended
	// again). Default 10000.
	MaxProducers int
	// IdleExpiry is how long a producer with no call is kept, measured on
	// the timestamps the leaders stamp on writes. Default 24h.
	IdleExpiry time.Duration
}

// Defaults of ProducerConfig.
const (
	DefaultProducerWindow     = 5
	DefaultMaxProducers       = 10000
	DefaultProducerIdleExpiry = 24 * time.Hour
	maxProducerWindow         = 1024
	maxProducersLimit         = 1 << 20
	producerStateFixedBytes   = 8 + 8 + 8 + 2
	producerSpanBytes         = 8 + 8 + 8 + 8 + 8
	producerSectionHeadBytes  = 8 + 4
)

func (c ProducerConfig) withDefaults() (ProducerConfig, error) {
	if c.Window < 0 || c.Window > maxProducerWindow {
		return c, fmt.Errorf("%w: Producers.Window = %d, want 0 (default %d) to %d", ErrInvalidConfig, c.Window, DefaultProducerWindow, maxProducerWindow)
	}
	if c.MaxProducers < 0 || c.MaxProducers > maxProducersLimit {
		return c, fmt.Errorf("%w: Producers.MaxProducers = %d, want 0 (default %d) to %d", ErrInvalidConfig, c.MaxProducers, DefaultMaxProducers, maxProducersLimit)
	}
	if c.IdleExpiry < 0 {
		return c, fmt.Errorf("%w: Producers.IdleExpiry = %v, want >= 0 (0: default %v)", ErrInvalidConfig, c.IdleExpiry, DefaultProducerIdleExpiry)
	}
	if c.Window == 0 {
		c.Window = DefaultProducerWindow
	}
	if c.MaxProducers == 0 {
		c.MaxProducers = DefaultMaxProducers
	}
	if c.IdleExpiry == 0 {
		c.IdleExpiry = DefaultProducerIdleExpiry
	}
	return c, nil
}

func (c ProducerConfig) limits() producerLimits {
	return producerLimits{window: uint64(c.Window), maxProducers: uint64(c.MaxProducers), idle: int64(c.IdleExpiry)}
}

// producerSpan is where some of a producer's calls went: sequences
// firstSeq..lastSeq in the topic with id topicID, records from firstOffset
// on. A span of one sequence holds that call's count records; a longer one
// holds one record per sequence (consecutive one-record calls, as a
// ProduceStream sends them, at consecutive offsets, merged).
type producerSpan struct {
	topicID           uint64
	firstSeq, lastSeq uint64
	firstOffset       uint64
	count             uint64
}

// find returns the offsets of seq's call in s.
func (s producerSpan) find(seq uint64) (first, count uint64, ok bool) {
	if seq < s.firstSeq || seq > s.lastSeq {
		return 0, 0, false
	}
	if s.firstSeq == s.lastSeq {
		return s.firstOffset, s.count, true
	}
	return s.firstOffset + (seq - s.firstSeq), 1, true
}

// producerState is one producer's state.
type producerState struct {
	id       uint64
	lastSeq  uint64
	lastSeen int64 // the clock when its last call was decided
	spans    []producerSpan
}

// producerTable is every producer's state, and the clock it is expired by.
// It belongs to the fsm and is guarded by its mu.
type producerTable struct {
	// clock is the largest timestamp of the append entries applied.
	clock int64
	byID  map[uint64]*producerState
}

func newProducerTable() producerTable {
	return producerTable{byID: map[uint64]*producerState{}}
}

// advance moves the clock to ts when ts is later.
func (p *producerTable) advance(ts int64) { p.clock = max(p.clock, ts) }

// lookup returns producer id's state, forgetting it first when it has been
// idle longer than limits allow.
func (p *producerTable) lookup(id uint64, limits producerLimits) (*producerState, bool) {
	st, ok := p.byID[id]
	if ok && p.clock-st.lastSeen > limits.idle {
		delete(p.byID, id)
		return nil, false
	}
	return st, ok
}

// decision is the outcome of a call against the producer table.
type decision struct {
	appendIt  bool
	duplicate bool
	first     uint64 // duplicate: the original offsets
	count     uint64
	err       error
}

// decide decides the call run of the topic with id topicID. It changes
// nothing but expiry; record makes an appended call known.
func (p *producerTable) decide(run producerRun, topicID uint64, limits producerLimits) decision {
	if run.producer == 0 {
		return decision{appendIt: true}
	}
	st, ok := p.lookup(run.producer, limits)
	if !ok || run.sequence == st.lastSeq+1 {
		return decision{appendIt: true}
	}
	if run.sequence > st.lastSeq {
		return decision{err: api.SequenceError{ProducerID: run.producer, Sequence: run.sequence, Expected: st.lastSeq + 1}}
	}
	st.lastSeen = p.clock
	for _, s := range st.spans {
		first, count, found := s.find(run.sequence)
		if !found {
			continue
		}
		if s.topicID != topicID {
			return decision{err: api.SequenceError{ProducerID: run.producer, Sequence: run.sequence, Expected: st.lastSeq + 1, OtherTopic: true}}
		}
		return decision{duplicate: true, first: first, count: count}
	}
	return decision{err: api.SequenceError{ProducerID: run.producer, Sequence: run.sequence, Expected: st.lastSeq + 1, TooOld: true}}
}

// record makes the appended call run known: its records are count records
// from first in the topic with id topicID.
func (p *producerTable) record(run producerRun, topicID, first, count uint64, limits producerLimits) {
	if run.producer == 0 {
		return
	}
	st, ok := p.byID[run.producer]
	if !ok {
		p.makeRoom(limits)
		st = &producerState{id: run.producer}
		p.byID[run.producer] = st
	}
	st.lastSeq = run.sequence
	st.lastSeen = p.clock
	if n := len(st.spans); n > 0 && count == 1 {
		last := &st.spans[n-1]
		onePerSeq := last.firstSeq != last.lastSeq || last.count == 1
		if onePerSeq && last.topicID == topicID && last.lastSeq+1 == run.sequence && last.firstOffset+last.count == first {
			last.lastSeq = run.sequence
			last.count++
			return
		}
	}
	st.spans = append(st.spans, producerSpan{topicID: topicID, firstSeq: run.sequence, lastSeq: run.sequence, firstOffset: first, count: count})
	if window := max(limits.window, 1); uint64(len(st.spans)) > window {
		st.spans = slices.Delete(st.spans, 0, len(st.spans)-int(window))
	}
}

// makeRoom removes expired producers, then the one idle longest (the
// lowest id among equals), until a new one fits.
func (p *producerTable) makeRoom(limits producerLimits) {
	if uint64(len(p.byID)) < max(limits.maxProducers, 1) {
		return
	}
	for id, st := range p.byID {
		if p.clock-st.lastSeen > limits.idle {
			delete(p.byID, id)
		}
	}
	for uint64(len(p.byID)) >= max(limits.maxProducers, 1) {
		var oldest *producerState
		for _, st := range p.byID {
			if oldest == nil || st.lastSeen < oldest.lastSeen || (st.lastSeen == oldest.lastSeen && st.id < oldest.id) {
				oldest = st
			}
		}
		delete(p.byID, oldest.id)
	}
}

// forgetTopic drops the spans of the deleted topic with id topicID: its
// offsets mean nothing any more. The producers' sequences stay.
func (p *producerTable) forgetTopic(topicID uint64) {
	for _, st := range p.byID {
		st.spans = slices.DeleteFunc(st.spans, func(s producerSpan) bool { return s.topicID == topicID })
	}
}

// sorted returns the producers by id.
func (p *producerTable) sorted() []*producerState {
	out := make([]*producerState, 0, len(p.byID))
	for _, st := range p.byID {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *producerState) int { return cmp.Compare(a.id, b.id) })
	return out
}

// clone returns a deep copy, for a snapshot or a metadata table.
func (p *producerTable) clone() producerTable {
	c := producerTable{clock: p.clock, byID: make(map[uint64]*producerState, len(p.byID))}
	for id, st := range p.byID {
		cp := *st
		cp.spans = slices.Clone(st.spans)
		c.byID[id] = &cp
	}
	return c
}

// appendProducers encodes the producer section of the metadata table:
//
//	[8-byte clock][4-byte producer count]
//	count × ([8-byte id][8-byte last sequence][8-byte last seen][2-byte span count]
//	         spans × ([8-byte topic id][8-byte first sequence][8-byte last sequence][8-byte first offset][8-byte records]))
//
// sorted by id.
func appendProducers(buf []byte, p producerTable) []byte {
	buf = binary.BigEndian.AppendUint64(buf, uint64(p.clock))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(p.byID)))
	for _, st := range p.sorted() {
		buf = binary.BigEndian.AppendUint64(buf, st.id)
		buf = binary.BigEndian.AppendUint64(buf, st.lastSeq)
		buf = binary.BigEndian.AppendUint64(buf, uint64(st.lastSeen))
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(st.spans)))
		for _, s := range st.spans {
			buf = binary.BigEndian.AppendUint64(buf, s.topicID)
			buf = binary.BigEndian.AppendUint64(buf, s.firstSeq)
			buf = binary.BigEndian.AppendUint64(buf, s.lastSeq)
			buf = binary.BigEndian.AppendUint64(buf, s.firstOffset)
			buf = binary.BigEndian.AppendUint64(buf, s.count)
		}
	}
	return buf
}

// decodeProducers decodes a producer section and returns what follows it.
func decodeProducers(b []byte) (producerTable, []byte, error) {
	p := newProducerTable()
	if len(b) < producerSectionHeadBytes {
		return p, nil, fmt.Errorf("%w: producer section cut short", ErrBadMetadata)
	}
	p.clock = int64(binary.BigEndian.Uint64(b))
	count := binary.BigEndian.Uint32(b[8:])
	rest := b[producerSectionHeadBytes:]
	if uint64(count)*producerStateFixedBytes > uint64(len(rest)) {
		return p, nil, fmt.Errorf("%w: %d producers in %d bytes", ErrBadMetadata, count, len(rest))
	}
	for i := uint32(0); i < count; i++ {
		if len(rest) < producerStateFixedBytes {
			return p, nil, fmt.Errorf("%w: producer %d cut short", ErrBadMetadata, i)
		}
		st := &producerState{
			id:       binary.BigEndian.Uint64(rest),
			lastSeq:  binary.BigEndian.Uint64(rest[8:]),
			lastSeen: int64(binary.BigEndian.Uint64(rest[16:])),
		}
		spans := int(binary.BigEndian.Uint16(rest[24:]))
		rest = rest[producerStateFixedBytes:]
		if len(rest) < spans*producerSpanBytes {
			return p, nil, fmt.Errorf("%w: producer %d spans cut short", ErrBadMetadata, i)
		}
		for range spans {
			st.spans = append(st.spans, producerSpan{
				topicID:     binary.BigEndian.Uint64(rest),
				firstSeq:    binary.BigEndian.Uint64(rest[8:]),
				lastSeq:     binary.BigEndian.Uint64(rest[16:]),
				firstOffset: binary.BigEndian.Uint64(rest[24:]),
				count:       binary.BigEndian.Uint64(rest[32:]),
			})
			rest = rest[producerSpanBytes:]
		}
		if _, dup := p.byID[st.id]; dup || st.id == 0 {
			return p, nil, fmt.Errorf("%w: producer id %d twice or zero", ErrBadMetadata, st.id)
		}
		p.byID[st.id] = st
	}
	return p, rest, nil
}
