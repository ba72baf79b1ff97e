package postgres

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast/internal/freeport"
)

// Passwords with quotes, backslashes and spaces exercise every layer they
// pass through: initdb's pwfile, SQL literals, postgresql.conf quoting,
// libpq conninfo quoting and PGPASSWORD.
const (
	testSuperPassword = `su'per\pw "x"`
	testReplPassword  = `re'pl\ pw`
)

func requirePG(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(DefaultBinDir, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 not installed: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testDir is a temporary directory the postgres OS user can traverse:
// t.TempDir makes a root-owned 0700 directory (and parent), which would
// stop PostgreSQL at the door when the tests run as root.
func testDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testConfig(base, name string, port int) Config {
	return Config{
		Name:          name,
		DataDir:       filepath.Join(base, name, "data"),
		ConfDir:       filepath.Join(base, name, "conf"),
		ListenAddr:    "127.0.0.1",
		Port:          port,
		SuperUser:     "postgres",
		SuperPassword: testSuperPassword,
		ReplUser:      "replicator",
		ReplPassword:  testReplPassword,
		Parameters:    map[string]string{"work_mem": "8MB"},
	}
}

// newTestInstance creates an Instance that is stopped when the test ends.
func newTestInstance(t *testing.T, cfg Config) *Instance {
	t.Helper()
	inst, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := inst.Stop(ctx, StopImmediate); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return inst
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func exec1(t *testing.T, inst *Instance, sql string, args ...any) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	conn, err := inst.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryStrings(t *testing.T, inst *Instance, sql string) []string {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	conn, err := inst.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func replicaNamed(st Status, name string) (Replica, bool) {
	for _, r := range st.Replicas {
		if r.AppName == name {
			return r, true
		}
	}
	return Replica{}, false
}

// waitStreaming waits until primary reports replica streaming with its
// flush position at or past the primary's current position.
func waitStreaming(t *testing.T, primary *Instance, replica string) {
	t.Helper()
	st, err := primary.Status(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	target := st.CurrentLSN
	waitFor(t, 30*time.Second, replica+" streaming and caught up to "+target.String(), func() (bool, error) {
		st, err := primary.Status(context.Background())
		if err != nil {
			return false, err
		}
		r, ok := replicaNamed(st, replica)
		return ok && r.State == "streaming" && r.FlushLSN >= target, fmt.Errorf("replicas: %+v", st.Replicas)
	})
}

func TestCluster(t *testing.T) {
	requirePG(t)
	base := testDir(t)
	a := newTestInstance(t, testConfig(base, "home-a", freePort(t)))
	b := newTestInstance(t, testConfig(base, "home-b", freePort(t)))
	aPort, bPort := a.Config().Port, b.Config().Port

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("init_start_primary", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		if a.IsInitialized() {
			t.Fatal("initialized before InitDB")
		}
		if err := a.InitDB(ctx); err != nil {
			t.Fatal(err)
		}
		if !a.IsInitialized() {
			t.Fatal("not initialized after InitDB")
		}
		if err := a.InitDB(ctx); err == nil {
			t.Fatal("second InitDB succeeded")
		}
		if err := a.Start(ctx); err == nil || !strings.Contains(err.Error(), "WriteConfig") {
			t.Fatalf("Start without config: %v", err)
		}
		if err := a.WriteConfig(Settings{}); err != nil {
			t.Fatal(err)
		}
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if !a.Running() || a.PID() == 0 {
			t.Fatalf("Running=%v PID=%d", a.Running(), a.PID())
		}
		if err := a.Start(ctx); err != nil {
			t.Fatalf("Start while running: %v", err)
		}
		if err := a.EnsureReplicationRole(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.EnsureReplicationRole(ctx); err != nil {
			t.Fatalf("second EnsureReplicationRole: %v", err)
		}

		// -D with -c config_file: the server reads ConfDir's file and still
		// uses DataDir.
		got := queryStrings(t, a, `SELECT current_setting('config_file') UNION ALL SELECT current_setting('data_directory')
			UNION ALL SELECT current_setting('hba_file') UNION ALL SELECT current_setting('work_mem')
			UNION ALL SELECT current_setting('wal_retrieve_retry_interval') UNION ALL SELECT current_setting('restart_after_crash')`)
		want := []string{a.ConfigFile(), a.Config().DataDir, filepath.Join(a.Config().ConfDir, "pg_hba.conf"), "8MB", "100ms", "off"}
		if !slices.Equal(got, want) {
			t.Errorf("settings = %q; want %q", got, want)
		}

		st, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.InRecovery || st.TimeLine != 1 || st.CurrentLSN == 0 || len(st.Replicas) != 0 || st.SyncStandbyNames != "" {
			t.Errorf("primary status = %+v", st)
		}

		cd, err := a.ControlData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cd.State != "in production" || cd.TimeLine != 1 || cd.SystemID == "" || !cd.WALLogHints {
			t.Errorf("control data = %+v", cd)
		}
		t.Logf("live control data: state=%q tli=%d checkpoint=%s redo=%s", cd.State, cd.TimeLine, cd.CheckpointLSN, cd.REDOLSN)

		// Superuser and a new role over TCP with SCRAM and awkward passwords.
		if err := a.EnsureRole(ctx, "app", `app'pw\`, true); err != nil {
			t.Fatal(err)
		}
		if err := a.EnsureRole(ctx, "app", `app'pw\2`, false); err != nil {
			t.Fatal(err)
		}
		if err := a.EnsureDatabase(ctx, "appdb", "app"); err != nil {
			t.Fatal(err)
		}
		if err := a.EnsureDatabase(ctx, "appdb", "app"); err != nil {
			t.Fatal(err)
		}
		for _, login := range []ConnInfo{
			{User: "postgres", Password: testSuperPassword, DBName: "postgres"},
			{User: "app", Password: `app'pw\2`, DBName: "appdb"},
		} {
			login.Host, login.Port = "127.0.0.1", aPort
			conn, err := pgx.Connect(ctx, login.String()+" sslmode=disable")
			if err != nil {
				t.Fatalf("TCP login as %s: %v", login.User, err)
			}
			conn.Close(ctx)
		}
		if got := queryStrings(t, a, `SELECT rolcreatedb::text FROM pg_roles WHERE rolname = 'app'`); !slices.Equal(got, []string{"false"}) {
			t.Errorf("app rolcreatedb = %v", got)
		}

		// quoteLiteral against the real parser, with both settings of
		// standard_conforming_strings.
		conn, err := a.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, scs := range []string{"on", "off"} {
			if _, err := conn.Exec(ctx, "SET standard_conforming_strings = "+scs); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"", "'", `\`, `\'`, `''\\`, "x'; SELECT 1; --", "tab\there", "ünï"} {
				q, err := quoteLiteral(s)
				if err != nil {
					t.Fatal(err)
				}
				// Raw simple query: pgx itself refuses simple-protocol
				// queries when standard_conforming_strings is off.
				res, err := conn.PgConn().Exec(ctx, "SELECT "+q).ReadAll()
				if err != nil {
					t.Fatalf("SELECT %s (scs=%s): %v", q, scs, err)
				}
				back := string(res[0].Rows[0][0])
				if back != s {
					t.Errorf("SELECT %s (scs=%s) = %q; want %q", q, scs, back, s)
				}
			}
		}
	})

	step("slots", func(t *testing.T) {
		ctx := ctxT(t, 10*time.Second)
		names := []string{SlotName("home-b"), SlotName("home-c")}
		for range 2 {
			if err := a.EnsureSlots(ctx, names); err != nil {
				t.Fatal(err)
			}
		}
		slots, err := a.Slots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(slots) != 2 || slots[0].Name != "home_b" || slots[1].Name != "home_c" || slots[0].RestartLSN == 0 {
			t.Errorf("slots = %+v", slots)
		}
	})

	step("basebackup_replica", func(t *testing.T) {
		ctx := ctxT(t, 60*time.Second)
		err := b.BaseBackup(ctx, ConnInfo{Host: "127.0.0.1", Port: aPort, Password: "wrong"})
		if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
			t.Fatalf("BaseBackup with a wrong password = %v", err)
		}
		if ents, err := os.ReadDir(b.Config().DataDir); err != nil || len(ents) != 0 {
			t.Fatalf("data dir after failed base backup: %v, %v", ents, err)
		}
		if err := b.BaseBackup(ctx, ConnInfo{Host: "127.0.0.1", Port: aPort}); err != nil {
			t.Fatal(err)
		}
		if err := b.BaseBackup(ctx, ConnInfo{Host: "127.0.0.1", Port: aPort}); err == nil {
			t.Fatal("BaseBackup into a non-empty data dir succeeded")
		}
		if err := b.WriteConfig(Settings{
			Standby:         true,
			PrimaryConnInfo: &ConnInfo{Host: "127.0.0.1", Port: aPort},
			PrimarySlot:     SlotName("home-b"),
		}); err != nil {
			t.Fatal(err)
		}

		// Port in use: refused with ErrPortInUse, and nothing started.
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bPort)))
		if err != nil {
			t.Fatal(err)
		}
		err = b.Start(ctx)
		l.Close()
		if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), strconv.Itoa(bPort)) {
			t.Fatalf("Start on a busy port = %v; want ErrPortInUse naming the port", err)
		}
		if b.Running() {
			t.Fatal("running after refused start")
		}

		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		exec1(t, a, "CREATE TABLE t (v text)")
		exec1(t, a, "INSERT INTO t VALUES ('one')")
		waitStreaming(t, a, "home-b")

		st, err := b.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !st.InRecovery || st.TimeLine != 1 || st.WalReceiverStatus != "streaming" || st.SenderPort != aPort || st.ReceiveLSN == 0 || st.CurrentLSN < st.ReplayLSN || !st.ReplayLagKnown {
			t.Errorf("standby status = %+v", st)
		}
		// Once it has replayed all it received the lag is 0, however long
		// ago the last transaction committed.
		waitFor(t, 30*time.Second, "home-b to report replay lag 0", func() (bool, error) {
			st, err := b.Status(ctx)
			if err != nil {
				return false, err
			}
			return st.ReplayLagKnown && st.ReplayLag == 0, fmt.Errorf("replay lag %v (known %v), received %s, replayed %s", st.ReplayLag, st.ReplayLagKnown, st.ReceiveLSN, st.ReplayLSN)
		})
		slots, err := a.Slots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(slots) == 0 || slots[0].Name != "home_b" || !slots[0].Active {
			t.Errorf("slot home_b not in use: %+v", slots)
		}
		cd, err := b.ControlData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cd.State != "in archive recovery" {
			t.Errorf("standby control data state = %q", cd.State)
		}
	})

	step("restart_wal_receiver", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		if ok, err := a.RestartWalReceiver(ctx); ok || err != nil {
			t.Fatalf("RestartWalReceiver on the primary = %v, %v; want false, nil", ok, err)
		}
		before := queryStrings(t, b, "SELECT pid::text FROM pg_stat_wal_receiver WHERE status = 'streaming'")
		if len(before) != 1 {
			t.Fatalf("no streaming WAL receiver on home-b: %v", before)
		}
		if ok, err := b.RestartWalReceiver(ctx); !ok || err != nil {
			t.Fatalf("RestartWalReceiver = %v, %v; want true, nil", ok, err)
		}
		// The startup process starts a new receiver, from the same upstream.
		waitFor(t, 20*time.Second, "a new WAL receiver streaming on home-b", func() (bool, error) {
			st, err := b.Status(ctx)
			if err != nil {
				return false, err
			}
			now := queryStrings(t, b, "SELECT pid::text FROM pg_stat_wal_receiver")
			return st.WalReceiverStatus == "streaming" && st.SenderPort == aPort && len(now) == 1 && now[0] != before[0],
				fmt.Errorf("receiver %v (was %v), status %q from port %d", now, before, st.WalReceiverStatus, st.SenderPort)
		})
		exec1(t, a, "INSERT INTO t VALUES ('after receiver restart')")
		waitStreaming(t, a, "home-b")
	})

	step("sync_replication", func(t *testing.T) {
		ctx := ctxT(t, 30*time.Second)
		setSync := func(names string) {
			t.Helper()
			if err := a.WriteConfig(Settings{SyncStandbyNames: names}); err != nil {
				t.Fatal(err)
			}
			if err := a.Reload(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "synchronous_standby_names = "+names, func() (bool, error) {
				st, err := a.Status(ctx)
				return err == nil && st.SyncStandbyNames == names, err
			})
		}
		setSync(SyncStandbyNamesAny(1, []string{"home-b"}))
		waitFor(t, 10*time.Second, "home-b quorum standby", func() (bool, error) {
			st, err := a.Status(ctx)
			r, _ := replicaNamed(st, "home-b")
			return err == nil && r.SyncState == "quorum", err
		})
		insCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		conn, err := a.Conn(insCtx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(insCtx, "INSERT INTO t VALUES ('sync')"); err != nil {
			t.Fatalf("insert with a synchronous standby: %v", err)
		}
		conn.Close(ctx)

		// With no matching standby the commit waits: proof that the setting
		// is in force.
		setSync(SyncStandbyNamesAny(1, []string{"nobody"}))
		conn, err = a.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		blockCtx, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel2()
		_, err = conn.Exec(blockCtx, "INSERT INTO t VALUES ('blocked')")
		conn.Close(context.Background())
		if err == nil {
			t.Fatal("commit did not wait for the missing synchronous standby")
		}
		setSync("")
	})

	step("slots_on_standby", func(t *testing.T) {
		ctx := ctxT(t, 20*time.Second)
		err := b.EnsureSlots(ctx, []string{SlotName("home-a"), SlotName("home-c")})
		if err != nil {
			t.Fatalf("EnsureSlots on a standby: %v", err)
		}
		slots, err := b.Slots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("EnsureSlots on a standby works: %+v", slots)
		if len(slots) != 2 {
			t.Fatalf("standby slots = %+v", slots)
		}
		// Advance on the standby: capped by replay, never backwards.
		exec1(t, a, "INSERT INTO t SELECT 'filler' FROM generate_series(1, 1000)")
		exec1(t, a, "SELECT pg_switch_wal()")
		waitStreaming(t, a, "home-b")
		if err := b.Checkpoint(ctx); err != nil { // restartpoint
			t.Fatal(err)
		}
		ast, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.AdvanceSlots(ctx, map[string]LSN{"home_a": ast.CurrentLSN, "nonexistent": 1}); err != nil {
			t.Fatalf("AdvanceSlots on a standby: %v", err)
		}
		after, err := b.Slots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after[0].Name != "home_a" || after[0].RestartLSN <= slots[0].RestartLSN {
			t.Errorf("slot home_a not advanced: before %+v after %+v", slots, after)
		}
		t.Logf("AdvanceSlots on a standby: %s -> %s (primary at %s)", slots[0].RestartLSN, after[0].RestartLSN, ast.CurrentLSN)
		if err := b.DropSlotsExcept(ctx, []string{"home_a"}); err != nil {
			t.Fatalf("DropSlotsExcept on a standby: %v", err)
		}
		if slots, _ := b.Slots(ctx); len(slots) != 1 || slots[0].Name != "home_a" {
			t.Errorf("after DropSlotsExcept: %+v", slots)
		}
		// On the primary the active slot survives even when not kept.
		if err := a.DropSlotsExcept(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if slots, _ := a.Slots(ctx); len(slots) != 1 || slots[0].Name != "home_b" {
			t.Errorf("primary slots after DropSlotsExcept(nil): %+v", slots)
		}
	})

	step("promote_crash_rewind", func(t *testing.T) {
		ctx := ctxT(t, 90*time.Second)
		exec1(t, a, "INSERT INTO t VALUES ('before')")
		waitStreaming(t, a, "home-b")
		if err := b.Promote(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Promote(ctx); err != nil {
			t.Fatalf("Promote on a primary: %v", err)
		}
		if _, err := os.Stat(filepath.Join(b.Config().DataDir, "standby.signal")); !os.IsNotExist(err) {
			t.Errorf("standby.signal after promotion: %v", err)
		}
		st, err := b.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.InRecovery || st.TimeLine != 2 || st.ReplayLagKnown {
			t.Fatalf("promoted status = %+v; want primary on timeline 2, no replay lag", st)
		}
		if err := b.WriteConfig(Settings{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Reload(); err != nil {
			t.Fatal(err)
		}
		exec1(t, b, "INSERT INTO t VALUES ('after_promote')")

		// The old primary goes on writing, then dies: it has diverged.
		exec1(t, a, "INSERT INTO t SELECT 'diverged' FROM generate_series(1, 500)")
		exec1(t, a, "CHECKPOINT")
		exec1(t, a, "INSERT INTO t VALUES ('diverged')")
		pid, exited := a.PID(), a.Exited()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Fatal("Exited not closed 10s after kill -9")
		}
		if a.Running() || a.PID() != 0 || a.ExitErr() == nil {
			t.Fatalf("after kill -9: Running=%v PID=%d ExitErr=%v", a.Running(), a.PID(), a.ExitErr())
		}
		t.Logf("after kill -9: ExitErr=%v", a.ExitErr())
		if err := a.Stop(ctx, StopFast); err != nil {
			t.Fatalf("Stop after crash: %v", err)
		}
		cd, err := a.ControlData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cd.State != "in production" {
			t.Errorf("crashed primary control state = %q", cd.State)
		}

		// Source unreachable: not ErrRewindFailed (nothing was touched, the
		// caller must not wipe the data dir for it).
		err = a.Rewind(ctx, ConnInfo{Host: "127.0.0.1", Port: freePort(t)})
		if err == nil || errors.Is(err, ErrRewindFailed) {
			t.Fatalf("Rewind from a closed port = %v; want an error other than ErrRewindFailed", err)
		}
		// pg_rewind itself failing (a role without the rights it needs) is
		// ErrRewindFailed, and leaves the data dir rewindable. app may
		// checkpoint, so Rewind's own check of the just-promoted source
		// (it needs a CHECKPOINT) passes and pg_rewind runs.
		exec1(t, b, "GRANT pg_checkpoint TO app")
		err = a.Rewind(ctx, ConnInfo{Host: "127.0.0.1", Port: bPort, User: "app", Password: `app'pw\2`})
		if !errors.Is(err, ErrRewindFailed) {
			t.Fatalf("Rewind as a non-superuser = %v; want ErrRewindFailed", err)
		}
		t.Logf("failed rewind: %v", err)
		if err := a.Rewind(ctx, ConnInfo{Host: "127.0.0.1", Port: bPort}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(a.Config().DataDir, "standby.signal")); err != nil {
			t.Errorf("no standby.signal after rewind: %v", err)
		}
		cd, err = a.ControlData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rewound control data: state=%q tli=%d minRecoveryEnd=%s/tli %d", cd.State, cd.TimeLine, cd.MinRecoveryEndLSN, cd.MinRecoveryEndTimeLine)
		if err := a.WriteConfig(Settings{
			Standby:         true,
			PrimaryConnInfo: &ConnInfo{Host: "127.0.0.1", Port: bPort},
			PrimarySlot:     SlotName("home-a"), // pre-created while b was a standby
		}); err != nil {
			t.Fatal(err)
		}
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		waitStreaming(t, b, "home-a")
		ast, err := a.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ast.InRecovery || ast.TimeLine != 2 || ast.SenderPort != bPort {
			t.Errorf("rewound standby status = %+v", ast)
		}
		got := queryStrings(t, a, "SELECT v FROM t WHERE v IN ('before', 'after_promote', 'diverged') ORDER BY v")
		if !slices.Equal(got, []string{"after_promote", "before"}) {
			t.Errorf("rewound standby rows = %q; want the new primary's", got)
		}
		if slots, _ := b.Slots(ctx); len(slots) != 1 || slots[0].Name != "home_a" || !slots[0].Active {
			t.Errorf("new primary slots = %+v", slots)
		}
		// Rewind needs the instance stopped.
		if err := a.Rewind(ctx, ConnInfo{Host: "127.0.0.1", Port: bPort}); !errors.Is(err, ErrRunning) {
			t.Errorf("Rewind while running = %v; want ErrRunning", err)
		}
	})

	step("recopy_keeps_data_until_complete", func(t *testing.T) {
		// a (a standby of b) is replaced by a fresh copy of b. A copy that
		// fails (its source unreachable) leaves the data directory as it
		// was: it may be the only copy of acknowledged commits.
		ctx := ctxT(t, 90*time.Second)
		if err := a.Stop(ctx, StopFast); err != nil {
			t.Fatal(err)
		}
		mark := filepath.Join(a.Config().DataDir, "holdfast-test-old-data")
		if err := os.WriteFile(mark, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := a.Recopy(ctx, ConnInfo{Host: "127.0.0.1", Port: freePort(t)})
		if err == nil || !strings.Contains(err.Error(), "unchanged") {
			t.Fatalf("Recopy from a closed port = %v; want an error saying the data is unchanged", err)
		}
		if _, err := os.Stat(mark); err != nil || !a.IsInitialized() {
			t.Fatalf("data directory touched by a failed copy: %v, initialized %v", err, a.IsInitialized())
		}
		if err := a.Recopy(ctx, ConnInfo{Host: "127.0.0.1", Port: bPort}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(mark); !os.IsNotExist(err) {
			t.Fatalf("old data still in place after Recopy: %v", err)
		}
		for _, sfx := range []string{stagingSuffix, copiedSuffix, replacedSuffix} {
			if _, err := os.Stat(a.Config().DataDir + sfx); !os.IsNotExist(err) {
				t.Errorf("%s left behind: %v", a.Config().DataDir+sfx, err)
			}
		}
		if err := a.WriteConfig(Settings{Standby: true, PrimaryConnInfo: &ConnInfo{Host: "127.0.0.1", Port: bPort}, PrimarySlot: SlotName("home-a")}); err != nil {
			t.Fatal(err)
		}
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		waitStreaming(t, b, "home-a")
		got := queryStrings(t, a, "SELECT v FROM t WHERE v IN ('before', 'after_promote', 'diverged') ORDER BY v")
		if !slices.Equal(got, []string{"after_promote", "before"}) {
			t.Errorf("copied standby rows = %q", got)
		}
	})

	step("stop_escalates", func(t *testing.T) {
		// A smart shutdown waits for clients; when ctx expires Stop
		// escalates and the server is gone all the same.
		conn, err := b.Conn(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		exited := b.Exited()
		start := time.Now()
		if err := b.Stop(ctxT(t, 300*time.Millisecond), StopSmart); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		default:
			t.Fatal("Stop returned before the server exited")
		}
		if b.Running() {
			t.Fatal("still running")
		}
		cd, err := b.ControlData(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("smart stop with a client escalated after %v; control state %q", time.Since(start).Round(time.Millisecond), cd.State)
		if cd.State != "in production" {
			t.Errorf("state after immediate shutdown = %q; want in production (unclean)", cd.State)
		}
	})

	step("orphan_stop", func(t *testing.T) {
		// An agent restarted after a crash has a new Instance for a
		// postmaster it did not start.
		ctx := ctxT(t, 30*time.Second)
		a2, err := New(a.Config(), testLogger())
		if err != nil {
			t.Fatal(err)
		}
		if !a2.Running() || a2.PID() != a.PID() {
			t.Fatalf("orphan not seen: Running=%v PID=%d want %d", a2.Running(), a2.PID(), a.PID())
		}
		if _, err := a2.Status(ctx); err != nil {
			t.Fatal(err)
		}
		orphanExited := a2.Exited()
		if err := a2.Stop(ctx, StopFast); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.Exited():
		case <-time.After(5 * time.Second):
			t.Fatal("original Instance did not see the exit")
		}
		select {
		case <-orphanExited:
		case <-time.After(5 * time.Second):
			t.Fatal("adopted Exited not closed")
		}
		if a2.Running() || a.ExitErr() != nil {
			t.Errorf("after orphan stop: Running=%v ExitErr=%v", a2.Running(), a.ExitErr())
		}
		cd, err := a2.ControlData(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cd.State != "shut down in recovery" {
			t.Errorf("standby after fast stop: state %q", cd.State)
		}
		if err := a2.RemoveData(); err != nil {
			t.Fatal(err)
		}
		if a2.IsInitialized() {
			t.Error("initialized after RemoveData")
		}
	})
}

// TestRecoverRecopy: a crash during Recopy's swap is finished by the next
// agent: a complete copy replaces the data directory, partial ones go.
func TestRecoverRecopy(t *testing.T) {
	write := func(t *testing.T, dir, name string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		// Data directories belong to the postgres user.
		if os.Geteuid() == 0 {
			u, err := user.Lookup("postgres")
			if err != nil {
				t.Skip(err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(dir, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name     string
		dirs     map[string]string // suffix of DataDir -> a file in it
		wantFile string            // in DataDir afterwards; "" for no DataDir
	}{
		{"nothing to do", map[string]string{"": "old"}, "old"},
		{"copy in progress", map[string]string{"": "old", stagingSuffix: "partial"}, "old"},
		{"complete copy not swapped", map[string]string{"": "old", copiedSuffix: "new"}, "new"},
		{"crash between the renames", map[string]string{replacedSuffix: "old", copiedSuffix: "new"}, "new"},
		{"replaced data not removed", map[string]string{"": "new", replacedSuffix: "old"}, "new"},
		{"no data directory", map[string]string{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := testDir(t)
			cfg := testConfig(base, "x", 5432)
			for sfx, f := range tc.dirs {
				write(t, cfg.DataDir+sfx, f)
			}
			inst, err := New(cfg, testLogger())
			if err != nil {
				t.Fatal(err)
			}
			if err := inst.RecoverRecopy(); err != nil {
				t.Fatal(err)
			}
			ents, err := os.ReadDir(cfg.DataDir)
			switch {
			case tc.wantFile == "" && !os.IsNotExist(err):
				t.Errorf("data dir: %v, %v; want none", ents, err)
			case tc.wantFile != "" && (err != nil || len(ents) != 1 || ents[0].Name() != tc.wantFile):
				t.Errorf("data dir holds %v (%v); want %s", ents, err, tc.wantFile)
			}
			for _, sfx := range []string{stagingSuffix, copiedSuffix, replacedSuffix} {
				if _, err := os.Stat(cfg.DataDir + sfx); !os.IsNotExist(err) {
					t.Errorf("%s left: %v", sfx, err)
				}
			}
		})
	}
}

func TestRemoveDataRefuses(t *testing.T) {
	base := testDir(t)
	cfg := testConfig(base, "x", 5432)
	cfg.DataDir = filepath.Join(base, "home") // a misconfigured DataDir: root-owned, 0755
	if err := os.Mkdir(cfg.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	inst, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(cfg.DataDir, "precious")
	if err := os.WriteFile(precious, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = inst.RemoveData()
	if err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("RemoveData on a directory that is not a data dir = %v", err)
	}
	if _, err := os.Stat(precious); err != nil {
		t.Fatal(err)
	}
}

func TestUnreachableDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only meaningful as root")
	}
	base := testDir(t)
	locked := filepath.Join(base, "locked")
	if err := os.Mkdir(locked, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(locked, "x", 5432)
	_, err := New(cfg, testLogger())
	if err == nil || !strings.Contains(err.Error(), locked+" is mode 0700") || !strings.Contains(err.Error(), "chmod o+x "+locked) {
		t.Fatalf("New = %v; want an error naming %s", err, locked)
	}
}

// TestPdeathsig checks that PostgreSQL dies with the agent: a child process
// (this test binary, in helper mode) starts the server and exits without
// stopping it.
func TestPdeathsig(t *testing.T) {
	requirePG(t)
	ctx := ctxT(t, 60*time.Second)
	base := testDir(t)
	cfg := testConfig(base, "pd", freePort(t))
	inst := newTestInstance(t, cfg)
	if err := inst.InitDB(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inst.WriteConfig(Settings{}); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(cfg)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPdeathsigHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HOLDFAST_PDEATHSIG_HELPER="+string(js))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "POSTMASTER_PID="); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if pid == 0 {
		t.Fatal("helper printed no pid")
	}
	waitFor(t, 10*time.Second, fmt.Sprintf("postmaster %d to die with its agent", pid), func() (bool, error) {
		return !inst.isPostmasterOf(pid), nil
	})

	// Reuse the data dir: a server that exits during startup makes Start
	// fail at once with the server's own explanation.
	bad := cfg
	bad.Parameters = map[string]string{"shared_buffers": "lots"}
	badInst := newTestInstance(t, bad)
	if err := badInst.WriteConfig(Settings{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = badInst.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Fatalf("Start with a bad parameter = %v; want the log line naming it", err)
	}
	t.Logf("failed start reported after %v: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestPdeathsigHelper(t *testing.T) {
	js := os.Getenv("HOLDFAST_PDEATHSIG_HELPER")
	if js == "" {
		t.Skip("helper for TestPdeathsig")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		t.Fatal(err)
	}
	inst, err := New(cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("POSTMASTER_PID=%d\n", inst.PID())
	os.Exit(0) // the agent dies without stopping PostgreSQL
}

// TestStartKillsLeftovers: a backend stopped (SIGSTOP) when its postmaster
// was killed outlives it and holds the old shared memory; Start must end
// it, or the server never starts again ("pre-existing shared memory block
// is still in use"), as a chaos run once left a member for good.
func TestStartKillsLeftovers(t *testing.T) {
	requirePG(t)
	ctx := ctxT(t, 60*time.Second)
	cfg := testConfig(testDir(t), "left", freePort(t))
	inst := newTestInstance(t, cfg)
	if err := inst.InitDB(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inst.WriteConfig(Settings{}); err != nil {
		t.Fatal(err)
	}
	if err := inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := inst.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(backend, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(backend, syscall.SIGKILL); _ = syscall.Kill(backend, syscall.SIGCONT) })
	exited := inst.Exited()
	if err := syscall.Kill(inst.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("postmaster not reaped 10s after kill -9")
	}
	// The other processes notice the postmaster's death and exit; the
	// stopped backend cannot.
	waitFor(t, 10*time.Second, "the running children of the killed postmaster to exit", func() (bool, error) {
		left := inst.leftovers()
		return len(left) == 1 && left[0] == backend, fmt.Errorf("leftovers %v, stopped backend %d", left, backend)
	})
	if err := inst.Start(ctx); err != nil {
		t.Fatalf("Start with a stopped backend of the killed postmaster left: %v", err)
	}
	if state, _ := procStat(backend); state != "" && state != "Z" && state != "X" {
		t.Fatalf("the stopped backend %d still runs (state %s)", backend, state)
	}
	exec1(t, inst, "SELECT 1")
}
