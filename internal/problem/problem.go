// Package problem writes RFC 9457 problem details, the error body of every
// holdfast HTTP API, and the JSON bodies of their answers.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Details is an RFC 9457 problem details body.
type Details struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the offending request field, when there is one.
	Field string `json:"field,omitempty"`
}

// Write answers status with a problem+json body. A 503 says when to retry.
func Write(w http.ResponseWriter, status int, field, detail string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Details{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Field: field})
}

// WriteJSON answers status with v as a JSON body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// IsJSON reports whether r's body is declared application/json.
func IsJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// DecodeJSON reads r's body, at most limit bytes, into v: one JSON value,
// no unknown field, nothing after it. On failure it returns the problem to
// answer (413 too large, 400 malformed, naming the field when there is
// one); the caller writes it (Write(w, p.Status, p.Field, p.Detail)) or
// counts it first.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *Details {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Details{Status: http.StatusRequestEntityTooLarge, Detail: fmt.Sprintf("the body exceeds %d bytes", limit)}
		}
		field := ""
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field = te.Field
		} else if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			field = strings.Trim(f, `"`)
		}
		return &Details{Status: http.StatusBadRequest, Field: field, Detail: "malformed JSON: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &Details{Status: http.StatusBadRequest, Detail: "malformed JSON: data after the object"}
	}
	return nil
}
