package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmkit/shmkit/arena"
)

// Bench names and metric kinds of RestartBench.
const (
	// BenchRestart: restart time of the kvstore example.
	BenchRestart = "restart"
	// KindWarm, KindCold, KindWarmChecked: the metric kinds of the
	// restart times (see RecordsMetric).
	KindWarm        = "warm"
	KindCold        = "cold"
	KindWarmChecked = "warm+check"
)

// ErrKVStore wraps failures to build or run the kvstore server.
var ErrKVStore = errors.New("bench: kvstore")

// RestartConfig configures RestartBench.
type RestartConfig struct {
	// Records are the record counts, each measured in the same run
	// (default 100k, 1M and 10M: the small size shows where the fixed
	// costs of a start lie).
	Records []int
	// Trials is the number of timed starts of each kind per size
	// (default 3); the median is reported.
	Trials int
	// Binary is the kvstore executable; empty: built from the module
	// with `go build` (shmbench run from the source tree).
	Binary string
	// Dir is where the logs are written (default: a temporary directory
	// under os.TempDir(), removed afterwards).
	Dir string
	// FileSegments keeps the index as files in a temporary directory
	// under /dev/shm (kvstore -shm-dir) instead of SysV segments (the
	// server's default store; here at free keys of the test class,
	// kvstore -sysv-base). Either is removed afterwards.
	FileSegments bool
	// Sprigs is the kvstore's -sprigs (index.Config.Sprigs, sorted-hash
	// sprigs per partition; 0: the index's default, 16). The sprig table
	// (4096 partitions × Sprigs × 8 bytes, 512 KiB at 16) is written and
	// page-faulted in by every cold rebuild: a fixed cost.
	Sprigs int
	// Stderr receives progress lines (nil: none).
	Stderr io.Writer
}

// RecordsMetric is the metric of a restart figure: its kind and record
// count, e.g. "warm restart, 1M records".
func RecordsMetric(kind string, records int) string {
	return fmt.Sprintf("%s restart, %s records", kind, countLabel(records))
}

// parseRecordsMetric undoes RecordsMetric.
func parseRecordsMetric(m string) (kind string, records int, ok bool) {
	k, rest, ok := strings.Cut(m, " restart, ")
	if !ok {
		return "", 0, false
	}
	n, ok := strings.CutSuffix(rest, " records")
	if !ok {
		return "", 0, false
	}
	mult := 1
	switch {
	case strings.HasSuffix(n, "M"):
		mult, n = 1_000_000, strings.TrimSuffix(n, "M")
	case strings.HasSuffix(n, "k"):
		mult, n = 1_000, strings.TrimSuffix(n, "k")
	}
	v, err := strconv.Atoi(n)
	if err != nil {
		return "", 0, false
	}
	return k, v * mult, true
}

// RestartBench measures the kvstore example's restart: for each record
// count, a log of that many records is written (kvstore -load) and
// indexed once; then, in the same run and alternately, the time from
// exec until the first HTTP request (a GET of a loaded record) is
// answered, for a warm restart (the index reattached from shared memory
// after a clean stop), a cold one (-coldstart: the index discarded and
// rebuilt by scanning the page-cached log) and a warm one with the full
// checksum walk of the arenas (-check). Reported: the median of each, the
// cold rebuild rate and the cold/warm ratio.
func RestartBench(ctx context.Context, cfg RestartConfig) ([]Result, error) {
	if len(cfg.Records) == 0 {
		cfg.Records = []int{100_000, 1_000_000, 10_000_000}
	}
	if cfg.Trials <= 0 {
		cfg.Trials = 3
	}
	progress := cfg.Stderr
	if progress == nil {
		progress = io.Discard
	}
	bin, cleanup, err := exampleBinary(ctx, cfg.Binary, "kvstore", ErrKVStore, "RestartConfig.Binary")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var results []Result
	for _, n := range cfg.Records {
		rs, err := restartSize(ctx, cfg, bin, n, progress)
		if err != nil {
			return results, err
		}
		results = append(results, rs...)
	}
	return results, nil
}

// restartSize measures one record count.
func restartSize(ctx context.Context, cfg RestartConfig, bin string, n int, progress io.Writer) ([]Result, error) {
	base := cfg.Dir
	if base == "" {
		base = os.TempDir()
	}
	dataDir, err := os.MkdirTemp(base, "shmbench-restart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)
	args := []string{"-dir", dataDir, "-ns", "test", "-addr", "127.0.0.1:0", "-defrag-interval", "0"}
	sprigs := ""
	if cfg.Sprigs > 0 {
		args = append(args, "-sprigs", strconv.Itoa(cfg.Sprigs))
		sprigs = fmt.Sprintf(", -sprigs %d", cfg.Sprigs)
	}
	store := "SysV segments"
	if cfg.FileSegments {
		shmDir, err := os.MkdirTemp("/dev/shm", "shmbench-restart-")
		if err != nil {
			return nil, fmt.Errorf("%w: index directory on /dev/shm: %v", ErrKVStore, err)
		}
		defer os.RemoveAll(shmDir)
		args = append(args, "-shm-dir", shmDir)
		store = "files on /dev/shm"
	} else {
		base, err := freeIndexBase("restart")
		if err != nil {
			return nil, err
		}
		defer removeIndexBlocks(base)
		args = append(args, "-sysv-base", strconv.FormatUint(uint64(base), 10))
	}

	t := time.Now()
	load := exec.CommandContext(ctx, bin, append(args, "-load", strconv.Itoa(n))...)
	if out, err := load.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: -load %d: %v: %s", ErrKVStore, n, err, out)
	}
	fmt.Fprintf(progress, "restart: %s records loaded in %v\n", countLabel(n), time.Since(t).Round(time.Millisecond))
	// The first start indexes the log (cold: no index yet) and reads it
	// into the page cache; its clean stop makes the next start warm.
	if _, err := timedStart(ctx, bin, args, "warm-up"); err != nil {
		return nil, err
	}
	var warm, cold, checked []float64
	var rebuildRate []float64
	for range cfg.Trials {
		s, err := timedStart(ctx, bin, args, "warm")
		if err != nil {
			return nil, err
		}
		warm = append(warm, ms(s.elapsed))
		s, err = timedStart(ctx, bin, append(args, "-check"), "warm")
		if err != nil {
			return nil, err
		}
		checked = append(checked, ms(s.elapsed))
		s, err = timedStart(ctx, bin, append(args, "-coldstart"), "cold")
		if err != nil {
			return nil, err
		}
		cold = append(cold, ms(s.elapsed))
		rebuildRate = append(rebuildRate, s.rebuildRate)
		fmt.Fprintf(progress, "restart: %s records: warm %.2f ms, warm+check %.1f ms, cold %.0f ms\n",
			countLabel(n), warm[len(warm)-1], checked[len(checked)-1], cold[len(cold)-1])
	}
	w, c, k := median(warm), median(cold), median(checked)
	rate := float64(n) / (c / 1e3)
	trials := fmt.Sprintf("median of %d; exec until the first GET is answered%s", cfg.Trials, sprigs)
	return []Result{
		Result{Bench: BenchRestart, Metric: RecordsMetric(KindWarm, n), Value: w, Unit: "ms",
			Detail: "index reattached from " + store + " after a clean stop; " + trials}.
			WithBaseline("cold", c).WithBaselineDetail("-coldstart: index discarded and rebuilt from the page-cached log"),
		Result{Bench: BenchRestart, Metric: RecordsMetric(KindCold, n), Value: c, Unit: "ms",
			Detail: "-coldstart: discard, scan the page-cached log into a new index; " + trials},
		Result{Bench: BenchRestart, Metric: fmt.Sprintf("cold rebuild rate, %s records", countLabel(n)), Value: rate, Unit: "records/s",
			Detail: fmt.Sprintf("records / cold restart time; the rebuild alone (scan + index inserts, 2 goroutines) ran at %.3g records/s", median(rebuildRate))}.
			WithBaseline("target", 2e6),
		Result{Bench: BenchRestart, Metric: fmt.Sprintf("cold/warm ratio, %s records", countLabel(n)), Value: c / w, Unit: "x",
			Detail: "cold restart time / warm restart time"}.WithBaseline("Aerospike published", 240),
		Result{Bench: BenchRestart, Metric: RecordsMetric(KindWarmChecked, n), Value: k, Unit: "ms",
			Detail: "-check: index.Config.CheckOnWarm walks and checks every arena structure before accepting the warm start; " + trials}.
			WithBaseline("warm", w),
	}, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return quantile(s, 0.5)
}

// startTiming is what one timed start measured.
type startTiming struct {
	elapsed     time.Duration // exec until the first GET was answered
	rebuildRate float64       // records/s of the rebuild, as logged (cold starts)
}

// timedStart runs the kvstore, times exec until a GET of a loaded record
// is answered, checks the start mode it logged, and stops it cleanly.
func timedStart(ctx context.Context, bin string, args []string, wantMode string) (startTiming, error) {
	var st startTiming
	cmd := exec.CommandContext(ctx, bin, append(slices.Clone(args), "-log-json")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return st, err
	}
	var logBuf strings.Builder
	cmd.Stderr = &logBuf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return st, fmt.Errorf("%w: start: %v", ErrKVStore, err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	addr := ""
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if a, ok := strings.CutPrefix(lines.Text(), "kvstore: listening on "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		cmd.Wait()
		stopped = true
		return st, fmt.Errorf("%w: exited before listening: %s", ErrKVStore, logBuf.String())
	}
	resp, err := http.Get("http://" + addr + "/test/demo/key-0")
	if err != nil {
		return st, fmt.Errorf("%w: first GET: %v", ErrKVStore, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	st.elapsed = time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%w: first GET of key-0 answered %s, want 200", ErrKVStore, resp.Status)
	}
	go io.Copy(io.Discard, stdout)
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	stopped = true
	if err != nil {
		return st, fmt.Errorf("%w: stop: %v: %s", ErrKVStore, err, logBuf.String())
	}
	log := logBuf.String()
	mode := ""
	for _, line := range strings.Split(log, "\n") {
		var l struct {
			Msg, Mode   string
			RecordsPerS float64 `json:"records_per_s"`
		}
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		switch l.Msg {
		case "namespace ready":
			mode = l.Mode
		case "log scanned into the index":
			st.rebuildRate = l.RecordsPerS
		}
	}
	if wantMode != "warm-up" && mode != wantMode {
		return st, fmt.Errorf("%w: expected a %s start, the log says %q: %s", ErrKVStore, wantMode, mode, log)
	}
	return st, nil
}

// RestartPlot builds the chart of RestartBench's warm and cold restart
// times against the record count; false if rs holds no such figures.
func RestartPlot(rs []Result) (Plot, bool) {
	p := Plot{
		Title:  "kvstore restart: exec until the first request is answered",
		XLabel: "records (log scale)",
		YLabel: "ms",
		LogX:   true,
	}
	series := func(kind, name string) Series {
		s := Series{Name: name}
		type pt struct{ x, y float64 }
		var pts []pt
		for _, r := range rs {
			if r.Bench != BenchRestart {
				continue
			}
			if k, n, ok := parseRecordsMetric(r.Metric); ok && k == kind {
				pts = append(pts, pt{float64(n), r.Value})
			}
		}
		slices.SortFunc(pts, func(a, b pt) int { return int(a.x - b.x) })
		for _, q := range pts {
			s.X, s.Y = append(s.X, q.x), append(s.Y, q.y)
		}
		return s
	}
	return withSeries(p,
		series(KindCold, "cold: index rebuilt from the page-cached log"),
		series(KindWarmChecked, "warm with full check of the arenas (-check)"),
		series(KindWarm, "warm: index reattached from shared memory"))
}

// restartBlocks is how many index blocks (main segment and stages) the
// benchmark removes afterwards: the ones freeIndexBase found free.
const restartBlocks = 64

// removeIndexBlocks removes every segment of the index at base.
func removeIndexBlocks(base arena.Key) {
	for b := range restartBlocks {
		removeSegment(base | arena.Key(b))
	}
	arena.SweepLockFiles()
}
