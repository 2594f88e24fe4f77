// Command shmbench runs shmkit's benchmarks across real processes and
// prints each figure beside its baseline, measured in the same run.
//
//	shmbench [flags] [seqlock|pool|lease|lookup|tend|takeover ...]
//
// With no subcommand it runs every benchmark in quick mode (under two
// minutes in all). Flags:
//
//	-procs N        processes for the seqlock and pool multi-process phases
//	                (default 2; lookup and tend sweep 1, 2, 4, 8(, 16))
//	-duration D     length of each timed multi-process phase (lookup: per
//	                process count; tend: the request-counting window)
//	-trials N       trials per lease takeover path and tend takeover
//	                (default 50; quick mode: 8 tend takeovers)
//	-interval D     tend interval of the tend and takeover benchmarks
//	                (default 100ms)
//	-plot DIR       write requests-per-second.svg and lookup-cost.svg
//	                into DIR (from the tend and lookup benchmarks)
//	-json           one JSON object per line: bench, metric, value, unit,
//	                baseline_name, baseline, ratio
//	-cpuprofile DIR write cpu.pprof into DIR (also -memprofile, -trace)
//	-quick          quick mode even with subcommands
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/pkg/profile"

	"github.com/shmkit/shmkit/bench"
	"github.com/shmkit/shmkit/bench/harness"
)

type options struct {
	procs     int
	duration  time.Duration
	trials    int
	trialsSet bool // -trials given
	interval  time.Duration
	quick     bool
	stderr    io.Writer
}

type benchmark struct {
	name string
	doc  string
	run  func(ctx context.Context, o options) ([]bench.Result, error)
}

func benchmarks() []benchmark {
	return []benchmark{
		{"seqlock", "seqlock read of a 64-byte record, uncontended and with a writer in another process", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.SeqlockConfig{Readers: max(1, o.procs-1), Duration: o.duration, Stderr: o.stderr}
			if o.quick {
				cfg.Iterations, cfg.Rounds = 2_000_000, 3
				if cfg.Duration == 0 {
					cfg.Duration = time.Second
				}
			}
			return bench.SeqlockRead(ctx, cfg)
		}},
		{"pool", "pool alloc+free pair, and processes hammering one pool", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.PoolConfig{Procs: o.procs, Duration: o.duration, Stderr: o.stderr}
			if o.quick {
				cfg.Iterations, cfg.Rounds = 1_000_000, 3
				if cfg.Duration == 0 {
					cfg.Duration = time.Second
				}
			}
			return bench.PoolBench(ctx, cfg)
		}},
		{"lease", "lease takeover latency after Release, SIGKILL and heartbeat expiry", func(ctx context.Context, o options) ([]bench.Result, error) {
			return bench.LeaseTakeover(ctx, bench.LeaseConfig{Trials: o.trials, Stderr: o.stderr})
		}},
		{"lookup", "master lookup from shared memory vs an in-process atomic-pointer map, and per process with 1-8 readers", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.LookupConfig{Duration: o.duration, Stderr: o.stderr}
			if o.quick {
				cfg.Iterations, cfg.Rounds = 2_000_000, 3
				if cfg.Duration == 0 {
					cfg.Duration = 300 * time.Millisecond
				}
			}
			return bench.LookupBench(ctx, cfg)
		}},
		{"tend", "info requests/s and partition-move propagation with 1-16 processes, with and without shared memory", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.TendConfig{TendInterval: o.interval, Window: o.duration, Stderr: o.stderr}
			if o.quick {
				cfg.Moves = 8
				if cfg.Window == 0 {
					cfg.Window = 2 * time.Second
				}
			}
			return bench.TendBench(ctx, cfg)
		}},
		{"takeover", "time from SIGKILL of the tend owner until a new owner has tended", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.TakeoverConfig{Trials: o.trials, TendInterval: o.interval, Stderr: o.stderr}
			if o.quick && !o.trialsSet {
				cfg.Trials = 8
			}
			return bench.TakeoverBench(ctx, cfg)
		}},
	}
}

func main() {
	harness.Dispatch(bench.Workloads())
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shmbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var jsonOut, verbose bool
	var cpu, mem, trace, plotDir string
	fs.IntVar(&o.procs, "procs", 2, "processes for the seqlock and pool multi-process phases")
	fs.DurationVar(&o.duration, "duration", 0, "length of each timed multi-process phase (default: per benchmark)")
	fs.IntVar(&o.trials, "trials", 50, "trials per lease takeover path, and tend takeovers (quick mode: 8)")
	fs.DurationVar(&o.interval, "interval", 0, "tend interval of the tend and takeover benchmarks (default 100ms)")
	fs.StringVar(&plotDir, "plot", "", "write the plots (SVG) into this directory")
	fs.BoolVar(&o.quick, "quick", false, "quick mode")
	fs.BoolVar(&jsonOut, "json", false, "print one JSON object per line")
	fs.BoolVar(&verbose, "v", false, "show worker processes' stderr")
	fs.StringVar(&cpu, "cpuprofile", "", "write a CPU profile (cpu.pprof) into this directory")
	fs.StringVar(&mem, "memprofile", "", "write a heap profile (mem.pprof) into this directory")
	fs.StringVar(&trace, "trace", "", "write an execution trace (trace.out) into this directory")
	all := benchmarks()
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: shmbench [flags] [benchmark ...]\n\nbenchmarks (none: all, quick mode):\n")
		for _, b := range all {
			fmt.Fprintf(stderr, "  %-8s %s\n", b.name, b.doc)
		}
		fmt.Fprintf(stderr, "\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if verbose {
		o.stderr = stderr
	}
	fs.Visit(func(f *flag.Flag) { o.trialsSet = o.trialsSet || f.Name == "trials" })
	var selected []benchmark
	if fs.NArg() == 0 {
		selected, o.quick = all, true
	}
	for _, name := range fs.Args() {
		i := slices.IndexFunc(all, func(b benchmark) bool { return b.name == name })
		if i < 0 {
			fmt.Fprintf(stderr, "shmbench: unknown benchmark %q\n", name)
			fs.Usage()
			return 2
		}
		selected = append(selected, all[i])
	}
	var modes []func(*profile.Profile)
	for _, p := range []struct {
		dir  string
		mode func(*profile.Profile)
	}{{cpu, profile.CPUProfile}, {mem, profile.MemProfile}, {trace, profile.TraceProfile}} {
		if p.dir != "" {
			modes = append(modes, p.mode, profile.ProfilePath(p.dir))
		}
	}
	if len(modes) > 2 {
		fmt.Fprintln(stderr, "shmbench: give at most one of -cpuprofile, -memprofile, -trace")
		return 2
	}
	if len(modes) > 0 {
		defer profile.Start(append(modes, profile.Quiet)...).Stop()
	}
	ctx, stop := harness.OnInterrupt(context.Background())
	defer stop()

	var results []bench.Result
	failed := false
	for _, b := range selected {
		start := time.Now()
		rs, err := b.run(ctx, o)
		results = append(results, rs...)
		if jsonOut {
			enc := json.NewEncoder(stdout)
			for _, r := range rs {
				enc.Encode(r)
			}
		}
		if err != nil {
			failed = true
			fmt.Fprintf(stderr, "shmbench: %s: %v\n", b.name, err)
			if errors.Is(err, context.Canceled) {
				break
			}
		}
		if !jsonOut {
			fmt.Fprintf(stderr, "shmbench: %s done in %v\n", b.name, time.Since(start).Round(time.Millisecond))
		}
	}
	if !jsonOut {
		printTable(stdout, results)
	}
	if plotDir != "" {
		paths, err := bench.WritePlots(plotDir, results)
		if err != nil {
			failed = true
			fmt.Fprintf(stderr, "shmbench: plots: %v\n", err)
		}
		for _, p := range paths {
			fmt.Fprintf(stderr, "shmbench: wrote %s\n", p)
		}
		if err == nil && len(paths) == 0 {
			fmt.Fprintln(stderr, "shmbench: -plot: no plotted figures (run lookup or tend)")
		}
	}
	if failed {
		return 1
	}
	return 0
}

func printTable(w io.Writer, rs []bench.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCH\tMETRIC\tVALUE\tUNIT\tBASELINE\tBASELINE VALUE\tRATIO")
	for _, r := range rs {
		base, bv, ratio := "-", "-", "-"
		if r.BaselineName != "" {
			base, bv = r.BaselineName, fmt.Sprintf("%.4g", r.BaselineValue)
			if r.Ratio != 0 {
				ratio = fmt.Sprintf("%.3g", r.Ratio)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.4g\t%s\t%s\t%s\t%s\n", r.Bench, r.Metric, r.Value, r.Unit, base, bv, ratio)
	}
	tw.Flush()
}
