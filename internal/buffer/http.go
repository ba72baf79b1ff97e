package buffer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// IngestConfig bounds what clients may send.
type IngestConfig struct {
	MaxKeyBytes     int           // default 200
	MaxPayloadBytes int           // default 64 KiB
	AppendTimeout   time.Duration // how long a write may wait to be stored (default 10 s)
}

// DefaultIngestConfig is what holdfast up uses.
func DefaultIngestConfig() IngestConfig {
	return IngestConfig{MaxKeyBytes: 200, MaxPayloadBytes: 64 << 10, AppendTimeout: 10 * time.Second}
}

// Ingest is the HTTP side of the buffer: it validates writes, stores them
// durably in the log and answers 202 once they are on disk.
type Ingest struct {
	log *Log
	cfg IngestConfig
	now func() time.Time
}

// NewIngest serves writes into log.
func NewIngest(log *Log, cfg IngestConfig) *Ingest {
	return &Ingest{log: log, cfg: cfg, now: time.Now}
}

// Register adds the ingest routes to mux: POST /v1/writes and the
// reference demo's shortcut GET /ingest?guid=.
func (in *Ingest) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/writes", in.postWrite)
	mux.HandleFunc("GET /ingest", in.getIngest)
}

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the offending request field, when there is one.
	Field string `json:"field,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, field, detail string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Field: field})
}

type writeRequest struct {
	Kind    string          `json:"kind"`
	Key     string          `json:"key"`
	Payload json.RawMessage `json:"payload"`
}

// Accepted is the 202 body.
type Accepted struct {
	Key    string `json:"key"`
	Status string `json:"status"`
}

func (in *Ingest) postWrite(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeProblem(w, http.StatusUnsupportedMediaType, "", "send the write as application/json")
		return
	}
	limit := int64(in.cfg.MaxPayloadBytes + in.cfg.MaxKeyBytes + 4096)
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	var req writeRequest
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeProblem(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("the request body exceeds %d bytes", limit))
			return
		}
		writeProblem(w, http.StatusBadRequest, jsonField(err), "malformed JSON: "+err.Error())
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeProblem(w, http.StatusBadRequest, "", "malformed JSON: data after the write object")
		return
	}
	in.accept(w, r.Context(), req)
}

// jsonField names the field of an unknown-field error.
func jsonField(err error) string {
	const p = "json: unknown field "
	if s := err.Error(); strings.HasPrefix(s, p) {
		return strings.Trim(s[len(p):], `"`)
	}
	return ""
}

func (in *Ingest) getIngest(w http.ResponseWriter, r *http.Request) {
	g := r.URL.Query().Get("guid")
	if _, err := uuid.Parse(g); err != nil {
		writeProblem(w, http.StatusBadRequest, "guid", fmt.Sprintf("guid %q is not a UUID", g))
		return
	}
	payload, _ := json.Marshal(IngestPayload{GUID: g})
	in.accept(w, r.Context(), writeRequest{Kind: KindIngest, Key: g, Payload: payload})
}

func (in *Ingest) accept(w http.ResponseWriter, ctx context.Context, req writeRequest) {
	switch {
	case req.Kind == "":
		writeProblem(w, http.StatusBadRequest, "kind", "kind is required")
		return
	case req.Key == "":
		writeProblem(w, http.StatusBadRequest, "key", "key (the idempotency key) is required")
		return
	case len(req.Key) > in.cfg.MaxKeyBytes:
		writeProblem(w, http.StatusBadRequest, "key", fmt.Sprintf("key of %d bytes exceeds %d", len(req.Key), in.cfg.MaxKeyBytes))
		return
	case len(req.Payload) == 0 || string(req.Payload) == "null":
		writeProblem(w, http.StatusBadRequest, "payload", "payload is required")
		return
	case len(req.Payload) > in.cfg.MaxPayloadBytes:
		writeProblem(w, http.StatusRequestEntityTooLarge, "payload", fmt.Sprintf("payload of %d bytes exceeds %d", len(req.Payload), in.cfg.MaxPayloadBytes))
		return
	}
	h, ok := Lookup(req.Kind)
	if !ok {
		writeProblem(w, http.StatusBadRequest, "kind", fmt.Sprintf("unknown kind %q", req.Kind))
		return
	}
	if err := h.Validate(req.Payload); err != nil {
		writeProblem(w, http.StatusBadRequest, "payload", err.Error())
		return
	}
	actx, cancel := context.WithTimeout(ctx, in.cfg.AppendTimeout)
	defer cancel()
	if err := in.log.Append(actx, Write{Kind: req.Kind, Key: req.Key, Payload: req.Payload, AcceptedAt: in.now()}); err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "", "the write could not be stored durably ("+err.Error()+"); retry with the same key")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(Accepted{Key: req.Key, Status: "accepted"})
}
