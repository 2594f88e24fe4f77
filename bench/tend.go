package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// Bench names and kinds of TendBench's and TakeoverBench's results.
const (
	// BenchTendRequests is the Bench of the info request rates; Metric is
	// ProcsMetric(P, KindShm or KindPerProcess).
	BenchTendRequests = "tend.requests"
	// BenchTendPropagation is the Bench of the times until every process
	// sees a moved partition; Metric is ProcsMetric(P, kind) followed by
	// ", p50" or ", p99".
	BenchTendPropagation = "tend.propagation"
	// BenchTakeover is the Bench of TakeoverBench.
	BenchTakeover = "tend.takeover"
	// KindPerProcess marks a figure of processes that each tend for
	// themselves (tend.Config.UseShm false): the baseline.
	KindPerProcess = "per-process tending"
)

// Defaults of TendConfig and TakeoverConfig.
const (
	// DefaultBenchTendInterval is the tend interval of the benchmarks (the
	// tend package's default is 1 s).
	DefaultBenchTendInterval = 100 * time.Millisecond
	// DefaultBenchNodes is the number of simulated cluster nodes.
	DefaultBenchNodes = 4
)

// The simulated cluster's namespace.
const tendNS = tendtest.DefaultNamespace

// ErrTendBench means a tend benchmark saw something impossible: a process
// that saw a moved partition before it moved, or a takeover before the
// kill.
var ErrTendBench = errors.New("bench: tend benchmark: inconsistent observation")

// TendConfig configures TendBench. The zero value is the default.
type TendConfig struct {
	// Procs lists the process counts (default 1, 2, 4, 8, 16).
	Procs []int
	// Nodes is the number of simulated cluster nodes (default 4).
	Nodes int
	// TendInterval is every process's tend.Config.TendInterval (default
	// DefaultBenchTendInterval).
	TendInterval time.Duration
	// Window is how long info requests are counted per configuration
	// (default 5 s).
	Window time.Duration
	// Moves is the number of partition moves per configuration (default
	// 20).
	Moves int
	// Stderr receives the worker processes' stderr (nil: discarded).
	Stderr io.Writer
}

func (c *TendConfig) defaults() {
	if len(c.Procs) == 0 {
		c.Procs = []int{1, 2, 4, 8, 16}
	}
	if c.Nodes <= 0 {
		c.Nodes = DefaultBenchNodes
	}
	if c.TendInterval <= 0 {
		c.TendInterval = DefaultBenchTendInterval
	}
	if c.Window <= 0 {
		c.Window = 5 * time.Second
	}
	if c.Moves <= 0 {
		c.Moves = 20
	}
}

// Workload names of the tend benchmarks.
const (
	wlTendMember     = "bench.tend.member"
	wlTakeoverMember = "bench.tend.takeover"
)

// TendWorkloads returns the worker workloads of TendBench and
// TakeoverBench; add them to the registry given to harness.Dispatch.
func TendWorkloads() harness.Registry {
	return harness.Registry{wlTendMember: tendMember, wlTakeoverMember: takeoverMember}
}

// The tend benchmark's control words:
//
//	0           the current move: seq<<32 | node index<<16 | partition
//	1           non-zero: stop (the parent then moves a partition, so that
//	            every process wakes from WaitChange)
//	tcSeen+2i   worker i: the last move seq it saw
//	tcSeen+2i+1 worker i: CLOCK_MONOTONIC ns when it saw it
const (
	tcMove = 0
	tcStop = 1
	tcSeen = 8
)

func packMove(seq uint64, to int, pid uint32) uint64 {
	return seq<<32 | uint64(to&0xff)<<16 | uint64(pid&0xffff)
}

func unpackMove(w uint64) (seq uint64, to int, pid uint32) {
	return w >> 32, int(w >> 16 & 0xff), uint32(w & 0xffff)
}

// tendArgs are the arguments of a tend benchmark's worker.
type tendArgs struct {
	UseShm    bool
	Key       uint32 // tend's segment (UseShm)
	Ctl       uint32 // the control segment
	CtlWords  int
	Slot      int // first control slot of the group
	Seeds     []string
	Names     []string // node names by simulator index
	Interval  time.Duration
	Threshold time.Duration
}

func (a tendArgs) open(ctx context.Context, w *harness.Worker) (*tend.Cluster, ctlWords, error) {
	ctl, err := openCtl(ctx, arena.Key(a.Ctl), a.CtlWords)
	if err != nil {
		return nil, ctlWords{}, err
	}
	c, err := tend.Open(ctx, tend.Config{Seeds: a.Seeds, UseShm: a.UseShm, ShmKey: arena.Key(a.Key),
		TendInterval: a.Interval, TakeoverThreshold: a.Threshold, Logger: w.Log})
	if err != nil {
		ctl.seg.Close()
		return nil, ctlWords{}, err
	}
	// Wait until the view has the namespace (a follower may open before
	// the owner's first tend is published).
	d, _ := partmap.DigestForPartition(0)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := c.Master(tendNS, d); err == nil {
			return c, ctl, nil
		} else if ctx.Err() != nil || time.Now().After(deadline) {
			// The view is not closed (see tendMember); the process exits.
			ctl.seg.Close()
			return nil, ctlWords{}, fmt.Errorf("bench: worker %d: cluster view not ready: %w", w.Index, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// tendMember opens the cluster view and, until told to stop, records the
// time it first sees each announced partition move: it sleeps in
// WaitChange (woken by the owner's publish) and checks the moved
// partition's master after every change.
// It closes its view when it returns (WaitChange and the lease's waits
// join their helper goroutines before returning, so nothing touches the
// segment after Close detaches it).
func tendMember(ctx context.Context, w *harness.Worker) (any, error) {
	var a tendArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	c, ctl, err := a.open(ctx, w)
	if err != nil {
		return nil, err
	}
	defer ctl.seg.Close()
	defer c.Close()
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	slot := tcSeen + 2*(a.Slot+w.Index)
	var gen, seen uint64
	for ctl.load(tcStop) == 0 {
		if seq, to, pid := unpackMove(ctl.load(tcMove)); seq > seen && to < len(a.Names) {
			d, _ := partmap.DigestForPartition(pid)
			if n, err := c.Master(tendNS, d); err == nil && n.Name == a.Names[to] {
				ctl.store(slot+1, monoNanos())
				ctl.store(slot, seq)
				seen = seq
				continue
			}
		}
		g, err := c.WaitChange(ctx, gen)
		if err != nil {
			return nil, err
		}
		gen = g
	}
	return nil, nil
}

// tendRunResult is what one configuration of TendBench measured.
type tendRunResult struct {
	reqPerSec float64
	allSeeMs  []float64 // per move: until the last process saw it
}

// TendBench runs cfg.Procs processes (each a tend.Cluster on a simulated
// cluster of cfg.Nodes nodes, tending every cfg.TendInterval) with shared
// memory (one tender for all) and without (every process tends for
// itself, the baseline), and measures per configuration:
//
//   - info requests per second received by the simulated nodes over
//     cfg.Window (Bench BenchTendRequests; the shared-memory figure has
//     the per-process one as baseline);
//   - over cfg.Moves partition moves (master of a random partition moved
//     to another node, at a random phase of the tend cycle): the time
//     from just before the move (CLOCK_MONOTONIC in this process) until
//     the last of the P processes saw the new master (CLOCK_MONOTONIC in
//     that process, which sleeps in WaitChange and checks the partition
//     after each change), p50 and p99 (Bench BenchTendPropagation, Detail
//     the number of moves, with baseline the target: tend interval + 5
//     ms).
//
// The caller's binary must dispatch TendWorkloads.
func TendBench(ctx context.Context, cfg TendConfig) ([]Result, error) {
	cfg.defaults()
	sim, err := tendtest.New(tendtest.Options{Nodes: cfg.Nodes})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	procs := slices.Clone(cfg.Procs)
	slices.Sort(procs)
	target := float64(cfg.TendInterval+5*time.Millisecond) / 1e6
	targetName := fmt.Sprintf("target: tend interval %v + 5 ms", cfg.TendInterval)
	var reqs, props []Result
	for _, p := range procs {
		var runs [2]tendRunResult
		for i, useShm := range []bool{true, false} {
			r, err := tendRun(ctx, sim, cfg, p, useShm)
			if err != nil {
				return append(reqs, props...), fmt.Errorf("bench: tend with %d procs (UseShm %v): %w", p, useShm, err)
			}
			runs[i] = r
		}
		shm, per := ProcsMetric(p, KindShm), ProcsMetric(p, KindPerProcess)
		reqs = append(reqs,
			Result{Bench: BenchTendRequests, Metric: shm, Value: runs[0].reqPerSec, Unit: "req/s"}.WithBaseline(per, runs[1].reqPerSec),
			Result{Bench: BenchTendRequests, Metric: per, Value: runs[1].reqPerSec, Unit: "req/s"})
		for i, m := range []string{shm, per} {
			ms := runs[i].allSeeMs
			props = append(props,
				Result{Bench: BenchTendPropagation, Metric: m + ", p50", Detail: fmt.Sprintf("%d moves", len(ms)), Value: quantile(ms, 0.5), Unit: "ms"}.WithBaseline(targetName, target),
				Result{Bench: BenchTendPropagation, Metric: m + ", p99", Detail: fmt.Sprintf("%d moves", len(ms)), Value: quantile(ms, 0.99), Unit: "ms"}.WithBaseline(targetName, target))
		}
	}
	return append(reqs, props...), nil
}

// tendRun measures one configuration: p processes, with or without
// shared memory.
func tendRun(ctx context.Context, sim *tendtest.Cluster, cfg TendConfig, p int, useShm bool) (_ tendRunResult, err error) {
	var res tendRunResult
	limit := time.Minute + cfg.Window + time.Duration(cfg.Moves)*(3*cfg.TendInterval+time.Second)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	words := tcSeen + 2*p
	ctl, ctlKey, removeCtl, err := createCtl(ctx, "tend.ctl", words)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, removeCtl()) }()
	a := tendArgs{UseShm: useShm, Ctl: uint32(ctlKey), CtlWords: words, Seeds: sim.Seeds(),
		Interval: cfg.TendInterval, Threshold: tend.DefaultTakeoverThreshold}
	for _, n := range sim.Nodes() {
		a.Names = append(a.Names, n.Name)
	}
	if useShm {
		key, err := freeTestKey("tend")
		if err != nil {
			return res, err
		}
		a.Key = uint32(key)
		defer func() { err = errors.Join(err, removeSegment(key)) }()
	}
	g, err := harness.Start(ctx, harness.Spec{Workload: wlTendMember, N: p, Args: a, Stderr: cfg.Stderr})
	if err != nil {
		return res, err
	}
	defer g.Close()
	if err := g.Release(ctx); err != nil {
		return res, err
	}

	// Info requests in the steady state.
	if err := sleepCtx(ctx, cfg.TendInterval); err != nil {
		return res, err
	}
	sim.ResetCounters()
	start := time.Now()
	if err := sleepCtx(ctx, cfg.Window); err != nil {
		return res, err
	}
	n := sim.InfoRequests()
	res.reqPerSec = float64(n) / time.Since(start).Seconds()

	// Partition moves.
	nodes := sim.Nodes()
	for k := uint64(1); k <= uint64(cfg.Moves); k++ {
		pid := uint32(rand.IntN(partmap.Partitions))
		cur, err := sim.Master(tendNS, pid)
		if err != nil {
			return res, err
		}
		var others []int
		for _, nd := range nodes {
			if nd.Name != cur && nd.Member {
				others = append(others, nd.Index)
			}
		}
		if len(others) == 0 {
			return res, fmt.Errorf("%w: no node to move partition %d to", ErrTendBench, pid)
		}
		to := others[rand.IntN(len(others))]
		ctl.store(tcMove, packMove(k, to, pid))
		t0 := monoNanos()
		if err := sim.MovePartition(tendNS, pid, 0, to); err != nil {
			return res, err
		}
		if err := pollUntil(ctx, fmt.Sprintf("move %d seen by all %d processes", k, p), time.Millisecond, func() bool {
			for i := range p {
				if ctl.load(tcSeen+2*i) < k {
					return false
				}
			}
			return true
		}); err != nil {
			return res, err
		}
		last := uint64(0)
		for i := range p {
			t := ctl.load(tcSeen + 2*i + 1)
			if t < t0 {
				return res, fmt.Errorf("%w: process %d saw move %d at %d, before it was made at %d", ErrTendBench, i, k, t, t0)
			}
			last = max(last, t)
		}
		res.allSeeMs = append(res.allSeeMs, float64(last-t0)/1e6)
		// Next move at a random phase of the tend cycle.
		if err := sleepCtx(ctx, rand.N(cfg.TendInterval)); err != nil {
			return res, err
		}
	}

	return res, tendStop(ctx, sim, g, ctl, cfg.TendInterval)
}

// tendStop stops the workers of a tend run: it sets the stop word and
// moves a partition, whose publish wakes every worker, and waits for them
// to exit.
func tendStop(ctx context.Context, sim *tendtest.Cluster, g *harness.Group, ctl ctlWords, interval time.Duration) error {
	ctl.store(tcStop, 1)
	pid := uint32(rand.IntN(partmap.Partitions))
	cur, err := sim.Master(tendNS, pid)
	if err != nil {
		return err
	}
	for _, nd := range sim.Nodes() {
		if nd.Name != cur && nd.Member {
			if err := sim.MovePartition(tendNS, pid, 0, nd.Index); err != nil {
				return err
			}
			break
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := g.Wait()
		done <- err
	}()
	limit := 10*interval + 10*time.Second
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		g.Close()
		return fmt.Errorf("%w: workers did not stop within %v", ErrTendBench, limit)
	case <-ctx.Done():
		g.Close()
		return fmt.Errorf("bench: stopping tend workers: %w", ctx.Err())
	}
}

// TakeoverConfig configures TakeoverBench. The zero value is the default.
type TakeoverConfig struct {
	// Trials is the number of owners closed, and of owners killed
	// (default 20 each).
	Trials int
	// Procs is the number of processes sharing the cluster view (default
	// 3: the owner and two candidates).
	Procs int
	// Nodes is the number of simulated cluster nodes (default 4).
	Nodes int
	// TendInterval is every process's tend.Config.TendInterval (default
	// DefaultBenchTendInterval).
	TendInterval time.Duration
	// TakeoverThreshold is every process's tend.Config.TakeoverThreshold
	// (default tend.DefaultTakeoverThreshold, 30 s: a dead owner is
	// replaced through owner-death detection, not heartbeat expiry).
	TakeoverThreshold time.Duration
	// Stderr receives the worker processes' stderr (nil: discarded).
	Stderr io.Writer
}

func (c *TakeoverConfig) defaults() {
	if c.Trials <= 0 {
		c.Trials = 20
	}
	if c.Procs < 2 {
		c.Procs = 3
	}
	if c.Nodes <= 0 {
		c.Nodes = DefaultBenchNodes
	}
	if c.TendInterval <= 0 {
		c.TendInterval = DefaultBenchTendInterval
	}
	if c.TakeoverThreshold <= 0 {
		c.TakeoverThreshold = tend.DefaultTakeoverThreshold
	}
}

// The takeover benchmark's control words: koClose and koClosedAt, then
// slots of koWords words each from koBase + koWords·slot.
//
//	koClose    slot+1 of the worker told to close its view (0: none)
//	koClosedAt CLOCK_MONOTONIC ns when that worker called Close
//
// A slot:
//
//	0 pid, once the worker's view is ready
//	1 the lease epoch of the worker's ownership whose first tend is done
//	  (written last)
//	2 CLOCK_MONOTONIC ns when the worker became owner (tend.Takeover.At)
//	3 CLOCK_MONOTONIC ns when its first tend as owner finished
//	  (tend.Stats.LastTend)
const (
	koClose    = 0
	koClosedAt = 1
	koBase     = 8
	koWords    = 4
)

// monoOf converts wall-clock time t of this process to CLOCK_MONOTONIC
// ns, through the current offset between the clocks.
func monoOf(t time.Time) uint64 {
	now, mono := time.Now(), monoNanos()
	return mono - uint64(now.Sub(t).Nanoseconds())
}

// takeoverMember opens the cluster view and polls its role every
// millisecond; when it is the owner and its first tend as owner has
// finished (LastTend after the takeover), it publishes the times of both
// (tend.Stats reports them as wall-clock times, converted here to
// CLOCK_MONOTONIC, so the polling period does not count). Told to close
// (koClose), it records the time and closes its view, which releases the
// lease, and returns; otherwise the parent kills it.
func takeoverMember(ctx context.Context, w *harness.Worker) (any, error) {
	var a tendArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	c, ctl, err := a.open(ctx, w)
	if err != nil {
		return nil, err
	}
	defer ctl.seg.Close()
	base := koBase + koWords*a.Slot
	ctl.store(base, uint64(os.Getpid()))
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	var done uint64
	for ctx.Err() == nil {
		if ctl.load(koClose) == uint64(a.Slot)+1 {
			ctl.store(koClosedAt, monoNanos())
			return nil, c.Close()
		}
		st := c.Stats()
		if st.Role == tend.RoleOwner && len(st.Takeovers) > 0 {
			to := st.Takeovers[len(st.Takeovers)-1]
			if to.Epoch != done && st.LastTend.After(to.At) {
				ctl.store(base+2, monoOf(to.At))
				ctl.store(base+3, monoOf(st.LastTend))
				ctl.store(base+1, to.Epoch)
				done = to.Epoch
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
	return nil, nil
}

// TakeoverBench measures how long the cluster goes untended when the tend
// owner goes away: cfg.Procs processes share a view of a simulated
// cluster; in each of cfg.Trials trials per path, at a random phase of
// its tend cycle, the owner either closes its view (tend.Cluster.Close,
// which releases the lease) or is SIGKILLed, and is replaced by a fresh
// process. Reported, p50 and p99 in ms, from just before the Close call or
// the kill:
//
//   - until a surviving process acquired the lease (its tend.Takeover.At,
//     taken just before it stamps the segment);
//   - until that new owner's first tend cycle finished (tend.Stats
//     LastTend). A new owner tends at once, so this adds one cycle.
//
// Baselines, documented and not measured: after a close, the Aerospike C
// client's hand-over at another process's next tend, within one tend
// interval (1 s by default); after a kill, the 30 s it waits before
// replacing a tender that stopped (shm_takeover_threshold_sec, its
// documented default).
// The caller's binary must dispatch TendWorkloads.
func TakeoverBench(ctx context.Context, cfg TakeoverConfig) (_ []Result, err error) {
	cfg.defaults()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+time.Duration(2*cfg.Trials)*(5*cfg.TendInterval+10*time.Second))
	defer cancel()
	sim, err := tendtest.New(tendtest.Options{Nodes: cfg.Nodes})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	slots := cfg.Procs + 2*cfg.Trials
	words := koBase + koWords*slots
	ctl, ctlKey, removeCtl, err := createCtl(ctx, "takeover.ctl", words)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, removeCtl()) }()
	key, err := freeTestKey("takeover")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, removeSegment(key)) }()
	a := tendArgs{UseShm: true, Key: uint32(key), Ctl: uint32(ctlKey), CtlWords: words, Seeds: sim.Seeds(),
		Interval: cfg.TendInterval, Threshold: cfg.TakeoverThreshold}

	groups := map[int]*harness.Group{} // live workers by slot
	defer func() {
		for _, g := range groups {
			g.Close()
		}
	}()
	next := 0
	spawn := func() error {
		s := next
		next++
		args := a
		args.Slot = s
		g, err := harness.Start(ctx, harness.Spec{Workload: wlTakeoverMember, N: 1, Args: args, Stderr: cfg.Stderr})
		if err != nil {
			return err
		}
		groups[s] = g
		return g.Release(ctx)
	}
	for range cfg.Procs {
		if err := spawn(); err != nil {
			return nil, err
		}
	}
	// owner returns the live slot that published the highest epoch above
	// after, or -1.
	owner := func(after uint64) (int, uint64) {
		best, be := -1, after
		for s := range groups {
			if e := ctl.load(koBase + koWords*s + 1); e > be {
				best, be = s, e
			}
		}
		return best, be
	}
	// trial replaces the owner once, by close or kill, and returns the
	// times from the close or kill until the lease was taken and until
	// the new owner's first tend, in ms.
	epoch := uint64(0)
	trial := func(byClose bool, n int) (acq, first float64, err error) {
		var s int
		if err := pollUntil(ctx, "an owner that has tended", time.Millisecond, func() bool {
			s, epoch = owner(epoch)
			return s >= 0
		}); err != nil {
			return 0, 0, err
		}
		if err := sleepCtx(ctx, rand.N(cfg.TendInterval)); err != nil {
			return 0, 0, err
		}
		g := groups[s]
		var t0 uint64
		if byClose {
			ctl.store(koClose, uint64(s)+1)
		} else {
			t0 = monoNanos()
			if err := g.Kill(0); err != nil {
				return 0, 0, err
			}
		}
		delete(groups, s)
		var ns int
		if err := pollUntil(ctx, fmt.Sprintf("takeover %d", n), time.Millisecond, func() bool {
			ns, _ = owner(epoch)
			return ns >= 0
		}); err != nil {
			return 0, 0, err
		}
		if _, err := g.Wait(); byClose && err != nil {
			return 0, 0, fmt.Errorf("bench: the owner closing its view: %w", err)
		}
		g.Close()
		if byClose {
			t0 = ctl.load(koClosedAt)
		}
		nb := koBase + koWords*ns
		ta, tt := ctl.load(nb+2), ctl.load(nb+3)
		if t0 == 0 || ta < t0 || tt < ta {
			return 0, 0, fmt.Errorf("%w: trial %d: owner gone at %d, taken over at %d, first tend at %d", ErrTendBench, n, t0, ta, tt)
		}
		return float64(ta-t0) / 1e6, float64(tt-t0) / 1e6, spawn()
	}
	var closeAcq, closeFirst, killAcq, killFirst []float64
	for n := range 2 * cfg.Trials {
		byClose := n%2 == 0 // the paths interleaved, so that both see the same conditions
		a, f, err := trial(byClose, n)
		if err != nil {
			return nil, err
		}
		if byClose {
			closeAcq, closeFirst = append(closeAcq, a), append(closeFirst, f)
		} else {
			killAcq, killFirst = append(killAcq, a), append(killFirst, f)
		}
	}
	var out []Result
	out = append(out, latencyResults(BenchTakeover, "close → lease taken",
		fmt.Sprintf("the tend owner's Close → a survivor acquired the lease, %d procs, %d trials", cfg.Procs, len(closeAcq)), closeAcq, closeBaseline())...)
	out = append(out, latencyResults(BenchTakeover, "close → first tend done",
		fmt.Sprintf("the tend owner's Close → the new owner's first tend finished, tend interval %v, %d trials", cfg.TendInterval, len(closeFirst)), closeFirst, closeBaseline())...)
	out = append(out, latencyResults(BenchTakeover, "sigkill → lease taken",
		fmt.Sprintf("SIGKILL of the tend owner → a survivor acquired the lease, %d procs, %d trials", cfg.Procs, len(killAcq)), killAcq, deathBaseline())...)
	out = append(out, latencyResults(BenchTakeover, "sigkill → first tend done",
		fmt.Sprintf("SIGKILL of the tend owner → the new owner's first tend finished, tend interval %v, %d trials", cfg.TendInterval, len(killFirst)), killFirst, deathBaseline())...)
	return out, nil
}
