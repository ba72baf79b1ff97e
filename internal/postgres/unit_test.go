package postgres

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConnInfoString(t *testing.T) {
	tests := []struct {
		in   ConnInfo
		want string
	}{
		{ConnInfo{}, ""},
		{ConnInfo{Host: "10.0.0.1", Port: 5432, User: "repl"},
			`host='10.0.0.1' port='5432' user='repl'`},
		{ConnInfo{Host: "h", Password: `it's a \ test`, DBName: "postgres", AppName: "home-a", ConnectTimeout: 1500 * time.Millisecond},
			`host='h' password='it\'s a \\ test' dbname='postgres' application_name='home-a' connect_timeout='2'`},
		{ConnInfo{Password: `'`}, `password='\''`},
		{ConnInfo{User: "a b=c"}, `user='a b=c'`},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%+v.String() =\n %s\nwant\n %s", tt.in, got, tt.want)
		}
	}
}

// unquoteLiteral is an independent reading of an SQL literal as the server
// reads it with standard_conforming_strings on, for checking quoteLiteral.
func unquoteLiteral(t *testing.T, q string) string {
	t.Helper()
	escape := strings.HasPrefix(q, "E'")
	if escape {
		q = q[1:]
	}
	if len(q) < 2 || q[0] != '\'' || q[len(q)-1] != '\'' {
		t.Fatalf("not a literal: %q", q)
	}
	body := q[1 : len(q)-1]
	var b strings.Builder
	for k := 0; k < len(body); k++ {
		c := body[k]
		switch {
		case c == '\'':
			if k+1 >= len(body) || body[k+1] != '\'' {
				t.Fatalf("lone quote in %q", q)
			}
			k++
		case c == '\\' && escape:
			if k+1 >= len(body) || body[k+1] != '\\' {
				t.Fatalf("backslash escape other than \\\\ in %q", q)
			}
			k++
		}
		b.WriteByte(c)
	}
	return b.String()
}

func TestQuoteLiteral(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"abc", "'abc'"},
		{"it's", "'it''s'"},
		{`a\b`, `E'a\\b'`},
		{`'\'`, `E'''\\'''`},
		{"ünïcødé", "'ünïcødé'"},
		{"x'; DROP ROLE postgres; --", "'x''; DROP ROLE postgres; --'"},
	}
	for _, tt := range tests {
		got, err := quoteLiteral(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("quoteLiteral(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if u := unquoteLiteral(t, got); u != tt.in {
			t.Errorf("unquote(quoteLiteral(%q)) = %q", tt.in, u)
		}
	}
	for _, bad := range []string{"a\x00b", "\xff"} {
		if _, err := quoteLiteral(bad); err == nil {
			t.Errorf("quoteLiteral(%q) accepted", bad)
		}
	}
}

func FuzzQuoteLiteral(f *testing.F) {
	for _, s := range []string{"", "a", "'", `\`, `\'`, "''", "E'x'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := quoteLiteral(s)
		if err != nil {
			return
		}
		if u := unquoteLiteral(t, q); u != s {
			t.Fatalf("quoteLiteral(%q) = %q reads back as %q", s, q, u)
		}
	})
}

func TestQuoteConf(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"on", "'on'"},
		{`ANY 1 ("a","b")`, `'ANY 1 ("a","b")'`},
		{`password='x\'y'`, `'password=''x\\''y'''`},
		{"a\nb", `'a\nb'`},
	}
	for _, tt := range tests {
		if got := quoteConf(tt.in); got != tt.want {
			t.Errorf("quoteConf(%q) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

func TestSyncStandbyNamesAny(t *testing.T) {
	tests := []struct {
		n     int
		names []string
		want  string
	}{
		{1, nil, ""},
		{1, []string{"home-b", "home-c"}, `ANY 1 ("home-b","home-c")`},
		{1, []string{"home-c", "home-b"}, `ANY 1 ("home-b","home-c")`},
		{5, []string{"a", "b"}, `ANY 2 ("a","b")`},
		{0, []string{"a"}, `ANY 1 ("a")`},
		{1, []string{`we"ird`}, `ANY 1 ("we""ird")`},
	}
	for _, tt := range tests {
		if got := SyncStandbyNamesAny(tt.n, tt.names); got != tt.want {
			t.Errorf("SyncStandbyNamesAny(%d, %q) = %s; want %s", tt.n, tt.names, got, tt.want)
		}
	}
}

func TestSlotName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"home-a", "home_a"},
		{"Home.B", "home_b"},
		{"ok_1", "ok_1"},
		{"", "_"},
		{"é", "_"},
		{strings.Repeat("x", 80), strings.Repeat("x", 63)},
	}
	for _, tt := range tests {
		if got := SlotName(tt.in); got != tt.want {
			t.Errorf("SlotName(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Config{
		Name: "home-a", DataDir: "/var/lib/holdfast/data", ConfDir: "/var/lib/holdfast/conf",
		ListenAddr: "127.0.0.1", Port: 5432,
		SuperUser: "postgres", SuperPassword: "s", ReplUser: "replicator", ReplPassword: "r",
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	bad := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Name = "" }, "name is empty"},
		{func(c *Config) { c.Name = strings.Repeat("n", 64) }, "longer than 63"},
		{func(c *Config) { c.Name = "a\nb" }, "printable ASCII"},
		{func(c *Config) { c.DataDir = "data" }, "not an absolute path"},
		{func(c *Config) { c.ConfDir = "/var/lib/holdfast/data/conf" }, "must not contain each other"},
		{func(c *Config) { c.DataDir = "/var/lib/holdfast/conf/data" }, "must not contain each other"},
		{func(c *Config) { c.ConfDir = "/" + strings.Repeat("d", 100) }, "too long"},
		{func(c *Config) { c.Port = 0 }, "out of range"},
		{func(c *Config) { c.ListenAddr = "127.0.0.1'; x" }, "listen address"},
		{func(c *Config) { c.SuperUser = `bad"name` }, "superuser name"},
		{func(c *Config) { c.ReplPassword = "" }, "replication user password is empty"},
		{func(c *Config) { c.ReplPassword = "a\nb" }, "newline"},
		{func(c *Config) { c.Parameters = map[string]string{"Port": "1"} }, "cannot be set"},
		{func(c *Config) { c.Parameters = map[string]string{"wal_level": "minimal"} }, "minimal"},
		{func(c *Config) { c.Parameters = map[string]string{"x = 1\nport": "1"} }, "not a valid setting name"},
	}
	for _, tt := range bad {
		c := good
		tt.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v; want error containing %q", err, tt.want)
		}
	}
	c := good
	c.Parameters = map[string]string{"work_mem": "64MB", "auto_explain.log_min_duration": "1s", "wal_level": "logical"}
	if err := c.Validate(); err != nil {
		t.Errorf("parameters refused: %v", err)
	}
}

const capturedControlData = `pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7711283144961508829
Database cluster state:               shut down in recovery
pg_control last modified:             Mon Nov 23 08:36:58 2026
Latest checkpoint location:           0/3000148
Latest checkpoint's REDO location:    0/3000110
Latest checkpoint's REDO WAL file:    000000020000000000000003
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   2
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:724
Latest checkpoint's oldestCommitTsXid:0
Time of latest checkpoint:            Mon Nov 23 08:36:58 2026
Fake LSN counter for unlogged rels:   0/3E8
Minimum recovery ending location:     0/30001F8
Min recovery ending loc's timeline:   2
Backup start location:                0/0
Backup end location:                  0/0
End-of-backup record required:        no
wal_level setting:                    replica
wal_log_hints setting:                on
Data page checksum version:           0
Mock authentication nonce:            4f8ef8b1f5cab61eb76296a4e19cf69a396f9e27c2da969c1ee3d825d3c3c8d7
`

func TestParseControlData(t *testing.T) {
	cd, err := parseControlData(capturedControlData)
	if err != nil {
		t.Fatal(err)
	}
	want := ControlData{
		SystemID: "7711283144961508829", State: "shut down in recovery", TimeLine: 2,
		CheckpointLSN: 0x3000148, REDOLSN: 0x3000110, MinRecoveryEndLSN: 0x30001F8,
		MinRecoveryEndTimeLine: 2, WALLogHints: true, DataChecksums: false,
	}
	if cd.Raw["wal_level setting"] != "replica" {
		t.Errorf("Raw lacks wal_level: %v", cd.Raw)
	}
	cd.Raw = nil
	if !reflect.DeepEqual(cd, want) {
		t.Errorf("parseControlData =\n %+v\nwant\n %+v", cd, want)
	}
	if !want.CleanShutdown() {
		t.Error("shut down in recovery is a clean shutdown")
	}
	if _, err := parseControlData("Database system identifier: 1\n"); err == nil {
		t.Error("truncated output accepted")
	}
}

func TestSourceLost(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want bool
	}{
		{"connect timeout", `pg_rewind: error: connection to server at "127.0.0.1", port 25488 failed: timeout expired`, true},
		{"refused", `pg_rewind: error: connection to server at "127.0.0.1", port 1 failed: Connection refused`, true},
		{"lost after it began", "pg_rewind: servers diverged at WAL location 0/945A9D0 on timeline 1\n" +
			"pg_rewind: rewinding from last common checkpoint at 0/6000750 on timeline 1\n" +
			"pg_rewind: error: unexpected result while fetching remote files: server closed the connection unexpectedly", false},
		{"lost while comparing", "pg_rewind: servers diverged at WAL location 0/945A9D0 on timeline 1\n" +
			"pg_rewind: error: server closed the connection unexpectedly", true},
		{"no common ancestor", "pg_rewind: error: could not find common ancestor of the source and target cluster's timelines", false},
		{"missing WAL", `pg_rewind: error: could not open file "pg_wal/000000010000000000000003": No such file or directory`, false},
		{"authentication", `pg_rewind: error: connection to server at "127.0.0.1" failed: FATAL:  password authentication failed for user "app"`, true},
	} {
		if got := sourceLost([]byte(tc.out)); got != tc.want {
			t.Errorf("%s: sourceLost = %v; want %v", tc.name, got, tc.want)
		}
	}
}
