package lease_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/procid"
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{
		"contender": contender,
		"holder":    holder,
	})
	os.Exit(m.Run())
}

// The contention test's control block (section "ctl"), in words:
//
//	0 counter (fenced word: epoch | count)
//	1 stop request: slot+1 of the owner that must stop itself just before its write
//	2 release request: slot+1 of the owner that must release
//	3 control mode: 0 fenced CAS, 1 check-then-store (the negative control)
//	8+8*slot: per worker slot: acked, fenced, lastAcq (epoch<<8|reason), pid
const (
	wCounter  = 0
	wStop     = 1
	wRelease  = 2
	wMode     = 3
	slotBase  = 8
	slotWords = 8
	maxSlots  = 2048

	sAcked   = 0
	sFenced  = 1
	sLastAcq = 2
	sPid     = 3
)

type contArgs struct {
	Key       uint32
	Slot      int
	Threshold time.Duration
	ForeignNS bool
}

func testSpec() layout.Spec {
	return layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{
		{Name: "lease", Size: lease.Size},
		{Name: "ctl", Size: 8 * (slotBase + slotWords*maxSlots)},
	}}
}

func uniqueKey(t *testing.T) arena.Key { return arenatest.SysVKey(t) }

func openShared(t *testing.T, key arena.Key) (*arena.Segment, arena.Offset, arena.Offset) {
	t.Helper()
	loc := arena.SysV(key)
	seg, err := arena.Create(context.Background(), loc, arena.Options{Spec: testSpec()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		seg.Close()
		if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	lo, _, _ := seg.Section("lease")
	co, _, _ := seg.Section("ctl")
	return seg, lo, co
}

// contender competes for the lease and, while it owns it, increments the
// shared counter, recording every acknowledged increment in its slot.
func contender(ctx context.Context, w *harness.Worker) (any, error) {
	var a contArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	seg, err := arena.Open(ctx, arena.SysV(arena.Key(a.Key)), arena.Options{Spec: testSpec()})
	if err != nil {
		return nil, err
	}
	lo, _, _ := seg.Section("lease")
	co, _, _ := seg.Section("ctl")
	word := func(i int) arena.Offset { return co + arena.Offset(8*i) }
	slot := func(i int) arena.Offset { return word(slotBase + slotWords*a.Slot + i) }
	cfg := lease.Config{Threshold: a.Threshold, Logger: quiet()}
	if a.ForeignNS {
		self, _ := procid.Self()
		self.PIDNS ^= 0x5a5a // an identity in a PID namespace we cannot see
		cfg.Self = self
	}
	l, err := lease.New(seg, lo, cfg)
	if err != nil {
		return nil, err
	}
	seg.Store64(slot(sPid), uint64(os.Getpid()))
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	stopAt, err := failpoint.Parse(failPreWrite + "=stop")
	if err != nil {
		return nil, err
	}
	counter := word(wCounter)
	unfenced := seg.Load64(word(wMode)) == 1
	me := uint64(a.Slot + 1)
	for ctx.Err() == nil {
		acq, err := l.Acquire(ctx)
		if err != nil {
			break
		}
		seg.Store64(slot(sLastAcq), acq.Epoch<<8|uint64(acq.Reason))
		if !unfenced {
			if err := l.Stamp(seg, counter); err != nil {
				seg.Add64(slot(sFenced), 1)
				l.Forget()
				continue
			}
		}
		lastRenew := time.Now()
		for n := 0; ; n++ {
			if seg.Load64(word(wRelease)) == me && seg.CAS64(word(wRelease), me, 0) {
				l.Release()
				break
			}
			if time.Since(lastRenew) > a.Threshold/8 {
				if l.Renew() != nil {
					break
				}
				lastRenew = time.Now()
			}
			if unfenced {
				// The negative control: check, then plain store.
				if !l.Holds() {
					break
				}
				_, v := lease.SplitFenced(seg.Load64(counter))
				stopHere(seg, word(wStop), me, stopAt)
				seg.Store64(counter, lease.PackFenced(0, v+1))
				seg.Add64(slot(sAcked), 1)
			} else {
				_, v := lease.SplitFenced(seg.Load64(counter))
				stopHere(seg, word(wStop), me, stopAt)
				ok, err := l.FencedCAS(seg, counter, v, v+1)
				if err != nil && os.Getenv("LEASE_DEBUG") != "" {
					w.Log.Info("fenced cas", "err", err, "ok", ok)
				}
				if errors.Is(err, lease.ErrFenced) {
					seg.Add64(slot(sFenced), 1) // it learns it lost
					l.Forget()
					break
				}
				if ok {
					seg.Add64(slot(sAcked), 1)
				}
			}
			if n%8 == 7 {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
	return nil, nil
}

// stopHere is the failpoint just before the owner's write: when the parent
// asked this worker to stop, it stops itself exactly here.
func stopHere(seg *arena.Segment, off arena.Offset, me uint64, fp *failpoint.Set) {
	if seg.Load64(off) == me && seg.CAS64(off, me, 0) {
		fp.Hit(failPreWrite)
	}
}

// failPreWrite is the failpoint just before an owner's write; the stop
// action stops the calling thread itself, so nothing runs past the point.
const failPreWrite = "lease.test.pre-write"

type contention struct {
	t         *testing.T
	ctx       context.Context
	seg       *arena.Segment
	co        arena.Offset
	l         *lease.Lease // observer handle (never acquires)
	key       arena.Key
	threshold time.Duration
	groups    map[int]*harness.Group // slot -> its one-worker group
	nextSlot  int
}

func (c *contention) word(i int) arena.Offset { return c.co + arena.Offset(8*i) }
func (c *contention) slot(s, i int) arena.Offset {
	return c.word(slotBase + slotWords*s + i)
}

func (c *contention) spawn(foreign bool) int {
	c.t.Helper()
	s := c.nextSlot
	c.nextSlot++
	if s >= maxSlots {
		c.t.Fatal("out of worker slots")
	}
	g, err := harness.Start(c.ctx, harness.Spec{Workload: "contender", N: 1,
		Args: contArgs{Key: uint32(c.key), Slot: s, Threshold: c.threshold, ForeignNS: foreign}, Stderr: debugOut()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { g.Close() })
	if err := g.Release(c.ctx); err != nil {
		c.t.Fatal(err)
	}
	c.groups[s] = g
	return s
}

// waitFor polls a condition the test cannot be woken for (a hang guard, not
// a timing assertion).
func (c *contention) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) || c.ctx.Err() != nil {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (c *contention) ownerSlot() (int, uint64) {
	var slot int
	var epoch uint64
	c.waitFor("an owner with a known identity", func() bool {
		o := c.l.Owner()
		if !o.Held || o.Identity.IsZero() {
			return false
		}
		for s, g := range c.groups {
			if g != nil && uint32(g.Pid(0)) == o.Identity.PID {
				slot, epoch = s, o.Epoch
				return true
			}
		}
		return false
	})
	return slot, epoch
}

// acquisition returns the reason with which some worker acquired epoch e.
func (c *contention) acquisition(e uint64) lease.Reason {
	var r lease.Reason
	c.waitFor(fmt.Sprintf("the acquisition of epoch %d", e), func() bool {
		for s := 0; s < c.nextSlot; s++ {
			if v := c.seg.Load64(c.slot(s, sLastAcq)); v>>8 == e {
				r = lease.Reason(v & 0xff)
				return true
			}
			if v := c.seg.Load64(c.slot(s, sLastAcq)); v>>8 > e {
				// overwritten by a later acquisition of the same worker
				continue
			}
		}
		if c.l.Owner().Epoch > e+1 {
			r = lease.ReasonNone
			return true
		}
		return false
	})
	return r
}

func (c *contention) counter() uint64 {
	_, v := lease.SplitFenced(c.seg.Load64(c.word(wCounter)))
	return v
}

func (c *contention) sum(i int) uint64 {
	var n uint64
	for s := 0; s < c.nextSlot; s++ {
		n += c.seg.Load64(c.slot(s, i))
	}
	return n
}

func newContention(t *testing.T, threshold time.Duration, unfenced bool) *contention {
	key := uniqueKey(t)
	seg, lo, co := openShared(t, key)
	l, err := lease.New(seg, lo, lease.Config{Threshold: threshold, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	c := &contention{t: t, ctx: ctx, seg: seg, co: co, l: l, key: key, threshold: threshold, groups: map[int]*harness.Group{}}
	if unfenced {
		seg.Store64(c.word(wMode), 1)
	}
	return c
}

// TestFencedCounterUnderChaos: four processes contend for the lease; the
// owner increments a counter packed with the epoch by fenced CAS. Rounds of
// SIGKILL, Release and SIGSTOP/SIGCONT (stopped just before its CAS, past
// the threshold) replace the owner. Afterwards the counter equals the sum of
// acknowledged increments (up to one in flight per SIGKILL), every takeover
// took the expected path, and every stopped owner's write was fenced.
func TestFencedCounterUnderChaos(t *testing.T) {
	rounds := 1000
	if raceEnabled {
		rounds = 100
	}
	if testing.Short() {
		rounds = 100
	}
	c := newContention(t, 60*time.Millisecond, false)
	for i := 0; i < 4; i++ {
		c.spawn(false)
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	t.Logf("seed-free random rounds: %d", rounds)
	var kills, releases, stops, spurious int
	if os.Getenv("LEASE_STOPS_ONLY") != "" {
		rounds = 20
	}
	for r := 0; r < rounds; r++ {
		owner, e := c.ownerSlot()
		// let the owner make progress first
		start := c.counter()
		c.waitFor("progress", func() bool { return c.counter() > start })
		owner, e = c.ownerSlot()
		var want lease.Reason
		p := rng.Intn(10)
		if os.Getenv("LEASE_STOPS_ONLY") != "" {
			p = 9
		}
		switch {
		case p < 3:
			kills++
			want = lease.ReasonOwnerDead
			c.groups[owner].Kill(0)
			c.groups[owner].Wait()
			c.groups[owner] = nil
			if err := c.l.Check(); err != nil {
				t.Errorf("round %d: Check after the kill: %v", r, err)
			}
			c.spawn(false)
		case p < 8:
			releases++
			want = lease.ReasonReleased
			c.seg.Store64(c.word(wRelease), uint64(owner+1))
		default:
			stops++
			want = lease.ReasonHeartbeatExpired
			fencedBefore := c.seg.Load64(c.slot(owner, sFenced))
			c.seg.Store64(c.word(wStop), uint64(owner+1))
			if err := c.groups[owner].WaitStopped(c.ctx, 0); err != nil {
				t.Fatal(err)
			}
			c.waitFor("a takeover from the stopped owner", func() bool { return c.l.Owner().Epoch > e })
			mid := c.counter()
			c.waitFor("the new owner's progress", func() bool { return c.counter() > mid })
			if err := c.groups[owner].Cont(0); err != nil {
				t.Fatal(err)
			}
			c.waitFor(fmt.Sprintf("the stopped owner (slot %d, epoch %d) to learn it lost; lease now %+v", owner, e, c.l.Owner()), func() bool {
				return c.seg.Load64(c.slot(owner, sFenced)) > fencedBefore
			})
		}
		c.waitFor("the next epoch", func() bool { return c.l.Owner().Epoch > e })
		got := c.acquisition(e + 1)
		if got != want {
			if got == lease.ReasonHeartbeatExpired || got == lease.ReasonNone {
				// The owner was descheduled past the threshold before our
				// action (2 cores, many processes): a legitimate expiry.
				spurious++
				continue
			}
			t.Fatalf("round %d: epoch %d taken with reason %q, want %q", r, e+1, got, want)
		}
	}
	// Stop everyone, then compare.
	for s, g := range c.groups {
		if g != nil {
			g.Close()
			c.groups[s] = nil
		}
	}
	counter, acked := c.counter(), c.sum(sAcked)
	t.Logf("rounds %d: kills %d, releases %d, stops %d, spurious expiries %d; counter %d, acknowledged %d, fenced writes refused %d",
		rounds, kills, releases, stops, spurious, counter, acked, c.sum(sFenced))
	if counter < acked || counter > acked+uint64(kills)+1 {
		t.Fatalf("counter %d, acknowledged increments %d (kills %d): an update was lost or invented", counter, acked, kills)
	}
	if spurious > rounds/10 {
		t.Fatalf("%d of %d takeovers were unplanned heartbeat expiries", spurious, rounds)
	}
}

// TestUnfencedControlLosesUpdates is the negative control: the same owner
// stopped just before its write, but with check-then-store instead of the
// fenced CAS. When it resumes it overwrites the new owner's increments, and
// the same check as above must fail.
func TestUnfencedControlLosesUpdates(t *testing.T) {
	c := newContention(t, 60*time.Millisecond, true)
	for i := 0; i < 3; i++ {
		c.spawn(false)
	}
	for r := 0; r < 5; r++ {
		owner, e := c.ownerSlot()
		c.seg.Store64(c.word(wStop), uint64(owner+1))
		if err := c.groups[owner].WaitStopped(c.ctx, 0); err != nil {
			t.Fatal(err)
		}
		c.waitFor("a takeover", func() bool { return c.l.Owner().Epoch > e })
		mid := c.counter()
		c.waitFor("the new owner's progress", func() bool { return c.counter() > mid+10 })
		acked := c.seg.Load64(c.slot(owner, sAcked))
		c.groups[owner].Cont(0)
		c.waitFor("the resumed owner's stale write", func() bool { return c.seg.Load64(c.slot(owner, sAcked)) > acked })
	}
	for s, g := range c.groups {
		g.Close()
		c.groups[s] = nil
	}
	counter, acked := c.counter(), c.sum(sAcked)
	t.Logf("unfenced: counter %d, acknowledged %d", counter, acked)
	if counter >= acked {
		t.Fatalf("the unfenced control lost no update (counter %d, acknowledged %d): the check cannot fail", counter, acked)
	}
}

// holder acquires the lease, reports, and then either holds it (renewing)
// until killed, or releases it when asked through the stop word.
func holder(ctx context.Context, w *harness.Worker) (any, error) {
	return contender(ctx, w)
}

// TestTakeoverPaths checks each takeover path across real processes and the
// reason recorded for it: released, owner dead (SIGKILL: seen through the
// pidfd, while the killed process is still an unreaped zombie), and
// heartbeat expired when liveness is unknowable (an owner in a foreign PID
// namespace that stops renewing).
func TestTakeoverPaths(t *testing.T) {
	c := newContention(t, 200*time.Millisecond, false)
	a := c.spawn(false)
	c.waitFor("first owner", func() bool { return c.l.Owner().Held })
	if got := c.acquisition(1); got != lease.ReasonFirst {
		t.Fatalf("first: %v", got)
	}
	b := c.spawn(false)
	// Release: b takes over.
	c.seg.Store64(c.word(wRelease), uint64(a+1))
	c.waitFor("epoch 2", func() bool { return c.l.Owner().Epoch >= 2 })
	if got := c.acquisition(2); got != lease.ReasonReleased {
		t.Fatalf("after release: %v", got)
	}
	// Kill b (whichever holds now) without reaping it first: a takes over.
	owner, e := c.ownerSlot()
	c.groups[owner].Kill(0)
	c.waitFor("takeover after kill", func() bool { return c.l.Owner().Epoch > e })
	if err := c.l.Check(); err != nil {
		t.Errorf("Check after the kill: %v", err)
	}
	if got := c.acquisition(e + 1); got != lease.ReasonOwnerDead {
		t.Fatalf("after SIGKILL: %v", got)
	}
	c.groups[owner].Wait()
	c.groups[owner] = nil
	_ = b
	// A foreign-namespace owner: stop everyone else, start one, then stop it.
	for s, g := range c.groups {
		if g != nil {
			g.Close()
			c.groups[s] = nil
		}
	}
	c.waitFor("an expired or free lease", func() bool {
		o := c.l.Owner()
		return !o.Held || o.BeatAge > c.threshold
	})
	f := c.spawn(true)
	fo, fe := c.ownerSlot()
	if fo != f {
		t.Fatalf("owner slot %d, want the foreign worker %d", fo, f)
	}
	c.spawn(false)
	c.groups[f].Stop(0)
	c.waitFor("takeover from the foreign owner", func() bool { return c.l.Owner().Epoch > fe })
	if got := c.acquisition(fe + 1); got != lease.ReasonHeartbeatExpired {
		t.Fatalf("foreign namespace owner: %v", got)
	}
	c.groups[f].Cont(0)
}

func debugOut() io.Writer {
	if os.Getenv("LEASE_DEBUG") != "" {
		return os.Stderr
	}
	return nil
}
