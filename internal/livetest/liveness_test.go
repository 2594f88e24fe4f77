package livetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/seqlock"
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{
		"seqwriter":   seqWriter,
		"seqreader":   seqReader,
		"leaseowner":  leaseOwner,
		"contender":   contender,
		"poolholder":  poolHolder,
		"poolclaimer": poolClaimer,
	})
	os.Exit(m.Run())
}

const (
	words    = 6 // seqlock payload words
	nobody   = 65534
	poolN    = 100          // elements the pool holder claims
	ctlWords = 1024         // control section: per-worker counters, then the holder's handles
	handles  = 512          // word index of the first of the holder's handles
	stopWord = ctlWords - 1 // set by the test: workers end their loops
)

// Per-worker counters in the control section: word 16*index + one of these.
const (
	cWrites = iota
	cTakeovers
	cStalls
	cReads
	cTorn
	cAcquired
	cLost
	cFreed
	cDouble
	cReady
)

func spec() layout.Spec {
	return layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{
		{Name: "lease", Size: lease.Size},
		{Name: "table", Size: seqlock.SizeOf(1, words)},
		{Name: "ctl", Size: 8 * ctlWords},
	}}
}

// Segments are 0666 and accept root's: workers run as uid 65534 too.
func segOpts() arena.Options {
	return arena.Options{Spec: spec(), Mode: 0o666, AllowUIDs: []uint32{0}}
}

func poolCfg() arena.PoolConfig {
	return arena.PoolConfig{ElemSize: 64, StageElems: 1024, Segment: arena.Options{Mode: 0o666, AllowUIDs: []uint32{0}}}
}

type args struct {
	Key, PoolKey uint32
	UID          int // drop to this uid first (0: stay root)
	Slot         int // index of this worker's counters in the control section
	Run          time.Duration
	Stall        time.Duration
}

type shared struct {
	seg  *arena.Segment
	lo   arena.Offset
	tab  arena.Offset
	ctl  arena.Offset
	self int
}

func (s *shared) word(i int) arena.Offset { return s.ctl + arena.Offset(8*i) }
func (s *shared) mine(c int) arena.Offset { return s.word(16*s.self + c) }

// running reports whether a worker should go on: before end and until the
// test sets the stop word.
func (s *shared) running(ctx context.Context, end time.Time) bool {
	return ctx.Err() == nil && time.Now().Before(end) && s.seg.Load64(s.word(stopWord)) == 0
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// attach drops privileges if asked and attaches the shared segment.
func attach(ctx context.Context, w *harness.Worker) (*shared, args, error) {
	var a args
	if err := w.DecodeArgs(&a); err != nil {
		return nil, a, err
	}
	if a.UID != 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return nil, a, fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(a.UID); err != nil {
			return nil, a, fmt.Errorf("setgid: %w", err)
		}
		if err := syscall.Setuid(a.UID); err != nil {
			return nil, a, fmt.Errorf("setuid: %w", err)
		}
	}
	seg, err := arena.Open(ctx, arena.SysV(arena.Key(a.Key)), segOpts())
	if err != nil {
		return nil, a, err
	}
	s := &shared{seg: seg, self: a.Slot}
	s.lo, _, _ = seg.Section("lease")
	s.tab, _, _ = seg.Section("table")
	s.ctl, _, _ = seg.Section("ctl")
	if err := w.Barrier(ctx); err != nil {
		return nil, a, err
	}
	return s, a, nil
}

func fill(dst []uint64, v uint64) {
	for i := range dst {
		dst[i] = v
	}
}

// seqWriter writes record 0 (every word the same value) until Run ends,
// publishing its writes, takeovers and stalls.
func seqWriter(ctx context.Context, w *harness.Worker) (any, error) {
	s, a, err := attach(ctx, w)
	if err != nil {
		return nil, err
	}
	tab, err := seqlock.New(s.seg, s.tab, 1, words, seqlock.Options{StallTimeout: a.Stall, Failpoints: w.Failpoints})
	if err != nil {
		return nil, err
	}
	s.seg.Store64(s.mine(cReady), 1)
	src := make([]uint64, words)
	end := time.Now().Add(a.Run)
	for v := uint64(s.self) << 40; s.running(ctx, end); v++ {
		fill(src, v)
		if err := tab.Write(0, src); err != nil {
			if !errors.Is(err, seqlock.ErrWriterStalled) && !errors.Is(err, seqlock.ErrStarved) {
				return nil, err
			}
			s.seg.Add64(s.mine(cStalls), 1)
		} else {
			s.seg.Add64(s.mine(cWrites), 1)
		}
		s.seg.Store64(s.mine(cTakeovers), tab.Stats().Takeovers)
	}
	return tab.Stats().Takeovers, nil
}

// seqReader reads record 0 until Run ends and counts accepted payloads
// whose words differ (torn).
func seqReader(ctx context.Context, w *harness.Worker) (any, error) {
	s, a, err := attach(ctx, w)
	if err != nil {
		return nil, err
	}
	tab, err := seqlock.New(s.seg, s.tab, 1, words, seqlock.Options{StallTimeout: a.Stall})
	if err != nil {
		return nil, err
	}
	s.seg.Store64(s.mine(cReady), 1)
	dst := make([]uint64, words)
	end := time.Now().Add(a.Run)
	var reads, torn uint64
	for n := 0; ctx.Err() == nil; n++ {
		if n%1024 == 0 {
			s.seg.Store64(s.mine(cReads), reads)
			s.seg.Store64(s.mine(cTorn), torn)
			if !s.running(ctx, end) {
				break
			}
		}
		if err := tab.Read(0, dst); err != nil {
			continue // stalled while a writer is stopped, or a recovered (ErrTorn) record
		}
		reads++
		for _, v := range dst[1:] {
			if v != dst[0] {
				torn++
				break
			}
		}
	}
	s.seg.Store64(s.mine(cReads), reads)
	s.seg.Store64(s.mine(cTorn), torn)
	return torn, nil
}

// leaseOwner acquires the lease and renews it until ctx ends, counting
// losses (a takeover of a live owner).
func leaseOwner(ctx context.Context, w *harness.Worker) (any, error) {
	s, a, err := attach(ctx, w)
	if err != nil {
		return nil, err
	}
	l, err := lease.New(s.seg, s.lo, lease.Config{Threshold: 30 * time.Second, Logger: quiet(), Failpoints: w.Failpoints})
	if err != nil {
		return nil, err
	}
	if _, err := l.Acquire(ctx); err != nil {
		return nil, err
	}
	s.seg.Store64(s.mine(cAcquired), 1)
	end := time.Now().Add(a.Run)
	for time.Now().Before(end) && ctx.Err() == nil {
		if err := l.Renew(); err != nil {
			s.seg.Add64(s.mine(cLost), 1)
			return nil, err
		}
		time.Sleep(10 * time.Millisecond) // the heartbeat period
	}
	return nil, nil
}

// contender tries to take the lease until Run ends, counting successes.
func contender(ctx context.Context, w *harness.Worker) (any, error) {
	s, a, err := attach(ctx, w)
	if err != nil {
		return nil, err
	}
	l, err := lease.New(s.seg, s.lo, lease.Config{Threshold: 30 * time.Second, Logger: quiet()})
	if err != nil {
		return nil, err
	}
	s.seg.Store64(s.mine(cReady), 1)
	end := time.Now().Add(a.Run)
	for time.Now().Before(end) && ctx.Err() == nil {
		if _, err := l.TryAcquire(); err == nil {
			s.seg.Add64(s.mine(cAcquired), 1)
			_ = l.Release()
		} else if !errors.Is(err, lease.ErrHeld) {
			return nil, err
		}
		time.Sleep(time.Millisecond)
	}
	return nil, nil
}

// poolHolder claims poolN elements (never committing them), lists their
// handles in the control section, and lives until killed.
func poolHolder(ctx context.Context, w *harness.Worker) (any, error) {
	s, a, err := attach(ctx, w)
	if err != nil {
		return nil, err
	}
	p, err := arena.OpenPool(ctx, arena.SysV(arena.Key(a.PoolKey)), poolCfg())
	if err != nil {
		return nil, err
	}
	for i := range poolN {
		h, err := p.Alloc(ctx)
		if err != nil {
			return nil, err
		}
		s.seg.Store64(s.word(handles+i), uint64(h))
	}
	s.seg.Store64(s.mine(cReady), 1)
	<-ctx.Done()
	return nil, nil
}

// poolClaimer reclaims (nothing may be freed while the holder lives), then
// allocates 2*poolN elements and counts those that are the holder's.
func poolClaimer(ctx context.Context, w *harness.Worker) (any, error) {
	s, a, err := attach(ctx, w)
	if err != nil {
		return nil, err
	}
	p, err := arena.OpenPool(ctx, arena.SysV(arena.Key(a.PoolKey)), poolCfg())
	if err != nil {
		return nil, err
	}
	defer p.Close()
	n, err := p.Reclaim()
	if err != nil {
		return nil, err
	}
	s.seg.Store64(s.mine(cFreed), uint64(n))
	held := map[uint64]bool{}
	for i := range poolN {
		held[s.seg.Load64(s.word(handles+i))] = true
	}
	for range 2 * poolN {
		h, err := p.Alloc(ctx)
		if err != nil {
			return nil, err
		}
		if held[uint64(h)] {
			s.seg.Add64(s.mine(cDouble), 1)
		}
		if err := p.Free(h); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// env is one test's shared segment and pool keys.
type env struct {
	t       *testing.T
	seg     *arena.Segment
	s       *shared
	key     arena.Key
	poolKey arena.Key
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, mounts /proc and drops to uid 65534")
	}
	e := &env{t: t, key: arenatest.SysVKey(t), poolKey: arenatest.SysVKey(t)}
	seg, err := arena.Create(context.Background(), arena.SysV(e.key), segOpts())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		seg.Close()
		if err := arena.RemovePool(arena.SysV(e.poolKey), arena.RemoveOptions{Force: true}); err != nil && !errors.Is(err, arena.ErrNotFound) {
			t.Errorf("remove pool: %v", err)
		}
		arena.SweepLockFiles()
	})
	e.seg = seg
	e.s = &shared{seg: seg}
	e.s.lo, _, _ = seg.Section("lease")
	e.s.tab, _, _ = seg.Section("table")
	e.s.ctl, _, _ = seg.Section("ctl")
	return e
}

// counter reads worker i's counter c.
func (e *env) counter(i, c int) uint64 { return e.seg.Load64(e.s.word(16*i + c)) }

// how a worker is placed.
type placement int

const (
	host        placement = iota // root, our namespaces
	hidepid                      // uid 65534, a private /proc mounted hidepid=2
	pidns                        // root, pid 1 of a new PID namespace sharing our /proc
	pidnsNobody                  // uid 65534, pid 1 of a new PID namespace sharing our /proc
)

func (p placement) String() string {
	return [...]string{"host", "hidepid", "pidns", "pidns-nobody"}[p]
}

// start starts one worker of workload placed as p.
func (e *env) start(workload string, p placement, a args, failpoints string) *harness.Group {
	e.t.Helper()
	a.Key, a.PoolKey = uint32(e.key), uint32(e.poolKey)
	sp := harness.Spec{Workload: workload, N: 1, Args: a}
	switch p {
	case hidepid:
		a.UID = nobody
		sp.Args = a
		sp.Unshareflags = syscall.CLONE_NEWNS
		sp.Wrap = []string{"sh", "-c", `mount -t proc -o hidepid=2 proc /proc && exec "$0" "$@"`}
	case pidns:
		sp.Cloneflags = syscall.CLONE_NEWPID
	case pidnsNobody:
		a.UID = nobody
		sp.Args = a
		sp.Cloneflags = syscall.CLONE_NEWPID
	}
	if failpoints != "" {
		sp.Failpoints = map[int]string{0: failpoints}
	}
	g, err := harness.Start(context.Background(), sp)
	if err != nil {
		e.t.Skipf("cannot start a worker placed %s on this machine: %v", p, err)
	}
	e.t.Cleanup(func() { g.Close() })
	if err := g.Release(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return g
}

// await polls cond until it holds or the worker group g ended.
func (e *env) await(what string, cond func() bool, groups ...*harness.Group) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, g := range groups {
				g.Close()
				if rs, _ := g.Wait(); len(rs) > 0 {
					e.t.Logf("worker: exit %d err %q stderr %s", rs[0].ExitCode, rs[0].Err, rs[0].Stderr)
				}
			}
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// wait waits for a worker group to finish and fails the test on a worker
// error; a worker that could not mount /proc or enter a namespace skips.
func (e *env) wait(g *harness.Group, p placement) {
	e.t.Helper()
	rs, err := g.Wait()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range rs {
		if r.Err != "" || (!r.Reported && r.Signal == 0) {
			if strings.Contains(string(r.Stderr), "mount:") {
				e.t.Skipf("cannot mount a hidepid /proc here: %s", r.Stderr)
			}
			e.t.Fatalf("worker placed %s: exit %d: %s\n%s", p, r.ExitCode, r.Err, r.Stderr)
		}
	}
}

// A writer under another uid whose /proc hides root's processes must never
// take a record over from a live root writer, even one stopped (SIGSTOP)
// in the middle of a write; it must take it over once that writer is
// killed. A reader there must never accept a torn payload.
func TestSeqlockHidepidOtherUID(t *testing.T) {
	e := newEnv(t)
	stall := 50 * time.Millisecond
	a := args{Run: time.Minute, Stall: stall} // until the test sets the stop word
	root := e.start("seqwriter", host, a, fmt.Sprintf("%s=stop@%d", seqlock.FailWriteMid, 2_000_000/raceScale))
	e.await("root writer ready", func() bool { return e.counter(0, cReady) == 1 }, root)
	a.Slot = 1
	hidden := e.start("seqwriter", hidepid, a, "")
	a.Slot = 2
	reader := e.start("seqreader", hidepid, a, "")

	// The root writer stops itself mid-write: the record stays busy and
	// claimed by a live process. The hidden writer stalls (StallTimeout)
	// again and again but never takes over.
	if _, err := root.WaitFailpoint(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	stallsAt := e.counter(1, cStalls)
	e.await("the hidden writer to stall 3 times on the stopped writer", func() bool { return e.counter(1, cStalls) >= stallsAt+3 }, hidden)
	if n := e.counter(1, cTakeovers); n != 0 {
		t.Fatalf("the hidden writer took over %d times from a live (stopped) writer", n)
	}
	// Killed: its liveness slot is released, and the hidden writer, which
	// cannot see its pid, takes over.
	if err := root.Kill(0); err != nil {
		t.Fatal(err)
	}
	e.await("a takeover from the killed writer", func() bool { return e.counter(1, cTakeovers) >= 1 }, hidden)
	e.await("20M reads in all", func() bool { return e.counter(2, cReads) >= 20_000_000/raceScale }, reader)
	e.seg.Store64(e.s.word(stopWord), 1)
	e.wait(hidden, hidepid)
	e.wait(reader, hidepid)
	writes, takeovers := e.counter(0, cWrites)+e.counter(1, cWrites), e.counter(1, cTakeovers)
	reads, torn := e.counter(2, cReads), e.counter(2, cTorn)
	t.Logf("writes %d (root %d, hidden %d), takeovers %d (after the kill), reads %d, torn %d",
		writes, e.counter(0, cWrites), e.counter(1, cWrites), takeovers, reads, torn)
	if takeovers != 1 {
		t.Errorf("takeovers = %d, want exactly 1 (of the killed writer)", takeovers)
	}
	if torn != 0 {
		t.Errorf("the reader accepted %d torn payloads in %d reads", torn, reads)
	}
	if reads == 0 || e.counter(1, cWrites) == 0 {
		t.Errorf("no progress: %d reads, %d hidden writes", reads, e.counter(1, cWrites))
	}
}

// Negative control for the torn-read check: a writer that stores the
// payload without the seqlock protocol makes the reader accept torn
// payloads, so the check above cannot pass vacuously.
func TestSeqlockTornCheckCanFail(t *testing.T) {
	e := newEnv(t)
	a := args{Run: time.Second, Stall: 50 * time.Millisecond}
	a.Slot = 3
	reader := e.start("seqreader", host, a, "")
	e.await("reader ready", func() bool { return e.counter(3, cReady) == 1 }, reader)
	rec := e.s.tab + 64 + 8 // record 0's payload (seqlock layout: 64-byte header, then seq)
	for v := uint64(1); e.counter(3, cTorn) == 0 && v < 1<<26; v++ {
		for i := range words {
			e.seg.Store64(rec+arena.Offset(8*i), v) // no sequence word: readers cannot tell
		}
	}
	e.wait(reader, host)
	if torn := e.counter(3, cTorn); torn == 0 {
		t.Fatalf("an unprotected writer produced no torn read in %d reads: the check is vacuous", e.counter(3, cReads))
	} else {
		t.Logf("negative control: %d torn payloads accepted in %d reads", torn, e.counter(3, cReads))
	}
}

// A lease owner that runs as pid 1 of a PID namespace sharing the host's
// /proc (its pid names another process there) must never be taken over
// while it lives, by contenders on the host or under another uid behind a
// hidepid /proc; once killed, it is replaced at once (reason owner dead,
// not the 30 s threshold), by its liveness slot.
func TestLeaseOwnerInPIDNamespace(t *testing.T) {
	for _, owner := range []placement{pidns, pidnsNobody} {
		t.Run(owner.String(), func(t *testing.T) {
			e := newEnv(t)
			a := args{Run: time.Minute}
			og := e.start("leaseowner", owner, a, "")
			e.await("the owner to acquire", func() bool { return e.counter(0, cAcquired) == 1 }, og)
			a.Run = 1500 * time.Millisecond
			var cgs []*harness.Group
			for i, p := range []placement{host, hidepid, pidns} {
				a.Slot = 1 + i
				cgs = append(cgs, e.start("contender", p, a, ""))
			}
			for i, g := range cgs {
				e.wait(g, []placement{host, hidepid, pidns}[i])
			}
			for i := 1; i <= 3; i++ {
				if n := e.counter(i, cAcquired); n != 0 {
					t.Errorf("contender %d took the lease %d times from a live owner", i, n)
				}
			}
			if n := e.counter(0, cLost); n != 0 {
				t.Errorf("the live owner lost the lease %d times", n)
			}
			l, err := lease.New(e.seg, e.s.lo, lease.Config{Threshold: 30 * time.Second, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			if err := og.Kill(0); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			acq, err := l.Acquire(ctx)
			if err != nil {
				t.Fatalf("no takeover of the killed owner within 10 s (threshold 30 s): %v", err)
			}
			t.Logf("taken over %v after the kill, reason %s", time.Since(start), acq.Reason)
			if acq.Reason != lease.ReasonOwnerDead {
				t.Errorf("takeover reason %s, want %s", acq.Reason, lease.ReasonOwnerDead)
			}
			_ = l.Release()
		})
	}
}

// An owner killed between its lease CAS and writing its identity is proven
// dead by the slot its CAS named: the takeover does not wait the threshold.
func TestLeaseOwnerDiesMidAcquire(t *testing.T) {
	for _, owner := range []placement{host, pidns} {
		t.Run(owner.String(), func(t *testing.T) {
			e := newEnv(t)
			// SIGKILL to itself is ignored by pid 1 of a PID namespace: there
			// the worker exits instead, which drops its locks the same way.
			action := "=kill"
			if owner == pidns {
				action = "=exit"
			}
			og := e.start("leaseowner", owner, args{Run: time.Minute}, lease.FailAcquired+action)
			if rs, _ := og.Wait(); len(rs) != 1 || rs[0].Reported {
				t.Fatalf("the owner did not die at %s: %+v", lease.FailAcquired, rs)
			}
			l, err := lease.New(e.seg, e.s.lo, lease.Config{Threshold: 30 * time.Second, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			if o := l.Owner(); !o.Held || !o.Identity.IsZero() || o.Slot == 0 {
				t.Fatalf("owner record %+v: want held, by a slot, with no identity yet", o)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			acq, err := l.Acquire(ctx)
			if err != nil {
				t.Fatalf("no takeover within 10 s (threshold 30 s): %v", err)
			}
			if acq.Reason != lease.ReasonOwnerDead {
				t.Errorf("takeover reason %s, want %s", acq.Reason, lease.ReasonOwnerDead)
			}
			_ = l.Release()
		})
	}
}

// Elements claimed by a live process in another PID namespace are never
// reclaimed, neither from the host nor under another uid behind a hidepid
// /proc, and never handed out twice; once the holder is killed they are
// all reclaimed (the control that Reclaim can free).
func TestPoolClaimsAcrossNamespaces(t *testing.T) {
	e := newEnv(t)
	hg := e.start("poolholder", pidns, args{Run: time.Minute}, "")
	e.await("the holder's claims", func() bool { return e.counter(0, cReady) == 1 }, hg)
	for i, p := range []placement{host, hidepid, pidnsNobody} {
		g := e.start("poolclaimer", p, args{Slot: 1 + i}, "")
		e.wait(g, p)
		if n := e.counter(1+i, cFreed); n != 0 {
			t.Errorf("claimer placed %s reclaimed %d elements of a live holder", p, n)
		}
		if n := e.counter(1+i, cDouble); n != 0 {
			t.Errorf("claimer placed %s was handed %d of the live holder's elements", p, n)
		}
	}
	if err := hg.Kill(0); err != nil {
		t.Fatal(err)
	}
	if rs, _ := hg.Wait(); len(rs) != 1 || rs[0].Signal != syscall.SIGKILL {
		t.Fatalf("holder not killed: %+v", rs)
	}
	p, err := arena.OpenPool(context.Background(), arena.SysV(e.poolKey), poolCfg())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n, err := p.Reclaim(); err != nil || n != poolN {
		t.Errorf("after the holder's death Reclaim = %d, %v; want %d", n, err, poolN)
	}
}
