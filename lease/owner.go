package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/procid"
)

// Errors.
var (
	// ErrHeld: TryAcquire found a live owner.
	ErrHeld = errors.New("lease is held by a live owner")
	// ErrLost: this process no longer owns the lease (another took over).
	ErrLost = errors.New("lease lost to another owner")
	// ErrNotOwner: Renew or Release without holding the lease.
	ErrNotOwner = errors.New("this process does not hold the lease")
	// ErrFenced: a fenced write found a newer epoch than the writer's.
	ErrFenced = errors.New("fenced write refused: a newer owner has written")
)

// Failpoints.
const (
	// FailBeforeFencedCAS: inside FencedCAS, after the epoch check and
	// just before the CAS.
	FailBeforeFencedCAS = "lease.fenced.before-cas"
	// FailAcquired: right after winning the ctl CAS, before the identity
	// and heartbeat are written.
	FailAcquired = "lease.acquired"
)

// Config configures a Lease.
type Config struct {
	// Threshold is the heartbeat age after which an owner that is not known
	// to be dead is replaced. Default DefaultThreshold (30 s).
	Threshold time.Duration
	// Self overrides this process's identity (tests simulate an owner in a
	// foreign PID namespace with it). Zero: procid.Self().
	Self procid.Identity
	// Failpoints arms failpoints (tests).
	Failpoints *failpoint.Set
	// Logger receives role changes; default slog.Default().
	Logger *slog.Logger
	// WatchOptions tune the owner-death watcher (tests force the /proc
	// polling fallback with it).
	WatchOptions procid.WatchOptions
	// SlotPoll is how often a waiter tests the owner's liveness lock (one
	// F_OFD_GETLK, about a microsecond) when it cannot watch the owner's
	// pidfd: an owner in another PID namespace, or hidden by a hidepid
	// /proc. It bounds the takeover delay on that path. Default
	// DefaultSlotPoll (1 ms: about 0.3% of a core per waiting process).
	SlotPoll time.Duration
}

// Lease is one process's handle on a lease record in a segment. Methods are
// safe for concurrent use by the goroutines of a process.
type Lease struct {
	seg  *arena.Segment
	base arena.Offset
	cfg  Config
	self procid.Identity
	reg  *procid.Registry // the segment's liveness registry; nil: none
	slot procid.Slot      // this handle's slot in reg (0: none)

	mu    sync.Mutex
	epoch uint64 // ours while held, 0 otherwise
}

// New returns a handle on the lease record at base in seg (Size bytes,
// 8-byte aligned; zero memory is a free lease).
func New(seg *arena.Segment, base arena.Offset, cfg Config) (*Lease, error) {
	if err := seg.CheckRange(base, Size); err != nil {
		return nil, fmt.Errorf("lease: record: %w", err)
	}
	if base%8 != 0 {
		return nil, fmt.Errorf("lease: record offset %d not 8-byte aligned: %w", base, arena.ErrRange)
	}
	if cfg.Threshold <= 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SlotPoll <= 0 {
		cfg.SlotPoll = DefaultSlotPoll
	}
	self := cfg.Self
	if self.IsZero() {
		var err error
		if self, err = procid.Self(); err != nil {
			return nil, fmt.Errorf("lease: %w", err)
		}
	}
	l := &Lease{seg: seg, base: base, cfg: cfg, self: self}
	// The slot is locked before any CAS that names it, for the life of the
	// segment handle. Without one the lease still works, on pid evidence
	// and heartbeats alone.
	reg, err := seg.Liveness()
	if err == nil {
		l.slot, err = reg.Register()
	}
	if err != nil {
		cfg.Logger.Warn("lease: no liveness slot: a dead owner is recognised by pid or heartbeat only", "err", err)
	} else {
		l.reg = reg
	}
	return l, nil
}

// reasonThisProcess: the owner is another Lease handle of this process.
const reasonThisProcess procid.Reason = "another handle of this process"

// DefaultSlotPoll is Config.SlotPoll's default.
const DefaultSlotPoll = time.Millisecond

// Acquired describes a successful acquisition.
type Acquired struct {
	Epoch    uint64
	Reason   Reason
	Previous procid.Identity // the previous owner, when known
}

// Owner is a snapshot of the lease record.
type Owner struct {
	Held      bool
	Epoch     uint64
	Identity  procid.Identity // zero while a new owner is still writing it
	Slot      procid.Slot     // the owner's liveness slot (0: none)
	BeatAge   time.Duration   // age of the last heartbeat of this epoch (-1: none yet)
	Takeovers uint64          // changes of owner so far
	Last      Reason          // why the current epoch began
}

type snapshot struct {
	ctl     uint64
	epoch   uint64
	slot    procid.Slot
	state   uint8
	beatTag uint64
	beatUS  uint64
	idEpoch uint64
	id      procid.Identity
}

func (l *Lease) snap() snapshot {
	var s snapshot
	s.ctl = l.seg.Load64(l.base + offCtl)
	s.epoch, s.slot, s.state = splitCtl(s.ctl)
	s.beatTag, s.beatUS = splitBeat(l.seg.Load64(l.base + offBeat))
	s.idEpoch = l.seg.Load64(l.base + offIDEpoch)
	var w [procid.Words]uint64
	l.seg.LoadWords(l.base+offIdentity, w[:])
	s.id = procid.Unpack(w)
	return s
}

// Owner returns a snapshot of the lease record.
func (l *Lease) Owner() Owner {
	s := l.snap()
	o := Owner{Held: s.state == stateHeld, Epoch: s.epoch, Slot: s.slot, BeatAge: -1,
		Takeovers: l.seg.Load64(l.base + offTakeovers)}
	if s.idEpoch == s.epoch {
		o.Identity = s.id
	}
	if s.beatTag == s.epoch&0xffff && s.epoch != 0 {
		o.BeatAge = time.Duration(monoMicros()-min(s.beatUS, monoMicros())) * time.Microsecond
	}
	last := l.seg.Load64(l.base + offLast)
	if last>>8 == s.epoch {
		o.Last = Reason(last & 0xff)
	}
	return o
}

// verdict is what a would-be owner concluded from a snapshot.
type verdict struct {
	take   Reason        // non-zero: take over now
	wait   time.Duration // otherwise: longest sensible wait before re-judging
	watch  procid.Identity
	poll   procid.Slot // non-zero: the owner's slot, whose lock the wait tests every SlotPoll
	reason string
}

// judge decides whether the lease can be taken from the snapshot. firstSeen
// is when this process first saw the current ctl word, used when the owner
// has not written its heartbeat yet (it may have died right after its CAS).
//
// The owner is judged by procid's one judgement: its liveness slot (named
// by the ctl word from the CAS on), then its identity once written. Only
// Dead hands the lease over before the heartbeat threshold.
func (l *Lease) judge(s snapshot, firstSeen time.Time) verdict {
	if s.state == stateFree {
		if s.epoch == 0 {
			return verdict{take: ReasonFirst}
		}
		return verdict{take: ReasonReleased}
	}
	th := l.cfg.Threshold
	var age time.Duration
	if s.beatTag == s.epoch&0xffff {
		now := monoMicros()
		age = time.Duration(now-min(s.beatUS, now)) * time.Microsecond
	} else {
		age = time.Since(firstSeen) // heartbeat not written yet by this epoch's owner
	}
	c := procid.Claimant{Slot: s.slot}
	if s.idEpoch == s.epoch {
		c.ID = s.id
	}
	var lv procid.Liveness
	var why procid.Reason
	if (c.Slot != 0 && c.Slot == l.slot) || (!c.ID.IsZero() && c.ID == l.self) {
		// Another Lease handle in this process (tests run several): alive,
		// so only Release or expiry hand it over.
		lv, why = procid.Alive, reasonThisProcess
	} else {
		lv, why = l.reg.Judge(c, l.self)
	}
	if lv != procid.Alive {
		l.cfg.Logger.Debug("lease: owner liveness", "owner", c.ID.String(), "slot", c.Slot, "liveness", lv.String(), "reason", string(why))
	}
	switch {
	case lv == procid.Dead:
		return verdict{take: ReasonOwnerDead, reason: string(why)}
	case age >= th:
		return verdict{take: ReasonHeartbeatExpired, reason: fmt.Sprintf("heartbeat %v old, threshold %v (owner liveness: %s)", age.Round(time.Millisecond), th, why)}
	}
	v := verdict{wait: th - age}
	switch {
	case why == procid.ReasonAlive && c.ID != l.self:
		v.watch = c.ID // verified through /proc: its pidfd reports the exit
	case c.Slot != 0 && l.reg != nil && why != reasonThisProcess:
		v.poll = c.Slot
	case c.ID.IsZero():
		v.wait = min(v.wait, time.Millisecond) // a slotless owner still writing its identity
	}
	return v
}

// TryAcquire takes the lease if it is free, released, or its owner is dead
// or expired; otherwise it returns ErrHeld.
func (l *Lease) TryAcquire() (Acquired, error) {
	return l.try(time.Now())
}

func (l *Lease) try(firstSeen time.Time) (Acquired, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch != 0 {
		if l.stillOursLocked() {
			return Acquired{Epoch: l.epoch}, nil
		}
	}
	s := l.snap()
	v := l.judge(s, firstSeen)
	if v.take == ReasonNone {
		return Acquired{}, fmt.Errorf("lease: epoch %d owner %v: %w", s.epoch, s.id, ErrHeld)
	}
	return l.takeLocked(s, v)
}

func (l *Lease) takeLocked(s snapshot, v verdict) (Acquired, error) {
	ne := s.epoch + 1
	if ne > ctlEpochMask {
		return Acquired{}, fmt.Errorf("lease: epoch %d exhausts the %d-bit epoch space: re-create the segment: %w", s.epoch, EpochBits, ErrHeld)
	}
	if !l.seg.CAS64(l.base+offCtl, s.ctl, ctlWord(ne, l.slot, stateHeld)) {
		return Acquired{}, fmt.Errorf("lease: another process took epoch %d first: %w", ne, ErrHeld)
	}
	l.cfg.Failpoints.Hit(FailAcquired)
	l.seg.Store64(l.base+offBeat, beatWord(ne, monoMicros()))
	w := l.self.Pack()
	l.seg.StoreWords(l.base+offIdentity, w[:])
	l.seg.Store64(l.base+offIDEpoch, ne)
	l.seg.Add64(l.base+offTakeovers, 1)
	l.seg.Store64(l.base+offLast, ne<<8|uint64(v.take))
	l.epoch = ne
	a := Acquired{Epoch: ne, Reason: v.take}
	if s.idEpoch == s.epoch {
		a.Previous = s.id
	}
	l.cfg.Logger.Info("lease: acquired", "epoch", ne, "reason", v.take.String(), "detail", v.reason, "previous", a.Previous.String())
	return a, nil
}

func (l *Lease) stillOursLocked() bool {
	e, slot, st := splitCtl(l.seg.Load64(l.base + offCtl))
	if e == l.epoch && slot == l.slot && st == stateHeld {
		return true
	}
	l.cfg.Logger.Warn("lease: lost", "epoch", l.epoch, "now", e)
	l.epoch = 0
	return false
}

// Acquire waits until this process owns the lease or ctx ends. It wakes on
// Release (futex), on the owner's death (pidfd), and when the owner's
// heartbeat expires; it never busy-polls.
func (l *Lease) Acquire(ctx context.Context) (Acquired, error) {
	var seenCtl uint64
	seenAt := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return Acquired{}, fmt.Errorf("lease: acquire: %w", err)
		}
		// Read the wake word before judging, so a Release between the
		// judgement and the wait changes it and the wait returns at once.
		wake := l.seg.Load32(l.base + offWake)
		s := l.snap()
		if s.ctl != seenCtl {
			seenCtl, seenAt = s.ctl, time.Now()
		}
		l.mu.Lock()
		if l.epoch != 0 && l.stillOursLocked() {
			e := l.epoch
			l.mu.Unlock()
			return Acquired{Epoch: e}, nil
		}
		v := l.judge(s, seenAt)
		if v.take != ReasonNone {
			a, err := l.takeLocked(s, v)
			l.mu.Unlock()
			if err == nil {
				return a, nil
			}
			continue // lost the race: judge the new state
		}
		l.mu.Unlock()
		l.wait(ctx, wake, v)
	}
}

// wait blocks on the futex until a wake, the verdict's wait, the owner's
// death or ctx's end.
func (l *Lease) wait(ctx context.Context, wake uint32, v verdict) {
	// The helper goroutines touch the segment: wait for them before
	// returning, since the caller may Close (unmap) it right after.
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	// wakeOn ends the wait when c is closed. The wake also rouses the
	// other processes' waiters, which just re-judge.
	wakeOn := func(c <-chan struct{}) {
		wg.Go(func() {
			select {
			case <-c:
				l.wakeWaiters()
			case <-done:
			}
		})
	}
	d := v.wait
	poll := v.poll
	if !v.watch.IsZero() {
		if w, err := procid.WatchWith(v.watch, l.cfg.WatchOptions); err == nil {
			defer w.Close()
			wakeOn(w.Done())
		} else if l.reg != nil {
			poll = l.snap().slot // cannot watch: test the owner's lock instead
		}
	}
	wakeOn(ctx.Done())
	if d <= 0 || d > time.Minute {
		d = time.Minute
	}
	// A little past the expiry, so the next judgement sees it expired.
	end := time.Now().Add(d + 100*time.Microsecond)
	if poll == 0 {
		l.seg.FutexWait(l.base+offWake, wake, time.Until(end))
		return
	}
	// Sleep in SlotPoll steps on the futex, testing only the owner's lock
	// in between: a full judgement runs when it is free or on a wake.
	for step := l.cfg.SlotPoll; ; {
		if l.seg.FutexWait(l.base+offWake, wake, min(step, time.Until(end))) || ctx.Err() != nil || !time.Now().Before(end) {
			return
		}
		if held, err := l.reg.Held(poll); err != nil || !held {
			return
		}
	}
}

// Epoch returns this process's epoch while it holds the lease, else 0. It
// reads local state: use Renew or Holds to check against shared memory.
func (l *Lease) Epoch() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// Holds reports whether the lease record still names this process's epoch
// as the holder. A true answer can be stale a moment later: only FencedCAS
// protects writes.
func (l *Lease) Holds() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch != 0 && l.stillOursLocked()
}

// Renew records a heartbeat. It fails with ErrLost if another process has
// taken the lease, and ErrNotOwner if this process never held it.
func (l *Lease) Renew() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch == 0 {
		return ErrNotOwner
	}
	e := l.epoch
	for {
		if !l.stillOursLocked() {
			return fmt.Errorf("lease: renew epoch %d: %w", e, ErrLost)
		}
		old := l.seg.Load64(l.base + offBeat)
		if tag, _ := splitBeat(old); tag != e&0xffff {
			return fmt.Errorf("lease: renew epoch %d: heartbeat carries another epoch: %w", e, ErrLost)
		}
		if l.seg.CAS64(l.base+offBeat, old, beatWord(e, monoMicros())) {
			return nil
		}
	}
}

// Release gives up the lease and wakes waiters in every process, which take
// over at once.
func (l *Lease) Release() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.epoch == 0 {
		return ErrNotOwner
	}
	e := l.epoch
	l.epoch = 0
	if !l.seg.CAS64(l.base+offCtl, ctlWord(e, l.slot, stateHeld), ctlWord(e, 0, stateFree)) {
		return fmt.Errorf("lease: release epoch %d: %w", e, ErrLost)
	}
	l.wakeWaiters()
	l.cfg.Logger.Info("lease: released", "epoch", e)
	return nil
}

// wakeWaiters wakes every waiter in Acquire, in every process. It bumps
// the wake word first, so that a waiter not yet in FUTEX_WAIT does not
// sleep.
func (l *Lease) wakeWaiters() {
	l.seg.Add32(l.base+offWake, 1)
	l.seg.FutexWake(l.base+offWake, math.MaxInt32)
}

// Forget drops this process's claim without touching shared memory, as if
// the process had died (tests and crash simulations).
func (l *Lease) Forget() {
	l.mu.Lock()
	l.epoch = 0
	l.mu.Unlock()
}
