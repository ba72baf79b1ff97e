package buffer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/internal/problem"
)

// lookupTimeout bounds the database and JetStream lookups of one request.
const lookupTimeout = 5 * time.Second

// Register adds the client routes to mux: POST /v1/writes, GET
// /v1/writes/{key} and GET /ingest?guid=.
func (s *Service) Register(mux *http.ServeMux) {
	s.ingest.Register(mux)
	mux.HandleFunc("GET /v1/writes/{key...}", s.getWrite)
}

// RegisterAdmin adds the administration routes, each wrapped by guard
// (authentication): GET /v1/buffer/status, GET /v1/dlq, POST
// /v1/dlq/redrive and DELETE /v1/dlq/{key}.
func (s *Service) RegisterAdmin(mux *http.ServeMux, guard func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /v1/buffer/status", guard(s.getStatus))
	mux.HandleFunc("GET /v1/dlq", guard(s.listDead))
	mux.HandleFunc("POST /v1/dlq/redrive", guard(s.redrive))
	mux.HandleFunc("DELETE /v1/dlq/{key...}", guard(s.drop))
}

func (s *Service) getWrite(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if key == "" || len(key) > s.cfg.Ingest.MaxKeyBytes {
		writeProblem(w, http.StatusBadRequest, "key", fmt.Sprintf("the key must be 1 to %d bytes", s.cfg.Ingest.MaxKeyBytes))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	st, err := s.Lookup(ctx, key)
	switch {
	case err == nil:
		problem.WriteJSON(w, http.StatusOK, st)
	case errors.Is(err, ErrUnknownWrite):
		writeProblem(w, http.StatusNotFound, "key", fmt.Sprintf("no write with key %q: never accepted, or committed and its record removed", key))
	default:
		writeProblem(w, http.StatusServiceUnavailable, "", err.Error())
	}
}

func (s *Service) getStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	st, err := s.Status(ctx)
	if err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "", "JetStream: "+err.Error())
		return
	}
	problem.WriteJSON(w, http.StatusOK, st)
}

// DeadJSON is one dead-lettered write as GET /v1/dlq lists it.
type DeadJSON struct {
	Key        string          `json:"key"`
	Kind       string          `json:"kind"`
	Attempts   int             `json:"attempts"`
	LastError  string          `json:"last_error"`
	AcceptedAt time.Time       `json:"accepted_at"`
	DeadAt     time.Time       `json:"dead_at"`
	Payload    json.RawMessage `json:"payload"`
}

func deadJSON(d DeadWrite) DeadJSON {
	p := json.RawMessage(d.Payload)
	if !json.Valid(p) {
		p, _ = json.Marshal(string(d.Payload))
	}
	return DeadJSON{Key: d.Key, Kind: d.Kind, Attempts: d.Attempts, LastError: d.LastError, AcceptedAt: d.AcceptedAt, DeadAt: d.DeadAt, Payload: p}
}

func (s *Service) listDead(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeProblem(w, http.StatusBadRequest, "limit", fmt.Sprintf("limit %q must be a non-negative integer", v))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	ds, err := s.Dead(ctx, limit)
	if err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "", "JetStream: "+err.Error())
		return
	}
	out := make([]DeadJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, deadJSON(d))
	}
	problem.WriteJSON(w, http.StatusOK, map[string]any{"writes": out})
}

// RedriveRequest is the body of POST /v1/dlq/redrive: one key, or all.
type RedriveRequest struct {
	Key string `json:"key,omitempty"`
	All bool   `json:"all,omitempty"`
}

// RedriveResult is its answer.
type RedriveResult struct {
	// Redriven are back in the log; AlreadyRedriven were not dead any more
	// (pending or committed: a repeated redrive).
	Redriven        []string `json:"redriven"`
	AlreadyRedriven []string `json:"already_redriven"`
}

func (s *Service) redrive(w http.ResponseWriter, r *http.Request) {
	var req RedriveRequest
	if p := problem.DecodeJSON(w, r, 64<<10, &req); p != nil {
		writeProblem(w, p.Status, p.Field, p.Detail)
		return
	}
	if (req.Key == "") == !req.All {
		writeProblem(w, http.StatusBadRequest, "key", `give either "key" or "all": true`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	res := RedriveResult{Redriven: []string{}, AlreadyRedriven: []string{}}
	keys := []string{req.Key}
	if req.All {
		ds, err := s.Dead(ctx, 0)
		if err != nil {
			writeProblem(w, http.StatusServiceUnavailable, "", "JetStream: "+err.Error())
			return
		}
		keys = keys[:0]
		for _, d := range ds {
			keys = append(keys, d.Key)
		}
	}
	for _, k := range keys {
		_, err := s.Redrive(ctx, k)
		if errors.Is(err, ErrNotDead) {
			if st, lerr := s.Lookup(ctx, k); lerr == nil && st.Status != StatusDead {
				res.AlreadyRedriven = append(res.AlreadyRedriven, k)
				continue
			}
			if !req.All {
				writeProblem(w, http.StatusNotFound, "key", fmt.Sprintf("no dead-lettered write with key %q", k))
				return
			}
			continue // dropped meanwhile
		}
		if err != nil {
			writeProblem(w, http.StatusServiceUnavailable, "", fmt.Sprintf("redrive %q: %v (redriven so far: %d; redrive again, it applies once)", k, err, len(res.Redriven)))
			return
		}
		res.Redriven = append(res.Redriven, k)
	}
	problem.WriteJSON(w, http.StatusOK, res)
}

func (s *Service) drop(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	d, err := s.Drop(ctx, key)
	switch {
	case errors.Is(err, ErrNotDead):
		writeProblem(w, http.StatusNotFound, "key", fmt.Sprintf("no dead-lettered write with key %q", key))
	case err != nil:
		writeProblem(w, http.StatusServiceUnavailable, "", err.Error())
	default:
		problem.WriteJSON(w, http.StatusOK, map[string]any{"dropped": d.Key})
	}
}
