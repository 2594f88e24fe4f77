package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
)

// TestIndexBenchSmall runs IndexBench on 20000 records without huge
// pages: every figure is measured beside its baselines, and nothing is
// left behind (segments, bbolt's temp directory).
func TestIndexBenchSmall(t *testing.T) {
	before := ourSegments(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs, err := IndexBench(ctx, IndexConfig{Records: []int{20000}, Probes: 1 << 16, Rounds: 1, Duration: 100 * time.Millisecond, TempDir: tmp}.WithHugePages(arena.HugePagesOff))
	if err != nil {
		t.Fatal(err)
	}
	checkNoLeak(t, before)
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left in the temp dir: %v", ents)
	}
	var measured, skipped int
	for _, r := range rs {
		switch {
		case r.Skipped != "":
			skipped++
			if !strings.Contains(r.Metric, pages2M) || !strings.Contains(r.Skipped, "off") {
				t.Errorf("skipped %s: %q", r.Metric, r.Skipped)
			}
		case r.Value <= 0 || r.BaselineValue <= 0 || r.BaselineName == "":
			t.Errorf("%s: value %v, baseline %q %v", r.Metric, r.Value, r.BaselineName, r.BaselineValue)
		default:
			measured++
		}
	}
	if measured != 10 || skipped != 1 {
		t.Errorf("%d figures measured, %d skipped; want 10 and 1 (the 2 MiB-page variant, off):\n%v", measured, skipped, rs)
	}
}

// TestIndexBenchHugePagesUnavailable: with the huge-page variant required
// and fewer huge pages free than it needs, it is skipped with arena's
// reason, which says how to reserve them.
func TestIndexBenchHugePagesUnavailable(t *testing.T) {
	if total, free := arena.HugePagesReserved(); free >= 64 {
		t.Skipf("%d of %d huge pages free: the variant would run", free, total)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs, err := IndexBench(ctx, IndexConfig{Records: []int{5000}, Probes: 1 << 16, Rounds: 1, Duration: 50 * time.Millisecond,
		StageEntries: 1 << 12, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	last := rs[len(rs)-1]
	if !strings.Contains(last.Metric, pages2M) || !strings.Contains(last.Skipped, "/proc/sys/vm/nr_hugepages") {
		t.Errorf("last result %+v: want the 2 MiB-page variant skipped, naming /proc/sys/vm/nr_hugepages", last)
	}
}

// TestIndexBenchSprigs: IndexConfig.Sprigs reaches the index under test
// and its reader in another process (which could not attach with another
// sprig count), and the metrics name it.
func TestIndexBenchSprigs(t *testing.T) {
	before := ourSegments(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs, err := IndexBench(ctx, IndexConfig{Records: []int{5000}, Probes: 1 << 16, Rounds: 1, Duration: 50 * time.Millisecond,
		StageEntries: 1 << 12, Sprigs: 64, TempDir: t.TempDir()}.WithHugePages(arena.HugePagesOff))
	if err != nil {
		t.Fatal(err)
	}
	checkNoLeak(t, before)
	measured := 0
	for _, r := range rs {
		if r.Skipped == "" {
			measured++
			if !strings.Contains(r.Metric, "5k, 64 sprigs (0.019 per sprig), ") {
				t.Errorf("metric %q does not name the sprig count", r.Metric)
			}
		}
	}
	if measured != 10 {
		t.Errorf("%d figures measured, want 10:\n%v", measured, rs)
	}
}
