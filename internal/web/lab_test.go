package web

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/config"
)

func testLab(t *testing.T) (*Lab, *httptest.Server) {
	t.Helper()
	cfg := config.Default()
	cfg.Resolve()
	l := New(Config{Deployment: cfg, AdminToken: "s3cret"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := http.NewServeMux()
	l.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return l, srv
}

func do(t *testing.T, c *http.Client, method, url, auth, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp, v
}

func TestLabAuth(t *testing.T) {
	_, srv := testLab(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// The page itself is public; the lab's routes are not.
	resp, _ := do(t, noRedirect, "GET", srv.URL+"/", "", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, route := range []struct{ method, path string }{
		{"GET", "/lab/state"}, {"GET", "/lab/stream"}, {"POST", "/lab/load"}, {"DELETE", "/lab/load"},
		{"POST", "/lab/drills"}, {"POST", "/lab/switchover"}, {"POST", "/lab/reset"},
	} {
		if resp, _ := do(t, noRedirect, route.method, srv.URL+route.path, "", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", route.method, route.path, resp.StatusCode)
		}
		if resp, _ := do(t, noRedirect, route.method, srv.URL+route.path, "wrong", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token: %d, want 401", route.method, route.path, resp.StatusCode)
		}
	}

	// A wrong token in the link sets no cookie.
	resp, _ = do(t, noRedirect, "GET", srv.URL+"/?token=wrong", "", "")
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong link token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	// The right one becomes an HttpOnly, SameSite=Strict cookie and the
	// token leaves the address bar.
	resp, _ = do(t, noRedirect, "GET", srv.URL+"/?token=s3cret", "", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("link: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v", cookies)
	}
	req, _ := http.NewRequest("DELETE", srv.URL+"/lab/load", nil)
	req.AddCookie(cookies[0])
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK {
		t.Fatalf("with the cookie: %d", r2.StatusCode)
	}

	// Assets are served; nothing else under /assets.
	if resp, _ := do(t, noRedirect, "GET", srv.URL+"/assets/app.js", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("app.js: %d", resp.StatusCode)
	}
	if resp, _ := do(t, noRedirect, "GET", srv.URL+"/assets/nope.js", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown asset: %d", resp.StatusCode)
	}
}

func TestLabBadInput(t *testing.T) {
	l, srv := testLab(t)
	for _, tt := range []struct {
		name, path, body string
		status           int
		field            string
	}{
		{"load unknown path", "/lab/load", `{"path":"carrier-pigeon","rate":10}`, 400, "path"},
		{"load rate", "/lab/load", `{"path":"proxy","rate":-3}`, 400, "rate"},
		{"load unknown field", "/lab/load", `{"path":"proxy","rps":3}`, 400, "rps"},
		{"load not JSON", "/lab/load", `path=proxy`, 400, ""},
		{"load too big", "/lab/load", `{"path":"` + strings.Repeat("x", 5000) + `"}`, 413, ""},
		{"drill unknown scenario", "/lab/drills", `{"scenario":"meteor","path":"proxy"}`, 400, "scenario"},
		{"drill unknown path", "/lab/drills", `{"scenario":"kill-primary","path":"fax"}`, 400, "path"},
		{"drill rate", "/lab/drills", `{"scenario":"kill-primary","path":"proxy","rate":1e9}`, 400, "rate"},
		{"drill duration", "/lab/drills", `{"scenario":"kill-primary","path":"proxy","duration":"soon"}`, 400, "duration"},
		{"drill too short", "/lab/drills", `{"scenario":"kill-primary","path":"proxy","duration":"1s"}`, 400, "duration"},
		{"drill pause", "/lab/drills", `{"scenario":"pause-primary","path":"proxy","pause":"-1s"}`, 400, "pause"},
	} {
		resp, p := do(t, http.DefaultClient, "POST", srv.URL+tt.path, "s3cret", tt.body)
		if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s, want %d problem+json", tt.name, resp.StatusCode, resp.Header.Get("Content-Type"), tt.status)
			continue
		}
		if f, _ := p["field"].(string); f != tt.field {
			t.Errorf("%s: field %q, want %q (%v)", tt.name, f, tt.field, p["detail"])
		}
	}

	// One drill at a time; no reset or switchover under a drill. Nothing
	// was started by any of the refusals above.
	l.mu.Lock()
	if l.load != nil || l.drill.Running {
		l.mu.Unlock()
		t.Fatal("a refused request started something")
	}
	l.drill = DrillState{Running: true, Name: "kill-primary-proxy"}
	l.mu.Unlock()
	for _, path := range []string{"/lab/drills", "/lab/reset", "/lab/switchover"} {
		body := ""
		if path == "/lab/drills" {
			body = `{"scenario":"kill-primary","path":"proxy"}`
		}
		if resp, p := do(t, http.DefaultClient, "POST", srv.URL+path, "s3cret", body); resp.StatusCode != http.StatusConflict {
			t.Errorf("%s during a drill: %d %v, want 409", path, resp.StatusCode, p)
		}
	}
}
