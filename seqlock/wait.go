package seqlock

import (
	"errors"
	"runtime"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/procid"
)

// Waiting policy. A busy record is normally released within nanoseconds;
// a writer descheduled mid-write holds it for up to tens of milliseconds;
// only a dead or stopped writer holds it longer.
const (
	spinLoads   = 64                     // loads of the busy words before looking at the clock
	yieldCount  = 16                     // runtime.Gosched calls before sleeping
	minSleep    = 20 * time.Microsecond  // first sleep
	maxSleep    = 2 * time.Millisecond   // longest sleep while a record is busy
	checkAfter  = time.Millisecond       // first liveness check (a /proc read)
	checkEvery  = 20 * time.Millisecond  // later liveness checks
	spinRetries = 4                      // immediate retries after a copy overlapped a write
	yieldRetry  = 16                     // then retries after runtime.Gosched
	retrySleep  = 100 * time.Microsecond // longest sleep between retries
)

// waiter is the waiting state of one operation on one record.
type waiter struct {
	t       *Table
	op      string
	rec     int
	retries uint64

	opStart time.Time // first time the operation looked at the clock

	// The (seq, claim) state being timed, and since when.
	timed      arena.Offset // record whose state is timed
	seq, claim uint64
	since      time.Time
	nextCheck  time.Duration // stuck time of the next liveness check
	sleep      time.Duration
	yields     int
	reason     string // last liveness verdict's reason

	retrySleep time.Duration
}

// await waits while record rec's sequence and claim words still read s and
// c. It returns (false, nil) as soon as either changes, (true, nil) if the
// process named by c is dead (the words still unchanged), and a
// *StalledError if they stay unchanged for StallTimeout, or ErrStarved if
// the operation has run for MaxWait.
func (w *waiter) await(rec arena.Offset, s, c uint64) (bool, error) {
	t := w.t
	seg := t.seg
	claim := rec + t.claimOff
	for range spinLoads {
		if seg.Load64(rec) != s || seg.Load64(claim) != c {
			return false, nil
		}
	}
	now := time.Now()
	if w.opStart.IsZero() {
		w.opStart = now
	}
	if w.since.IsZero() || w.timed != rec || w.seq != s || w.claim != c {
		w.timed, w.seq, w.claim, w.since = rec, s, c, now
		w.nextCheck, w.sleep, w.yields, w.reason = checkAfter, minSleep, 0, "not checked yet"
	}
	for {
		if seg.Load64(rec) != s || seg.Load64(claim) != c {
			return false, nil
		}
		now = time.Now()
		stuck := now.Sub(w.since)
		if stuck >= w.nextCheck || stuck >= t.opts.StallTimeout {
			lv, why := t.judge(c)
			w.reason = why
			if lv == procid.Dead {
				if seg.Load64(rec) != s || seg.Load64(claim) != c {
					return false, nil
				}
				return true, nil
			}
			w.nextCheck = stuck + checkEvery
			if stuck >= t.opts.StallTimeout {
				return false, w.stalled(false)
			}
		}
		if now.Sub(w.opStart) >= t.opts.MaxWait {
			return false, starvedErr(w.op, w.rec, w.retries, now.Sub(w.opStart))
		}
		if w.yields < yieldCount {
			w.yields++
			runtime.Gosched()
			continue
		}
		d := min(w.sleep, t.opts.StallTimeout-stuck, w.nextCheck-stuck)
		time.Sleep(max(d, time.Microsecond))
		w.sleep = min(2*w.sleep, maxSleep)
	}
}

// stalled describes the state being timed as a stall.
func (w *waiter) stalled(dead bool) error {
	return &StalledError{Op: w.op, Record: w.rec, PID: uint32(w.claim), Dead: dead,
		Reason: w.reason, Waited: time.Since(w.since)}
}

// awaitRead waits, as a reader, for busy record rec (sequence word s) to
// change. A dead writer is reported as a *StalledError with Dead set.
func (w *waiter) awaitRead(rec arena.Offset, s uint64) error {
	c := w.t.seg.Load64(rec + w.t.claimOff)
	dead, err := w.await(rec, s, c)
	if err != nil {
		return err
	}
	if dead {
		return w.stalled(true)
	}
	return nil
}

// acquire claims record rec for a writer after the first CAS failed,
// waiting for the current claimant and taking the claim over from a dead
// one.
func (w *waiter) acquire(rec arena.Offset) error {
	t := w.t
	claim := rec + t.claimOff
	t.st.writeWaits.Add(1)
	for {
		c := t.seg.Load64(claim)
		if c == 0 {
			if t.seg.CAS64(claim, 0, t.me) {
				return nil
			}
			continue
		}
		w.retries++
		dead, err := w.await(rec, t.seg.Load64(rec), c)
		if err != nil {
			return err
		}
		if dead && t.seg.CAS64(claim, c, t.me) {
			t.st.takeovers.Add(1)
			return nil
		}
		if err := w.backoff(); err != nil {
			return err
		}
	}
}

// backoff paces the retries of an operation whose copy overlapped a write
// (the writer is making progress) and bounds them by MaxWait.
func (w *waiter) backoff() error {
	if w.retries <= spinRetries {
		return nil
	}
	now := time.Now()
	if w.opStart.IsZero() {
		w.opStart = now
	}
	if waited := now.Sub(w.opStart); waited >= w.t.opts.MaxWait {
		return starvedErr(w.op, w.rec, w.retries, waited)
	}
	if w.retries <= spinRetries+yieldRetry {
		runtime.Gosched()
		return nil
	}
	w.retrySleep = min(max(2*w.retrySleep, time.Microsecond), retrySleep)
	time.Sleep(w.retrySleep)
	return nil
}

// judge tells whether the process named by claim word c is alive.
func (t *Table) judge(c uint64) (procid.Liveness, string) {
	switch {
	case c == 0:
		return procid.Unknown, "no writer recorded"
	case c == t.me:
		return procid.Alive, "this process"
	}
	slot, pid := splitClaim(c)
	cl := procid.Claimant{Slot: slot, ID: procid.Identity{PID: pid}}
	// A bare pid is evidence only if every attacher shares our PID
	// namespace; otherwise only the slot can prove death.
	if t.seg.Load64(t.hdr+offMixed) == 0 && t.seg.Load64(t.hdr+offPIDNS) == t.self.PIDNS {
		cl.ID.PIDNS = t.self.PIDNS
	}
	lv, why := t.reg.Judge(cl, t.self)
	return lv, string(why)
}

// countErr counts a returned error in the handle's statistics.
func (t *Table) countErr(err error) error {
	switch {
	case errors.Is(err, ErrWriterStalled):
		t.st.stalls.Add(1)
	case errors.Is(err, ErrStarved):
		t.st.starved.Add(1)
	}
	return err
}
