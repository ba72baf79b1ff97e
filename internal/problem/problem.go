// Package problem writes RFC 9457 problem details, the error body of every
// holdfast HTTP API.
package problem

import (
	"encoding/json"
	"net/http"
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
