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
		{"UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1;", false},
		{"set", false},
		{"SET/* c */work_mem = 1", true},
		{"set\n\tconstraints all deferred", false},
		{"prepare", false},
		{"listen\tx", true},
		{"load 'auto_explain'", true},
		{"SELECT 1 /* unterminated", false},
		{"SELECT 1; -- SET x = 1", false},
		{"SELECT 1; --\nSET x = 1", true},
	} {
		if got := createsSessionState([]byte(tt.sql)); got != tt.want {
			t.Errorf("createsSessionState(%q) = %v, want %v", tt.sql, got, tt.want)
		}
		if got := createsSessionStateText(tt.sql); got != tt.want {
			t.Errorf("createsSessionStateText(%q) = %v, want %v", tt.sql, got, tt.want)
		}
	}
}

// FuzzCreatesSessionState checks the allocation-free scan against the full
// normalisation on ASCII text (PostgreSQL's own lexer knows no other
// whitespace or letters in keywords).
func FuzzCreatesSessionState(f *testing.F) {
	f.Add("SET a = 1; /* x */ -- y\n")
	f.Add("/*")
	f.Add("set --\n local x = 1; listen y")
	f.Add("SELECT 1;\tSET\fx")
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return
			}
		}
		if got, want := createsSessionState([]byte(s)), createsSessionStateText(s); got != want {
			t.Fatalf("createsSessionState(%q) = %v, full normalisation says %v", s, got, want)
		}
	})
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
		{"  begin ;; \n\x00", true}, {"/* x */ BEGIN\x00", true}, {"\x00", true}, {";\x00", true},
		{"BEGIN; SELECT 1\x00", false}, {"SHOW\x00", false},
	} {
		if got := cannotCommit([]byte(tt.q)); got != tt.want {
			t.Errorf("cannotCommit(%q) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestTransactionEnds(t *testing.T) {
	for _, tt := range []struct {
		q            string
		commit, ends bool
	}{
		{"COMMIT\x00", true, true},
		{"  commit;\x00", true, true},
		{"end\x00", true, true},
		{"/* app */ COMMIT\x00", true, true},
		{"-- c\ncommit\x00", true, true},
		{"ROLLBACK\x00", false, true},
		{"abort\x00", false, true},
		{"SELECT 'COMMIT'\x00", false, false},
		{"\x00", false, false},
		{"COMMIT", false, false}, // no terminator: not a whole message
	} {
		if got := isCommit([]byte(tt.q)); got != tt.commit {
			t.Errorf("isCommit(%q) = %v, want %v", tt.q, got, tt.commit)
		}
		if got := endsTransaction([]byte(tt.q)); got != tt.ends {
			t.Errorf("endsTransaction(%q) = %v, want %v", tt.q, got, tt.ends)
		}
	}
}

func BenchmarkStatementChecks(b *testing.B) {
	for _, q := range []string{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 48213;\x00",
		"UPDATE pgbench_accounts SET abalance = abalance + -4121 WHERE aid = 48213;\x00",
	} {
		body := []byte(q)
		b.Run(q[:6], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = isCommit(body) || cannotCommit(body) || createsSessionState(sqlText(body)) || dropsPrepared(body)
			}
		})
	}
}
