package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
)

// LeaseConfig configures LeaseTakeover. The zero value is the default.
type LeaseConfig struct {
	// Trials per takeover path (default 50).
	Trials int
	// ExpiryThreshold is the lease threshold of the heartbeat-expiry path
	// (default 200 ms).
	ExpiryThreshold time.Duration
	// Stderr receives the worker processes' stderr (nil: discarded).
	Stderr io.Writer
}

// The lease benchmark's control words (section "ctl"):
//
//	0 release command: the epoch its owner must release
//	1 t0: CLOCK_MONOTONIC ns when the owner released
//	2 acquired epoch (latest)
//	3 t1: CLOCK_MONOTONIC ns when that epoch was acquired
//	4 last heartbeat of the owner, CLOCK_MONOTONIC ns
//	5 waiters blocked in Acquire
const (
	lcRelease = 0
	lcT0      = 1
	lcEpoch   = 2
	lcT1      = 3
	lcBeat    = 4
	lcWaiting = 5
	lcWords   = 8
)

const wlLeaseNode = "bench.lease.node"

type leaseArgs struct {
	Key       uint32
	Threshold time.Duration
}

func leaseSpec() layout.Spec {
	return layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{
		{Name: "lease", Size: lease.Size}, {Name: "ctl", Size: 8 * lcWords}}}
}

// LeaseWorkloads returns the worker workloads of LeaseTakeover.
func LeaseWorkloads() harness.Registry {
	return harness.Registry{wlLeaseNode: leaseNode}
}

// leaseNode contends for the lease; as owner it renews every 2 ms,
// publishes its heartbeat time and releases when told to.
func leaseNode(ctx context.Context, w *harness.Worker) (any, error) {
	var a leaseArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	seg, err := arena.Open(ctx, arena.SysV(arena.Key(a.Key)), arena.Options{Spec: leaseSpec()})
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	lo, _, _ := seg.Section("lease")
	co, _, _ := seg.Section("ctl")
	c := func(i int) arena.Offset { return co + arena.Offset(8*i) }
	l, err := lease.New(seg, lo, lease.Config{Threshold: a.Threshold, Logger: w.Log})
	if err != nil {
		return nil, err
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	for ctx.Err() == nil {
		seg.Add64(c(lcWaiting), 1)
		acq, err := l.Acquire(ctx)
		t1 := monoNanos()
		seg.Add64(c(lcWaiting), ^uint64(0))
		if err != nil {
			return nil, nil
		}
		seg.Store64(c(lcT1), t1)
		seg.Store64(c(lcEpoch), acq.Epoch)
		for ctx.Err() == nil {
			if seg.Load64(c(lcRelease)) == acq.Epoch {
				seg.Store64(c(lcT0), monoNanos())
				l.Release()
				break
			}
			if err := l.Renew(); err != nil {
				break // lost it while stopped
			}
			seg.Store64(c(lcBeat), monoNanos())
			time.Sleep(2 * time.Millisecond)
		}
	}
	return nil, nil
}

// LeaseTakeover measures lease takeover latency between processes over
// cfg.Trials trials per path, reporting median and p99:
//   - after Release: from the owner's Release to the waiter's Acquire
//     returning (futex wake); baseline: the 30 s the Aerospike C client
//     waits before a takeover (shm_takeover_threshold_sec, its documented
//     default), not measured;
//   - after SIGKILL of the owner: from the kill to the waiter's Acquire
//     returning (pidfd readiness);
//   - heartbeat expiry (owner SIGSTOPped) with cfg.ExpiryThreshold: from
//     the owner's last heartbeat to the takeover; ideal is the threshold.
//
// The binary must dispatch LeaseWorkloads.
func LeaseTakeover(ctx context.Context, cfg LeaseConfig) ([]Result, error) {
	if cfg.Trials <= 0 {
		cfg.Trials = 50
	}
	if cfg.ExpiryThreshold <= 0 {
		cfg.ExpiryThreshold = 200 * time.Millisecond
	}
	var out []Result
	rel, err := leaseRun(ctx, cfg, time.Minute, "release")
	if err != nil {
		return nil, err
	}
	out = append(out, latencyResults("lease.takeover", "release", rel, aerospikeThresholdName, aerospikeThresholdMs)...)
	kill, err := leaseRun(ctx, cfg, time.Minute, "kill")
	if err != nil {
		return nil, err
	}
	out = append(out, latencyResults("lease.takeover", "sigkill", kill, aerospikeThresholdName, aerospikeThresholdMs)...)
	exp, err := leaseRun(ctx, cfg, cfg.ExpiryThreshold, "expiry")
	if err != nil {
		return nil, err
	}
	th := float64(cfg.ExpiryThreshold) / 1e6
	out = append(out, latencyResults("lease.takeover", fmt.Sprintf("expiry(threshold %v)", cfg.ExpiryThreshold), exp, "threshold", th)...)
	return out, nil
}

// The baseline of the takeover figures: the 30 s the Aerospike C client
// waits before a takeover (shm_takeover_threshold_sec, its documented
// default), not measured.
const (
	aerospikeThresholdName = "aerospike threshold (documented)"
	aerospikeThresholdMs   = 30e3
)

// latencyResults returns the p50 and p99 of ms (sorted in place) as
// results of bench, each against the baseline bname of bval ms.
func latencyResults(bench, metric string, ms []float64, bname string, bval float64) []Result {
	p50, p99 := quantile(ms, 0.5), quantile(ms, 0.99)
	return []Result{
		Result{Bench: bench, Metric: metric + " p50", Value: p50, Unit: "ms"}.WithBaseline(bname, bval),
		Result{Bench: bench, Metric: metric + " p99", Value: p99, Unit: "ms"}.WithBaseline(bname, bval),
	}
}

// leaseRun runs cfg.Trials takeovers by one path and returns their
// latencies in milliseconds.
func leaseRun(ctx context.Context, cfg LeaseConfig, threshold time.Duration, path string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	seg, key, err := createBenchSegment(ctx, "lease."+path, leaseSpec())
	if err != nil {
		return nil, err
	}
	defer func() {
		seg.Close()
		_ = removeSegment(key)
	}()
	co, _, _ := seg.Section("ctl")
	c := func(i int) arena.Offset { return co + arena.Offset(8*i) }
	args := leaseArgs{Key: uint32(key), Threshold: threshold}
	var groups []*harness.Group
	defer func() {
		for _, g := range groups {
			g.Close()
		}
	}()
	spawn := func() (*harness.Group, error) {
		waiting, epoch := seg.Load64(c(lcWaiting)), seg.Load64(c(lcEpoch))
		g, err := harness.Start(ctx, harness.Spec{Workload: wlLeaseNode, N: 1, Args: args, Stderr: cfg.Stderr})
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
		if err := g.Release(ctx); err != nil {
			return nil, err
		}
		// The new process is waiting once the count rose (or it owns).
		return g, waitUntil(ctx, "a new waiter", func() bool {
			return seg.Load64(c(lcWaiting)) > waiting || seg.Load64(c(lcEpoch)) > epoch
		})
	}
	byPid := map[int]*harness.Group{}
	for range 2 {
		g, err := spawn()
		if err != nil {
			return nil, err
		}
		byPid[g.Pid(0)] = g
	}
	lo, _, _ := seg.Section("lease")
	probe, err := lease.New(seg, lo, lease.Config{Threshold: threshold})
	if err != nil {
		return nil, err
	}
	owner := func(e uint64) (*harness.Group, error) {
		var g *harness.Group
		err := waitUntil(ctx, fmt.Sprintf("owner of epoch %d", e), func() bool {
			o := probe.Owner()
			if o.Epoch < e || o.Identity.IsZero() || seg.Load64(c(lcEpoch)) < e || seg.Load64(c(lcWaiting)) == 0 {
				return false
			}
			g = byPid[int(o.Identity.PID)]
			return g != nil
		})
		return g, err
	}
	var ms []float64
	e := uint64(1)
	for len(ms) < cfg.Trials {
		g, err := owner(e)
		if err != nil {
			return nil, err
		}
		e = probe.Owner().Epoch
		var t0 uint64
		switch path {
		case "release":
			seg.Store64(c(lcRelease), e)
		case "kill":
			time.Sleep(time.Millisecond) // let the waiter block in its wait
			t0 = monoNanos()
			g.Kill(0)
		case "expiry":
			time.Sleep(3 * time.Millisecond)
			g.Stop(0)
			if err := g.WaitStopped(ctx, 0); err != nil {
				return nil, err
			}
			// The stopped owner's last heartbeat (if it stopped between
			// renewing and publishing the time, this is the one before,
			// which only overstates the latency).
			t0 = seg.Load64(c(lcBeat))
		}
		if err := waitUntil(ctx, "takeover", func() bool { return seg.Load64(c(lcEpoch)) > e }); err != nil {
			return nil, err
		}
		t1 := seg.Load64(c(lcT1))
		switch path {
		case "release":
			t0 = seg.Load64(c(lcT0))
		case "kill":
			g.Wait()
			delete(byPid, g.Pid(0))
			ng, err := spawn()
			if err != nil {
				return nil, err
			}
			byPid[ng.Pid(0)] = ng
		case "expiry":
			g.Cont(0)
		}
		if t1 < t0 {
			return nil, fmt.Errorf("bench: lease %s trial %d: takeover at %d observed before its cause at %d (epoch %d)", path, len(ms), t1, t0, e)
		}
		ms = append(ms, float64(t1-t0)/1e6)
		e++
	}
	return ms, nil
}
