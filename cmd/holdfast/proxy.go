package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"sort"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/internal/proxy"
)

func runProxy(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "status" {
		return runProxyStatus(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	regionName := fs.String("region", "", "run this region's endpoints (regions[].proxy); default: the primary_region's (proxy.writer_addr ...)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: holdfast proxy [--config FILE] [--region R]\n       holdfast proxy status [--config FILE] [--json]\n\n"+
			"Runs the PostgreSQL proxy in the foreground (`holdfast up` runs one itself): the writer endpoint\n"+
			"follows the primary and holds new connections while it changes; the reader endpoint balances over\n"+
			"healthy replicas. Clients log in with SCRAM-SHA-256 against proxy.users_file. Prometheus metrics\n"+
			"and status are served on proxy.admin_addr; `holdfast proxy status --help` shows the status command.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	log := newLogger(stderr)
	st, err := openStore(cfg, log)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	defer st.Close()
	region := *regionName
	if region == "" {
		region = cfg.PrimaryRegion
	}
	svc, err := proxy.StartRegion(cfg, region, st, log)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	fmt.Fprintf(stdout, "holdfast proxy: region %s: writer %s, reader %s\n", region, svc.Addr("writer"), svc.Addr("reader"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return exitOK + boolExit(svc.Close() != nil)
}

func boolExit(failed bool) int {
	if failed {
		return exitFailed
	}
	return exitOK
}

// proxyStatusTimeout bounds `holdfast proxy status`'s request.
const proxyStatusTimeout = 5 * time.Second

func runProxyStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("proxy status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	asJSON := fs.Bool("json", false, "print the proxy's JSON status (stable field names, for scripts)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: holdfast proxy status [--config FILE] [--json]\n\n"+
			"Shows a running proxy's state (serving, or holding new work while there is no writer), its writer,\n"+
			"clients per endpoint, server connections, clients waiting for a writer, and its pools. It asks the\n"+
			"proxy at proxy.admin_addr (GET /status; Prometheus metrics are at /metrics there).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitInvalid
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	if cfg.Proxy.AdminAddr == "" {
		return fail(stderr, "proxy status: proxy.admin_addr is empty, so the proxy serves no status; set it (default 127.0.0.1:6434) and restart the proxy")
	}
	addr := dialAddr(cfg.Proxy.AdminAddr)
	body, err := getProxyStatus(addr)
	if err != nil {
		return fail(stderr, "proxy status: cannot reach the proxy at %s (proxy.admin_addr): %v; is it running (holdfast up, or holdfast proxy)?", addr, err)
	}
	if *asJSON {
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return fail(stderr, "proxy status: %s answered with invalid JSON: %v", addr, err)
		}
		out.WriteByte('\n')
		_, _ = stdout.Write(out.Bytes())
		return exitOK
	}
	var st proxy.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fail(stderr, "proxy status: %s answered with invalid JSON: %v", addr, err)
	}
	printProxyStatus(stdout, st)
	return exitOK
}

// dialAddr is where to reach a listener bound to addr: loopback when it is
// bound to all interfaces.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func getProxyStatus(addr string) ([]byte, error) {
	client := &http.Client{Timeout: proxyStatusTimeout}
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s", resp.Status)
	}
	return body, nil
}

// sortedKeys returns m's keys in the order less gives.
func sortedKeys[V any](m map[string]V, less func(a, b string) bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return less(keys[i], keys[j]) })
	return keys
}

func printProxyStatus(w io.Writer, s proxy.Status) {
	writer := "none"
	if s.Writer != nil {
		writer = fmt.Sprintf("%s (%s)", s.Writer.Member, s.Writer.Addr)
	}
	fmt.Fprintf(w, "Proxy: %s  writer: %s  uptime: %s\n", s.State, writer, time.Duration(s.UptimeSeconds)*time.Second)
	writerFirst := func(a, b string) bool { return a > b }
	clients := ""
	for i, n := range sortedKeys(s.Clients, writerFirst) {
		if i > 0 {
			clients += ", "
		}
		clients += fmt.Sprintf("%s %d", n, s.Clients[n])
		if p := s.Parked[n]; p > 0 {
			clients += fmt.Sprintf(" (%d parked)", p)
		}
	}
	fmt.Fprintf(w, "Clients: %s  servers: %d  waiting: %d  pool_mode: %s  pool_size: %d  hold_window: %s\n",
		clients, s.Servers, s.Waiting, s.PoolMode, s.PoolSize, s.HoldWindow)
	// Connections ended since the start, per endpoint and cause.
	ended := ""
	for _, n := range sortedKeys(s.Ended, writerFirst) {
		if ended != "" {
			ended += "; "
		}
		ended += n
		for i, cause := range sortedKeys(s.Ended[n], func(a, b string) bool { return a < b }) {
			if i > 0 {
				ended += ","
			}
			ended += fmt.Sprintf(" %s %d", cause, s.Ended[n][cause])
		}
	}
	if ended == "" {
		ended = "none"
	}
	fmt.Fprintf(w, "Goroutines serving clients: %d  ended: %s\n", s.Goroutines, ended)
	if len(s.Pools) == 0 {
		fmt.Fprintln(w, "No server connections.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tMEMBER\tADDR\tUSER\tDATABASE\tACTIVE\tIDLE\tWAITING\tSIZE")
	for _, p := range s.Pools {
		member := p.Member
		if p.Retired {
			member += " (retired)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", p.Endpoint, member, p.Addr, p.User, p.Database, p.Active, p.Idle, p.Waiting, p.Size)
	}
	tw.Flush()
}
