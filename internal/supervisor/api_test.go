package supervisor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/supervisor"
	"github.com/holdfast/holdfast/internal/testutil"
)

// demoToken gets a token for the demo client holdfast up created.
func demoToken(t *testing.T, h *harness) string {
	t.Helper()
	f, err := os.Open(filepath.Join(h.cfg.Postgres.SecretsDir, supervisor.ClientSecretsEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vals[k] = v
		}
	}
	req, _ := http.NewRequest("POST", "http://"+h.cfg.API.Addr+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(vals["CLIENT_ID"], vals["CLIENT_SECRET"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: HTTP %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// TestTodoAPIThroughPrimaryKill: clients create todos through the ToDo API
// of holdfast up, directly and through the buffer, while the primary's
// PostgreSQL is killed. No request fails, and every todo the API
// acknowledged is in the database once the writes settle.
func TestTodoAPIThroughPrimaryKill(t *testing.T) {
	h := startCluster(t)
	token := demoToken(t, h)
	base := "http://" + h.cfg.API.Addr
	var (
		mu         sync.Mutex
		created    []int64
		buffered   []string
		failures   []string
		afterKill  atomic.Bool
		sinceKill  atomic.Int64
		stopWrites = make(chan struct{})
		wg         sync.WaitGroup
	)
	client := &http.Client{Timeout: 60 * time.Second}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopWrites:
					return
				default:
				}
				mode := "direct"
				if w == 3 {
					mode = "buffered"
				}
				req, _ := http.NewRequest("POST", base+"/v1/todos?mode="+mode, strings.NewReader(fmt.Sprintf(`{"task":"w%d-%d"}`, w, i)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusCreated:
					var td struct{ ID int64 }
					_ = json.Unmarshal(body, &td)
					created = append(created, td.ID)
				case resp.StatusCode == http.StatusAccepted:
					buffered = append(buffered, resp.Header.Get("Location"))
				default:
					failures = append(failures, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body))
				}
				mu.Unlock()
				if afterKill.Load() {
					sinceKill.Add(1)
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(created) + len(buffered) }
	testutil.Eventually(t, 60*time.Second, "writes before the kill", func() error {
		if n := count(); n < 100 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	old := h.primary()
	if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	afterKill.Store(true)
	p := h.newPrimary(old)
	testutil.Eventually(t, 60*time.Second, "writes on the new primary", func() error {
		if n := sinceKill.Load(); n < 200 {
			return fmt.Errorf("%d since the kill", n)
		}
		return nil
	})
	close(stopWrites)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed across the failover, first: %s", len(failures), failures[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.dsn(p))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var missing int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM unnest($1::bigint[]) AS c(id) WHERE NOT EXISTS (SELECT 1 FROM todos WHERE todos.id = c.id)", created).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Fatalf("%d of %d created todos are missing after the failover", missing, len(created))
	}
	for _, loc := range buffered {
		testutil.Eventually(t, 60*time.Second, "buffered write "+loc, func() error {
			resp, err := http.Get(base + loc)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), `"status":"committed"`) {
				return fmt.Errorf("%s", b)
			}
			return nil
		})
	}
	// Then the whole CRUD cycle through the proxy, in both write modes.
	for _, mode := range []string{"direct", "buffered"} {
		crudRound(t, base, token, mode)
	}
	t.Logf("%d direct creates and %d buffered, none failed across the kill of %s (new primary %s)", len(created), len(buffered), old.Name, p.Name)
}

// crudRound creates a todo, reads it from the writer, replaces it and
// deletes it in mode, through the api server of holdfast up.
func crudRound(t *testing.T, base, token, mode string) {
	t.Helper()
	call := func(method, path, body string, headers ...string) (int, http.Header, []byte) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	code, _, body := call("POST", "/v1/todos", `{"task":"crud `+mode+`"}`)
	var td struct{ ID int64 }
	if code != http.StatusCreated || json.Unmarshal(body, &td) != nil {
		t.Fatalf("%s create: %d %s", mode, code, body)
	}
	path := fmt.Sprintf("/v1/todos/%d", td.ID)
	code, hdr, body := call("GET", path, "", "Consistency", "strong")
	if code != http.StatusOK || hdr.Get("ETag") != `"1"` {
		t.Fatalf("%s get: %d %s", mode, code, body)
	}
	code, _, body = call("PUT", path+"?mode="+mode, `{"task":"crud renamed","status":"done"}`, "If-Match", `"1"`)
	if code != map[string]int{"direct": http.StatusOK, "buffered": http.StatusAccepted}[mode] {
		t.Fatalf("%s update: %d %s", mode, code, body)
	}
	testutil.Eventually(t, 30*time.Second, mode+" update visible", func() error {
		code, hdr, body := call("GET", path, "", "Consistency", "strong")
		if code != http.StatusOK || hdr.Get("ETag") != `"2"` || !strings.Contains(string(body), "crud renamed") {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	code, _, body = call("DELETE", path+"?mode="+mode, "", "If-Match", `"2"`)
	if code != map[string]int{"direct": http.StatusNoContent, "buffered": http.StatusAccepted}[mode] {
		t.Fatalf("%s delete: %d %s", mode, code, body)
	}
	testutil.Eventually(t, 30*time.Second, mode+" delete visible", func() error {
		if code, _, body := call("GET", path, "", "Consistency", "strong"); code != http.StatusNotFound {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
}
