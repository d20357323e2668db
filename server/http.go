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

// jsonSlackBytes is room in a POST body for the JSON around the base64 value.
const jsonSlackBytes = 1 << 10

// NewHTTPHandler returns the seed book's JSON API on "/", for the node's HTTP
// port (the agent mounts it beside /metrics, /healthz and /readyz):
//
//   - POST / with {"record": {"value": "<base64>"}} appends the record and
//     answers 200 {"offset": N};
//   - GET / with the body {"offset": N}, or GET /?offset=N (many clients cannot
//     send a GET body; the query wins when both are given), answers
//     200 {"record": {"value": "<base64>", "offset": N}};
//
// Offsets are JSON numbers. Errors answer {"error": "<message>"}: 400 for
// malformed JSON, a missing record, value or offset, or bad base64; 404 past
// the end of the log or on another path; 405 for other methods; 413 for a
// body or value over the limits; 401/403 when the Authorizer refuses the
// subject that authentication middleware put in the request's context (the
// same actions as gRPC: POST produces, GET consumes); 503 when the log
// refuses a write on a follower; 500 with a generic message for anything
// unexpected. Nothing invalid reaches the log.
func NewHTTPHandler(cfg *Config) (http.Handler, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &httpHandler{
		cfg:    c,
		logger: c.Logger.Named("http"),
		// base64 turns every 3 bytes into 4.
		maxProduceBodyBytes: int64(base64.StdEncoding.EncodedLen(c.MaxRecordBytes)) + jsonSlackBytes,
	}, nil
}

// httpHandler serves the JSON API.
type httpHandler struct {
	cfg                 Config
	logger              *zap.Logger
	maxProduceBodyBytes int64
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
	if r.URL.Path != "/" {
		h.writeJSON(w, http.StatusNotFound, errorJSON{Error: fmt.Sprintf("no such path: %s", r.URL.Path)})
		return
	}
	switch r.Method {
	case http.MethodPost:
		h.produce(w, r)
	case http.MethodGet:
		h.consume(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		h.writeJSON(w, http.StatusMethodNotAllowed, errorJSON{Error: fmt.Sprintf("method %s not allowed; use GET or POST", r.Method)})
	}
}

// produce serves POST /.
func (h *httpHandler) produce(w http.ResponseWriter, r *http.Request) {
	if err := authorize(r.Context(), h.cfg.Authorizer, ProduceAction); err != nil {
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
	offset, err := h.cfg.CommitLog.Append(r.Context(), record)
	if err != nil {
		h.writeError(w, err)
		return
	}
	h.writeJSON(w, http.StatusOK, produceResponseJSON{Offset: offset})
}

// consume serves GET /.
func (h *httpHandler) consume(w http.ResponseWriter, r *http.Request) {
	if err := authorize(r.Context(), h.cfg.Authorizer, ConsumeAction); err != nil {
		h.writeError(w, err)
		return
	}
	offset, err := consumeOffset(w, r)
	if err != nil {
		h.writeError(w, err)
		return
	}
	record, err := h.cfg.CommitLog.Read(r.Context(), offset)
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
		return fmt.Errorf("%w: empty body; want a JSON object", ErrInvalidRequest)
	default:
		return fmt.Errorf("%w: malformed JSON: %w", ErrInvalidRequest, err)
	}
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
