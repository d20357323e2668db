package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/server/auth"
	"github.com/proglog/proglog/server/servertest"
)

// TestHTTPSeedBookSession replays the seed book's first-chapter session
// against a real HTTP server: three POSTs, then GETs of offsets 0..2.
func TestHTTPSeedBookSession(t *testing.T) {
	handler, err := NewHTTPHandler(testConfig(t))
	require.NoError(t, err)
	srv := httptest.NewServer(handler)
	defer srv.Close()

	values := []string{"TGV0J3MgR28gIzEK", "TGV0J3MgR28gIzIK", "TGV0J3MgR28gIzMK"}
	do := func(method, body string) (int, string) {
		req, err := http.NewRequestWithContext(testContext(t), method, srv.URL, strings.NewReader(body))
		require.NoError(t, err)
		res, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		got, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.Equal(t, "application/json", res.Header.Get("Content-Type"))
		return res.StatusCode, string(got)
	}
	for offset, value := range values {
		code, body := do(http.MethodPost, `{"record": {"value": "`+value+`"}}`)
		require.Equalf(t, http.StatusOK, code, "POST %s = %d %s, want 200", value, code, body)
		require.JSONEqf(t, `{"offset": `+jsonNumber(offset)+`}`, body, "POST %s answered %s", value, body)
	}
	for offset, value := range values {
		code, body := do(http.MethodGet, `{"offset": `+jsonNumber(offset)+`}`)
		require.Equalf(t, http.StatusOK, code, "GET %d = %d %s, want 200", offset, code, body)
		require.JSONEqf(t, `{"record": {"value": "`+value+`", "offset": `+jsonNumber(offset)+`}}`, body, "GET %d answered %s", offset, body)
	}
}

func jsonNumber(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestHTTP covers the JSON API's answers, and checks that nothing invalid
// reaches the log. The log starts with "hello" (aGVsbG8=) at offset 0.
func TestHTTP(t *testing.T) {
	const maxRecord = 8 // bytes; base64 of 8 bytes is 12 characters
	tests := []struct {
		name     string
		method   string
		target   string
		body     string
		wantCode int
		// wantBody is the exact JSON answer, or for errors a part of the
		// message.
		wantBody    string
		wantAppends int
	}{
		{"produce", http.MethodPost, "/", `{"record":{"value":"d29ybGQ="}}`, 200, `{"offset":1}`, 1},
		{"produce an empty value", http.MethodPost, "/", `{"record":{"value":""}}`, 200, `{"offset":1}`, 1},
		{"produce ignores the client's offset", http.MethodPost, "/", `{"record":{"value":"eA==","offset":7}}`, 200, `{"offset":1}`, 1},
		{"produce at the size limit", http.MethodPost, "/", `{"record":{"value":"MTIzNDU2Nzg="}}`, 200, `{"offset":1}`, 1},
		{"produce malformed JSON", http.MethodPost, "/", `{"record":`, 400, "malformed JSON", 0},
		{"produce not an object", http.MethodPost, "/", `[1,2]`, 400, "malformed JSON", 0},
		{"produce trailing data", http.MethodPost, "/", `{"record":{"value":"eA=="}} {}`, 400, "trailing data", 0},
		{"produce empty body", http.MethodPost, "/", ``, 400, "empty body", 0},
		{"produce without record", http.MethodPost, "/", `{}`, 400, `missing \"record\"`, 0},
		{"produce null record", http.MethodPost, "/", `{"record":null}`, 400, `missing \"record\"`, 0},
		{"produce without value", http.MethodPost, "/", `{"record":{}}`, 400, `missing \"record.value\"`, 0},
		{"produce value not a string", http.MethodPost, "/", `{"record":{"value":5}}`, 400, "malformed JSON", 0},
		{"produce bad base64", http.MethodPost, "/", `{"record":{"value":"not base64!"}}`, 400, "not standard base64", 0},
		{"produce value over the limit", http.MethodPost, "/", `{"record":{"value":"MTIzNDU2Nzg5"}}`, 413, "value is 9 bytes, over the 8-byte limit", 0},
		{"produce body over the limit", http.MethodPost, "/", `{"record":{"value":"` + strings.Repeat("A", 2048) + `"}}`, 413, "request body over the", 0},

		{"consume with a body", http.MethodGet, "/", `{"offset":0}`, 200, `{"record":{"value":"aGVsbG8=","offset":0}}`, 0},
		{"consume with a query", http.MethodGet, "/?offset=0", ``, 200, `{"record":{"value":"aGVsbG8=","offset":0}}`, 0},
		{"consume query wins over body", http.MethodGet, "/?offset=0", `{"offset":5}`, 200, `{"record":{"value":"aGVsbG8=","offset":0}}`, 0},
		{"consume past the end", http.MethodGet, "/", `{"offset":1}`, 404, "offset out of range: 1", 0},
		{"consume past the end by query", http.MethodGet, "/?offset=18446744073709551615", ``, 404, "offset out of range: 18446744073709551615", 0},
		{"consume without offset", http.MethodGet, "/", `{}`, 400, `missing \"offset\"`, 0},
		{"consume without body or query", http.MethodGet, "/", ``, 400, "empty body", 0},
		{"consume negative offset", http.MethodGet, "/", `{"offset":-1}`, 400, "malformed JSON", 0},
		{"consume fractional offset", http.MethodGet, "/", `{"offset":1.5}`, 400, "malformed JSON", 0},
		{"consume offset as a string", http.MethodGet, "/", `{"offset":"0"}`, 400, "malformed JSON", 0},
		{"consume bad query offset", http.MethodGet, "/?offset=x", ``, 400, `offset=\"x\" is not an offset`, 0},
		{"consume body over the limit", http.MethodGet, "/", `{"offset":0` + strings.Repeat(" ", 5000) + `}`, 413, "request body over the", 0},

		{"PUT", http.MethodPut, "/", `{}`, 405, "method PUT not allowed", 0},
		{"PATCH a topic", http.MethodPatch, "/topics/default", `{}`, 405, "method PATCH not allowed", 0},
		{"topics with a trailing slash", http.MethodGet, "/topics/", ``, 404, "no such path", 0},
		{"a topic's sub-path", http.MethodGet, "/topics/default/x", ``, 404, "no such path", 0},
		{"DELETE", http.MethodDelete, "/", ``, 405, "method DELETE not allowed", 0},
		{"another path", http.MethodGet, "/records", `{"offset":0}`, 404, "no such path", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxRecordBytes = maxRecord
			log := newTestLog(t)
			appendDefault(t, log, "hello")
			cfg.CommitLog = log
			handler, err := NewHTTPHandler(cfg)
			require.NoError(t, err)

			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body)))

			body := rec.Body.String()
			require.Equalf(t, tt.wantCode, rec.Code, "%s %s %s = %d %s, want %d", tt.method, tt.target, tt.body, rec.Code, body, tt.wantCode)
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			if tt.wantCode == http.StatusOK {
				require.JSONEq(t, tt.wantBody, body)
			} else {
				var e struct{ Error string }
				require.NoErrorf(t, json.Unmarshal(rec.Body.Bytes(), &e), "error body %q is not JSON", body)
				require.Containsf(t, body, tt.wantBody, "error body = %s, want it to mention %s", body, tt.wantBody)
			}
			if tt.wantCode == http.StatusMethodNotAllowed {
				want := "GET, POST"
				if strings.HasPrefix(tt.target, "/topics/") {
					want = "GET, POST, PUT, DELETE"
				}
				require.Equal(t, want, rec.Header().Get("Allow"))
			}
			require.Equalf(t, 1+tt.wantAppends, log.Len(api.DefaultTopic), "records in the log after the request")
		})
	}
}

// TestHTTPAuthorization: the HTTP API asks the Authorizer about the subject
// in the request's context, with POST producing and GET consuming, and
// answers 403 and 401 for its refusals.
func TestHTTPAuthorization(t *testing.T) {
	tests := []struct {
		method     string
		body       string
		deny       codes.Code
		wantCode   int
		wantAction string
	}{
		{http.MethodPost, `{"record":{"value":"eA=="}}`, codes.OK, 200, ProduceAction},
		{http.MethodPost, `{"record":{"value":"eA=="}}`, codes.PermissionDenied, 403, ProduceAction},
		{http.MethodPost, `{"record":{"value":"eA=="}}`, codes.Unauthenticated, 401, ProduceAction},
		{http.MethodGet, `{"offset":0}`, codes.OK, 200, ConsumeAction},
		{http.MethodGet, `{"offset":0}`, codes.PermissionDenied, 403, ConsumeAction},
		{http.MethodGet, `{"offset":0}`, codes.Unauthenticated, 401, ConsumeAction},
	}
	for _, tt := range tests {
		t.Run(tt.method+"/"+tt.deny.String(), func(t *testing.T) {
			cfg := testConfig(t)
			log := newTestLog(t)
			appendDefault(t, log, "hello")
			cfg.CommitLog = log
			authorizer := &recordingAuthorizer{deny: tt.deny}
			cfg.Authorizer = authorizer
			handler, err := NewHTTPHandler(cfg)
			require.NoError(t, err)

			req := httptest.NewRequest(tt.method, "/", strings.NewReader(tt.body))
			req = req.WithContext(auth.WithSubject(req.Context(), "nobody"))
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)

			require.Equalf(t, tt.wantCode, rec.Code, "%s = %d %s, want %d", tt.method, rec.Code, rec.Body.String(), tt.wantCode)
			want := []authCall{{subject: "nobody", object: api.DefaultTopic, action: tt.wantAction}}
			require.Equal(t, want, authorizer.Calls())
			if tt.deny != codes.OK {
				require.Contains(t, rec.Body.String(), "nobody may not "+tt.wantAction)
				require.Equal(t, 1, log.Len(api.DefaultTopic), "a refused POST reached the log")
			}
		})
	}
}

// TestHTTPErrorsFromTheLog: the log's typed errors keep their meaning over
// HTTP, and an unexpected error does not leak its text.
func TestHTTPErrorsFromTheLog(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantBody string
	}{
		{"not leader", api.ErrNotLeader{LeaderID: "n1", LeaderAddr: "10.0.0.1:8400"}, 503, "10.0.0.1:8400"},
		{"internal", errSecret, 500, `{"error":"internal error"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.CommitLog = servertest.NewLog(servertest.FailWith(tt.err))
			handler, err := NewHTTPHandler(cfg)
			require.NoError(t, err)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"record":{"value":""}}`)))
			require.Equal(t, tt.wantCode, rec.Code)
			require.Contains(t, rec.Body.String(), tt.wantBody)
			require.NotContains(t, rec.Body.String(), "secret")
		})
	}
}
