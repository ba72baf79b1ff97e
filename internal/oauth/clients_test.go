package oauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSaveLoadClients(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "clients.yaml")
	want := []Client{testClient("app", "a", "api/read"), testClient("ops.tool_1-x", "b", "api/read", "api/upsert-delete")}
	if err := SaveClients(path, want); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadClients(path)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadClients = %+v, %v; want %+v", got, err, want)
	}
	b, _ := os.ReadFile(path)
	for _, s := range []string{"id: app", "secret_hash: sha256:", "scopes:"} {
		if !strings.Contains(string(b), s) {
			t.Errorf("file lacks %q:\n%s", s, b)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestLoadClientsModes(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o640, false},
		{0o644, false},
		{0o604, false},
		{0o620, false},
		{0o666, false},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "clients.yaml")
		if err := SaveClients(path, []Client{testClient("app", "a", "api/read")}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadClients(path)
		if tt.ok != (err == nil) {
			t.Errorf("mode %#o: err %v", tt.mode, err)
			continue
		}
		if !tt.ok && (!errors.Is(err, ErrInsecureFile) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("%#o", uint32(tt.mode)))) {
			t.Errorf("mode %#o: %v; want ErrInsecureFile naming the path and the mode", tt.mode, err)
		}
	}
}

func TestLoadClientsInvalid(t *testing.T) {
	h := HashSecret("x")
	tests := []struct {
		name, yaml string
	}{
		{"bad id", "clients:\n- {id: 'a b', secret_hash: " + h + ", scopes: [api/read]}\n"},
		{"long id", "clients:\n- {id: " + strings.Repeat("a", 65) + ", secret_hash: " + h + ", scopes: [api/read]}\n"},
		{"duplicate id", "clients:\n- {id: a, secret_hash: " + h + ", scopes: [api/read]}\n- {id: a, secret_hash: " + h + ", scopes: [api/read]}\n"},
		{"no scopes", "clients:\n- {id: a, secret_hash: " + h + ", scopes: []}\n"},
		{"bad scope", "clients:\n- {id: a, secret_hash: " + h + ", scopes: [API/Read]}\n"},
		{"repeated scope", "clients:\n- {id: a, secret_hash: " + h + ", scopes: [api/read, api/read]}\n"},
		{"plain secret", "clients:\n- {id: a, secret_hash: hunter2, scopes: [api/read]}\n"},
		{"unknown field", "clients:\n- {id: a, secret: x, secret_hash: " + h + ", scopes: [api/read]}\n"},
		{"not yaml", "clients: [\n"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "clients.yaml")
		if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadClients(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: LoadClients = %v; want an error naming %s", tt.name, err, path)
		}
	}
	path := filepath.Join(t.TempDir(), "empty.yaml")
	os.WriteFile(path, nil, 0o600)
	if cs, err := LoadClients(path); err != nil || len(cs) != 0 {
		t.Errorf("empty file: %v, %v", cs, err)
	}
	if _, err := LoadClients(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := SaveClients(path, []Client{{ID: "a", SecretHash: h}}); err == nil {
		t.Error("SaveClients wrote a client without scopes")
	}
}

func TestCreateClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clients.yaml")
	secret, err := CreateClient(path, "todo-app", []string{"api/read", "api/upsert-delete"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateClient(path, "reader", []string{"api/read"}); err != nil {
		t.Fatal(err)
	}
	cs, err := LoadClients(path)
	if err != nil || len(cs) != 2 || cs[0].ID != "todo-app" || !cs[0].CheckSecret(secret) || cs[0].CheckSecret(secret+"x") {
		t.Fatalf("after CreateClient: %+v, %v", cs, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	if _, err := CreateClient(path, "todo-app", []string{"api/read"}); !errors.Is(err, ErrClientExists) {
		t.Fatalf("duplicate id: %v, want ErrClientExists", err)
	}
	bad := []struct {
		id     string
		scopes []string
	}{
		{"", []string{"api/read"}},
		{"a b", []string{"api/read"}},
		{"a/b", []string{"api/read"}},
		{strings.Repeat("x", 65), []string{"api/read"}},
		{"ok", nil},
		{"ok", []string{}},
		{"ok", []string{"api read"}},
		{"ok", []string{"API"}},
		{"ok", []string{""}},
		{"ok", []string{strings.Repeat("s", 65)}},
	}
	for _, tt := range bad {
		if _, err := CreateClient(path, tt.id, tt.scopes); err == nil {
			t.Errorf("CreateClient(%q, %q) succeeded", tt.id, tt.scopes)
		}
	}
	if cs, _ := LoadClients(path); len(cs) != 2 {
		t.Fatalf("invalid clients were written: %+v", cs)
	}
	os.Chmod(path, 0o644)
	if _, err := CreateClient(path, "other", []string{"api/read"}); !errors.Is(err, ErrInsecureFile) {
		t.Fatalf("CreateClient on a 0644 file: %v", err)
	}
}
