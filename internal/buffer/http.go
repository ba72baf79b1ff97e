package buffer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast/internal/problem"
)

// IngestConfig bounds what clients may send.
type IngestConfig struct {
	MaxKeyBytes     int           // default 200
	MaxPayloadBytes int           // default 64 KiB
	AppendTimeout   time.Duration // how long a write may wait to be stored (default 10 s)
	// Handlers validate the writes offered, by kind (ServiceConfig.Handlers).
	Handlers Handlers
}

// DefaultIngestConfig is what holdfast up uses.
func DefaultIngestConfig() IngestConfig {
	return IngestConfig{MaxKeyBytes: 200, MaxPayloadBytes: 64 << 10, AppendTimeout: 10 * time.Second}
}

// Ingest is the HTTP side of the buffer: it validates writes, stores them
// durably in the log and answers 202 once they are on disk.
type Ingest struct {
	log appender
	cfg IngestConfig
	now func() time.Time
	// index and metrics, when set (by Service), hear of accepted writes.
	index   *pendingIndex
	metrics *metrics
}

// appender stores writes durably: *Log.
type appender interface {
	Append(ctx context.Context, w Write) error
}

// NewIngest serves writes into log.
func NewIngest(log *Log, cfg IngestConfig) *Ingest { return newIngest(log, cfg) }

func newIngest(log appender, cfg IngestConfig) *Ingest {
	return &Ingest{log: log, cfg: cfg, now: time.Now}
}

// Register adds the ingest routes to mux: POST /v1/writes and the
// reference demo's shortcut GET /ingest?guid=.
func (in *Ingest) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/writes", in.postWrite)
	mux.HandleFunc("GET /ingest", in.getIngest)
}

// Problem is an RFC 9457 problem details body.
type Problem = problem.Details

func writeProblem(w http.ResponseWriter, status int, field, detail string) {
	problem.Write(w, status, field, detail)
}

func (in *Ingest) refuse(w http.ResponseWriter, status int, field, detail string) {
	if in.metrics != nil {
		in.metrics.rejected.WithLabelValues(strconv.Itoa(status)).Inc()
	}
	writeProblem(w, status, field, detail)
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
	start := time.Now()
	if !problem.IsJSON(r) {
		in.refuse(w, http.StatusUnsupportedMediaType, "", "send the write as application/json")
		return
	}
	var req writeRequest
	if p := problem.DecodeJSON(w, r, int64(in.cfg.MaxPayloadBytes+in.cfg.MaxKeyBytes+4096), &req); p != nil {
		in.refuse(w, p.Status, p.Field, p.Detail)
		return
	}
	in.accept(w, r.Context(), req, start)
}

func (in *Ingest) getIngest(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	g := r.URL.Query().Get("guid")
	if _, err := uuid.Parse(g); err != nil {
		in.refuse(w, http.StatusBadRequest, "guid", fmt.Sprintf("guid %q is not a UUID", g))
		return
	}
	payload, _ := json.Marshal(IngestPayload{GUID: g})
	in.accept(w, r.Context(), writeRequest{Kind: KindIngest, Key: g, Payload: payload}, start)
}

// store indexes wr as pending and appends it to the log.
func (in *Ingest) store(ctx context.Context, wr Write) error {
	actx, cancel := context.WithTimeout(ctx, in.cfg.AppendTimeout)
	defer cancel()
	// Indexed before it is stored, so that the committer's settlement,
	// which can only come after, is never overtaken.
	added := in.index != nil && in.index.add(wr)
	if err := in.log.Append(actx, wr); err != nil {
		if added {
			// Maybe stored after all: then it is applied, and found
			// committed, once the committer gets to it.
			in.index.remove(wr.Key)
		}
		return err
	}
	return nil
}

func (in *Ingest) accept(w http.ResponseWriter, ctx context.Context, req writeRequest, start time.Time) {
	switch {
	case req.Kind == "":
		in.refuse(w, http.StatusBadRequest, "kind", "kind is required")
		return
	case req.Key == "":
		in.refuse(w, http.StatusBadRequest, "key", "key (the idempotency key) is required")
		return
	case len(req.Key) > in.cfg.MaxKeyBytes:
		in.refuse(w, http.StatusBadRequest, "key", fmt.Sprintf("key of %d bytes exceeds %d", len(req.Key), in.cfg.MaxKeyBytes))
		return
	case len(req.Payload) == 0 || string(req.Payload) == "null":
		in.refuse(w, http.StatusBadRequest, "payload", "payload is required")
		return
	case len(req.Payload) > in.cfg.MaxPayloadBytes:
		in.refuse(w, http.StatusRequestEntityTooLarge, "payload", fmt.Sprintf("payload of %d bytes exceeds %d", len(req.Payload), in.cfg.MaxPayloadBytes))
		return
	}
	h, ok := in.cfg.Handlers.Lookup(req.Kind)
	if !ok {
		in.refuse(w, http.StatusBadRequest, "kind", fmt.Sprintf("unknown kind %q", req.Kind))
		return
	}
	if err := h.Validate(req.Payload); err != nil {
		in.refuse(w, http.StatusBadRequest, "payload", err.Error())
		return
	}
	if err := in.store(ctx, Write{Kind: req.Kind, Key: req.Key, Payload: req.Payload, AcceptedAt: in.now()}); err != nil {
		in.refuse(w, http.StatusServiceUnavailable, "", "the write could not be stored durably ("+err.Error()+"); retry with the same key")
		return
	}
	if in.metrics != nil {
		in.metrics.accepted.Inc()
		in.metrics.ackLatency.Observe(time.Since(start).Seconds())
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(Accepted{Key: req.Key, Status: "accepted"})
}
