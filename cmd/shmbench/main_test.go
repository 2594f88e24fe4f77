package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench"
)

func names(bs []benchmark) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.name)
	}
	return out
}

func TestParseArgsFlagsAnywhere(t *testing.T) {
	all := names(benchmarks())
	for _, tc := range []struct {
		args     []string
		selected []string
		json     bool
		wide     bool
		quick    bool
		trials   int
		trialSet bool
		procs    int
		duration time.Duration
		plot     string
	}{
		{args: nil, selected: all, quick: true, trials: 50, procs: 2},
		{args: []string{"lease", "-json"}, selected: []string{"lease"}, json: true, trials: 50, procs: 2},
		{args: []string{"-json", "lease"}, selected: []string{"lease"}, json: true, trials: 50, procs: 2},
		{args: []string{"-json"}, selected: all, json: true, quick: true, trials: 50, procs: 2},
		{args: []string{"lookup", "-trials", "7", "lease", "-wide", "-procs=3"}, selected: []string{"lookup", "lease"},
			wide: true, trials: 7, trialSet: true, procs: 3},
		{args: []string{"-duration", "2s", "tend", "--plot", "docs", "takeover", "-quick"}, selected: []string{"tend", "takeover"},
			quick: true, trials: 50, procs: 2, duration: 2 * time.Second, plot: "docs"},
		// After "--" everything names a benchmark.
		{args: []string{"-json", "--", "lease", "pool"}, selected: []string{"lease", "pool"}, json: true, trials: 50, procs: 2},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stderr bytes.Buffer
			c, err := parseArgs(tc.args, &stderr)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr.String())
			}
			if got := names(c.selected); !slices.Equal(got, tc.selected) {
				t.Errorf("selected %v, want %v", got, tc.selected)
			}
			if c.jsonOut != tc.json || c.wide != tc.wide || c.o.quick != tc.quick || c.o.trials != tc.trials ||
				c.o.trialsSet != tc.trialSet || c.o.procs != tc.procs || c.o.duration != tc.duration || c.plot != tc.plot {
				t.Errorf("parsed %+v, want %+v", c, tc)
			}
			if stderr.Len() != 0 {
				t.Errorf("printed %q", stderr.String())
			}
		})
	}
}

func TestParseArgsRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want error
		says string
	}{
		{[]string{"lease", "-nosuchflag"}, errUsage, "flag provided but not defined: -nosuchflag"},
		{[]string{"lease", "nosuchbench", "-json"}, errUsage, `unknown benchmark "nosuchbench"`},
		{[]string{"-json", "--", "lease", "-wide"}, errUsage, `unknown benchmark "-wide"`},
		{[]string{"lease", "-trials"}, errUsage, "flag needs an argument: -trials"},
		{[]string{"lease", "-json", "-wide"}, errUsage, "-json or -wide"},
		{[]string{"-cpuprofile", "a", "lease", "-trace", "b"}, errUsage, "at most one of"},
		{[]string{"lease", "-h"}, flag.ErrHelp, "usage: shmbench"},
	} {
		var stderr bytes.Buffer
		_, err := parseArgs(tc.args, &stderr)
		if !errors.Is(err, tc.want) || !strings.Contains(stderr.String(), tc.says) {
			t.Errorf("%q: %v, printed %q; want %v and %q", tc.args, err, stderr.String(), tc.want, tc.says)
		}
	}
	if code := run([]string{"lease", "-nosuchflag"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("exit status %d for a bad flag, want 2", code)
	}
	if code := run([]string{"-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("exit status %d for -h, want 0", code)
	}
}

// skipReason is why a result of tableResults was skipped: longer than a
// line of the table.
const skipReason = "cannot start a worker in a new PID namespace: fork/exec /tmp/go-build/b001/exe/shmbench: operation not permitted (the kernel refused CLONE_NEWPID)"

// tableResults are results with names as long as the benchmarks' and
// longer, with and without baselines, one of them skipped.
func tableResults() []bench.Result {
	long := strings.Repeat("a-very-long-metric-name-without-any-space", 4)
	return []bench.Result{
		bench.Result{Bench: "seqlock.read", Metric: "uncontended read of 64 bytes", Value: 3.942, Unit: "ns/op"}.WithBaseline("plain 64-byte copy", 1.611),
		{Bench: "seqlock.read.contended", Metric: "reads that overlapped a write", Detail: "1 reader process(es), a writer process writing continuously", Value: 3.138e6, Unit: "count"},
		bench.Result{Bench: "lease.takeover", Metric: "release p50", Detail: "owner's Release → waiter's Acquire returns, 50 trials", Value: 0.01412, Unit: "ms"}.
			WithBaseline("C client: next tend after close", 1e3).WithBaselineDetail("documented, not measured"),
		// Skipped, under the same heading as the one before; its reason
		// is printed, wrapped, under the table.
		bench.Result{Bench: "lease.takeover", Metric: "sigkill (owner in PID ns) p50", Detail: "SIGKILL of an owner in its own PID namespace", Unit: "ms"}.
			WithBaseline("C client: takeover threshold", 30e3).WithSkipped(skipReason),
		bench.Result{Bench: "lookup", Metric: "by name: Map.Namespace + Map.Master", Value: 9.21, Unit: "ns/op"}.WithBaseline("atomic-pointer map by name", 5.869),
		bench.Result{Bench: "lookup.procs", Metric: "8 procs, shared memory", Value: 2.272, Unit: "ns/op"}.WithBaseline("8 procs, atomic-pointer map, ns resolved", 1.3),
		bench.Result{Bench: "tend.propagation", Metric: "16 procs, per-process tending, p99", Detail: "20 moves", Value: 101.1, Unit: "ms"}.WithBaseline("target: tend interval 100ms + 5 ms", 105),
		bench.Result{Bench: "tend.takeover", Metric: "sigkill → first tend done p99", Value: 4.163, Unit: "ms"}.WithBaseline("C client: takeover threshold", 30e3),
		// Longer than any column: wrapped.
		bench.Result{Bench: "made.up", Metric: "master by digest, namespace by name (Map.Namespace + Map.Master, SysV) " + long, Value: 1, Unit: "ns/op"}.
			WithBaseline("atomic-pointer map, namespace by name (official Go client's shape) and then some more words", 2),
	}
}

func TestTableFits120Columns(t *testing.T) {
	rs := tableResults()
	var b bytes.Buffer
	printTable(&b, rs, tableWidth)
	out := b.String()
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if n := runeLen(line); n > tableWidth {
			t.Errorf("line %d is %d columns wide: %q", i+1, n, line)
		}
	}
	// Nothing is lost: each benchmark has its heading, and under it the
	// metric and baseline columns hold the names (wrapped, perhaps within
	// words), the other columns the value, baseline value and ratio.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	header := []rune(lines[0])
	var starts []int // of the columns after the metric
	for i := 2; i < len(header); i++ {
		if header[i] != ' ' && header[i-1] == ' ' && header[i-2] == ' ' {
			starts = append(starts, i)
		}
	}
	if len(starts) != 4 {
		t.Fatalf("header %q", lines[0])
	}
	col := func(line []rune, from, to int) string {
		if from >= len(line) {
			return ""
		}
		return strings.TrimSpace(string(line[from:min(to, len(line))]))
	}
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), "") }
	i := 1
	for k, r := range rs {
		if k == 0 || r.Bench != rs[k-1].Bench {
			if lines[i] != r.Bench {
				t.Fatalf("line %d: %q, want the heading %q", i+1, lines[i], r.Bench)
			}
			i++
		}
		first := []rune(lines[i])
		var metric, baseline string
		// The result's first line, then its continuation lines (wrapped
		// names, nothing in the value column).
		for j := i; i < len(lines) && strings.HasPrefix(lines[i], " ") && (i == j || col([]rune(lines[i]), starts[0], starts[1]) == ""); i++ {
			l := []rune(lines[i])
			metric += col(l, 0, starts[0])
			baseline += col(l, starts[1], starts[2])
		}
		want := []string{squeeze(r.Metric), number(r.Value) + " " + r.Unit, "-", "-", "-"}
		if r.BaselineName != "" {
			want[2], want[3], want[4] = squeeze(r.BaselineName), number(r.BaselineValue), fmt.Sprintf("×%.3g", r.Ratio)
		}
		if r.Skipped != "" {
			want[1], want[4] = "skipped", "-"
		}
		got := []string{squeeze(metric), col(first, starts[0], starts[1]), squeeze(baseline), col(first, starts[2], starts[3]), col(first, starts[3], len(first))}
		if !slices.Equal(got, want) {
			t.Errorf("%s: columns %q, want %q", r.Bench, got, want)
		}
		if r.Detail != "" && strings.Contains(out, r.Detail) {
			t.Errorf("detail %q in the narrow table", r.Detail)
		}
	}
	// Names as long as the benchmarks' fit on one line each: the header,
	// then a heading per benchmark and one line per result, until the
	// made-up one, which wraps.
	before, after, _ := strings.Cut(out, "\nmade.up\n")
	want := 0
	for k, r := range rs[:len(rs)-1] {
		want++
		if k == 0 || r.Bench != rs[k-1].Bench {
			want++
		}
	}
	if n := strings.Count(before, "\n"); n != want || strings.Count(after, "\n") < 2 {
		t.Errorf("%d lines before the made-up result (want %d), %d after (want 2 or more):\n%s", n, want, strings.Count(after, "\n"), out)
	}
	// Under the table, after a blank line: why the skipped result was
	// not measured, wrapped.
	_, notes, ok := strings.Cut(out, "\n\n")
	if !ok || squeeze(notes) != squeeze("skipped: lease.takeover sigkill (owner in PID ns) p50: "+skipReason) || strings.Count(notes, "\n") < 2 {
		t.Errorf("notes under the table: %q", notes)
	}
}

func TestWideTableHasDetails(t *testing.T) {
	var b bytes.Buffer
	printWide(&b, tableResults())
	out := b.String()
	for _, s := range []string{"release p50 (owner's Release → waiter's Acquire returns, 50 trials)",
		"C client: next tend after close (documented, not measured)", "reads that overlapped a write (1 reader process(es)",
		"skipped: " + skipReason} {
		if !strings.Contains(out, s) {
			t.Errorf("%q not in the wide table:\n%s", s, out)
		}
	}
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		s     string
		width int
		want  []string
	}{
		{"", 5, []string{""}},
		{"a bb ccc", 4, []string{"a bb", "ccc"}},
		{"a bb ccc", 8, []string{"a bb ccc"}},
		{"abcdefgh ij", 3, []string{"abc", "def", "gh", "ij"}},
		{"→→→→ x", 2, []string{"→→", "→→", "x"}},
	} {
		if got := wrap(tc.s, tc.width); !slices.Equal(got, tc.want) {
			t.Errorf("wrap(%q, %d) = %q, want %q", tc.s, tc.width, got, tc.want)
		}
	}
}

func TestJoinMetrics(t *testing.T) {
	for _, tc := range []struct {
		ms   []string
		want string
	}{
		{[]string{"sigkill (owner in PID ns) p50", "sigkill (owner in PID ns) p99"}, "sigkill (owner in PID ns) p50, p99"},
		{[]string{"a p50"}, "a p50"},
		{[]string{"a p50", "b p99"}, "a p50; b p99"},
		{[]string{"x", "y"}, "x; y"},
		{[]string{"a p50", "a p50 more"}, "a p50; a p50 more"},
	} {
		if got := joinMetrics(tc.ms); got != tc.want {
			t.Errorf("joinMetrics(%q) = %q, want %q", tc.ms, got, tc.want)
		}
	}
}

func TestNumber(t *testing.T) {
	for v, want := range map[float64]string{3138000: "3138000", 30000: "30000", 0: "0", 0.01412: "0.01412",
		9.3214e6 + 0.5: "9.321e+06", 2.30345: "2.303", -1.5: "-1.5"} {
		if got := number(v); got != want {
			t.Errorf("number(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestParseArgsIndexFlags: -records and -hugepages, before or after the
// benchmark's name; -hugepages defaults to require and refuses other
// words.
func TestParseArgsIndexFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		records int
		huge    arena.HugePagePolicy
	}{
		{[]string{"index"}, 0, arena.HugePagesRequire},
		{[]string{"index", "-records", "2000000"}, 2_000_000, arena.HugePagesRequire},
		{[]string{"-records=500", "-hugepages", "off", "index"}, 500, arena.HugePagesOff},
		{[]string{"index", "-hugepages=try"}, 0, arena.HugePagesTry},
	} {
		var stderr bytes.Buffer
		c, err := parseArgs(tc.args, &stderr)
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.args, err, stderr.String())
		}
		if names(c.selected)[0] != "index" || c.o.records != tc.records || c.o.hugePages != tc.huge {
			t.Errorf("%q: records %d, huge pages %v; want %d, %v", tc.args, c.o.records, c.o.hugePages, tc.records, tc.huge)
		}
	}
	var stderr bytes.Buffer
	if _, err := parseArgs([]string{"index", "-hugepages", "always"}, &stderr); !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "off, try or require") {
		t.Errorf("-hugepages always: %v, printed %q", err, stderr.String())
	}
}

// TestParseArgsSprigs: -sprigs before or after the benchmark's name, with
// the other index flags; 0 (the index's default) when not given; anything
// but a power of two from 1 to 4096 refused.
func TestParseArgsSprigs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		sprigs  int
		records int
	}{
		{[]string{"index"}, 0, 0},
		{[]string{"-sprigs", "1024", "index"}, 1024, 0},
		{[]string{"index", "-sprigs=4096", "-records", "10000000"}, 4096, 10_000_000},
		{[]string{"-records", "500", "index", "-sprigs", "1"}, 1, 500},
	} {
		var stderr bytes.Buffer
		c, err := parseArgs(tc.args, &stderr)
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.args, err, stderr.String())
		}
		if names(c.selected)[0] != "index" || c.o.sprigs != tc.sprigs || c.o.records != tc.records {
			t.Errorf("%q: sprigs %d, records %d; want %d, %d", tc.args, c.o.sprigs, c.o.records, tc.sprigs, tc.records)
		}
	}
	for _, bad := range []string{"0", "1000", "8192", "-256", "many"} {
		var stderr bytes.Buffer
		if _, err := parseArgs([]string{"index", "-sprigs", bad}, &stderr); !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "power of two") {
			t.Errorf("-sprigs %s: %v, printed %q", bad, err, stderr.String())
		}
	}
}
