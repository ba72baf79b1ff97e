package main

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

const pgbenchOK = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 3284
number of failed transactions: 0 (0.000%)
latency average = 7.241 ms
initial connection time = 47.917 ms
tps = 1104.856389 (without initial connection time)
`

const pgbenchAborted = `pgbench (15.18 (Debian 15.18-0+deb12u1))
pgbench: error: client 3 aborted in command 8 (SQL) of script 0; perhaps the backend died while processing
FATAL:  terminating connection due to unexpected postmaster exit
pgbench: error: client 2 aborted in command 8 (SQL) of script 0; perhaps the backend died while processing
pgbench: error: client 15 script 0 aborted in command 10 query 0: FATAL:  terminating connection due to unexpected postmaster exit
transaction type: <builtin: TPC-B (sort of)>
maximum number of tries: 10
duration: 20 s
number of transactions actually processed: 15989
number of failed transactions: 2 (0.013%)
number of transactions retried: 12 (0.075%)
total number of retries: 13
latency average = 8.001 ms
initial connection time = 63.537 ms
tps = 1999.700339 (without initial connection time)
pgbench: error: Run was aborted; the above results are incomplete.
`

func TestParsePgbench(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want pgbenchResult
	}{
		{"ok", pgbenchOK, pgbenchResult{TPS: 1104.856389, LatencyMS: 7.241, Processed: 3284}},
		{"aborted", pgbenchAborted, pgbenchResult{TPS: 1999.700339, LatencyMS: 8.001, Processed: 15989, Failed: 2, Retried: 12, Aborted: 3,
			FirstProblem: "pgbench: error: client 3 aborted in command 8 (SQL) of script 0; perhaps the backend died while processing"}},
		{"connection failed", "pgbench: error: connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n",
			pgbenchResult{FirstProblem: `pgbench: error: connection to server at "127.0.0.1", port 1 failed: Connection refused`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parsePgbench(tc.out); got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	if r := parsePgbench(pgbenchAborted); r.ok() {
		t.Error("a run with aborted clients counts as ok")
	}
}

func TestParseTxLog(t *testing.T) {
	log := "6 1 19890 0 1795431582 265242 0\n" +
		"2 734 269254 0 1795431590 502698 1\n" +
		"3 12 failed 0 1795431590 600000 9\n" +
		"\n"
	got, err := parseTxLog(bufio.NewScanner(strings.NewReader(log)))
	if err != nil {
		t.Fatal(err)
	}
	want := []txEntry{
		{6, time.Unix(1795431582, 265242000), true},
		{2, time.Unix(1795431590, 502698000), true},
		{3, time.Unix(1795431590, 600000000), false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].client != want[i].client || !got[i].at.Equal(want[i].at) || got[i].ok != want[i].ok {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseTxLog(bufio.NewScanner(strings.NewReader("1 2 3\n"))); err == nil {
		t.Error("a short line is accepted")
	}
}

func TestAnalyzeStalls(t *testing.T) {
	kill := time.Unix(1000, 0)
	at := func(ms int) time.Time { return kill.Add(time.Duration(ms) * time.Millisecond) }
	// series is a client committing every 100 ms from..to (ms after the kill).
	series := func(c, from, to int) []txEntry {
		var out []txEntry
		for ms := from; ms <= to; ms += 100 {
			out = append(out, txEntry{client: c, at: at(ms), ok: true})
		}
		return out
	}
	cat := func(parts ...[]txEntry) []txEntry {
		var out []txEntry
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	resumeBy := at(6000)
	for _, tc := range []struct {
		name    string
		entries []txEntry
		want    stallStats
	}{
		{
			name: "both clients resume after a stall",
			entries: cat(series(0, -1000, 0), series(1, -995, 5),
				[]txEntry{{client: 0, at: at(100), ok: false}}, // a failed try is no progress
				series(0, 300, 12000), series(1, 350, 12050)),
			want: stallStats{GlobalGap: 295 * time.Millisecond, GlobalGapFrom: 5 * time.Millisecond,
				ClientGap: 345 * time.Millisecond, Resumed: true, LastCommit: 12050 * time.Millisecond},
		},
		{
			name:    "one client hangs after the kill",
			entries: cat(series(0, -1000, 0), series(1, -995, 5), series(0, 300, 12000), series(1, 400, 400)),
			want: stallStats{GlobalGap: 295 * time.Millisecond, GlobalGapFrom: 5 * time.Millisecond,
				ClientGap: 300 * time.Millisecond, Stopped: 1, Resumed: true, LastCommit: 12000 * time.Millisecond},
		},
		{
			name:    "every client aborts",
			entries: cat(series(0, -1000, 0), series(1, -995, 5), series(0, 2, 2)),
			want: stallStats{GlobalGap: 95 * time.Millisecond, GlobalGapFrom: -995 * time.Millisecond,
				Stopped: 2, LastCommit: 5 * time.Millisecond},
		},
		{
			name: "no log at all",
			want: stallStats{Stopped: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, e := range tc.entries {
				if e.ok {
					tc.want.Logged++
				}
			}
			if got := analyzeStalls(tc.entries, 2, kill, resumeBy); got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestCountTCP(t *testing.T) {
	table := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:C350 0100007F:3C8C 01 00000000:00000000 00:00000000 00000000   108        0 111 1 0000000000000000 20 4 30 10 -1\n" +
		"   1: 0100007F:C351 0100007F:3C8C 01 00000000:00000000 00:00000000 00000000   108        0 222 1 0000000000000000 20 4 30 10 -1\n" +
		"   2: 0100007F:C352 0100007F:3C8C 06 00000000:00000000 00:00000000 00000000   108        0 333 1 0000000000000000 20 4 30 10 -1\n" +
		"   3: 0100007F:C353 0100007F:3C8D 01 00000000:00000000 00:00000000 00000000   108        0 444 1 0000000000000000 20 4 30 10 -1\n" +
		"   4: 0100007F:C354 0100007F:3C8C 01 00000000:00000000 00:00000000 00000000   108        0 555 1 0000000000000000 20 4 30 10 -1\n"
	// 0x3C8C = 15500; 222 is another process's socket, 333 is TIME_WAIT,
	// 444 goes to another port.
	inodes := map[string]bool{"111": true, "333": true, "444": true, "555": true}
	if got := countTCP(table, inodes, 15500); got != 2 {
		t.Errorf("got %d connections, want 2", got)
	}
}
