// Command holdfast is an Aurora-grade resilience layer for self-hosted
// PostgreSQL. This package only parses flags and wires components together.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/store"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitInvalid = 2
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"up":         {"run the whole cluster on this machine (embedded etcd, one agent per member)", runUp},
	"agent":      {"run one member's agent (what `up` starts per member)", runAgent},
	"proxy":      {"run the PostgreSQL proxy (writer and reader endpoints); `proxy status`: its state, clients and pools", runProxy},
	"status":     {"show the cluster's members, roles and replication", runStatus},
	"switchover": {"planned change of primary, without losing writes", runSwitchover},
	"failover":   {"manual failover when the primary is gone", runFailover},
	"region":     {"`region status`: regions, roles, lag; `region switchover --to R`: move the primary region, no data loss", runRegion},
	"pause":      {"stop automatic failover (maintenance mode)", runPause},
	"resume":     {"re-enable automatic failover", runResume},
	"events":     {"show (and follow) the cluster's event log", runEvents},
	"api":        {"run the HTTP server (ToDo API, OAuth2 tokens, write buffer routes); `api client create`, `api keys rotate`", runAPI},
	"buffer":     {"`buffer status`: the durable write buffer's pending writes, commit rate and dead letters", runBuffer},
	"drill":      {"failover drills: `drill run --scenario S --path P`, `drill matrix`: downtime, errors, lost writes", runDrill},
	"dlq":        {"the write buffer's dead-letter queue: `dlq list`, `dlq redrive`, `dlq drop`", runDLQ},
	"config":     {"`config check FILE`: validate a config file", runConfig},
	"version":    {"print the version", runVersion},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "holdfast: failover in seconds for self-hosted PostgreSQL\n\nUsage: holdfast COMMAND [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun `holdfast COMMAND --help` for a command's flags. Docs: docs/ in the source tree.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitInvalid
		}
		return exitOK
	}
	if args[0] == "--version" {
		return runVersion(nil, stdout, stderr)
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "holdfast: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitInvalid
	}
	return c.run(args[1:], stdout, stderr)
}

// newLogger logs to stderr at HOLDFAST_LOG_LEVEL (default info).
func newLogger(w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(os.Getenv("HOLDFAST_LOG_LEVEL")) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// loadConfig loads FILE (or defaults) with env overrides; on error it prints
// the reason and returns the exit code to use.
func loadConfig(path string, stderr io.Writer) (config.Config, int) {
	if path == "" {
		path = os.Getenv("HOLDFAST_CONFIG")
	}
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "holdfast: %v\n", err)
		if errors.Is(err, config.ErrInvalid) {
			return cfg, exitInvalid
		}
		return cfg, exitFailed
	}
	return cfg, exitOK
}

func fail(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "holdfast: "+format+"\n", args...)
	return exitFailed
}

// openStore connects to the cluster's etcd as the config says.
func openStore(cfg config.Config, log *slog.Logger) (*store.Store, error) {
	return store.Open(store.Config{Cluster: cfg.Cluster, Endpoints: cfg.Etcd.Endpoints,
		DialTimeout: cfg.Etcd.DialTimeout.D(), RequestTimeout: cfg.Etcd.RequestTimeout.D()}, log)
}
