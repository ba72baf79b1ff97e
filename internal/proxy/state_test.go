package proxy

import "testing"

func TestCreatesSessionState(t *testing.T) {
	for _, tt := range []struct {
		sql  string
		want bool
	}{
		{"SELECT 1", false},
		{"insert into t values (1)", false},
		{"BEGIN; UPDATE t SET v = 1; COMMIT", false},
		{"SET LOCAL work_mem = '1MB'", false},
		{"set transaction isolation level serializable", false},
		{"SELECT pg_advisory_xact_lock(1)", false},
		{"SELECT set_config('a.b', 'c', true)", false},
		{"SET work_mem = '64MB'", true},
		{"  set search_path to x", true},
		{"SELECT 1; SET timezone = 'UTC'", true},
		{"/* hint */ LISTEN chan", true},
		{"-- c\nPREPARE p AS SELECT 1", true},
		{"CREATE TEMP TABLE x (i int)", true},
		{"create temporary table x (i int)", true},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", true},
		{"SELECT pg_advisory_lock(42)", true},
		{"select set_config('a.b', 'c', false)", true},
	} {
		if got := createsSessionState(tt.sql); got != tt.want {
			t.Errorf("createsSessionState(%q) = %v, want %v", tt.sql, got, tt.want)
		}
	}
}

func FuzzCreatesSessionState(f *testing.F) {
	f.Add("SET a = 1; /* x */ -- y\n")
	f.Add("/*")
	f.Fuzz(func(t *testing.T, s string) { createsSessionState(s) })
}

func TestCannotCommit(t *testing.T) {
	for _, tt := range []struct {
		q    string
		want bool
	}{
		{"BEGIN\x00", true}, {"begin;\x00", true}, {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE\x00", true},
		{"ROLLBACK\x00", true}, {"show work_mem\x00", true},
		{"BEGIN; INSERT INTO t VALUES (1); COMMIT\x00", false}, {"INSERT INTO t VALUES (1)\x00", false},
		{"SELECT 1\x00", false}, {"END\x00", false},
	} {
		if got := cannotCommit([]byte(tt.q)); got != tt.want {
			t.Errorf("cannotCommit(%q) = %v, want %v", tt.q, got, tt.want)
		}
	}
}
