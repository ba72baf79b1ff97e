package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// allowAll admits every request as client "fuzz" (pure logic: the token
// checks have their own fuzzers in package oauth).
type allowAll struct{}

func (allowAll) Require(...string) func(http.HandlerFunc) http.HandlerFunc {
	return func(h http.HandlerFunc) http.HandlerFunc { return h }
}
func (allowAll) ClientID(context.Context) string { return "fuzz" }

// memSubmitter records buffered writes.
type memSubmitter struct{ payloads [][]byte }

func (m *memSubmitter) Submit(_ context.Context, _, _ string, payload []byte) error {
	m.payloads = append(m.payloads, payload)
	return nil
}

// FuzzTodoBody: any body posted to the buffered create gets either 202 with
// a valid todo handed to the buffer, or a 4xx problem with nothing handed
// on.
func FuzzTodoBody(f *testing.F) {
	for _, s := range []string{`{"task":"x"}`, `{"task":"x","status":"wip"}`, `{"task":""}`, `{"task":"x","status":"no"}`,
		`{"task":"x","owner":1}`, `{"task":5}`, `{"task":"x"} {}`, `[]`, `{"task":"\u0000"}`, "{\"task\":\"\xff\"}", `{"task":"x","version":2}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		sub := &memSubmitter{}
		a := NewTodoAPI(TodoConfig{Mode: ModeBuffered, MaxBody: 4096, Timeout: 1e9}, nil, sub, allowAll{})
		mux := http.NewServeMux()
		a.Register(mux)
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/todos", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		mux.ServeHTTP(rec, req)
		switch {
		case rec.Code == http.StatusAccepted:
			if len(sub.payloads) != 1 {
				t.Fatalf("202 with %d writes handed on", len(sub.payloads))
			}
			var tw todoWrite
			if err := json.Unmarshal(sub.payloads[0], &tw); err != nil {
				t.Fatal(err)
			}
			if n := utf8.RuneCountInString(tw.Task); n < minTaskChars || n > maxTaskChars || !utf8.ValidString(tw.Task) || !todoStatuses[tw.Status] {
				t.Fatalf("handed on an invalid todo %+v for %q", tw, body)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if len(sub.payloads) != 0 {
				t.Fatalf("%d with a write handed on", rec.Code)
			}
			if rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d without problem+json", rec.Code)
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
