package bench

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/bench/harness"
)

func TestMain(m *testing.M) {
	harness.Dispatch(Workloads())
	os.Exit(m.Run())
}

func TestLeaseRunPaths(t *testing.T) {
	for _, path := range []leasePath{pathRelease, pathKill, pathExpiry} {
		start := time.Now()
		th := time.Minute
		if path == pathExpiry {
			th = 50 * time.Millisecond
		}
		ms, err := leaseRun(context.Background(), LeaseConfig{Trials: 5}, th, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d trials in %v: %v", path, len(ms), time.Since(start), ms)
	}
}

// TestLeaseKillRunPaths: each path where the waiter cannot watch the
// owner's pid takes over from the killed owner by its liveness slot, far
// below the 30 s threshold, and leaves no segment behind; where the
// machine cannot place the workers, the path says why.
func TestLeaseKillRunPaths(t *testing.T) {
	before := ourSegments(t)
	for _, path := range []leasePath{pathPIDNS, pathHidepid, pathMidAcquire} {
		start := time.Now()
		ms, skip, err := leaseKillRun(context.Background(), LeaseConfig{Trials: 5}, path)
		switch {
		case err != nil:
			t.Fatalf("%s: %v", path, err)
		case skip != "":
			if path == pathMidAcquire {
				t.Errorf("%s skipped (%s): it needs no privilege", path, skip)
			}
			t.Logf("%s: skipped: %s", path, skip)
			continue
		case len(ms) != 5:
			t.Fatalf("%s: %d latencies, want 5", path, len(ms))
		}
		for _, v := range ms {
			if v <= 0 || v > 1000 {
				t.Errorf("%s: takeover %v ms after the kill, want (0, 1000)", path, v)
			}
		}
		t.Logf("%s: %d trials in %v: %v", path, len(ms), time.Since(start), ms)
	}
	checkNoLeak(t, before)
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
		"expiry (threshold 50ms) p50": 50, "expiry (threshold 50ms) p99": 50,
		"sigkill (owner in PID ns) p50": 30e3, "sigkill (owner in PID ns) p99": 30e3,
		"sigkill (waiter hidepid) p50": 30e3, "sigkill (waiter hidepid) p99": 30e3,
		"sigkill (mid-acquire) p50": 30e3, "sigkill (mid-acquire) p99": 30e3}
	if len(rs) != len(want) {
		t.Fatalf("%d results, want %d: %v", len(rs), len(want), rs)
	}
	for _, r := range rs {
		t.Log(r)
		b, ok := want[r.Metric]
		if !ok || r.Bench != "lease.takeover" || r.Unit != "ms" || r.BaselineValue != b || r.Detail == "" || r.BaselineDetail == "" {
			t.Errorf("unexpected result %+v", r)
		}
		if r.Skipped != "" {
			if r.Value != 0 || r.Ratio != 0 || strings.HasPrefix(r.Metric, "sigkill (mid-acquire)") {
				t.Errorf("unexpected skipped result %+v", r)
			}
			continue
		}
		if r.Value <= 0 || r.Ratio != r.Value/b {
			t.Errorf("unexpected figure %+v", r)
		}
	}
}

// A worker the kernel would not place, or that could not mount its /proc
// or change its uid, makes the path skipped with the reason; any other
// failure is an error.
func TestLeaseUnavailable(t *testing.T) {
	exited := func(stderr, err string) error {
		return &workerExitError{what: "x", result: harness.Result{Stderr: stderr, Err: err}, err: errors.New("exit 1")}
	}
	startErr := &placementError{place: inPIDNS, err: syscall.EPERM}
	for _, tc := range []struct {
		p    placement
		err  error
		want string // substring; "" wants ""
	}{
		{inPIDNS, startErr, "cannot start a worker in a new PID namespace: operation not permitted"},
		{behindHidepid, &placementError{place: behindHidepid, err: syscall.EPERM}, "cannot start a worker as uid 65534"},
		{behindHidepid, exited("mount: /proc: permission denied.\n", ""), "cannot mount a hidepid=2 /proc: mount: /proc: permission denied."},
		{behindHidepid, exited("", "bench: setuid 65534: operation not permitted"), "cannot run a worker as uid 65534: bench: setuid"},
		{behindHidepid, exited("panic: boom\n", "segment refused"), ""},
		{inPIDNS, exited("mount: x\n", ""), ""},
		{onHost, startErr, ""},
		{inPIDNS, errors.New("other"), ""},
	} {
		got := unavailable(tc.p, tc.err)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("unavailable(%s, %v) = %q, want %q", tc.p, tc.err, got, tc.want)
		}
	}
}
