package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/internal/api"
	"github.com/holdfast/holdfast/internal/buffer"
	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/problem"
)

// adminTimeout bounds one administration request.
const adminTimeout = 90 * time.Second

// adminClient calls the api server's administration routes with the admin
// token.
type adminClient struct {
	base  string
	token string
}

func newAdminClient(cfg config.Config) (*adminClient, error) {
	if !cfg.API.Enabled {
		return nil, fmt.Errorf("api.enabled is false, so nothing serves the buffer's administration routes")
	}
	token, err := api.ReadToken(cfg.API.AdminTokenFile)
	if err != nil {
		return nil, fmt.Errorf("%v (api.admin_token_file; holdfast up creates it)", err)
	}
	return &adminClient{base: "http://" + dialAddr(cfg.API.Addr), token: token}, nil
}

// do sends the request and returns the body of a 2xx answer; otherwise the
// problem's detail as the error.
func (c *adminClient) do(method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: adminTimeout}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the api server at %s (api.addr): %v; is holdfast up running?", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var p problem.Details
		if json.Unmarshal(b, &p) == nil && p.Detail != "" {
			return nil, &httpError{status: resp.StatusCode, detail: p.Detail}
		}
		return nil, &httpError{status: resp.StatusCode, detail: strings.TrimSpace(string(b))}
	}
	return b, nil
}

type httpError struct {
	status int
	detail string
}

func (e *httpError) Error() string { return fmt.Sprintf("%s: %s", http.StatusText(e.status), e.detail) }

// printJSON indents a JSON answer for --json.
func printJSON(stdout io.Writer, body []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := stdout.Write(out.Bytes())
	return err
}

func runBuffer(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintf(stderr, "Usage: holdfast buffer status [--config FILE] [--json]\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitInvalid
	}
	fs := flag.NewFlagSet("buffer status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	asJSON := fs.Bool("json", false, "print the status as JSON (stable field names, for scripts)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: holdfast buffer status [--config FILE] [--json]\n\n"+
			"Shows the durable write buffer: whether it is drained (nothing pending, its JetStream stream empty,\n"+
			"nothing awaiting a standby region), writes pending (accepted, not yet committed), the age of the\n"+
			"oldest, the commit rate over the last 10 s, the stream's batches, batches awaiting a standby region\n"+
			"or applied again after a primary change, and the dead-letter count (holdfast dlq list shows them).\n"+
			"It asks the api server at api.addr with the token in api.admin_token_file.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err)
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	c, err := newAdminClient(cfg)
	if err != nil {
		return fail(stderr, "buffer status: %v", err)
	}
	body, err := c.do("GET", "/v1/buffer/status", nil)
	if err != nil {
		return fail(stderr, "buffer status: %v", err)
	}
	if *asJSON {
		return boolExit(printJSON(stdout, body) != nil)
	}
	var st buffer.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fail(stderr, "buffer status: invalid answer: %v", err)
	}
	drained := "no"
	if st.Drained {
		drained = "yes (nothing pending, the stream empty, nothing awaiting a standby region)"
	}
	fmt.Fprintf(stdout, "Drained:      %s\n", drained)
	fmt.Fprintf(stdout, "Pending:      %d writes (oldest %s)\n", st.Pending, (time.Duration(st.OldestPendingSeconds*1e3) * time.Millisecond).String())
	fmt.Fprintf(stdout, "Committing:   %.1f writes/s (last 10 s)\n", st.CommittedPerSecond)
	fmt.Fprintf(stdout, "Dead letters: %d (holdfast dlq list)\n", st.Dead)
	fmt.Fprintf(stdout, "Since start:  %d accepted, %d committed, %d duplicates skipped, %d transient retries, %d dead-lettered\n",
		st.Accepted, st.Committed, st.Duplicates, st.TransientRetries, st.DeadLettered)
	fmt.Fprintf(stdout, "JetStream:    stream %s, %d batches, %d bytes, at %s; dead-letter limit %d attempts\n",
		st.Stream, st.StreamBatches, st.StreamBytes, st.NATS, st.MaxAttempts)
	fmt.Fprintf(stdout, "Regions:      %d batches committed and awaiting a standby region; %d batches applied again after a primary change\n",
		st.AwaitingRegions, st.Redelivered)
	return exitOK
}

func dlqUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: holdfast dlq list    [--config FILE] [--json] [--limit N]\n"+
		"       holdfast dlq redrive [--config FILE] [--json] (--key K | --all)\n"+
		"       holdfast dlq drop    [--config FILE] [--json] --key K\n\n"+
		"The dead-letter queue holds writes that failed permanently buffer.max_attempts times (invalid data,\n"+
		"constraint violations), with their last error. Fix the cause, then redrive: the write goes back to\n"+
		"the buffer with a fresh allowance of attempts and is applied once, however often it is redriven.\n"+
		"Drop deletes a write for good.\n")
}

func runDLQ(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		dlqUsage(stderr)
		return exitInvalid
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" {
		dlqUsage(stdout)
		return exitOK
	}
	if sub != "list" && sub != "redrive" && sub != "drop" {
		fmt.Fprintf(stderr, "holdfast dlq: unknown subcommand %q\n\n", sub)
		dlqUsage(stderr)
		return exitInvalid
	}
	fs := flag.NewFlagSet("dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file (default: built-in demo config, or $HOLDFAST_CONFIG)")
	asJSON := fs.Bool("json", false, "print the answer as JSON (for scripts)")
	key := fs.String("key", "", "idempotency key of the write")
	all := fs.Bool("all", false, "redrive every dead-lettered write")
	limit := fs.Int("limit", 0, "list at most N writes (0: all)")
	fs.Usage = func() { dlqUsage(stderr); fmt.Fprintf(stderr, "\nFlags:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return flagExit(err)
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "holdfast dlq %s: unexpected argument %q\n", sub, fs.Arg(0))
		return exitInvalid
	case sub == "redrive" && (*key == "") == !*all:
		fmt.Fprintf(stderr, "holdfast dlq redrive: give either --key K or --all\n")
		return exitInvalid
	case sub == "drop" && *key == "":
		fmt.Fprintf(stderr, "holdfast dlq drop: --key is required\n")
		return exitInvalid
	case *limit < 0:
		fmt.Fprintf(stderr, "holdfast dlq list: --limit must not be negative\n")
		return exitInvalid
	}
	cfg, code := loadConfig(*cfgPath, stderr)
	if code != exitOK {
		return code
	}
	c, err := newAdminClient(cfg)
	if err != nil {
		return fail(stderr, "dlq %s: %v", sub, err)
	}
	var body []byte
	switch sub {
	case "list":
		body, err = c.do("GET", fmt.Sprintf("/v1/dlq?limit=%d", *limit), nil)
	case "redrive":
		body, err = c.do("POST", "/v1/dlq/redrive", buffer.RedriveRequest{Key: *key, All: *all})
	case "drop":
		body, err = c.do("DELETE", "/v1/dlq/"+url.PathEscape(*key), nil)
	}
	if err != nil {
		return fail(stderr, "dlq %s: %v", sub, err)
	}
	if *asJSON {
		return boolExit(printJSON(stdout, body) != nil)
	}
	switch sub {
	case "list":
		var l struct {
			Writes []buffer.DeadJSON `json:"writes"`
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return fail(stderr, "dlq list: invalid answer: %v", err)
		}
		if len(l.Writes) == 0 {
			fmt.Fprintln(stdout, "The dead-letter queue is empty.")
			return exitOK
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tKIND\tATTEMPTS\tACCEPTED\tDEAD\tLAST ERROR")
		for _, d := range l.Writes {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", d.Key, d.Kind, d.Attempts, d.AcceptedAt.Local().Format(time.DateTime),
				d.DeadAt.Local().Format(time.DateTime), oneLine(d.LastError, 100))
		}
		tw.Flush()
	case "redrive":
		var r buffer.RedriveResult
		if err := json.Unmarshal(body, &r); err != nil {
			return fail(stderr, "dlq redrive: invalid answer: %v", err)
		}
		fmt.Fprintf(stdout, "Redriven: %d", len(r.Redriven))
		if len(r.AlreadyRedriven) > 0 {
			fmt.Fprintf(stdout, " (already redriven before: %s)", strings.Join(r.AlreadyRedriven, ", "))
		}
		fmt.Fprintln(stdout, "\nEach is applied once; holdfast buffer status shows the progress.")
	case "drop":
		fmt.Fprintf(stdout, "Dropped %q: it will not be applied.\n", *key)
	}
	return exitOK
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}
