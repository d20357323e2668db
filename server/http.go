package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	api "github.com/proglog/proglog/api/v1"
)

// maxConsumeBodyBytes bounds a GET body: {"offset": N} needs a few dozen.
const maxConsumeBodyBytes = 4 << 10

// errEmptyBody is wrapped by decodeJSON's error for an empty body.
var errEmptyBody = errors.New("empty body")

// jsonSlackBytes is room in a POST body for the JSON around the base64 value.
const jsonSlackBytes = 1 << 10

// NewHTTPHandler returns the JSON API for the node's HTTP port (the agent
// mounts it on "/" beside /metrics, /healthz and /readyz). The seed book's
// API works on the default topic:
//
//   - POST / with {"record": {"value": "<base64>"}} appends the record and
//     answers 200 {"offset": N};
//   - GET / with the body {"offset": N}, or GET /?offset=N (many clients cannot
//     send a GET body; the query wins when both are given), answers
//     200 {"record": {"value": "<base64>", "offset": N}};
//
// and the same on any topic, with the topic administration beside it:
//
//   - POST /topics/{name} and GET /topics/{name}?offset=N produce to and
//     consume from topic name, with the documents of POST / and GET /;
//   - GET /topics answers 200 {"topics": [<topic>, ...]}, the topics the
//     subject may consume, sorted by name;
//   - PUT /topics/{name}, with an empty body or {"config": {"max_segment_bytes":
//     N, "max_record_bytes": M}} (absent fields: the node's defaults), creates the topic (again with the same config: no change) and
//     answers 200 {"topic": <topic>};
//   - DELETE /topics/{name} deletes it and answers 200 {}.
//   - POST /topics/{name}/groups/{group}/offset with {"offset": N} (and
//     "reset": true to move it back) commits consumer group's offset in the
//     topic, the next record it will process, and answers 200 {"offset": N}
//     with the committed offset; GET the same path answers it (404 when the
//     group committed none there). Both need consume on the topic.
//
// A <topic> is {"name", "config": {"max_segment_bytes", "max_record_bytes"}, "lowest_offset",
// "highest_offset", "next_offset", "records", "bytes", "segments"}.
//
// Offsets are JSON numbers. Errors answer {"error": "<message>"}: 400 for
// malformed JSON, a missing record, value or offset, bad base64 or a bad
// topic name; 404 past the end of a topic, for an unknown topic (the message
// says how to create it) or on another path; 405 for other methods; 409 to
// create a topic that exists with another config; 413 for a body or value
// over the limits; 401/403 when the Authorizer refuses the subject that
// authentication middleware put in the request's context (the same actions
// as gRPC: POST produces, GET consumes, PUT and DELETE administer, each on
// the topic); 503 when the log refuses a write on a follower; 500 with a
// generic message for anything unexpected. Nothing invalid reaches the log.
func NewHTTPHandler(cfg *Config) (http.Handler, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &httpHandler{
		cfg:    c,
		logger: c.Logger.Named("http"),
		// base64 turns every 3 bytes into 4.
		maxProduceBodyBytes: int64(base64.StdEncoding.EncodedLen(c.MaxRecordBytes)) + jsonSlackBytes,
		mux:                 http.NewServeMux(),
	}
	// Patterns without methods: each handler answers other methods itself,
	// with a JSON error, where ServeMux would answer in plain text.
	h.mux.HandleFunc("/{$}", h.serveLog)
	h.mux.HandleFunc("/topics", h.serveTopics)
	h.mux.HandleFunc("/topics/{name}", h.serveTopic)
	h.mux.HandleFunc("/topics/{name}/groups/{group}/offset", h.serveGroupOffset)
	h.mux.HandleFunc("/", h.notFound)
	return h, nil
}

// httpHandler serves the JSON API.
type httpHandler struct {
	cfg                 Config
	logger              *zap.Logger
	maxProduceBodyBytes int64
	// mux routes the API's paths; it is not changed after NewHTTPHandler.
	mux *http.ServeMux
}

// The JSON documents of the API. Pointers tell a missing field from a zero
// one.
type (
	produceRecordJSON struct {
		Value *string `json:"value"`
	}
	produceRequestJSON struct {
		Record *produceRecordJSON `json:"record"`
	}
	produceResponseJSON struct {
		Offset uint64 `json:"offset"`
	}
	consumeRequestJSON struct {
		Offset *uint64 `json:"offset"`
	}
	recordJSON struct {
		// Value is encoded as base64 by encoding/json.
		Value  []byte `json:"value"`
		Offset uint64 `json:"offset"`
	}
	consumeResponseJSON struct {
		Record recordJSON `json:"record"`
	}
	createTopicRequestJSON struct {
		Config *TopicConfigJSON `json:"config"`
	}
	topicResponseJSON struct {
		Topic TopicJSON `json:"topic"`
	}
	topicsResponseJSON struct {
		Topics []TopicJSON `json:"topics"`
	}
	emptyJSON struct{}
	errorJSON struct {
		Error string `json:"error"`
	}
)

// ServeHTTP implements http.Handler.
func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// net/http would recover too, but by dropping the connection and
		// printing the panic with the standard logger.
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.logger.Error("panic in handler", zap.Any("panic", p), zap.Stack("stack"))
			h.writeJSON(w, http.StatusInternalServerError, errorJSON{Error: internalMessage})
		}
	}()
	h.mux.ServeHTTP(w, r)
}

// notFound answers a path the API does not have.
func (h *httpHandler) notFound(w http.ResponseWriter, r *http.Request) {
	h.writeJSON(w, http.StatusNotFound, errorJSON{Error: fmt.Sprintf("no such path: %s", r.URL.Path)})
}

// methodNotAllowed answers a method a path does not serve.
func (h *httpHandler) methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	h.writeJSON(w, http.StatusMethodNotAllowed,
		errorJSON{Error: fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, allow)})
}

// serveLog serves the seed book's API on the default topic.
func (h *httpHandler) serveLog(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		h.produce(w, r, "")
	case http.MethodGet:
		h.consume(w, r, "")
	default:
		h.methodNotAllowed(w, r, "GET, POST")
	}
}

// serveTopics serves /topics.
func (h *httpHandler) serveTopics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		h.methodNotAllowed(w, r, "GET")
		return
	}
	topics, err := listTopics(r.Context(), h.cfg)
	if err != nil {
		h.writeError(w, err)
		return
	}
	res := topicsResponseJSON{Topics: make([]TopicJSON, 0, len(topics))}
	for _, topic := range topics {
		res.Topics = append(res.Topics, NewTopicJSON(topic))
	}
	h.writeJSON(w, http.StatusOK, res)
}

// serveTopic serves /topics/{name}.
func (h *httpHandler) serveTopic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	switch r.Method {
	case http.MethodPost:
		// An explicit name: the empty one would mean the default topic to
		// produce, but a path segment cannot be empty here anyway.
		h.produce(w, r, name)
	case http.MethodGet:
		h.consume(w, r, name)
	case http.MethodPut:
		h.createTopic(w, r, name)
	case http.MethodDelete:
		if err := deleteTopic(r.Context(), h.cfg, name); err != nil {
			h.writeError(w, err)
			return
		}
		h.writeJSON(w, http.StatusOK, emptyJSON{})
	default:
		h.methodNotAllowed(w, r, "GET, POST, PUT, DELETE")
	}
}

// createTopic serves PUT /topics/{name}.
func (h *httpHandler) createTopic(w http.ResponseWriter, r *http.Request, name string) {
	var req createTopicRequestJSON
	if err := decodeOptionalJSON(http.MaxBytesReader(w, r.Body, maxConsumeBodyBytes), &req); err != nil {
		h.writeError(w, err)
		return
	}
	config := &api.TopicConfig{}
	if req.Config != nil {
		config = req.Config.proto()
	}
	info, err := createTopic(r.Context(), h.cfg, name, config)
	if err != nil {
		h.writeError(w, err)
		return
	}
	h.writeJSON(w, http.StatusOK, topicResponseJSON{Topic: NewTopicJSON(info)})
}

// produce serves POST / (topic "") and POST /topics/{name}.
func (h *httpHandler) produce(w http.ResponseWriter, r *http.Request, requestedTopic string) {
	topic, err := authorizeTopic(r.Context(), h.cfg.Authorizer, requestedTopic, ProduceAction)
	if err != nil {
		h.writeError(w, err)
		return
	}
	var req produceRequestJSON
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, h.maxProduceBodyBytes), &req); err != nil {
		h.writeError(w, err)
		return
	}
	if req.Record == nil {
		h.writeError(w, fmt.Errorf(`%w: missing "record"`, ErrInvalidRequest))
		return
	}
	if req.Record.Value == nil {
		h.writeError(w, fmt.Errorf(`%w: missing "record.value"`, ErrInvalidRequest))
		return
	}
	value, err := base64.StdEncoding.DecodeString(*req.Record.Value)
	if err != nil {
		h.writeError(w, fmt.Errorf(`%w: "record.value" is not standard base64: %w`, ErrInvalidRequest, err))
		return
	}
	record, err := checkRecord(&api.Record{Value: value}, h.cfg.MaxRecordBytes)
	if err != nil {
		h.writeError(w, err)
		return
	}
	offset, err := h.cfg.CommitLog.AppendBatch(r.Context(), topic, []*api.Record{record})
	if err != nil {
		h.writeError(w, err)
		return
	}
	h.writeJSON(w, http.StatusOK, produceResponseJSON{Offset: offset})
}

// consume serves GET / (topic "") and GET /topics/{name}.
func (h *httpHandler) consume(w http.ResponseWriter, r *http.Request, requestedTopic string) {
	topic, err := authorizeTopic(r.Context(), h.cfg.Authorizer, requestedTopic, ConsumeAction)
	if err != nil {
		h.writeError(w, err)
		return
	}
	offset, err := consumeOffset(w, r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	record, err := h.cfg.CommitLog.Read(r.Context(), topic, offset)
	if err != nil {
		h.writeError(w, err)
		return
	}
	value := record.GetValue()
	if value == nil {
		// encoding/json writes a nil slice as null; an empty value is "".
		value = []byte{}
	}
	h.writeJSON(w, http.StatusOK, consumeResponseJSON{Record: recordJSON{Value: value, Offset: offset}})
}

// consumeOffset reads the offset of a GET from ?offset=N or, failing that,
// from the JSON body.
func consumeOffset(w http.ResponseWriter, r *http.Request) (uint64, error) {
	if query := r.URL.Query(); query.Has("offset") {
		offset, err := strconv.ParseUint(query.Get("offset"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: query parameter offset=%q is not an offset: %w", ErrInvalidRequest, query.Get("offset"), err)
		}
		return offset, nil
	}
	var req consumeRequestJSON
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxConsumeBodyBytes), &req); err != nil {
		return 0, err
	}
	if req.Offset == nil {
		return 0, fmt.Errorf(`%w: missing "offset"`, ErrInvalidRequest)
	}
	return *req.Offset, nil
}

// decodeJSON decodes exactly one JSON value from body into v. Errors wrap
// ErrInvalidRequest, except an *http.MaxBytesError from a body over its limit.
func decodeJSON(body io.Reader, v any) error {
	dec := json.NewDecoder(body)
	err := dec.Decode(v)
	if err == nil {
		// Anything after the value is an error, and may be the part of the
		// body that goes over the limit.
		if _, err = dec.Token(); errors.Is(err, io.EOF) {
			return nil
		} else if err == nil {
			err = errors.New("trailing data after the JSON value")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return err
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %w; want a JSON object", ErrInvalidRequest, errEmptyBody)
	default:
		return fmt.Errorf("%w: malformed JSON: %w", ErrInvalidRequest, err)
	}
}

// decodeOptionalJSON is decodeJSON for a body that may be empty, which
// leaves v as it is.
func decodeOptionalJSON(body io.Reader, v any) error {
	err := decodeJSON(body, v)
	if err != nil && errors.Is(err, errEmptyBody) {
		return nil
	}
	return err
}

// writeError answers err with its HTTP status (errorTable) and a JSON
// message.
func (h *httpHandler) writeError(w http.ResponseWriter, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		h.writeJSON(w, http.StatusRequestEntityTooLarge,
			errorJSON{Error: fmt.Sprintf("request body over the %d-byte limit", tooLarge.Limit)})
		return
	}
	code, message := httpError(h.logger, err)
	h.writeJSON(w, code, errorJSON{Error: message})
}

// writeJSON answers code with v as JSON.
func (h *httpHandler) writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		// The status line is out; all that is left is to note it.
		h.logger.Debug("write response", zap.Error(err))
	}
}

// groupOffsetJSON is the body of POST and the answer of GET and POST
// /topics/{name}/groups/{group}/offset.
type groupOffsetJSON struct {
	Offset *uint64 `json:"offset"`
	Reset  bool    `json:"reset,omitempty"`
}

// serveGroupOffset serves /topics/{name}/groups/{group}/offset.
func (h *httpHandler) serveGroupOffset(w http.ResponseWriter, r *http.Request) {
	name, group := r.PathValue("name"), r.PathValue("group")
	switch r.Method {
	case http.MethodGet:
		off, err := fetchOffset(r.Context(), h.cfg, group, name)
		if err != nil {
			h.writeError(w, err)
			return
		}
		h.writeJSON(w, http.StatusOK, groupOffsetJSON{Offset: &off})
	case http.MethodPost:
		var req groupOffsetJSON
		if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxConsumeBodyBytes), &req); err != nil {
			h.writeError(w, err)
			return
		}
		if req.Offset == nil {
			h.writeError(w, fmt.Errorf(`%w: missing "offset"`, ErrInvalidRequest))
			return
		}
		off, err := commitOffset(r.Context(), h.cfg, group, name, *req.Offset, req.Reset)
		if err != nil {
			h.writeError(w, err)
			return
		}
		h.writeJSON(w, http.StatusOK, groupOffsetJSON{Offset: &off})
	default:
		h.methodNotAllowed(w, r, "GET, POST")
	}
}
