package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
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
//	6 tag of the worker that acquired the latest epoch (leaseArgs.Tag)
//	7 reason of that acquisition (lease.Reason)
const (
	lcRelease = 0
	lcT0      = 1
	lcEpoch   = 2
	lcT1      = 3
	lcBeat    = 4
	lcWaiting = 5
	lcOwner   = 6
	lcReason  = 7
	lcWords   = 8
)

const wlLeaseNode = "bench.lease.node"

// nobodyUID is the uid (and gid) a hidden waiter drops to.
const nobodyUID = 65534

type leaseArgs struct {
	Key       uint32
	Threshold time.Duration
	// Tag is published in lcOwner when this worker acquires (0: none).
	Tag uint64
	// UID, when not 0, is the uid and gid the worker drops to before it
	// attaches the segment.
	UID int
	// Once: acquire once, publish it, release and return.
	Once bool
	// Shared: the segment is created mode 0666 by root, for workers
	// under another uid.
	Shared bool
	// Hidden: the worker runs behind a hidepid=2 /proc (as UID) and
	// checks that it cannot see pid 1, root's init, before it attaches,
	// so that the path measures what it says.
	Hidden bool
}

func leaseSpec() layout.Spec {
	return layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{
		{Name: "lease", Size: lease.Size}, {Name: "ctl", Size: 8 * lcWords}}}
}

// leaseOptions are the options of the lease benchmark's segment: mode
// 0600, or with shared 0666 and accepted from root (uid 0) by a worker
// that runs as another user.
func leaseOptions(shared bool) arena.Options {
	o := arena.Options{Spec: leaseSpec()}
	if shared {
		o.Mode, o.AllowUIDs = 0o666, []uint32{0}
	}
	return o
}

// dropPrivileges sets the process's groups, gid and uid to uid (every
// thread: Go applies setuid to all of them).
func dropPrivileges(uid int) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("bench: setgroups: %w", err)
	}
	if err := syscall.Setgid(uid); err != nil {
		return fmt.Errorf("bench: setgid %d: %w", uid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("bench: setuid %d: %w", uid, err)
	}
	return nil
}

// LeaseWorkloads returns the worker workloads of LeaseTakeover.
func LeaseWorkloads() harness.Registry {
	return harness.Registry{wlLeaseNode: leaseNode}
}

// leaseNode contends for the lease; as owner it publishes the time it
// acquired (taken right after Acquire returned, so in the process that
// took over), renews every 2 ms, publishes its heartbeat time and
// releases when told to. With Once it releases and returns at once
// instead. Failpoints armed for the worker are armed in its lease.
func leaseNode(ctx context.Context, w *harness.Worker) (any, error) {
	var a leaseArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	if a.UID != 0 {
		if err := dropPrivileges(a.UID); err != nil {
			return nil, err
		}
	}
	if a.Hidden {
		if _, err := os.Stat("/proc/1"); !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bench: /proc does not hide root's processes from uid %d (stat /proc/1: %v)", a.UID, err)
		}
	}
	seg, err := arena.Open(ctx, arena.SysV(arena.Key(a.Key)), leaseOptions(a.Shared))
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	lo, _, _ := seg.Section("lease")
	co, _, _ := seg.Section("ctl")
	c := func(i int) arena.Offset { return co + arena.Offset(8*i) }
	l, err := lease.New(seg, lo, lease.Config{Threshold: a.Threshold, Logger: w.Log, Failpoints: w.Failpoints})
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
		seg.Store64(c(lcOwner), a.Tag)
		seg.Store64(c(lcReason), uint64(acq.Reason))
		seg.Store64(c(lcT1), t1)
		seg.Store64(c(lcEpoch), acq.Epoch)
		if a.Once {
			return nil, l.Release()
		}
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

// leasePath is a takeover path of the lease benchmark.
type leasePath int

// The takeover paths. The first three run with two long-lived contenders
// on the host (leaseRun); the others SIGKILL an owner while one waiter,
// placed so that it cannot watch the owner's pid or cannot know who the
// owner is, waits in Acquire (leaseKillRun).
const (
	// pathRelease: the owner calls Release.
	pathRelease leasePath = iota + 1
	// pathKill: the owner is SIGKILLed; the waiter watches its pidfd.
	pathKill
	// pathExpiry: the owner is SIGSTOPped until its heartbeat expires.
	pathExpiry
	// pathPIDNS: the owner runs as pid 1 of a PID namespace of its own
	// (sharing the host's /proc), so the waiter on the host cannot tell
	// its pid from another process's; it is SIGKILLed from outside (pid 1
	// of a namespace ignores the signals it sends itself).
	pathPIDNS
	// pathHidepid: the owner runs as root on the host, the waiter as uid
	// 65534 behind a private /proc mounted hidepid=2, where the owner's
	// pid is hidden; the owner is SIGKILLed.
	pathHidepid
	// pathMidAcquire: the owner stops itself between its lease CAS and
	// its identity write (failpoint lease.acquired=stop), so the lease
	// names only its liveness slot; then it is SIGKILLed.
	pathMidAcquire
)

// String returns the path's short name, used in segment names and logs.
func (p leasePath) String() string {
	switch p {
	case pathRelease:
		return "release"
	case pathKill:
		return "kill"
	case pathExpiry:
		return "expiry"
	case pathPIDNS:
		return "pidns"
	case pathHidepid:
		return "hidepid"
	case pathMidAcquire:
		return "mid-acquire"
	}
	return fmt.Sprintf("leasePath(%d)", int(p))
}

// placement is where a worker of the lease benchmark runs.
type placement int

const (
	// onHost: root, in our namespaces.
	onHost placement = iota
	// inPIDNS: root, pid 1 of a new PID namespace (our /proc).
	inPIDNS
	// behindHidepid: uid 65534, a private mount namespace with /proc
	// mounted hidepid=2.
	behindHidepid
)

// String names the placement for messages.
func (p placement) String() string {
	switch p {
	case onHost:
		return "on the host"
	case inPIDNS:
		return "in a new PID namespace"
	case behindHidepid:
		return "as uid 65534 behind a hidepid=2 /proc"
	}
	return fmt.Sprintf("placement(%d)", int(p))
}

// LeaseTakeover measures lease takeover latency between processes over
// cfg.Trials trials per path, reporting median and p99:
//   - after Release: from the owner's Release to the waiter's Acquire
//     returning (futex wake); baseline: the Aerospike C client's hand-over
//     after a clean close, which another process notices at its next tend,
//     within one tend interval (1 s by default), not measured;
//   - after SIGKILL of the owner: from the kill to the waiter's Acquire
//     returning (pidfd readiness); baseline: the 30 s the C client waits
//     before replacing a tender that stopped (shm_takeover_threshold_sec,
//     its documented default), not measured;
//   - heartbeat expiry (owner SIGSTOPped) with cfg.ExpiryThreshold: from
//     the owner's last heartbeat to the takeover; ideal is the threshold;
//   - after SIGKILL where the waiter cannot watch the owner's pid and
//     tests its liveness lock every lease.DefaultSlotPoll (1 ms) instead,
//     each against the same 30 s as the SIGKILL path: the owner in a PID
//     namespace of its own; the waiter as uid 65534 behind a hidepid=2
//     /proc (it timestamps its takeover itself, in CLOCK_MONOTONIC like
//     the parent's kill); the owner stopped between its CAS and its
//     identity write, then killed. Each trial starts a new owner and a
//     new waiter. A path the machine cannot run (no permission to create
//     a namespace or mount /proc) is reported with Result.Skipped saying
//     why.
//
// Results so far are returned with an error. The binary must dispatch
// LeaseWorkloads.
func LeaseTakeover(ctx context.Context, cfg LeaseConfig) ([]Result, error) {
	if cfg.Trials <= 0 {
		cfg.Trials = 50
	}
	if cfg.ExpiryThreshold <= 0 {
		cfg.ExpiryThreshold = 200 * time.Millisecond
	}
	var out []Result
	rel, err := leaseRun(ctx, cfg, time.Minute, pathRelease)
	if err != nil {
		return out, err
	}
	out = append(out, latencyResults("lease.takeover", "release", fmt.Sprintf("owner's Release → waiter's Acquire returns, %d trials", len(rel)),
		rel, closeBaseline())...)
	kill, err := leaseRun(ctx, cfg, time.Minute, pathKill)
	if err != nil {
		return out, err
	}
	out = append(out, latencyResults("lease.takeover", "sigkill", fmt.Sprintf("SIGKILL of the owner → waiter's Acquire returns, %d trials", len(kill)),
		kill, deathBaseline())...)
	exp, err := leaseRun(ctx, cfg, cfg.ExpiryThreshold, pathExpiry)
	if err != nil {
		return out, err
	}
	th := baseline{name: "threshold", detail: "the lease's heartbeat threshold: the ideal", value: float64(cfg.ExpiryThreshold) / 1e6}
	out = append(out, latencyResults("lease.takeover", fmt.Sprintf("expiry (threshold %v)", cfg.ExpiryThreshold),
		fmt.Sprintf("owner SIGSTOPped; its last heartbeat → waiter's Acquire returns, %d trials", len(exp)), exp, th)...)
	slotPoll := lease.DefaultSlotPoll.String() // the waiters run with the default
	for _, p := range []struct {
		path           leasePath
		metric, detail string
	}{
		{pathPIDNS, "sigkill (owner in PID ns)", "SIGKILL of an owner running as pid 1 of its own PID namespace → Acquire returns in a waiter on the host, " +
			"which cannot tell the owner's pid from another process's and tests its liveness lock every " + slotPoll},
		{pathHidepid, "sigkill (waiter hidepid)", "SIGKILL of a root owner → Acquire returns in a waiter running as uid 65534 behind a /proc mounted hidepid=2, " +
			"where the owner's pid is hidden: it tests the owner's liveness lock every " + slotPoll + " and timestamps its takeover itself"},
		{pathMidAcquire, "sigkill (mid-acquire)", "SIGKILL of an owner stopped between its lease CAS and its identity write (failpoint lease.acquired=stop), " +
			"known only by the liveness slot its CAS named → waiter's Acquire returns (it tests that slot's lock every " + slotPoll + ")"},
	} {
		ms, skip, err := leaseKillRun(ctx, cfg, p.path)
		if err != nil {
			return out, err
		}
		if skip != "" {
			out = append(out, skippedResults("lease.takeover", p.metric, p.detail, skip, deathBaseline())...)
			continue
		}
		out = append(out, latencyResults("lease.takeover", p.metric, fmt.Sprintf("%s, %d trials", p.detail, len(ms)), ms, deathBaseline())...)
	}
	return out, nil
}

// baseline is a figure results are compared with.
type baseline struct {
	name, detail string
	value        float64
}

// The baselines of the takeover figures: what the Aerospike C client
// does, as documented (not measured). After a clean close the owner gives
// up the tender role and another process takes it at its next tend,
// within one tend interval (1 s by default): the baseline of the release
// paths. An owner that dies is replaced only after
// shm_takeover_threshold_sec (default 30 s): the baseline of the death
// paths.
func closeBaseline() baseline {
	return baseline{name: "C client: next tend after close",
		detail: "Aerospike C client after a clean close: another process takes over at its next tend, within one tend interval (default 1 s); documented, not measured",
		value:  1e3}
}

func deathBaseline() baseline {
	return baseline{name: "C client: takeover threshold",
		detail: "Aerospike C client after the owner's death: shm_takeover_threshold_sec (default 30 s); documented, not measured",
		value:  30e3}
}

// latencyResults returns the p50 and p99 of ms (sorted in place) as
// results of bench, each against the baseline b (in ms).
func latencyResults(bench, metric, detail string, ms []float64, b baseline) []Result {
	p50, p99 := quantile(ms, 0.5), quantile(ms, 0.99)
	r := func(q string, v float64) Result {
		return Result{Bench: bench, Metric: metric + " " + q, Detail: detail, Value: v, Unit: "ms"}.
			WithBaseline(b.name, b.value).WithBaselineDetail(b.detail)
	}
	return []Result{r("p50", p50), r("p99", p99)}
}

// skippedResults returns the p50 and p99 results latencyResults would
// have returned, not measured, with why in Skipped.
func skippedResults(bench, metric, detail, why string, b baseline) []Result {
	r := func(q string) Result {
		return Result{Bench: bench, Metric: metric + " " + q, Detail: detail, Unit: "ms"}.
			WithBaseline(b.name, b.value).WithBaselineDetail(b.detail).WithSkipped(why)
	}
	return []Result{r("p50"), r("p99")}
}

// leaseRun runs cfg.Trials takeovers by one of the paths pathRelease,
// pathKill and pathExpiry and returns their latencies in milliseconds.
func leaseRun(ctx context.Context, cfg LeaseConfig, threshold time.Duration, path leasePath) ([]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	seg, key, err := createBenchSegment(ctx, "lease."+path.String(), leaseSpec())
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
		case pathRelease:
			seg.Store64(c(lcRelease), e)
		case pathKill:
			time.Sleep(time.Millisecond) // let the waiter block in its wait
			t0 = monoNanos()
			g.Kill(0)
		case pathExpiry:
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
		case pathRelease:
			t0 = seg.Load64(c(lcT0))
		case pathKill:
			g.Wait()
			delete(byPid, g.Pid(0))
			ng, err := spawn()
			if err != nil {
				return nil, err
			}
			byPid[ng.Pid(0)] = ng
		case pathExpiry:
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

// leaseKillRun runs cfg.Trials takeovers by path pathPIDNS, pathHidepid
// or pathMidAcquire and returns their latencies in milliseconds, each from
// the parent's SIGKILL of the owner to the waiter's Acquire returning, as
// the waiter timestamps it (CLOCK_MONOTONIC, one clock for every process
// of the boot, whatever its namespaces). Each trial starts an owner on
// the free lease and waits until it holds it (or, mid-acquire, is stopped
// at the failpoint), then starts a waiter, which releases the lease and
// exits once it took over; the owner is killed 1 to 2 ms after the waiter
// entered Acquire, at a random phase of its polling (every
// lease.DefaultSlotPoll, the default the waiter runs with). A trial whose
// waiter took over for another reason than the owner's death is an error.
// If the first trial shows that the machine cannot place a worker as the
// path needs, skip says why and ms is nil.
func leaseKillRun(ctx context.Context, cfg LeaseConfig, path leasePath) (ms []float64, skip string, err error) {
	owner, waiter, failpoints := onHost, onHost, ""
	switch path {
	case pathPIDNS:
		owner = inPIDNS
	case pathHidepid:
		waiter = behindHidepid
	case pathMidAcquire:
		failpoints = lease.FailAcquired + "=stop"
	default:
		return nil, "", fmt.Errorf("bench: lease: %s is not a path of leaseKillRun", path)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	shared := waiter == behindHidepid
	seg, key, err := createBenchSegmentWith(ctx, "lease."+path.String(), leaseOptions(shared))
	if err != nil {
		return nil, "", err
	}
	defer func() {
		seg.Close()
		err = errors.Join(err, removeSegment(key))
	}()
	co, _, _ := seg.Section("ctl")
	c := func(i int) arena.Offset { return co + arena.Offset(8*i) }
	lo, _, _ := seg.Section("lease")
	probe, err := lease.New(seg, lo, lease.Config{Threshold: time.Minute})
	if err != nil {
		return nil, "", err
	}
	var groups []*harness.Group
	defer func() {
		for _, g := range groups {
			g.Close()
		}
	}()
	for trial := 0; len(ms) < cfg.Trials; trial++ {
		// fail returns err, or the reason to skip the path if it shows
		// in the first trial that the machine refused the placement p.
		fail := func(p placement, err error) ([]float64, string, error) {
			if why := unavailable(p, err); why != "" && trial == 0 {
				return nil, why, nil
			}
			return nil, "", fmt.Errorf("bench: lease %s trial %d: %w", path, trial, err)
		}
		e := probe.Owner().Epoch // the lease is free: never held, or released by the last waiter
		ownerTag, waiterTag := uint64(2*trial+1), uint64(2*trial+2)
		args := leaseArgs{Key: uint32(key), Threshold: time.Minute, Shared: shared, Tag: ownerTag}
		ow, err := startLeaseWorker(ctx, owner, args, failpoints, cfg.Stderr)
		if err != nil {
			return fail(owner, err)
		}
		groups = append(groups, ow.g)
		if path == pathMidAcquire {
			name, err := ow.g.WaitFailpoint(ctx, 0)
			if err == nil && name != lease.FailAcquired {
				err = fmt.Errorf("the owner reached failpoint %q, want %q", name, lease.FailAcquired)
			}
			if err == nil {
				err = ow.g.WaitStopped(ctx, 0)
			}
			if err != nil {
				return fail(owner, err)
			}
			if o := probe.Owner(); !o.Held || o.Epoch != e+1 || !o.Identity.IsZero() || o.Slot == 0 {
				return fail(owner, fmt.Errorf("lease record %+v: want epoch %d held by a liveness slot, no identity yet", o, e+1))
			}
		} else if err := ow.await(ctx, "the owner to acquire", func() bool {
			return seg.Load64(c(lcEpoch)) == e+1 && seg.Load64(c(lcOwner)) == ownerTag
		}); err != nil {
			return fail(owner, err)
		}

		waiting := seg.Load64(c(lcWaiting))
		args.Tag, args.Once = waiterTag, true
		ww, err := startLeaseWorker(ctx, waiter, args, "", cfg.Stderr)
		if err != nil {
			return fail(waiter, err)
		}
		groups = append(groups, ww.g)
		if err := ww.await(ctx, "the waiter to enter Acquire", func() bool { return seg.Load64(c(lcWaiting)) > waiting }); err != nil {
			return fail(waiter, err)
		}
		time.Sleep(time.Millisecond + rand.N(lease.DefaultSlotPoll))
		if o := probe.Owner(); o.Epoch != e+1 {
			return fail(waiter, fmt.Errorf("the lease moved to epoch %d while its owner of epoch %d lived", o.Epoch, e+1))
		}
		t0 := monoNanos()
		if err := ow.g.Kill(0); err != nil {
			return fail(owner, err)
		}
		if err := ww.await(ctx, "the waiter's takeover", func() bool { return seg.Load64(c(lcEpoch)) == e+2 }); err != nil {
			return fail(waiter, err)
		}
		t1 := seg.Load64(c(lcT1))
		if tag, why := seg.Load64(c(lcOwner)), lease.Reason(seg.Load64(c(lcReason))); tag != waiterTag || why != lease.ReasonOwnerDead {
			return fail(waiter, fmt.Errorf("epoch %d taken by worker tag %d for reason %q; want tag %d, reason %q", e+2, tag, why, waiterTag, lease.ReasonOwnerDead))
		}
		if t1 < t0 {
			return fail(waiter, fmt.Errorf("takeover at %d observed before the kill at %d (epoch %d)", t1, t0, e+2))
		}
		if rs, _ := ow.g.Wait(); len(rs) != 1 || rs[0].Signal != syscall.SIGKILL {
			return fail(owner, fmt.Errorf("the owner was not killed: %+v", rs))
		}
		if _, err := ww.g.Wait(); err != nil { // it released the lease and returned
			return fail(waiter, err)
		}
		ow.g.Close()
		ww.g.Close()
		ms = append(ms, float64(t1-t0)/1e6)
	}
	return ms, "", nil
}

// leaseWorker is one worker process of leaseKillRun.
type leaseWorker struct {
	g     *harness.Group
	place placement
	done  chan struct{} // closed once the worker has exited
}

// hidepidWrap runs a worker in its own mount namespace (Unshareflags
// CLONE_NEWNS) behind a private /proc that hides other users' processes.
var hidepidWrap = []string{"sh", "-c", `mount -t proc -o hidepid=2 proc /proc && exec "$0" "$@"`}

// startLeaseWorker starts one leaseNode worker placed as p, with args a
// and the failpoints armed (none if empty), and releases its barrier.
func startLeaseWorker(ctx context.Context, p placement, a leaseArgs, failpoints string, stderr io.Writer) (*leaseWorker, error) {
	sp := harness.Spec{Workload: wlLeaseNode, N: 1, Stderr: stderr}
	switch p {
	case inPIDNS:
		sp.Cloneflags = syscall.CLONE_NEWPID
	case behindHidepid:
		a.UID, a.Hidden = nobodyUID, true
		sp.Unshareflags = syscall.CLONE_NEWNS
		sp.Wrap = hidepidWrap
	}
	sp.Args = a
	if failpoints != "" {
		sp.Failpoints = map[int]string{0: failpoints}
	}
	g, err := harness.Start(ctx, sp)
	if err != nil {
		return nil, &placementError{place: p, err: err}
	}
	w := &leaseWorker{g: g, place: p, done: make(chan struct{})}
	go func() {
		_, _ = g.Wait()
		close(w.done)
	}()
	if err := g.Release(ctx); err != nil {
		g.Close()
		return nil, err
	}
	return w, nil
}

// await waits until cond holds. It fails with a *workerExitError if the
// worker exits first, or with ctx's error.
func (w *leaseWorker) await(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-w.done:
			if cond() {
				return nil
			}
			rs, err := w.g.Wait()
			e := &workerExitError{what: what, err: err}
			if len(rs) == 1 {
				e.result = rs[0]
			}
			return e
		default:
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bench: waiting for %s: %w", what, err)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return nil
}

// placementError means a worker could not be started as placed (the
// kernel refused the namespace, or the wrapper could not be run).
type placementError struct {
	place placement
	err   error
}

func (e *placementError) Error() string {
	return fmt.Sprintf("bench: start a worker %s: %v", e.place, e.err)
}

func (e *placementError) Unwrap() error { return e.err }

// workerExitError means a worker exited before what happened.
type workerExitError struct {
	what   string
	result harness.Result
	err    error // from Group.Wait
}

func (e *workerExitError) Error() string {
	msg := fmt.Sprintf("bench: the worker exited before %s: %v", e.what, e.err)
	if tail := lastLine(e.result.Stderr); tail != "" {
		msg += "; stderr: " + tail
	}
	return msg
}

func (e *workerExitError) Unwrap() error { return e.err }

// unavailable returns why the machine cannot run a worker placed as p, if
// err shows that: the kernel refused to create its namespace, or the
// worker could not mount its /proc or change its uid. Otherwise (and for
// a worker on the host) it returns "".
func unavailable(p placement, err error) string {
	if p == onHost || err == nil {
		return ""
	}
	var pe *placementError
	if errors.As(err, &pe) {
		return fmt.Sprintf("cannot start a worker %s: %v", p, pe.err)
	}
	var xe *workerExitError
	if !errors.As(err, &xe) || p != behindHidepid {
		return ""
	}
	switch r := xe.result; {
	case strings.Contains(r.Stderr, "mount:"):
		return "cannot mount a hidepid=2 /proc: " + lastLine(r.Stderr)
	case strings.Contains(r.Err, "bench: set"):
		return "cannot run a worker as uid 65534: " + r.Err
	}
	return ""
}

// lastLine returns the last non-blank line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
