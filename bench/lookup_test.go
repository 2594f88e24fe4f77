package bench

import (
	"context"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
)

// ourSegments returns the shmkit SysV segments this process created that
// are not marked for removal.
func ourSegments(t *testing.T) []string {
	t.Helper()
	st, err := arena.List(t.TempDir())
	if err != nil {
		t.Logf("arena.List: %v", err)
	}
	var out []string
	for _, s := range st {
		if s.Key != 0 && s.CreatorPID == os.Getpid() && !s.Removed {
			out = append(out, s.Location)
		}
	}
	return out
}

// checkNoLeak fails t if the benchmark left a segment this process
// created.
func checkNoLeak(t *testing.T, before []string) {
	t.Helper()
	for _, loc := range ourSegments(t) {
		if !slices.Contains(before, loc) {
			t.Errorf("segment %s left behind", loc)
		}
	}
}

// checkResults checks that every result is finite and non-negative and
// that a baseline, when named, has a ratio.
func checkResults(t *testing.T, rs []Result) {
	t.Helper()
	for _, r := range rs {
		t.Log(r)
		if r.Skipped != "" {
			continue // not measured here, and says why
		}
		if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || r.Value < 0 || r.Unit == "" {
			t.Errorf("%s %s: value %v %s", r.Bench, r.Metric, r.Value, r.Unit)
		}
		if r.BaselineName != "" && (r.BaselineValue <= 0 || r.Ratio <= 0) {
			t.Errorf("%s %s: baseline %q %v, ratio %v", r.Bench, r.Metric, r.BaselineName, r.BaselineValue, r.Ratio)
		}
	}
}

// find returns the results of bench whose metric has the prefix.
func find(rs []Result, bench, prefix string) []Result {
	var out []Result
	for _, r := range rs {
		if r.Bench == bench && strings.HasPrefix(r.Metric, prefix) {
			out = append(out, r)
		}
	}
	return out
}

func TestLookupBenchTiny(t *testing.T) {
	before := ourSegments(t)
	rs, err := LookupBench(context.Background(), LookupConfig{Iterations: 20_000, Rounds: 1, Procs: []int{2, 1}, Duration: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rs)
	checkNoLeak(t, before)
	single := find(rs, BenchLookup, "")
	if len(single) != 4 {
		t.Fatalf("%d %s results, want 4", len(single), BenchLookup)
	}
	for _, r := range single {
		if r.Unit != "ns/op" || r.Value <= 0 || r.BaselineName == "" {
			t.Errorf("bad single-process result %v", r)
		}
	}
	// Like for like: by handle against the map with the namespace
	// resolved, by name against the map by name; the cross-level
	// comparison comes last.
	if got := find(rs, BenchLookup, lookupShmHandle); len(got) != 2 || got[0].BaselineName != lookupClientIndex || got[1].BaselineName != lookupClientName ||
		got[0].BaselineDetail != lookupClientIndexDetail || got[1].BaselineDetail != lookupCrossLevelDetail {
		t.Errorf("handle lookup results: %v", got)
	}
	for _, m := range []string{lookupShmName, lookupTendCluster} {
		if got := find(rs, BenchLookup, m); len(got) != 1 || got[0].BaselineName != lookupClientName || got[0].Detail == "" {
			t.Errorf("%s: %v", m, got)
		}
	}
	for _, p := range []int{1, 2} {
		shm := find(rs, BenchLookupProcs, ProcsMetric(p, KindShm))
		ami := find(rs, BenchLookupProcs, ProcsMetric(p, KindAtomicMapResolved))
		am := find(rs, BenchLookupProcs, ProcsMetric(p, KindAtomicMap))
		if len(shm) != 2 || len(ami) != 1 || len(am) != 1 {
			t.Fatalf("P=%d: %d shared-memory, %d resolved-map and %d by-name-map results, want 2, 1 and 1", p, len(shm), len(ami), len(am))
		}
		for i, base := range []Result{ami[0], am[0]} {
			if shm[i].BaselineName != base.Metric || shm[i].BaselineValue != base.Value || shm[i].Value <= 0 || base.Value <= 0 {
				t.Errorf("P=%d: %v against %v", p, shm[i], base)
			}
		}
	}
	if _, ok := LookupCostPlot(rs); !ok {
		t.Error("no lookup-cost plot from the results")
	}
}

func TestLookupBenchSkipProcs(t *testing.T) {
	rs, err := LookupBench(context.Background(), LookupConfig{Iterations: 1000, Rounds: 1, SkipProcs: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(find(rs, BenchLookupProcs, "")); n != 0 || len(rs) != 4 {
		t.Errorf("%d results, %d per-process ones; want 4 and 0", len(rs), n)
	}
}
