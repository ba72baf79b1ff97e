package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/oauth"
	"github.com/holdfast/holdfast/internal/supervisor"
)

func apiUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: holdfast api [--config FILE]\n"+
		"       holdfast api client create NAME --scope SCOPE [--scope SCOPE...] [--config FILE] [--json]\n"+
		"       holdfast api keys rotate [--keep DURATION] [--config FILE] [--json]\n\n"+
		"`holdfast api` runs the HTTP server on its own (`holdfast up` runs one): the ToDo API behind OAuth2\n"+
		"client-credentials tokens, the durable write buffer's routes, /metrics, /healthz, /readyz and\n"+
		"/openapi.json. It reaches PostgreSQL through the proxy as the application role (secrets in\n"+
		"postgres.secrets_dir).\n\n"+
		"`api client create` adds an OAuth2 client to api.clients_file and prints its secret once (only its\n"+
		"hash is stored). Scopes: api/read, api/upsert-delete. A running server picks the client up within\n"+
		"a second.\n\n"+
		"`api keys rotate` adds a signing key to api.keys_file: new tokens are signed with it, tokens signed\n"+
		"by older keys stay valid until they expire; keys retired longer than --keep (default: twice\n"+
		"api.token_ttl) are removed.\n")
}

func runAPI(args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == "client" && args[1] == "create" {
		return runAPIClientCreate(args[2:], stdout, stderr)
	}
	if len(args) >= 2 && args[0] == "keys" && args[1] == "rotate" {
		return runAPIKeysRotate(args[2:], stdout, stderr)
	}
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	fs.Usage = func() { apiUsage(stderr); fmt.Fprintf(stderr, "\nFlags:\n"); fs.PrintDefaults() }
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
	if !cfg.API.Enabled {
		return fail(stderr, "api: api.enabled is false")
	}
	app, err := config.ReadCredentials(filepath.Join(cfg.Postgres.SecretsDir, config.AppSecrets))
	if err != nil {
		return fail(stderr, "api: %v (holdfast up creates the application role's credentials)", err)
	}
	log := newLogger(stderr)
	supervisor.TuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The dashboard, and the buffer's wait for the standby regions, need
	// the cluster's state.
	st, stErr := openStore(cfg, log)
	if stErr != nil {
		fmt.Fprintf(stderr, "holdfast api: no dashboard, and the write buffer acknowledges without waiting for standby regions: %v\n", stErr)
		st = nil
	} else {
		defer st.Close()
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	stack, err := supervisor.StartAPIStack(sctx, cfg, app, st, log)
	cancel()
	if err != nil {
		return fail(stderr, "api: %v", err)
	}
	defer stack.Close()
	fmt.Fprintf(stdout, "holdfast api: http://%s (ToDo API /v1/todos, tokens /oauth2/token, OpenAPI /openapi.json)\n", stack.Server.Addr())
	if st != nil {
		stack.StartLab(st, cfg, log)
		defer stack.Lab.Close()
		fmt.Fprintf(stdout, "holdfast api: dashboard %s\n", stack.DashboardURL())
	}
	<-ctx.Done()
	return exitOK
}

type scopeFlags []string

func (s *scopeFlags) String() string     { return strings.Join(*s, ",") }
func (s *scopeFlags) Set(v string) error { *s = append(*s, v); return nil }

func runAPIClientCreate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("api client create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	asJSON := fs.Bool("json", false, `print {"client_id","client_secret","scopes"} as JSON`)
	var scopes scopeFlags
	fs.Var(&scopes, "scope", "a scope the client may ask for (repeat: api/read, api/upsert-delete)")
	fs.Usage = func() { apiUsage(stderr); fmt.Fprintf(stderr, "\nFlags:\n"); fs.PrintDefaults() }
	// The name may come before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 || name == "" {
		fmt.Fprintf(stderr, "holdfast api client create: give exactly one client NAME\n")
		return exitInvalid
	}
	if len(scopes) == 0 {
		fmt.Fprintf(stderr, "holdfast api client create: at least one --scope is required (api/read, api/upsert-delete)\n")
		return exitInvalid
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	secret, err := oauth.CreateClient(cfg.API.ClientsFile, name, scopes)
	if err != nil {
		return fail(stderr, "api client create: %v", err)
	}
	if *asJSON {
		b, _ := json.MarshalIndent(map[string]any{"client_id": name, "client_secret": secret, "scopes": []string(scopes)}, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	fmt.Fprintf(stdout, "CLIENT_ID=%s\nCLIENT_SECRET=%s\n# scopes: %s. The secret is not stored (only its hash): keep it now.\n", name, secret, strings.Join(scopes, " "))
	return exitOK
}

func runAPIKeysRotate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("api keys rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	asJSON := fs.Bool("json", false, "print the keys after the rotation as JSON")
	keep := fs.Duration("keep", 0, "remove keys retired longer than this (default: twice api.token_ttl)")
	fs.Usage = func() { apiUsage(stderr); fmt.Fprintf(stderr, "\nFlags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	if *keep == 0 {
		*keep = 2 * cfg.API.TokenTTL.D()
	}
	if *keep < cfg.API.TokenTTL.D() {
		fmt.Fprintf(stderr, "holdfast api keys rotate: --keep %s is shorter than api.token_ttl (%s): tokens still valid would stop verifying\n", *keep, cfg.API.TokenTTL)
		return exitInvalid
	}
	ks, err := oauth.LoadOrCreateKeys(cfg.API.KeysFile)
	if err != nil {
		return fail(stderr, "api keys rotate: %v", err)
	}
	if err := ks.Rotate(cfg.API.KeysFile); err != nil {
		return fail(stderr, "api keys rotate: %v", err)
	}
	if err := ks.Prune(cfg.API.KeysFile, *keep); err != nil {
		return fail(stderr, "api keys rotate: %v", err)
	}
	info := ks.Info()
	if *asJSON {
		b, _ := json.MarshalIndent(map[string]any{"keys": info}, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	fmt.Fprintf(stdout, "Signing with key %s now; %d key(s) in %s (older ones verify tokens until they expire).\n", info[0].ID, len(info), cfg.API.KeysFile)
	return exitOK
}
