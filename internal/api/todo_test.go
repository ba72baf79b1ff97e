package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/oauth"
	"github.com/holdfast/holdfast/internal/postgres"
	"github.com/holdfast/holdfast/internal/testutil"
)

// todoFixture is the ToDo API on a real PostgreSQL, with real OAuth2
// tokens and the durable buffer (embedded NATS) for buffered writes.
type todoFixture struct {
	t     *testing.T
	pg    *testutil.Postgres
	pool  *pgxpool.Pool
	keys  *oauth.KeySet
	auth  *oauth.Server
	buf   *buffer.Service
	srv   *httptest.Server
	token string // both scopes
}

const (
	clientRW, secretRW = "rw", "rw-secret-0123456789"
	clientRO, secretRO = "ro", "ro-secret-0123456789"
)

func startTodoFixture(t *testing.T, limiter *RateLimiter, timeout time.Duration) *todoFixture {
	t.Helper()
	f := &todoFixture{t: t, pg: testutil.StartPostgres(t)}
	ctx := context.Background()
	var err error
	if f.pool, err = pgxpool.New(ctx, f.pg.DSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.pool.Close)
	store := NewStore(f.pool, nil)
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if f.keys, err = oauth.LoadOrCreateKeys(filepath.Join(t.TempDir(), "keys.json")); err != nil {
		t.Fatal(err)
	}
	f.auth, err = oauth.NewServer(oauth.ServerConfig{Keys: f.keys, Issuer: "holdfast", Audience: "holdfast-api",
		Clients: []oauth.Client{
			{ID: clientRW, SecretHash: oauth.HashSecret(secretRW), Scopes: []string{ScopeRead, ScopeUpsertDelete}},
			{ID: clientRO, SecretHash: oauth.HashSecret(secretRO), Scopes: []string{ScopeRead}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.buf, err = buffer.StartService(ctx, buffer.ServiceConfig{
		Embedded:  buffer.EmbeddedConfig{Addr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)), StoreDir: t.TempDir()},
		Committer: buffer.DefaultCommitterConfig(f.pg.DSN), Ingest: buffer.DefaultIngestConfig(),
		Handlers: TodoHandlers(),
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.buf.Close)
	mux := http.NewServeMux()
	f.auth.Register(mux)
	f.buf.Register(mux)
	NewTodoAPI(TodoConfig{Mode: ModeDirect, MaxBody: 4096, Timeout: timeout}, store, f.buf, RateLimited(limiter, OAuth(f.auth))).Register(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.token = f.getToken(clientRW, secretRW, "")
	return f
}

// getToken gets an access token with the client-credentials grant.
func (f *todoFixture) getToken(id, secret, scope string) string {
	f.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, _ := http.NewRequest("POST", f.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		f.t.Fatalf("token: HTTP %d, %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

type reply struct {
	code   int
	header http.Header
	body   []byte
}

func (r reply) todo(t *testing.T) Todo {
	t.Helper()
	var td Todo
	if err := json.Unmarshal(r.body, &td); err != nil {
		t.Fatalf("not a todo: %s", r.body)
	}
	return td
}

func (r reply) problemField() string {
	var p struct{ Field string }
	_ = json.Unmarshal(r.body, &p)
	return p.Field
}

// do sends a request with the fixture's token (headers: name, value...).
func (f *todoFixture) do(method, path, body string, headers ...string) reply {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

func TestTodoCRUD(t *testing.T) {
	f := startTodoFixture(t, nil, 10*time.Second)
	// Create, with text that looks like SQL and markup: stored verbatim.
	const task = `Robert'); DROP TABLE todos;-- <script>alert(1)</script> ünïcödé`
	body, _ := json.Marshal(map[string]string{"task": task, "status": "wip"})
	r := f.do("POST", "/v1/todos", string(body))
	if r.code != http.StatusCreated {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	td := r.todo(t)
	if td.Task != task || td.Status != "wip" || td.Version != 1 || r.header.Get("ETag") != `"1"` || r.header.Get("Location") != fmt.Sprintf("/v1/todos/%d", td.ID) {
		t.Fatalf("created %+v, headers %v", td, r.header)
	}
	path := fmt.Sprintf("/v1/todos/%d", td.ID)
	if r := f.do("GET", path, "", "Consistency", "strong"); r.code != http.StatusOK || r.todo(t).Task != task {
		t.Fatalf("get: %d %s", r.code, r.body)
	}
	if r := f.do("GET", path, "", "If-None-Match", `"1"`); r.code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", r.code)
	}
	// Update with If-Match; a stale version is 412 (header) or 409 (body).
	r = f.do("PUT", path, `{"task":"renamed","status":"done"}`, "If-Match", `"1"`)
	if r.code != http.StatusOK || r.todo(t).Version != 2 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("update: %d %s", r.code, r.body)
	}
	if r := f.do("PUT", path, `{"task":"again","status":"done"}`, "If-Match", `"1"`); r.code != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %d %s", r.code, r.body)
	}
	if r := f.do("PUT", path, `{"task":"again","status":"done","version":1}`); r.code != http.StatusConflict || r.problemField() != "version" {
		t.Fatalf("stale body version: %d %s", r.code, r.body)
	}
	if r := f.do("PUT", "/v1/todos/999999", `{"task":"x","status":"done"}`); r.code != http.StatusNotFound {
		t.Fatalf("update of a missing todo: %d", r.code)
	}
	// List with keyset pagination and a status filter.
	for i := range 5 {
		if r := f.do("POST", "/v1/todos", fmt.Sprintf(`{"task":"t%d"}`, i)); r.code != http.StatusCreated {
			t.Fatalf("create %d: %d %s", i, r.code, r.body)
		}
	}
	var seen []int64
	cursor := ""
	for range 10 {
		r := f.do("GET", "/v1/todos?limit=2&status=todo&cursor="+cursor, "", "Consistency", "strong")
		var page struct {
			Todos      []Todo
			NextCursor string `json:"next_cursor"`
		}
		if r.code != http.StatusOK || json.Unmarshal(r.body, &page) != nil {
			t.Fatalf("list: %d %s", r.code, r.body)
		}
		for _, x := range page.Todos {
			if x.Status != "todo" {
				t.Fatalf("status filter let %+v through", x)
			}
			seen = append(seen, x.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != 5 || seen[0] >= seen[4] {
		t.Fatalf("pages gave %v, want the 5 todo items in id order", seen)
	}
	// Delete: If-Match stale is 412; then 204, then 404.
	if r := f.do("DELETE", path, "", "If-Match", `"1"`); r.code != http.StatusPreconditionFailed {
		t.Fatalf("stale delete: %d", r.code)
	}
	if r := f.do("DELETE", path, ""); r.code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := f.do("GET", path, "", "Consistency", "strong"); r.code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", r.code)
	}

	// The reference API's shapes.
	r = f.do("POST", "/v1", `{"task":"Sample Task new","status":"wip"}`)
	if r.code != http.StatusCreated {
		t.Fatalf("POST /v1 create: %d %s", r.code, r.body)
	}
	id := r.todo(t).ID
	if r := f.do("POST", "/v1", fmt.Sprintf(`{"id":"%d","task":"Sample Task Updated","status":"done"}`, id)); r.code != http.StatusOK || r.todo(t).Status != "done" {
		t.Fatalf("POST /v1 update: %d %s", r.code, r.body)
	}
	if r := f.do("GET", fmt.Sprintf("/v1?id=%d", id), "", "Consistency", "strong"); r.code != http.StatusOK || r.todo(t).Task != "Sample Task Updated" {
		t.Fatalf("GET /v1?id=: %d %s", r.code, r.body)
	}
	if r := f.do("DELETE", "/v1", fmt.Sprintf(`{"id":"%d"}`, id)); r.code != http.StatusNoContent {
		t.Fatalf("DELETE /v1: %d %s", r.code, r.body)
	}

	// Buffered mode: 202 and a write to follow, then the row.
	r = f.do("POST", "/v1/todos?mode=buffered", `{"task":"buffered one"}`, "Idempotency-Key", "b1")
	if r.code != http.StatusAccepted || r.header.Get("Location") != "/v1/writes/rw:b1" {
		t.Fatalf("buffered create: %d %s %v", r.code, r.body, r.header)
	}
	testutil.Eventually(t, 30*time.Second, "the buffered create committed", func() error {
		r := f.do("GET", r.header.Get("Location"), "")
		if !bytes.Contains(r.body, []byte(`"status":"committed"`)) {
			return fmt.Errorf("%d %s", r.code, r.body)
		}
		return nil
	})
	var bid int64
	if err := f.pool.QueryRow(context.Background(), "SELECT id FROM todos WHERE task = 'buffered one'").Scan(&bid); err != nil {
		t.Fatal(err)
	}
	r = f.do("PUT", fmt.Sprintf("/v1/todos/%d?mode=buffered", bid), `{"task":"buffered two","status":"done"}`, "If-Match", `"1"`)
	if r.code != http.StatusAccepted {
		t.Fatalf("buffered update: %d %s", r.code, r.body)
	}
	testutil.Eventually(t, 30*time.Second, "the buffered update committed", func() error {
		r := f.do("GET", fmt.Sprintf("/v1/todos/%d", bid), "", "Consistency", "strong")
		if r.code != http.StatusOK || r.todo(t).Task != "buffered two" {
			return fmt.Errorf("%d %s", r.code, r.body)
		}
		return nil
	})
	if r := f.do("DELETE", fmt.Sprintf("/v1/todos/%d?mode=buffered", bid), ""); r.code != http.StatusAccepted {
		t.Fatalf("buffered delete: %d %s", r.code, r.body)
	}
	testutil.Eventually(t, 30*time.Second, "the buffered delete committed", func() error {
		if r := f.do("GET", fmt.Sprintf("/v1/todos/%d", bid), "", "Consistency", "strong"); r.code != http.StatusNotFound {
			return fmt.Errorf("%d", r.code)
		}
		return nil
	})
}

// TestTodoIdempotentCreate: concurrent retries of one create make one row
// and all get it; reusing the key for another body is refused.
func TestTodoIdempotentCreate(t *testing.T) {
	f := startTodoFixture(t, nil, 10*time.Second)
	const n = 16
	ids := make([]int64, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.do("POST", "/v1/todos", `{"task":"pay the rent"}`, "Idempotency-Key", "rent-2026-11")
			codes[i] = r.code
			if r.code == http.StatusCreated {
				var td Todo
				_ = json.Unmarshal(r.body, &td)
				ids[i] = td.ID
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != http.StatusCreated || ids[i] != ids[0] {
			t.Fatalf("retry %d: HTTP %d, id %d (first %d)", i, codes[i], ids[i], ids[0])
		}
	}
	var rows int
	if err := f.pool.QueryRow(context.Background(), "SELECT count(*) FROM todos WHERE task = 'pay the rent'").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d rows (%v), want 1", rows, err)
	}
	if r := f.do("POST", "/v1/todos", `{"task":"something else"}`, "Idempotency-Key", "rent-2026-11"); r.code != http.StatusUnprocessableEntity || r.problemField() != "Idempotency-Key" {
		t.Fatalf("key reused with another body: %d %s", r.code, r.body)
	}
	// Another client's same key is its own.
	f.token = f.getToken(clientRO, secretRO, "")
	if r := f.do("POST", "/v1/todos", `{"task":"pay the rent"}`, "Idempotency-Key", "rent-2026-11"); r.code != http.StatusForbidden {
		t.Fatalf("read-only client creating: %d", r.code)
	}
}

func TestTodoAuth(t *testing.T) {
	f := startTodoFixture(t, nil, 10*time.Second)
	good := f.token
	ro := f.getToken(clientRO, secretRO, "")
	rwReadOnly := f.getToken(clientRW, secretRW, ScopeRead)
	expired, _, err := (&oauth.Issuer{Keys: f.keys, Issuer: "holdfast", Audience: "holdfast-api", Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}).Issue(clientRW, []string{ScopeUpsertDelete})
	if err != nil {
		t.Fatal(err)
	}
	otherAud, _, _ := (&oauth.Issuer{Keys: f.keys, Issuer: "holdfast", Audience: "another-api"}).Issue(clientRW, []string{ScopeUpsertDelete})
	forged := good[:len(good)-4] + "AAAA"
	tests := []struct {
		name, token, method, path string
		code                      int
		wwwAuth                   string
	}{
		{"no token", "", "GET", "/v1/todos", http.StatusUnauthorized, `Bearer realm="holdfast"`},
		{"expired", expired, "GET", "/v1/todos", http.StatusUnauthorized, `error="invalid_token"`},
		{"forged", forged, "GET", "/v1/todos", http.StatusUnauthorized, `error="invalid_token"`},
		{"wrong audience", otherAud, "GET", "/v1/todos", http.StatusUnauthorized, `error="invalid_token"`},
		{"read scope reads", ro, "GET", "/v1/todos", http.StatusOK, ""},
		{"read scope cannot write", ro, "DELETE", "/v1/todos/1", http.StatusForbidden, `error="insufficient_scope"`},
		{"narrowed token cannot write", rwReadOnly, "DELETE", "/v1/todos/1", http.StatusForbidden, `error="insufficient_scope"`},
		{"write scope reads", good, "GET", "/v1/todos", http.StatusOK, ""},
	}
	for _, tt := range tests {
		f.token = tt.token
		r := f.do(tt.method, tt.path, "", "Authorization", map[bool]string{true: "", false: "Bearer " + tt.token}[tt.token == ""])
		if r.code != tt.code || !strings.Contains(r.header.Get("WWW-Authenticate"), tt.wwwAuth) {
			t.Errorf("%s: %d %q %s", tt.name, r.code, r.header.Get("WWW-Authenticate"), r.body)
		}
	}
}

func TestTodoBadInput(t *testing.T) {
	f := startTodoFixture(t, nil, 10*time.Second)
	long := strings.Repeat("é", 201)
	tests := []struct {
		name, method, path, body string
		headers                  []string
		code                     int
		field                    string
	}{
		{"malformed JSON", "POST", "/v1/todos", `{"task":`, nil, 400, ""},
		{"unknown field", "POST", "/v1/todos", `{"task":"x","owner":"me"}`, nil, 400, "owner"},
		{"wrong type", "POST", "/v1/todos", `{"task":5}`, nil, 400, "task"},
		{"missing task", "POST", "/v1/todos", `{"status":"todo"}`, nil, 400, "task"},
		{"empty task", "POST", "/v1/todos", `{"task":""}`, nil, 400, "task"},
		{"task of 201 characters", "POST", "/v1/todos", `{"task":"` + long + `"}`, nil, 400, "task"},
		{"bad status", "POST", "/v1/todos", `{"task":"x","status":"later"}`, nil, 400, "status"},
		{"trailing data", "POST", "/v1/todos", `{"task":"x"} {}`, nil, 400, ""},
		{"not JSON", "POST", "/v1/todos", `task=x`, []string{"Content-Type", "text/plain"}, 415, "Content-Type"},
		{"too large", "POST", "/v1/todos", `{"task":"` + strings.Repeat("x", 5000) + `"}`, nil, 413, ""},
		{"bad id", "GET", "/v1/todos/abc", "", nil, 400, "id"},
		{"negative id", "GET", "/v1/todos/-4", "", nil, 400, "id"},
		{"missing todo", "GET", "/v1/todos/424242", "", []string{"Consistency", "strong"}, 404, "id"},
		{"bad If-Match", "PUT", "/v1/todos/1", `{"task":"x","status":"todo"}`, []string{"If-Match", "soon"}, 400, "If-Match"},
		{"update without status", "PUT", "/v1/todos/1", `{"task":"x"}`, nil, 400, "status"},
		{"bad limit", "GET", "/v1/todos?limit=0", "", nil, 400, "limit"},
		{"bad cursor", "GET", "/v1/todos?cursor=zz", "", nil, 400, "cursor"},
		{"bad status filter", "GET", "/v1/todos?status=x", "", nil, 400, "status"},
		{"bad mode", "POST", "/v1/todos?mode=eventually", `{"task":"x"}`, nil, 400, "mode"},
		{"version on create", "POST", "/v1/todos", `{"task":"x","version":3}`, nil, 400, "version"},
		{"reference delete without id", "DELETE", "/v1", `{}`, nil, 400, "id"},
		{"reference bad id", "GET", "/v1?id=x", "", nil, 400, "id"},
		{"long idempotency key", "POST", "/v1/todos", `{"task":"x"}`, []string{"Idempotency-Key", strings.Repeat("k", 200)}, 400, "Idempotency-Key"},
	}
	for _, tt := range tests {
		r := f.do(tt.method, tt.path, tt.body, tt.headers...)
		if r.code != tt.code || r.problemField() != tt.field || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d field %q (%s), want %d field %q", tt.name, r.code, r.problemField(), r.body, tt.code, tt.field)
		}
	}
	var n int
	if err := f.pool.QueryRow(context.Background(), "SELECT count(*) FROM todos").Scan(&n); err != nil || n != 0 {
		t.Fatalf("bad requests stored %d todos (%v)", n, err)
	}
}

func TestTodoRateLimitAndUnavailable(t *testing.T) {
	l := NewRateLimiter(1, 3)
	f := startTodoFixture(t, l, time.Second)
	codes := []int{}
	for range 4 {
		codes = append(codes, f.do("GET", "/v1/todos", "").code)
	}
	r := f.do("GET", "/v1/todos", "")
	if fmt.Sprint(codes) != "[200 200 200 429]" || r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("codes %v then %d (Retry-After %q)", codes, r.code, r.header.Get("Retry-After"))
	}
	// With the database down, a direct read is 503 with Retry-After (as
	// another client: the limit is per client).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.pg.Inst.Stop(ctx, postgres.StopImmediate); err != nil {
		t.Fatal(err)
	}
	rw := f.token
	f.token = f.getToken(clientRO, secretRO, "")
	r = f.do("GET", "/v1/todos/1", "", "Consistency", "strong")
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("database down: %d %s", r.code, r.body)
	}
	// A buffered write is still accepted (once the bucket has a token).
	f.token = rw
	testutil.Eventually(t, 30*time.Second, "a buffered create with the database down", func() error {
		if r := f.do("POST", "/v1/todos?mode=buffered", `{"task":"while down"}`); r.code != http.StatusAccepted {
			return fmt.Errorf("%d %s", r.code, r.body)
		}
		return nil
	})
}
