package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bench names and kinds of PreforkBench's results.
const (
	// BenchPreforkGet and BenchPreforkPost are the Benches of the HTTP
	// GET /{key} and POST /{key} figures; Metric is KindShm or
	// KindPerProcess with the worker count, then ", req/s", ", p50" or
	// ", p99".
	BenchPreforkGet  = "prefork.get"
	BenchPreforkPost = "prefork.post"
)

// ErrPrefork wraps failures to build or run the prefork example.
var ErrPrefork = errors.New("bench: prefork")

// PreforkConfig configures PreforkBench. The zero value is the default.
type PreforkConfig struct {
	// Binary is the prefork executable; empty: built from the module with
	// `go build` (shmbench run from the source tree).
	Binary string
	// Workers is the number of worker processes (default 4).
	Workers int
	// Clients is the number of concurrent HTTP clients (keep-alive
	// connections) of the load generator (default 16).
	Clients int
	// Duration is how long each of GET and POST is measured per run
	// (default 2 s).
	Duration time.Duration
	// Rounds is the number of runs of each mode, alternating (default 2).
	Rounds int
	// Stderr receives the example's log (nil: discarded).
	Stderr io.Writer
}

func (c *PreforkConfig) defaults() {
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Clients <= 0 {
		c.Clients = 16
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 2
	}
}

// preforkKeys is the number of records the load generator reads and writes.
const preforkKeys = 100

// PreforkBench measures HTTP requests per second through examples/prefork
// (cfg.Workers worker processes on a simulated 3-node cluster, GET and
// POST /{key}, which read and write records through the record client)
// from cfg.Clients keep-alive HTTP clients in this process: with the
// shared cluster view (one tending worker) and, as the baseline in the
// same run, with every worker tending for itself (-no-shm). Modes
// alternate over cfg.Rounds runs; the figures are the sums over rounds
// (req/s) and the merged latency histograms (p50, p99).
func PreforkBench(ctx context.Context, cfg PreforkConfig) ([]Result, error) {
	cfg.defaults()
	bin, cleanup, err := exampleBinary(ctx, cfg.Binary, "prefork", ErrPrefork, "PreforkConfig.Binary")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var runs [2][2]phaseResult // [shm, per-process][get, post]
	var secs [2][2]float64     // the rounds run one after the other: their times add up
	for round := range cfg.Rounds {
		for _, noShm := range []bool{round%2 == 1, round%2 == 0} {
			mode := 0
			if noShm {
				mode = 1
			}
			get, post, err := preforkRun(ctx, cfg, bin, noShm)
			if err != nil {
				return nil, err
			}
			for j, r := range []phaseResult{get, post} {
				mergePhase(&runs[mode][j], r)
				secs[mode][j] += r.Secs
			}
		}
	}
	for mode := range runs {
		for j := range runs[mode] {
			runs[mode][j].Secs = secs[mode][j]
		}
	}
	shm, per := fmt.Sprintf("%d workers, %s", cfg.Workers, KindShm), fmt.Sprintf("%d workers, %s", cfg.Workers, KindPerProcess)
	detail := fmt.Sprintf("%d keep-alive clients, %v per phase, %d rounds, simulated 3-node cluster", cfg.Clients, cfg.Duration, cfg.Rounds)
	var out []Result
	for j, bench := range []string{BenchPreforkGet, BenchPreforkPost} {
		m, b := runs[0][j], runs[1][j]
		rate := func(r phaseResult) float64 { return float64(r.Ops) / r.Secs }
		d := fmt.Sprintf("%s; errors %d (baseline %d)", detail, m.Errors, b.Errors)
		out = append(out,
			Result{Bench: bench, Metric: shm + ", req/s", Detail: d, Value: rate(m), Unit: "req/s"}.WithBaseline(per+", req/s", rate(b)),
			Result{Bench: bench, Metric: shm + ", p50", Detail: d, Value: m.Lat.quantile(0.5), Unit: "µs"}.WithBaseline(per+", p50", b.Lat.quantile(0.5)),
			Result{Bench: bench, Metric: shm + ", p99", Detail: d, Value: m.Lat.quantile(0.99), Unit: "µs"}.WithBaseline(per+", p99", b.Lat.quantile(0.99)))
	}
	return out, nil
}

// preforkRun starts the example, loads it with GETs then POSTs for
// cfg.Duration each, and stops it.
func preforkRun(ctx context.Context, cfg PreforkConfig, bin string, noShm bool) (get, post phaseResult, err error) {
	key, err := freeTestKey("prefork")
	if err != nil {
		return get, post, err
	}
	defer func() { err = errors.Join(err, removeSegment(key)) }()
	args := []string{"-sim", "3", "-workers", fmt.Sprint(cfg.Workers), "-addr", "127.0.0.1:0", "-shm-key", fmt.Sprintf("%#x", uint32(key))}
	if noShm {
		args = append(args, "-no-shm")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = cfg.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return get, post, err
	}
	if err := cmd.Start(); err != nil {
		return get, post, fmt.Errorf("%w: %v", ErrPrefork, err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case werr := <-done:
			if werr != nil {
				err = errors.Join(err, fmt.Errorf("%w: exit: %v", ErrPrefork, werr))
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			err = errors.Join(err, fmt.Errorf("%w: no exit 20 s after SIGINT", ErrPrefork))
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return get, post, fmt.Errorf("%w: no address: %v", ErrPrefork, err)
	}
	base := "http://" + strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := `{"x": 1234, "y": "abcd"}`
	do := func(method string, i int) error {
		var rd io.Reader
		if method == http.MethodPost {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("%s/bench-%d", base, i), rd)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", method, resp.Status)
		}
		return err
	}
	// Every worker routing, and every key written, before the timed
	// phases.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < preforkKeys; {
		if err := do(http.MethodPost, i); err != nil {
			if time.Now().After(deadline) {
				return get, post, fmt.Errorf("%w: not serving: %v", ErrPrefork, err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		i++
	}
	// A worker that has not finished its first tend answers 500: give
	// every worker (tending for itself, with -no-shm) a tend interval of
	// the example's (1 s) to get there.
	if err := sleepCtx(ctx, 1500*time.Millisecond); err != nil {
		return get, post, err
	}
	phase := func(method string) phaseResult {
		res := make([]phaseResult, cfg.Clients)
		var wg sync.WaitGroup
		start := time.Now()
		end := start.Add(cfg.Duration)
		for c := range cfg.Clients {
			wg.Go(func() {
				r := &res[c]
				for i := c; ; i++ {
					t0 := time.Now()
					if !t0.Before(end) {
						return
					}
					if do(method, i%preforkKeys) != nil {
						r.Errors++
					}
					r.Lat.add(time.Since(t0))
					r.Ops++
				}
			})
		}
		wg.Wait()
		var all phaseResult
		for _, r := range res {
			mergePhase(&all, r)
		}
		all.Secs = time.Since(start).Seconds()
		return all
	}
	get = phase(http.MethodGet)
	post = phase(http.MethodPost)
	return get, post, nil
}
