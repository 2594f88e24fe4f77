package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/bench/harness"
)

func TestMain(m *testing.M) {
	harness.Dispatch(Workloads())
	os.Exit(m.Run())
}

func TestLeaseRunPaths(t *testing.T) {
	for _, path := range []string{"release", "kill", "expiry"} {
		start := time.Now()
		th := time.Minute
		if path == "expiry" {
			th = 50 * time.Millisecond
		}
		ms, err := leaseRun(context.Background(), LeaseConfig{Trials: 5}, th, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d trials in %v: %v", path, len(ms), time.Since(start), ms)
	}
}

// TestLeaseTakeoverBaselines: each path is compared with what the C
// client does on the same path: a clean close hands over within one tend
// interval (1 s), a death only after the 30 s threshold, an expiry after
// the threshold itself.
func TestLeaseTakeoverBaselines(t *testing.T) {
	rs, err := LeaseTakeover(context.Background(), LeaseConfig{Trials: 3, ExpiryThreshold: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"release p50": 1e3, "release p99": 1e3, "sigkill p50": 30e3, "sigkill p99": 30e3,
		"expiry (threshold 50ms) p50": 50, "expiry (threshold 50ms) p99": 50}
	if len(rs) != len(want) {
		t.Fatalf("%d results, want %d: %v", len(rs), len(want), rs)
	}
	for _, r := range rs {
		b, ok := want[r.Metric]
		if !ok || r.Bench != "lease.takeover" || r.Unit != "ms" || r.Value <= 0 || r.BaselineValue != b ||
			r.Ratio != r.Value/b || r.Detail == "" || r.BaselineDetail == "" {
			t.Errorf("unexpected result %+v", r)
		}
	}
}
