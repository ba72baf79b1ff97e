package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/problem"
)

// Scopes of the ToDo API.
const (
	ScopeRead         = "api/read"
	ScopeUpsertDelete = "api/upsert-delete"
)

// Write modes.
const (
	ModeDirect   = "direct"   // through the proxy writer: 201/200 with the row
	ModeBuffered = "buffered" // through the durable buffer: 202 and a write key
)

// Authorizer checks bearer tokens (the oauth package).
type Authorizer interface {
	// Require lets a request through if its token carries one of scopes.
	Require(scopes ...string) func(http.HandlerFunc) http.HandlerFunc
	// ClientID is the authenticated client of a request Require let
	// through.
	ClientID(ctx context.Context) string
}

// Submitter stores buffered writes durably (*buffer.Service).
type Submitter interface {
	Submit(ctx context.Context, kind, key string, payload []byte) error
}

// TodoConfig configures the ToDo API.
type TodoConfig struct {
	// Mode is the default write mode; ?mode= overrides it per request.
	Mode string
	// MaxBody bounds request bodies (413 beyond).
	MaxBody int64
	// Timeout bounds one request's database work (503 beyond).
	Timeout time.Duration
	// MaxPage is the largest ?limit= of a list (default page: 50).
	MaxPage int
	// Log hears of 5xx answers (nil: discarded).
	Log *slog.Logger
}

// TodoAPI serves the ToDo routes.
type TodoAPI struct {
	cfg    TodoConfig
	store  *Store
	buffer Submitter // nil: buffered mode unavailable
	auth   Authorizer
}

// NewTodoAPI serves store's todos; buf may be nil.
func NewTodoAPI(cfg TodoConfig, store *Store, buf Submitter, auth Authorizer) *TodoAPI {
	if cfg.MaxPage == 0 {
		cfg.MaxPage = 500
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &TodoAPI{cfg: cfg, store: store, buffer: buf, auth: auth}
}

// Register adds the routes to mux.
func (a *TodoAPI) Register(mux *http.ServeMux) {
	read := a.auth.Require(ScopeRead, ScopeUpsertDelete)
	write := a.auth.Require(ScopeUpsertDelete)
	mux.HandleFunc("GET /v1/todos", read(a.list))
	mux.HandleFunc("GET /v1/todos/{id}", read(a.get))
	mux.HandleFunc("POST /v1/todos", write(a.create))
	mux.HandleFunc("PUT /v1/todos/{id}", write(a.update))
	mux.HandleFunc("DELETE /v1/todos/{id}", write(a.delete))
	// The reference API's shapes.
	mux.HandleFunc("GET /v1", read(a.getByQuery))
	mux.HandleFunc("POST /v1", write(a.upsertByBody))
	mux.HandleFunc("DELETE /v1", write(a.deleteByBody))
}

// todoInput is the body of a create or update.
type todoInput struct {
	Task   *string `json:"task"`
	Status *string `json:"status"`
	// Version, on an update, must be the todo's current version (409
	// otherwise); If-Match does the same with 412.
	Version *int64 `json:"version,omitempty"`
}

// referenceInput is the body of POST /v1 and DELETE /v1; the reference
// sends the id as a string.
type referenceInput struct {
	ID     json.RawMessage `json:"id"`
	Task   *string         `json:"task"`
	Status *string         `json:"status"`
}

// decode reads a JSON body into v: 415 if it is not JSON, 413 if too
// large, 400 naming the field for anything malformed or unknown.
func (a *TodoAPI) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if !problem.IsJSON(r) {
		problem.Write(w, http.StatusUnsupportedMediaType, "Content-Type", "send the body as application/json")
		return false
	}
	if p := problem.DecodeJSON(w, r, a.cfg.MaxBody, v); p != nil {
		problem.Write(w, p.Status, p.Field, p.Detail)
		return false
	}
	return true
}

// validate checks task and status; on create a missing status is "todo".
func validateTodo(task, status *string, create bool) (string, string, string, error) {
	if task == nil {
		return "", "", "task", errors.New("task is required")
	}
	if !utf8.ValidString(*task) {
		return "", "", "task", errors.New("task must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(*task); n < minTaskChars || n > maxTaskChars {
		return "", "", "task", fmt.Errorf("task must be %d to %d characters, not %d", minTaskChars, maxTaskChars, n)
	}
	if strings.ContainsRune(*task, 0) {
		return "", "", "task", errors.New("task must not contain NUL characters")
	}
	st := "todo"
	if status != nil {
		st = *status
	} else if !create {
		return "", "", "status", errors.New("status is required")
	}
	if !todoStatuses[st] {
		return "", "", "status", fmt.Errorf("status %q must be todo, wip or done", st)
	}
	return *task, st, "", nil
}

func parseID(s, field string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%s %q must be a positive integer", field, s)
	}
	return id, nil
}

// pathID parses a todo id, answering 400 if it is not one.
func pathID(w http.ResponseWriter, s string) (int64, bool) {
	id, err := parseID(s, "id")
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "id", err.Error())
		return 0, false
	}
	return id, true
}

// etag is a todo's entity tag: its version.
func etag(t Todo) string { return `"` + strconv.FormatInt(t.Version, 10) + `"` }

// ifMatch parses If-Match: 0 when absent or "*", the version otherwise.
func ifMatch(r *http.Request) (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, nil
	}
	v, ok := strings.CutPrefix(h, `"`)
	if v, ok2 := strings.CutSuffix(v, `"`); ok && ok2 {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf(`If-Match %q must be one entity tag as sent in ETag ("3") or *`, h)
}

func writeTodo(w http.ResponseWriter, status int, t Todo) {
	w.Header().Set("ETag", etag(t))
	problem.WriteJSON(w, status, t)
}

// dbError answers a store error.
func (a *TodoAPI) dbError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		problem.Write(w, http.StatusNotFound, "id", "no such todo")
	case errors.Is(err, ErrIdempotencyKey):
		problem.Write(w, http.StatusUnprocessableEntity, "Idempotency-Key", err.Error())
	case isCheckViolation(err):
		problem.Write(w, http.StatusBadRequest, "", "the database refused the todo: "+err.Error())
	case errors.Is(err, context.DeadlineExceeded) || buffer.Transient(err):
		a.cfg.Log.Warn("database unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusServiceUnavailable, "", "the database cannot be reached right now ("+err.Error()+"); retry")
	default:
		a.cfg.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "", err.Error())
	}
}

func (a *TodoAPI) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), a.cfg.Timeout)
}

// strong says whether a read must see the latest writes.
func strong(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Consistency"), "strong")
}

// mode is the write mode of a request.
func (a *TodoAPI) mode(w http.ResponseWriter, r *http.Request) (string, bool) {
	m := r.URL.Query().Get("mode")
	if m == "" {
		m = a.cfg.Mode
	}
	switch {
	case m == ModeDirect:
		return m, true
	case m == ModeBuffered && a.buffer != nil:
		return m, true
	case m == ModeBuffered:
		problem.Write(w, http.StatusBadRequest, "mode", "buffered writes are off (buffer.enabled is false)")
	default:
		problem.Write(w, http.StatusBadRequest, "mode", fmt.Sprintf("mode %q must be direct or buffered", m))
	}
	return "", false
}

func (a *TodoAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && !todoStatuses[status] {
		problem.Write(w, http.StatusBadRequest, "status", fmt.Sprintf("status %q must be todo, wip or done", status))
		return
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > a.cfg.MaxPage {
			problem.Write(w, http.StatusBadRequest, "limit", fmt.Sprintf("limit %q must be 1 to %d", v, a.cfg.MaxPage))
			return
		}
		limit = n
	}
	var after int64
	if c := q.Get("cursor"); c != "" {
		var err error
		if after, err = parseID(c, "cursor"); err != nil {
			problem.Write(w, http.StatusBadRequest, "cursor", err.Error()+" (use next_cursor of the previous page)")
			return
		}
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	todos, err := a.store.List(ctx, status, after, limit, strong(r))
	if err != nil {
		a.dbError(w, r, err)
		return
	}
	page := struct {
		Todos      []Todo `json:"todos"`
		NextCursor string `json:"next_cursor,omitempty"`
	}{Todos: todos}
	if len(todos) == limit {
		page.NextCursor = strconv.FormatInt(todos[len(todos)-1].ID, 10)
	}
	problem.WriteJSON(w, http.StatusOK, page)
}

func (a *TodoAPI) get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r.PathValue("id"))
	if !ok {
		return
	}
	a.getID(w, r, id)
}

func (a *TodoAPI) getByQuery(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r.URL.Query().Get("id"))
	if !ok {
		return
	}
	a.getID(w, r, id)
}

func (a *TodoAPI) getID(w http.ResponseWriter, r *http.Request, id int64) {
	ctx, cancel := a.ctx(r)
	defer cancel()
	t, err := a.store.Get(ctx, id, strong(r))
	if err != nil {
		a.dbError(w, r, err)
		return
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag(t) {
		w.Header().Set("ETag", etag(t))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeTodo(w, http.StatusOK, t)
}

// Buffered write kinds and their payload.
const (
	kindTodoCreate = "todo.create"
	kindTodoUpdate = "todo.update"
	kindTodoDelete = "todo.delete"
)

type todoWrite struct {
	ID        int64  `json:"id,omitempty"`
	Task      string `json:"task,omitempty"`
	Status    string `json:"status,omitempty"`
	IfVersion int64  `json:"if_version,omitempty"`
}

// submit hands a write to the buffer and answers 202 with where to follow
// it.
func (a *TodoAPI) submit(w http.ResponseWriter, r *http.Request, kind string, tw todoWrite) {
	key := uuid.NewString()
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		// Per client, like direct creates.
		key = a.auth.ClientID(r.Context()) + ":" + k
	}
	payload, _ := json.Marshal(tw)
	ctx, cancel := a.ctx(r)
	defer cancel()
	if err := a.buffer.Submit(ctx, kind, key, payload); err != nil {
		problem.Write(w, http.StatusServiceUnavailable, "", "the write could not be stored durably ("+err.Error()+"); retry with the same Idempotency-Key")
		return
	}
	w.Header().Set("Location", "/v1/writes/"+url.PathEscape(key))
	problem.WriteJSON(w, http.StatusAccepted, buffer.Accepted{Key: key, Status: "accepted"})
}

// maxIdempotencyKey bounds Idempotency-Key.
const maxIdempotencyKey = 128

func (a *TodoAPI) create(w http.ResponseWriter, r *http.Request) {
	mode, ok := a.mode(w, r)
	if !ok {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		problem.Write(w, http.StatusBadRequest, "Idempotency-Key", fmt.Sprintf("at most %d bytes", maxIdempotencyKey))
		return
	}
	var in todoInput
	if !a.decode(w, r, &in) {
		return
	}
	if in.Version != nil {
		problem.Write(w, http.StatusBadRequest, "version", "a new todo has no version")
		return
	}
	task, status, field, err := validateTodo(in.Task, in.Status, true)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, field, err.Error())
		return
	}
	if mode == ModeBuffered {
		a.submit(w, r, kindTodoCreate, todoWrite{Task: task, Status: status})
		return
	}
	a.createDirect(w, r, key, task, status)
}

func (a *TodoAPI) createDirect(w http.ResponseWriter, r *http.Request, key, task, status string) {
	h := sha256.Sum256([]byte(task + "\x00" + status))
	ctx, cancel := a.ctx(r)
	defer cancel()
	t, created, err := a.store.Create(ctx, a.auth.ClientID(r.Context()), key, h[:], task, status)
	if err != nil {
		a.dbError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/todos/"+strconv.FormatInt(t.ID, 10))
	if !created {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeTodo(w, http.StatusCreated, t)
}

func (a *TodoAPI) update(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r.PathValue("id"))
	if !ok {
		return
	}
	mode, ok := a.mode(w, r)
	if !ok {
		return
	}
	match, err := ifMatch(r)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "If-Match", err.Error())
		return
	}
	var in todoInput
	if !a.decode(w, r, &in) {
		return
	}
	task, status, field, err := validateTodo(in.Task, in.Status, false)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, field, err.Error())
		return
	}
	version, conflict := match, http.StatusPreconditionFailed
	if in.Version != nil {
		if match != 0 && *in.Version != match {
			problem.Write(w, http.StatusBadRequest, "version", "version and If-Match disagree")
			return
		}
		version, conflict = *in.Version, http.StatusConflict
	}
	if mode == ModeBuffered {
		a.submit(w, r, kindTodoUpdate, todoWrite{ID: id, Task: task, Status: status, IfVersion: version})
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	t, err := a.store.Update(ctx, id, version, task, status)
	if errors.Is(err, ErrVersion) {
		problem.Write(w, conflict, "version", fmt.Sprintf("todo %d is no longer at version %d: read it again and retry", id, version))
		return
	}
	if err != nil {
		a.dbError(w, r, err)
		return
	}
	writeTodo(w, http.StatusOK, t)
}

func (a *TodoAPI) delete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r.PathValue("id"))
	if !ok {
		return
	}
	a.deleteID(w, r, id)
}

func (a *TodoAPI) deleteID(w http.ResponseWriter, r *http.Request, id int64) {
	mode, ok := a.mode(w, r)
	if !ok {
		return
	}
	match, err := ifMatch(r)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "If-Match", err.Error())
		return
	}
	if mode == ModeBuffered {
		a.submit(w, r, kindTodoDelete, todoWrite{ID: id, IfVersion: match})
		return
	}
	ctx, cancel := a.ctx(r)
	defer cancel()
	err = a.store.Delete(ctx, id, match)
	if errors.Is(err, ErrVersion) {
		problem.Write(w, http.StatusPreconditionFailed, "If-Match", fmt.Sprintf("todo %d is no longer at version %d", id, match))
		return
	}
	if err != nil {
		a.dbError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// referenceID reads the reference API's id: a JSON string or number.
func referenceID(raw json.RawMessage) (int64, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw)
	}
	id, err := parseID(s, "id")
	return id, true, err
}

// upsertByBody is the reference's POST /v1: with an id it updates that
// todo, without one it creates a todo.
func (a *TodoAPI) upsertByBody(w http.ResponseWriter, r *http.Request) {
	mode, ok := a.mode(w, r)
	if !ok {
		return
	}
	var in referenceInput
	if !a.decode(w, r, &in) {
		return
	}
	id, hasID, err := referenceID(in.ID)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "id", err.Error())
		return
	}
	task, status, field, err := validateTodo(in.Task, in.Status, true)
	if err != nil {
		problem.Write(w, http.StatusBadRequest, field, err.Error())
		return
	}
	switch {
	case !hasID && mode == ModeBuffered:
		a.submit(w, r, kindTodoCreate, todoWrite{Task: task, Status: status})
	case !hasID:
		a.createDirect(w, r, r.Header.Get("Idempotency-Key"), task, status)
	case mode == ModeBuffered:
		a.submit(w, r, kindTodoUpdate, todoWrite{ID: id, Task: task, Status: status})
	default:
		ctx, cancel := a.ctx(r)
		defer cancel()
		t, err := a.store.Update(ctx, id, 0, task, status)
		if err != nil {
			a.dbError(w, r, err)
			return
		}
		writeTodo(w, http.StatusOK, t)
	}
}

// deleteByBody is the reference's DELETE /v1 with {"id": ...}.
func (a *TodoAPI) deleteByBody(w http.ResponseWriter, r *http.Request) {
	var in referenceInput
	if !a.decode(w, r, &in) {
		return
	}
	id, hasID, err := referenceID(in.ID)
	if err == nil && !hasID {
		err = errors.New("id is required")
	}
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "id", err.Error())
		return
	}
	a.deleteID(w, r, id)
}
