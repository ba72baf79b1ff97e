package proxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/config"
)

func TestUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.txt")
	// Passwords with characters base64 lacks, so that one cannot turn up
	// by chance inside a verifier's salt or keys.
	app := config.Credentials{User: "app", Password: "pw-1 !"}
	admin := config.Credentials{User: "postgres", Password: "pw-2 !"}
	if err := EnsureUsersFile(path, app); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if err := EnsureUsersFile(path, app, admin); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(after), string(before)) || strings.Count(string(after), "\n") != 2 {
		t.Fatalf("EnsureUsersFile rewrote or duplicated entries:\n%s", after)
	}
	if strings.Contains(string(after), app.Password) || strings.Contains(string(after), admin.Password) {
		t.Fatal("plaintext password in the users file")
	}
	us, err := LoadUsers(path, app, admin)
	if err != nil || len(us) != 2 || us["app"].ServerPassword != app.Password {
		t.Fatalf("LoadUsers: %v %v", us, err)
	}
	for _, bad := range []string{`app "SCRAM-SHA-256$4096:c2FsdA==$a:b"`, `"app" "not a verifier"`, `"app" "x" trailing`} {
		os.WriteFile(path, []byte(bad+"\n"), 0o600)
		if _, err := LoadUsers(path, app); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: want an error naming line 1, got %v", bad, err)
		}
	}
	os.Chmod(path, 0o644)
	if _, err := LoadUsers(path, app); err == nil {
		t.Error("world-readable users file accepted")
	}
}
