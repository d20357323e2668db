package telemetry

import "sync"

// DefaultMaxTopicLabels is the default MetricsConfig.MaxTopicLabels.
const DefaultMaxTopicLabels = 100

// OtherTopicLabel is the topic label of every topic past the cap: "(other)"
// cannot be a topic's name, so it never hides one.
const OtherTopicLabel = "(other)"

// TopicLabels bounds the cardinality of the topic label: the first max
// topics a node meets each get a label value of their own, for as long as the
// process lives; any further topic is counted under OtherTopicLabel.
// Prometheus keeps a series per label value, and topics are created by
// clients, so an unbounded label would let clients grow the node's memory
// and its scrapes without limit. It is safe for concurrent use.
type TopicLabels struct {
	max int

	mu    sync.Mutex
	known map[string]struct{} // guarded by mu
}

// NewTopicLabels returns a TopicLabels that names at most max topics
// (DefaultMaxTopicLabels when max <= 0).
func NewTopicLabels(max int) *TopicLabels {
	if max <= 0 {
		max = DefaultMaxTopicLabels
	}
	return &TopicLabels{max: max, known: make(map[string]struct{})}
}

// Label returns the label value for topic: the topic's name while there is
// room, OtherTopicLabel once max other topics were named.
func (l *TopicLabels) Label(topic string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.known[topic]; ok {
		return topic
	}
	if len(l.known) >= l.max {
		return OtherTopicLabel
	}
	l.known[topic] = struct{}{}
	return topic
}
