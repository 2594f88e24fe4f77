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
