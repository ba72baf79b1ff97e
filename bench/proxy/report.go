package main

import (
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// results is everything one run measured (printed as markdown, and as JSON
// with -json).
type results struct {
	Command        string             `json:"command"`
	Started        time.Time          `json:"started"`
	Finished       time.Time          `json:"finished"`
	Versions       map[string]string  `json:"versions"`
	MaxConnections int                `json:"postgres_max_connections"`
	ProxySettings  string             `json:"holdfast_proxy"`
	PoolSize       int                `json:"pool_size"`
	FileLimit      uint64             `json:"nofile"`
	Throughput     []throughputResult `json:"throughput"`
	Memory         []memoryResult     `json:"memory,omitempty"`
	Failover       []failoverResult   `json:"failover,omitempty"`
	Note           string             `json:"note,omitempty"`
	LogDir         string             `json:"log_dir,omitempty"`
}

type throughputResult struct {
	Protocol string `json:"protocol"`
	Script   string `json:"script"`
	Clients  int    `json:"clients"`
	Target   string `json:"target"`
	Args     string `json:"pgbench,omitempty"`
	pgbenchResult
}

// Targets of the proxy issue.
const (
	minVsPgBouncer  = 1.0             // holdfast tps / PgBouncer tps, same pool mode
	minVsDirect     = 0.8             // holdfast select-only tps / direct
	maxIdleRSSKiB   = 100 * 1024      // 100 MiB of proxy RSS ...
	idleTargetConns = 10000           // ... with this many idle clients
	warmup          = 2 * time.Second // unmeasured select-only run before each measured one
	mib             = 1024.0          // KiB per MiB
	msPerNs         = float64(time.Millisecond)
)

func versions(holdfastBin string) map[string]string {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "unknown (" + err.Error() + ")"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	return map[string]string{
		"holdfast":  first(holdfastBin, "version") + " (" + first("git", "describe", "--tags", "--always", "--dirty") + ")",
		"pgbouncer": first(pgbouncerBin, "--version"),
		"pgbench":   pgbenchVersion(),
		"postgres":  first("/usr/lib/postgresql/15/bin/postgres", "--version"),
		"go":        runtime.Version(),
	}
}

func (r results) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "\n## Proxy benchmark\n\n")
	fmt.Fprintf(w, "- command: `%s`\n", r.Command)
	fmt.Fprintf(w, "- run: %s, %s\n", r.Started.Format("2006-01-02 15:04 UTC"), r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(w, "- versions: %s; %s; %s; %s; Go %s; %d CPUs\n", r.Versions["holdfast"], r.Versions["pgbouncer"],
		r.Versions["pgbench"], r.Versions["postgres"], r.Versions["go"], runtime.NumCPU())
	fmt.Fprintf(w, "- PostgreSQL max_connections %d; open files limit of the harness and the poolers %d\n", r.MaxConnections, r.FileLimit)
	fmt.Fprintf(w, "- holdfast proxy: %s; PgBouncer: default_pool_size %d, max_client_conn to fit, connection logging off, the rest at its defaults\n", r.ProxySettings, r.PoolSize)
	if r.Note != "" {
		fmt.Fprintf(w, "- **%s**\n", r.Note)
	}

	r.writeThroughput(w)
	r.writeMemory(w)
	r.writeFailover(w)
	if r.LogDir != "" {
		fmt.Fprintf(w, "\nLogs and pgbench output kept in %s\n", r.LogDir)
	}
}

func (r results) writeThroughput(w io.Writer) {
	if len(r.Throughput) == 0 {
		return
	}
	fmt.Fprintf(w, "\nThroughput: pgbench -n -j min(2, clients), the same query protocol (-M) for every target, after a %s "+
		"unmeasured select-only warm-up at the same client count. Each pooler runs only for its own runs, with the same pool "+
		"size; tps excludes the initial connection time.\n", warmup)
	type key struct {
		proto, script string
		clients       int
	}
	var keys []key
	groups := map[key][]throughputResult{}
	for _, t := range r.Throughput {
		k := key{t.Protocol, t.Script, t.Clients}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], t)
	}
	for _, k := range keys {
		rows := groups[k]
		tps := map[string]float64{}
		for _, t := range rows {
			if t.ok() {
				tps[t.Target] = t.TPS
			}
		}
		dur := ""
		for _, t := range rows {
			if t.Args != "" {
				dur = " (`" + t.Args + "`)"
				break
			}
		}
		fmt.Fprintf(w, "\n### %s, %d clients, -M %s%s\n\n", k.script, k.clients, k.proto, dur)
		fmt.Fprintln(w, "| target | tps | latency avg | vs direct | vs PgBouncer, same mode | result |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
		for _, t := range rows {
			if !t.ok() {
				fmt.Fprintf(w, "| %s | - | - | - | - | **FAILED**: %s |\n", t.Target, t.failure())
				continue
			}
			vsDirect, vsBouncer := "", ""
			if d, ok := tps[targetDirect]; ok && t.Target != targetDirect {
				vsDirect = fmt.Sprintf("%.2f", t.TPS/d)
			}
			if peer := bouncerPeer(t.Target); peer != "" {
				if p, ok := tps[peer]; ok {
					vsBouncer = fmt.Sprintf("%.2f", t.TPS/p)
				}
			}
			fmt.Fprintf(w, "| %s | %.0f | %.3f ms | %s | %s | ok |\n", t.Target, t.TPS, t.LatencyMS, vsDirect, vsBouncer)
		}
		var checks []string
		for _, hf := range []string{targetHoldfastSession, targetHoldfastTx} {
			h, ok := tps[hf]
			if !ok {
				continue
			}
			if p, ok := tps[bouncerPeer(hf)]; ok {
				checks = append(checks, check(fmt.Sprintf("%s >= %s", hf, bouncerPeer(hf)), h/p, minVsPgBouncer))
			}
			if d, ok := tps[targetDirect]; ok && k.script == "select-only" {
				checks = append(checks, check(fmt.Sprintf("%s >= %.1f x direct", hf, minVsDirect), h/d, minVsDirect))
			}
		}
		if len(checks) > 0 {
			fmt.Fprintf(w, "\nTargets: %s.\n", strings.Join(checks, "; "))
		}
	}
}

func bouncerPeer(target string) string {
	switch target {
	case targetHoldfastSession:
		return targetBouncerSession
	case targetHoldfastTx:
		return targetBouncerTx
	}
	return ""
}

func check(what string, ratio, floor float64) string {
	verdict := "met"
	if ratio < floor {
		verdict = "**missed**"
	}
	return fmt.Sprintf("%s: %s (%.2f)", what, verdict, ratio)
}

func (t pgbenchResult) failure() string {
	var parts []string
	if t.Err != "" {
		parts = append(parts, t.Err)
	}
	if t.ExitCode != 0 {
		parts = append(parts, fmt.Sprintf("exit %d", t.ExitCode))
	}
	if t.Aborted > 0 {
		parts = append(parts, fmt.Sprintf("%d clients aborted", t.Aborted))
	}
	if t.FirstProblem != "" {
		parts = append(parts, "`"+strings.ReplaceAll(t.FirstProblem, "|", `\|`)+"`")
	}
	if len(parts) == 0 {
		parts = append(parts, "no tps reported")
	}
	return strings.Join(parts, ", ")
}

func (r results) writeMemory(w io.Writer) {
	if len(r.Memory) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Memory: %d idle client connections\n\n", r.Memory[0].Wanted)
	fmt.Fprintln(w, "Each client completes startup and SCRAM authentication through the pooler and sends no query; "+
		"VmRSS of the pooler process before the clients connect and with all of them open (target: <= 100 MiB with 10,000); "+
		"server connections: the pooler's TCP connections to the primary meanwhile. The clients stop connecting at the first failure.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| pooler | clients open | server connections | RSS before | RSS with clients | peak RSS | per client | projected for 10,000 | <= 100 MiB | notes |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
	for _, m := range r.Memory {
		if m.RSSKiB == 0 {
			fmt.Fprintf(w, "| %s | %d | - | - | - | - | - | - | - | **FAILED**: %s |\n", m.Target, m.Opened, escape(m.Err))
			continue
		}
		projected := float64(m.BaselineKiB) + m.PerConnKiB*idleTargetConns
		verdict := "met"
		basis := projected
		if m.Opened >= idleTargetConns {
			basis = float64(m.RSSKiB)
		} else {
			verdict = "met (projected)"
		}
		if basis > maxIdleRSSKiB {
			verdict = strings.Replace(verdict, "met", "**missed**", 1)
		}
		if m.Opened == 0 {
			verdict = "-"
		}
		notes := fmt.Sprintf("connected in %.1f s; nofile %s", m.ConnectTime, m.FileLimit)
		if m.Err != "" {
			notes = fmt.Sprintf("**stopped after %d of %d**: %s; %s", m.Opened, m.Wanted, escape(m.Err), notes)
		}
		servers := "?"
		if m.ServerConns >= 0 {
			servers = strconv.Itoa(m.ServerConns)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f KiB | %.1f MiB | %s | %s |\n", m.Target, m.Opened, servers,
			float64(m.BaselineKiB)/mib, float64(m.RSSKiB)/mib, float64(m.PeakKiB)/mib, m.PerConnKiB, projected/mib, verdict, notes)
	}
}

func (r results) writeFailover(w io.Writer) {
	if len(r.Failover) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Failover: kill -9 of the primary's postmaster %s into pgbench TPC-B\n\n", failoverKillAt)
	fmt.Fprintf(w, "`pgbench -n -M simple -T %d -c %d -j 2 --max-tries=%d -l`; stalls from pgbench's per-transaction log "+
		"(completion times of successful transactions). \"All clients\": the longest time in which no client completed a "+
		"transaction, and when it began relative to the kill. \"One client\": the longest time between two successful "+
		"transactions of one client, over the clients that kept going; the others stopped (aborted, or hung: no "+
		"transaction in the second half of the time from the kill to the end of -T). pgbench is killed %s after -T "+
		"would have ended it.\n\n", int(failoverDuration.Seconds()), failoverClients, failoverMaxTries, failoverGrace)
	fmt.Fprintln(w, "| endpoint | killed | longest stall, all clients | longest stall, one client | clients stopped | aborted | failed tx | retried tx | pgbench |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---|")
	for _, f := range r.Failover {
		if f.KilledMember == "" {
			fmt.Fprintf(w, "| %s | - | - | - | - | - | - | - | **FAILED**: %s |\n", f.Target, f.failure())
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d of %d | %d | %d | %d | %s |\n", f.Target, f.KilledMember,
			f.globalStall(), ms(f.ClientGap), f.Stopped, failoverClients, f.Aborted, f.Failed, f.Retried, f.outcome())
	}
}

func (f failoverResult) globalStall() string {
	if !f.Resumed {
		return fmt.Sprintf("no commit after %s", signedMS(f.LastCommit))
	}
	return fmt.Sprintf("%s (from %s)", ms(f.GlobalGap), signedMS(f.GlobalGapFrom))
}

func (f failoverResult) outcome() string {
	switch {
	case f.Hung:
		return fmt.Sprintf("**hung**: killed %s after start (log partial)", failoverDuration+failoverGrace)
	case f.Err != "":
		return "error: " + escape(f.Err)
	case f.ExitCode != 0:
		return fmt.Sprintf("exit %d", f.ExitCode)
	}
	return "ok"
}

func (f failoverResult) summary() string {
	if f.KilledMember == "" {
		return "FAILED: " + f.failure()
	}
	return fmt.Sprintf("killed %s; longest stall %s (all clients), %s (one client); "+
		"%d clients stopped, %d aborted, %d failed, %d retried; pgbench %s",
		f.KilledMember, f.globalStall(), ms(f.ClientGap), f.Stopped, f.Aborted, f.Failed, f.Retried, f.outcome())
}

func signedMS(d time.Duration) string { return fmt.Sprintf("%+.0f ms", float64(d)/msPerNs) }

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f ms", float64(d)/msPerNs)
}

func escape(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
