// Command api benchmarks holdfast's ToDo API through a whole `holdfast up`
// deployment (three members, proxy, api server, write buffer), in one run:
// GET /v1/todos/{id} (from the reader endpoint), POST /v1/todos direct
// (through the proxy's writer) and buffered (through the durable buffer),
// each with -clients concurrent HTTP clients for -duration, with real
// OAuth2 tokens. Load runs in separate OS processes (this binary with
// -role). It reports requests/s, p50/p99, errors, and the CPU used by
// `holdfast up` (api server, proxy, buffer: one process), by PostgreSQL and
// by the load generator. Run it with bench/api.sh from the repository root.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/holdfast/holdfast/internal/config"
	"github.com/holdfast/holdfast/internal/freeport"
	"github.com/holdfast/holdfast/internal/supervisor"
)

type options struct {
	duration       time.Duration
	clients, procs int
	seed           int
	asJSON, keep   bool
	// Load-process role.
	role, target, token string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 30*time.Second, "length of each phase")
	flag.IntVar(&o.clients, "clients", 64, "concurrent HTTP clients")
	flag.IntVar(&o.procs, "procs", 2, "load processes the clients are spread over")
	flag.IntVar(&o.seed, "seed", 1000, "todos created before the GET phase (GETs pick one at random)")
	flag.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory")
	flag.StringVar(&o.role, "role", "", "internal: run as a load process (get, post-direct, post-buffered)")
	flag.StringVar(&o.target, "target", "", "internal: base URL of the api server")
	flag.StringVar(&o.token, "token", "", "internal: access token")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: bench/api.sh [flags]\n\nBenchmarks the ToDo API through `holdfast up`: GET by id, POST direct, POST buffered.\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.clients < 1 || o.procs < 1 || o.procs > o.clients || o.duration <= 0 || o.seed < 1 {
		fmt.Fprintln(os.Stderr, "api bench: -clients, -procs and -seed must be positive, -procs <= -clients")
		os.Exit(2)
	}
	if o.role != "" {
		os.Exit(runLoad(o))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, o))
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "api bench: "+format+"\n", args...) }

// loadResult is what a load process prints.
type loadResult struct {
	OK, Failed int
	FirstErr   string
	Seconds    float64
	LatencyUS  []int32
	CPUSeconds float64
}

func runLoad(o options) int {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.clients, MaxConnsPerHost: o.clients}}
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	deadline := time.Now().Add(o.duration)
	start := time.Now()
	for c := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(os.Getpid())))
			var lat []int32
			ok, failed, first := 0, 0, ""
			for i := 0; time.Now().Before(deadline); i++ {
				var req *http.Request
				switch o.role {
				case "get":
					req, _ = http.NewRequest("GET", o.target+"/v1/todos/"+strconv.Itoa(1+rng.IntN(o.seed)), nil)
				default:
					mode := "direct"
					if o.role == "post-buffered" {
						mode = "buffered"
					}
					req, _ = http.NewRequest("POST", o.target+"/v1/todos?mode="+mode, strings.NewReader(`{"task":"benchmark task `+strconv.Itoa(i)+`","status":"wip"}`))
					req.Header.Set("Content-Type", "application/json")
				}
				req.Header.Set("Authorization", "Bearer "+o.token)
				t := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				ok++
				lat = append(lat, int32(time.Since(t).Microseconds()))
			}
			mu.Lock()
			res.OK += ok
			res.Failed += failed
			if res.FirstErr == "" {
				res.FirstErr = first
			}
			res.LatencyUS = append(res.LatencyUS, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		res.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	return boolCode(json.NewEncoder(os.Stdout).Encode(res) != nil)
}

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

func boolCode(failed bool) int {
	if failed {
		return 1
	}
	return 0
}

// phase is one measured phase.
type phase struct {
	Name      string  `json:"name"`
	Requests  int     `json:"requests"`
	Failed    int     `json:"failed"`
	FirstErr  string  `json:"first_error,omitempty"`
	PerSecond float64 `json:"requests_per_second"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	// CPU shares of the machine (1.0 = every core busy) during the phase.
	UpCPU       float64 `json:"holdfast_up_cpu_share"`
	PostgresCPU float64 `json:"postgres_cpu_share"`
	LoadCPU     float64 `json:"load_cpu_share"`
	// UpCPUPerRequest is holdfast up's CPU time per request, microseconds.
	UpCPUPerRequest float64 `json:"holdfast_up_cpu_us_per_request"`
}

func run(ctx context.Context, o options) int {
	dir, err := os.MkdirTemp("", "holdfast-bench-api-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	_ = os.Chmod(dir, 0o755)
	if o.keep {
		logf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := filepath.Join(dir, "holdfast")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/holdfast").CombinedOutput(); err != nil {
		logf("build holdfast (run from the repository root): %v\n%s", err, out)
		return 1
	}
	cfg, err := benchConfig(dir)
	if err != nil {
		logf("%v", err)
		return 1
	}
	cfgPath := filepath.Join(dir, "holdfast.yaml")
	b, _ := cfg.Marshal()
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		logf("%v", err)
		return 1
	}
	logf("starting holdfast up (three members, proxy, api server, write buffer)")
	upLog := filepath.Join(dir, "up.log")
	up, err := startUp(ctx, bin, cfgPath, upLog)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer func() {
		_ = up.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = up.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = up.Process.Kill()
		}
	}()
	cfg.Resolve()
	base := "http://" + cfg.API.Addr
	token, err := getToken(base, filepath.Join(cfg.Postgres.SecretsDir, supervisor.ClientSecretsEnv))
	if err != nil {
		logf("token: %v", err)
		return 1
	}
	logf("seeding %d todos", o.seed)
	if err := seed(base, token, o.seed); err != nil {
		logf("seed: %v", err)
		return 1
	}
	var phases []phase
	for _, role := range []string{"get", "post-direct", "post-buffered"} {
		logf("%s: %d clients in %d processes for %s", role, o.clients, o.procs, o.duration)
		p, err := runPhase(ctx, o, role, base, token, up.Process.Pid)
		if err != nil {
			logf("%s: %v", role, err)
			return 1
		}
		phases = append(phases, p)
	}
	if o.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"clients": o.clients, "procs": o.procs, "duration": o.duration.String(), "phases": phases})
		return 0
	}
	fmt.Printf("\nholdfast ToDo API through holdfast up: %d clients in %d load processes, %s per phase, %d CPUs\n\n", o.clients, o.procs, o.duration, ncpu())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tREQ/S\tP50 MS\tP99 MS\tFAILED\tCPU SHARE: UP\tPOSTGRES\tLOAD\tUP CPU/REQ")
	for _, p := range phases {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%d\t%.0f%%\t%.0f%%\t%.0f%%\t%.0f us\n", p.Name, p.PerSecond, p.P50, p.P99, p.Failed,
			100*p.UpCPU, 100*p.PostgresCPU, 100*p.LoadCPU, p.UpCPUPerRequest)
	}
	tw.Flush()
	for _, p := range phases {
		if p.Failed > 0 {
			fmt.Printf("%s: %d failed, first: %s\n", p.Name, p.Failed, p.FirstErr)
		}
	}
	return 0
}

// benchConfig is the default deployment on free ports in dir.
func benchConfig(dir string) (config.Config, error) {
	cfg := config.Default()
	cfg.PrimaryRegionOnly()
	cfg.Cluster = "apibench"
	cfg.DataDir = filepath.Join(dir, "cluster")
	addr := func() (string, error) {
		p, err := freeport.Pick()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("127.0.0.1:%d", p), nil
	}
	var addrs []string
	for range 8 + 2*len(cfg.Regions[0].Members) {
		a, err := addr()
		if err != nil {
			return cfg, err
		}
		addrs = append(addrs, a)
	}
	cfg.Etcd.ClientURL, cfg.Etcd.PeerURL = "http://"+addrs[0], "http://"+addrs[1]
	cfg.Etcd.Endpoints = []string{addrs[0]}
	cfg.Proxy.WriterAddr, cfg.Proxy.ReaderAddr, cfg.Proxy.AdminAddr = addrs[2], addrs[3], addrs[4]
	cfg.API.Addr, cfg.Buffer.EmbeddedAddr = addrs[5], addrs[6]
	cfg.API.RateLimit = 0
	for i := range cfg.Regions[0].Members {
		_, p, _ := net.SplitHostPort(addrs[8+2*i])
		_, mp, _ := net.SplitHostPort(addrs[9+2*i])
		cfg.Regions[0].Members[i].Port, _ = strconv.Atoi(p)
		cfg.Regions[0].Members[i].MetricsPort, _ = strconv.Atoi(mp)
	}
	return cfg, cfg.Validate()
}

func startUp(ctx context.Context, bin, cfgPath, logPath string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "up", "--config", cfgPath, "--quiet")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("Press Ctrl-C to stop.")) {
			return cmd, nil
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	b, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("holdfast up did not come up:\n%s", b)
}

// getToken reads the demo client's credentials and gets a token.
func getToken(base, envPath string) (string, error) {
	f, err := os.Open(envPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vals[k] = v
		}
	}
	req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(vals["CLIENT_ID"], vals["CLIENT_SECRET"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("HTTP %d: %v", resp.StatusCode, err)
	}
	return tok.AccessToken, nil
}

func seed(base, token string, n int) error {
	for i := range n {
		req, _ := http.NewRequest("POST", base+"/v1/todos", strings.NewReader(fmt.Sprintf(`{"task":"seed %d"}`, i)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
	}
	// The GET phase reads from replicas: wait until they have the seed.
	time.Sleep(2 * time.Second)
	return nil
}

func runPhase(ctx context.Context, o options, role, base, token string, upPID int) (phase, error) {
	type out struct {
		r   loadResult
		err error
	}
	upBefore, pgBefore := procCPU(upPID), postgresCPU()
	start := time.Now()
	results := make(chan out, o.procs)
	for i := range o.procs {
		n := o.clients / o.procs
		if i < o.clients%o.procs {
			n++
		}
		cmd := exec.CommandContext(ctx, os.Args[0], "-role", role, "-target", base, "-token", token,
			"-clients", strconv.Itoa(n), "-procs", "1", "-seed", strconv.Itoa(o.seed), "-duration", o.duration.String())
		cmd.Stderr = os.Stderr
		go func() {
			b, err := cmd.Output()
			var r loadResult
			if err == nil {
				err = json.Unmarshal(b, &r)
			}
			results <- out{r, err}
		}()
	}
	p := phase{Name: role}
	var lat []int32
	var loadCPU, secs float64
	for range o.procs {
		r := <-results
		if r.err != nil {
			return p, r.err
		}
		p.Requests += r.r.OK
		p.Failed += r.r.Failed
		if p.FirstErr == "" {
			p.FirstErr = r.r.FirstErr
		}
		lat = append(lat, r.r.LatencyUS...)
		loadCPU += r.r.CPUSeconds
		secs = max(secs, r.r.Seconds)
	}
	wall := time.Since(start).Seconds()
	upCPU, pgCPU := procCPU(upPID)-upBefore, postgresCPU()-pgBefore
	n := float64(ncpu())
	p.PerSecond = float64(p.Requests) / secs
	p.UpCPU, p.PostgresCPU, p.LoadCPU = upCPU/wall/n, pgCPU/wall/n, loadCPU/wall/n
	if p.Requests > 0 {
		p.UpCPUPerRequest = upCPU / float64(p.Requests) * 1e6
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		p.P50, p.P99 = float64(lat[len(lat)/2])/1000, float64(lat[len(lat)*99/100])/1000
	}
	return p, nil
}

// procCPU is a process's user+system CPU seconds, from /proc.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start after ')'.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// postgresCPU sums the CPU of every running postgres process (the three
// members' servers and backends).
func postgresCPU() float64 {
	entries, _ := os.ReadDir("/proc")
	total := 0.0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		total += procCPU(pid)
	}
	return total
}

func ncpu() int { return runtime.NumCPU() }
