// Command shmbench runs shmkit's benchmarks across real processes and
// prints each figure beside its baseline, measured in the same run.
//
//	shmbench [flags] [seqlock|pool|lease|lookup|tend|index|restart|takeover|records|prefork|backup ...] [flags]
//
// With no benchmark named it runs every benchmark in quick mode (under two
// minutes in all). Flags may come before, between or after the names
// ("--" ends them). A figure the machine cannot measure (e.g. a lease
// takeover path that needs a PID namespace, without the privilege to
// create one) is listed as skipped, with the reason under the table.
// Flags:
//
//	-procs N        processes for the seqlock and pool multi-process phases
//	                (default 2; lookup and tend sweep 1, 2, 4, 8(, 16))
//	-duration D     length of each timed multi-process phase (lookup: per
//	                process count; tend: the request-counting window)
//	-trials N       trials per lease takeover path and tend takeover path
//	                (default 50; quick mode: 8 per tend takeover path)
//	-interval D     tend interval of the tend and takeover benchmarks
//	                (default 100ms)
//	-plot DIR       write requests-per-second.svg, lookup-cost.svg and
//	                restart-time.svg into DIR (tend, lookup, restart)
//	-json           one JSON object per line: bench, metric, detail, value,
//	                unit, baseline_name, baseline_detail, baseline, ratio,
//	                and skipped (why a figure was not measured here)
//	-wide           the table with every name in full and its detail (the
//	                default table fits 120 columns)
//	-cpuprofile DIR write cpu.pprof into DIR (also -memprofile, -trace)
//	-records N      records in the index and restart benchmarks (default,
//	                in the same run: index 1M and 10M, restart 100k, 1M and
//	                10M; quick mode: index 1M, restart 100k)
//	-hugepages P    the index benchmark's 2 MiB-page variant: require
//	                (default; skipped, with the reason, where no huge pages
//	                are reserved: echo N > /proc/sys/vm/nr_hugepages),
//	                try (falls back to 4 KiB pages, logged) or off
//	-sprigs N       the index and restart benchmarks' sprigs per partition
//	                (index.Config.Sprigs: a power of two from 1 to 4096;
//	                default the index's, 4)
//	-rounds N       rounds per client and process count of the records
//	                benchmark, the clients alternating (default 3; quick 1)
//	-quick          quick mode even with benchmarks named
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
	"strconv"
	"time"

	"github.com/pkg/profile"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/internal/cli"
)

type options struct {
	procs     int
	duration  time.Duration
	trials    int
	trialsSet bool // -trials given
	interval  time.Duration
	quick     bool
	records   int                  // -records: the index benchmark's size (0: 1M and 10M, quick 1M)
	rounds    int                  // -rounds: the records benchmark's rounds (0: its default)
	hugePages arena.HugePagePolicy // -hugepages: the index benchmark's huge-page variant
	sprigs    int                  // -sprigs: the index benchmark's index.Config.Sprigs (0: the index's default)
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
		{"lease", "lease takeover latency after Release, SIGKILL (also across PID namespaces, hidepid, mid-acquire) and expiry", func(ctx context.Context, o options) ([]bench.Result, error) {
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
		{"index", "index Get/Put ns per op, Get from another process, memory per record, 1M and 10M keys, 4 KiB and 2 MiB pages, vs the pointer-chasing floor, a Go map and bbolt", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.IndexConfig{Duration: o.duration, Sprigs: o.sprigs, Stderr: o.stderr}.WithHugePages(o.hugePages)
			if o.quick {
				cfg.Records, cfg.Probes = []int{1_000_000}, 1<<19
				if cfg.Duration == 0 {
					cfg.Duration = time.Second
				}
			}
			if o.records > 0 {
				cfg.Records = []int{o.records}
			}
			return bench.IndexBench(ctx, cfg)
		}},
		{"restart", "kvstore restart, exec until the first request is answered: warm (index in shared memory) vs cold rebuild from the log, 100k, 1M and 10M records", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.RestartConfig{Sprigs: o.sprigs, Stderr: o.stderr}
			if o.quick {
				cfg.Records = []int{100_000}
			}
			if o.records > 0 {
				cfg.Records = []int{o.records}
			}
			return bench.RestartBench(ctx, cfg)
		}},
		{"takeover", "time from the tend owner's Close or SIGKILL until a new owner has tended", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.TakeoverConfig{Trials: o.trials, TendInterval: o.interval, Stderr: o.stderr}
			if o.quick && !o.trialsSet {
				cfg.Trials = 8
			}
			return bench.TakeoverBench(ctx, cfg)
		}},
		{"records", "record Get/Put ops/s, p50/p99 and allocs/op with 1-8 processes: shmkit's client on a shared view vs the official Go client", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.RecordsConfig{Duration: o.duration, Rounds: o.rounds, Stderr: o.stderr}
			if o.quick {
				cfg.Procs = []int{1, 2}
				if cfg.Rounds == 0 {
					cfg.Rounds = 1
				}
				if cfg.Duration == 0 {
					cfg.Duration = 500 * time.Millisecond
				}
			}
			return bench.RecordsBench(ctx, cfg)
		}},
		{"prefork", "HTTP req/s through examples/prefork with 4 workers: shared cluster view vs per-process tending", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.PreforkConfig{Duration: o.duration, Stderr: o.stderr}
			if o.quick {
				cfg.Rounds = 1
				if cfg.Duration == 0 {
					cfg.Duration = 500 * time.Millisecond
				}
			}
			return bench.PreforkBench(ctx, cfg)
		}},
		{"backup", "backup, verify and restore of a 4 GiB index arena (quick: 256 MiB), checksums on, plain and zstd, vs cp+sync to the same disk", func(ctx context.Context, o options) ([]bench.Result, error) {
			cfg := bench.BackupConfig{Stderr: o.stderr}
			if o.quick {
				cfg.Size = 256 << 20
			}
			return bench.BackupBench(ctx, cfg)
		}},
	}
}

func main() {
	harness.Dispatch(bench.Workloads())
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is a parsed command line.
type config struct {
	o                     options
	selected              []benchmark
	jsonOut, wide         bool
	cpu, mem, trace, plot string
}

// errUsage means the command line was refused; the reason and the usage
// have been printed.
var errUsage = errors.New("shmbench: invalid command line")

// parseArgs parses the command line, flags before, between or after the
// benchmark names. It returns flag.ErrHelp for -h, after printing the
// usage, and errUsage for an invalid command line.
func parseArgs(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("shmbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var verbose bool
	fs.IntVar(&c.o.procs, "procs", 2, "processes for the seqlock and pool multi-process phases")
	fs.DurationVar(&c.o.duration, "duration", 0, "length of each timed multi-process phase (default: per benchmark)")
	fs.IntVar(&c.o.trials, "trials", 50, "trials per lease takeover path, and tend takeovers (quick mode: 8)")
	fs.DurationVar(&c.o.interval, "interval", 0, "tend interval of the tend and takeover benchmarks (default 100ms)")
	fs.StringVar(&c.plot, "plot", "", "write the plots (SVG) into this directory")
	fs.IntVar(&c.o.rounds, "rounds", 0, "rounds per client and process count of the records benchmark, the clients alternating (default 3; quick 1)")
	fs.IntVar(&c.o.records, "records", 0, "records in the index and restart benchmarks (default index 1M and 10M, restart 100k, 1M and 10M; quick mode: index 1M, restart 100k)")
	c.o.hugePages = arena.HugePagesRequire
	fs.Func("hugepages", "the index benchmark's 2 MiB-page variant: require (default: skipped, with the reason, where none are reserved), try, or off", func(s string) error {
		p, err := arena.ParseHugePagePolicy(s)
		c.o.hugePages = p
		return err
	})
	fs.Func("sprigs", "the index and restart benchmarks' sprigs per partition (index.Config.Sprigs): a power of two from 1 to 4096 (default the index's, "+strconv.Itoa(index.DefaultSprigs)+")", func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 4096 || n&(n-1) != 0 {
			return fmt.Errorf("want a power of two from 1 to 4096")
		}
		c.o.sprigs = n
		return nil
	})
	fs.BoolVar(&c.o.quick, "quick", false, "quick mode")
	fs.BoolVar(&c.jsonOut, "json", false, "print one JSON object per line")
	fs.BoolVar(&c.wide, "wide", false, "print the table with every name in full and its detail")
	fs.BoolVar(&verbose, "v", false, "show worker processes' stderr")
	fs.StringVar(&c.cpu, "cpuprofile", "", "write a CPU profile (cpu.pprof) into this directory")
	fs.StringVar(&c.mem, "memprofile", "", "write a heap profile (mem.pprof) into this directory")
	fs.StringVar(&c.trace, "trace", "", "write an execution trace (trace.out) into this directory")
	all := benchmarks()
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: shmbench [flags] [benchmark ...] [flags]\n\nbenchmarks (none: all, quick mode):\n")
		for _, b := range all {
			fmt.Fprintf(stderr, "  %-8s %s\n", b.name, b.doc)
		}
		fmt.Fprintf(stderr, "\nflags (before or after the benchmarks):\n")
		fs.PrintDefaults()
	}
	names, err := cli.ParseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return c, err
	}
	if err != nil {
		return c, errUsage // the flag package printed why, and the usage
	}
	if verbose {
		c.o.stderr = stderr
	}
	fs.Visit(func(f *flag.Flag) { c.o.trialsSet = c.o.trialsSet || f.Name == "trials" })
	if len(names) == 0 {
		c.selected, c.o.quick = all, true
	}
	for _, name := range names {
		i := slices.IndexFunc(all, func(b benchmark) bool { return b.name == name })
		if i < 0 {
			fmt.Fprintf(stderr, "shmbench: unknown benchmark %q\n", name)
			fs.Usage()
			return c, errUsage
		}
		c.selected = append(c.selected, all[i])
	}
	if c.jsonOut && c.wide {
		fmt.Fprintln(stderr, "shmbench: give -json or -wide, not both")
		return c, errUsage
	}
	if n := countNonEmpty(c.cpu, c.mem, c.trace); n > 1 {
		fmt.Fprintln(stderr, "shmbench: give at most one of -cpuprofile, -memprofile, -trace")
		return c, errUsage
	}
	return c, nil
}

func countNonEmpty(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	var modes []func(*profile.Profile)
	for _, p := range []struct {
		dir  string
		mode func(*profile.Profile)
	}{{c.cpu, profile.CPUProfile}, {c.mem, profile.MemProfile}, {c.trace, profile.TraceProfile}} {
		if p.dir != "" {
			modes = append(modes, p.mode, profile.ProfilePath(p.dir))
		}
	}
	if len(modes) > 0 {
		defer profile.Start(append(modes, profile.Quiet)...).Stop()
	}
	ctx, stop := harness.OnInterrupt(context.Background())
	defer stop()

	var results []bench.Result
	failed := false
	for _, b := range c.selected {
		start := time.Now()
		rs, err := b.run(ctx, c.o)
		results = append(results, rs...)
		if c.jsonOut {
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
		if !c.jsonOut {
			fmt.Fprintf(stderr, "shmbench: %s done in %v\n", b.name, time.Since(start).Round(time.Millisecond))
		}
	}
	switch {
	case c.wide:
		printWide(stdout, results)
	case !c.jsonOut:
		printTable(stdout, results, tableWidth)
	}
	if c.plot != "" {
		paths, err := bench.WritePlots(c.plot, results)
		if err != nil {
			failed = true
			fmt.Fprintf(stderr, "shmbench: plots: %v\n", err)
		}
		for _, p := range paths {
			fmt.Fprintf(stderr, "shmbench: wrote %s\n", p)
		}
		if err == nil && len(paths) == 0 {
			fmt.Fprintln(stderr, "shmbench: -plot: no plotted figures (run lookup, tend or restart)")
		}
	}
	if failed {
		return 1
	}
	return 0
}
