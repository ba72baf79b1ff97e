package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(good, []byte("cluster: prod\n"), 0o644)
	os.WriteFile(bad, []byte("cluster: prod\nregions:\n- name: home\n  members:\n  - {name: a, host: 127.0.0.1, port: 5432}\n  - {name: b, host: 127.0.0.1, port: 5432}\n"), 0o644)
	os.WriteFile(typo, []byte("failover:\n  lease_tll: 3s\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"config", "check", good}, exitOK, "valid"},
		{[]string{"config", "check", bad}, exitInvalid, "regions[0].members[1].port: 5432 is used by regions[0].members[0]"},
		{[]string{"config", "check", typo}, exitInvalid, "lease_tll"},
		{[]string{"config", "check", filepath.Join(dir, "missing.yaml")}, exitInvalid, "no such file"},
		{[]string{"config"}, exitInvalid, "Usage"},
		{[]string{"nonsense"}, exitInvalid, "unknown command"},
		{[]string{"agent", "--config", good}, exitInvalid, "--member are required"},
		{[]string{"agent", "--config", good, "--member", "zz"}, exitInvalid, `member "zz" is not in`},
		{[]string{"version"}, exitOK, "holdfast"},
		{[]string{"up", "--print-config"}, exitOK, "lease_ttl: 2s"},
	}
	for _, tt := range tests {
		code, out, errs := runCLI(tt.args...)
		if code != tt.code || !strings.Contains(out+errs, tt.want) {
			t.Errorf("holdfast %v = %d, %q %q; want %d and %q", tt.args, code, out, errs, tt.code, tt.want)
		}
	}
}

func TestEnvOverrideErrorsExitTwo(t *testing.T) {
	t.Setenv("HOLDFAST_FAILOVER_LEASE_TTL", "soon")
	code, _, errs := runCLI("up", "--print-config")
	if code != exitInvalid || !strings.Contains(errs, "failover.lease_ttl") {
		t.Fatalf("got %d %q", code, errs)
	}
}

// proxyConfig writes a config whose proxy.admin_addr is addr.
func proxyConfig(t *testing.T, addr string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "holdfast.yaml")
	if err := os.WriteFile(path, []byte("cluster: prod\nproxy:\n  admin_addr: \""+addr+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const cannedProxyStatus = `{"state":"serving","writer":{"member":"home-a","addr":"127.0.0.1:15432"},` +
	`"clients":{"writer":3,"reader":1},"servers":2,"waiting":0,"pool_mode":"transaction","pool_size":20,` +
	`"pools":[{"endpoint":"writer","member":"home-a","addr":"127.0.0.1:15432","user":"app","database":"app","open":3,"idle":1,"active":2,"waiting":0,"size":20},` +
	`{"endpoint":"reader","member":"home-b","addr":"127.0.0.1:15433","user":"app","database":"app","open":1,"idle":1,"active":0,"waiting":0,"size":20,"retired":true}],` +
	`"hold_window":"30s","uptime_seconds":3725,"goroutines":6,` +
	`"ended":{"writer":{"client_eof":12,"terminate":40,"client_reset":3},"reader":{"terminate":2}}}`

func TestProxyStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(cannedProxyStatus + "\n"))
	}))
	defer srv.Close()
	cfg := proxyConfig(t, srv.Listener.Addr().String())

	code, out, errs := runCLI("proxy", "status", "--config", cfg)
	if code != exitOK {
		t.Fatalf("proxy status = %d, %q", code, errs)
	}
	for _, want := range []string{
		"Proxy: serving  writer: home-a (127.0.0.1:15432)  uptime: 1h2m5s",
		"Clients: writer 3, reader 1  servers: 2  waiting: 0  pool_mode: transaction  pool_size: 20  hold_window: 30s",
		"ENDPOINT", "home-b (retired)",
		"Goroutines serving clients: 6  ended: writer client_eof 12, client_reset 3, terminate 40; reader terminate 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("proxy status output lacks %q:\n%s", want, out)
		}
	}
	var poolLine bool
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 9 && f[0] == "writer" && f[1] == "home-a" && f[5] == "2" && f[6] == "1" {
			poolLine = true
		}
	}
	if !poolLine {
		t.Errorf("no pool line for writer home-a with 2 active, 1 idle:\n%s", out)
	}

	code, out, errs = runCLI("proxy", "status", "--json", "--config", cfg)
	if code != exitOK {
		t.Fatalf("proxy status --json = %d, %q", code, errs)
	}
	if !strings.Contains(out, "\n  \"state\": \"serving\",\n") {
		t.Errorf("--json is not the indented status:\n%s", out)
	}
	var got, want any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	_ = json.Unmarshal([]byte(cannedProxyStatus), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("--json changed the status:\n%s", out)
	}
}

func TestProxyStatusUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, out, errs := runCLI("proxy", "status", "--config", proxyConfig(t, addr))
	if code != exitFailed || out != "" || !strings.Contains(errs, "cannot reach the proxy at "+addr) || !strings.Contains(errs, "proxy.admin_addr") {
		t.Fatalf("unreachable proxy: %d, %q, %q", code, out, errs)
	}

	code, _, errs = runCLI("proxy", "status", "--config", proxyConfig(t, ""))
	if code != exitFailed || !strings.Contains(errs, "proxy.admin_addr is empty") {
		t.Fatalf("empty admin_addr: %d, %q", code, errs)
	}

	code, _, errs = runCLI("proxy", "status", "--help")
	if code != exitOK || !strings.Contains(errs, "Usage: holdfast proxy status [--config FILE] [--json]") {
		t.Fatalf("proxy status --help: %d, %q", code, errs)
	}
	code, _, errs = runCLI("proxy", "--help")
	if code != exitOK || !strings.Contains(errs, "holdfast proxy status") {
		t.Fatalf("proxy --help: %d, %q", code, errs)
	}
}
