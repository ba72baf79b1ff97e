package main

import (
	"bytes"
	"os"
	"path/filepath"
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
