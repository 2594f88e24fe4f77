package lease_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// heapSeg returns a heap-backed segment with a lease record at offset
// returned and a data word after it.
func heapSeg(t *testing.T) (*arena.Segment, arena.Offset, arena.Offset) {
	t.Helper()
	hs := arena.NewHeapStore()
	loc := hs.At(t.Name())
	seg, err := arena.OpenOrCreate(context.Background(), loc, arena.Options{
		Spec: layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "lease", Size: lease.Size}, {Name: "data", Size: 64}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seg.Close(); arena.Remove(loc, arena.RemoveOptions{Force: true}) })
	lo, _, _ := seg.Section("lease")
	do, _, _ := seg.Section("data")
	return seg, lo, do
}

func newLease(t *testing.T, seg *arena.Segment, off arena.Offset, th time.Duration) *lease.Lease {
	t.Helper()
	l, err := lease.New(seg, off, lease.Config{Threshold: th, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestReasonsAndFencing(t *testing.T) {
	seg, lo, data := heapSeg(t)
	a := newLease(t, seg, lo, time.Hour)
	b := newLease(t, seg, lo, 50*time.Millisecond)

	got, err := a.TryAcquire()
	if err != nil || got.Reason != lease.ReasonFirst || got.Epoch != 1 {
		t.Fatalf("first acquire: %+v %v", got, err)
	}
	if _, err := b.TryAcquire(); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("second acquire: want ErrHeld, got %v", err)
	}
	if err := a.Stamp(seg, data); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.FencedCAS(seg, data, 0, 1); !ok || err != nil {
		t.Fatalf("fenced CAS by owner: %v %v", ok, err)
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	got, err = b.Acquire(context.Background())
	if err != nil || got.Reason != lease.ReasonReleased || got.Epoch != 2 {
		t.Fatalf("after release: %+v %v", got, err)
	}
	// b stops renewing; a (threshold 1h) would wait, so use a third handle
	// with b's short threshold to take over by expiry.
	c := newLease(t, seg, lo, 50*time.Millisecond)
	if err := b.Stamp(seg, data); err != nil {
		t.Fatal(err)
	}
	got, err = c.Acquire(context.Background())
	if err != nil || got.Reason != lease.ReasonHeartbeatExpired || got.Epoch != 3 {
		t.Fatalf("after expiry: %+v %v", got, err)
	}
	if err := c.Stamp(seg, data); err != nil {
		t.Fatal(err)
	}
	// b still believes it owns epoch 2: its fenced write must fail.
	if ok, err := b.FencedCAS(seg, data, 1, 2); ok || !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("stale owner's fenced CAS: ok=%v err=%v", ok, err)
	}
	if err := b.Renew(); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("stale renew: want ErrLost, got %v", err)
	}
	if ok, err := c.FencedCAS(seg, data, 1, 2); !ok || err != nil {
		t.Fatalf("new owner's fenced CAS: %v %v", ok, err)
	}
	if o := c.Owner(); !o.Held || o.Epoch != 3 || o.Last != lease.ReasonHeartbeatExpired || o.Takeovers != 3 {
		t.Fatalf("owner snapshot: %+v", o)
	}
	if err := a.Renew(); !errors.Is(err, lease.ErrNotOwner) {
		t.Fatalf("renew without lease: %v", err)
	}
}

func TestAcquireHonoursContext(t *testing.T) {
	seg, lo, _ := heapSeg(t)
	a := newLease(t, seg, lo, time.Hour)
	b := newLease(t, seg, lo, time.Hour)
	if _, err := a.TryAcquire(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := b.Acquire(ctx); errc <- err }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
	case <-time.After(10 * time.Second): // hang guard only
		t.Fatal("Acquire did not return after cancel")
	}
}

// TestCounterRace runs the fencing protocol with goroutines standing in for
// processes, on heap memory, so that go test -race checks it: owners come
// and go by release and by heartbeat expiry (an owner that "dies" just stops
// renewing), and every increment acknowledged to a goroutine is in the
// counter.
func TestCounterRace(t *testing.T) {
	seg, lo, data := heapSeg(t)
	const workers = 4
	rounds := 200
	if raceEnabled {
		rounds = 60
	}
	var mu sync.Mutex
	acked := 0
	reasons := map[lease.Reason]int{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var roundsLeft = rounds
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			l := newLease(t, seg, lo, 20*time.Millisecond)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				got, err := l.Acquire(ctx)
				cancel()
				if err == nil {
					mu.Lock()
					reasons[got.Reason]++
					mu.Unlock()
				}
				select {
				case <-done:
					if err == nil {
						l.Release()
					}
					return
				default:
				}
				if err != nil {
					continue
				}
				if err := l.Stamp(seg, data); err != nil {
					l.Forget()
					continue
				}
				n := 0
				for i := 0; i < 20; i++ {
					_, v := lease.SplitFenced(seg.Load64(data))
					ok, err := l.FencedCAS(seg, data, v, v+1)
					if err != nil {
						break
					}
					if ok {
						n++
					}
				}
				mu.Lock()
				acked += n
				roundsLeft--
				round := roundsLeft
				last := roundsLeft <= 0
				mu.Unlock()
				if last {
					select {
					case <-done:
					default:
						close(done)
					}
				}
				// Alternate by round, not by worker: whichever worker owns
				// it, every other owner releases and the rest "die", so
				// both takeover paths occur in every run.
				if round%2 == 0 {
					l.Release()
				} else {
					l.Forget() // "dies": the next owner takes over by expiry
				}
			}
		}(w)
	}
	wg.Wait()
	_, v := lease.SplitFenced(seg.Load64(data))
	if int(v) != acked {
		t.Fatalf("counter %d, acknowledged increments %d", v, acked)
	}
	t.Logf("counter %d, takeovers by reason %v", v, reasons)
	if reasons[lease.ReasonReleased] == 0 || reasons[lease.ReasonHeartbeatExpired] == 0 {
		t.Fatalf("want takeovers by both release and expiry, got %v", reasons)
	}
}

// TestCloseRightAfterCanceledAcquire: Acquire's helper goroutines touch the
// segment, so a caller that detaches it as soon as Acquire returns must not
// fault (the segment is a real SysV mapping here, unmapped by Close).
func TestCloseRightAfterCanceledAcquire(t *testing.T) {
	for i := range 100 {
		key := uniqueKey(t)
		loc := arena.SysV(key)
		seg, err := arena.Create(context.Background(), loc, arena.Options{Spec: testSpec()})
		if err != nil {
			t.Fatal(err)
		}
		lo, _, _ := seg.Section("lease")
		holder := newLease(t, seg, lo, time.Hour)
		if _, err := holder.TryAcquire(); err != nil {
			t.Fatal(err)
		}
		other, err := arena.Open(context.Background(), loc, arena.Options{Spec: testSpec()})
		if err != nil {
			t.Fatal(err)
		}
		waiter := newLease(t, other, lo, time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := waiter.Acquire(ctx); errc <- err }()
		if i%2 == 0 {
			// Cancel while Acquire waits: once a wake finds the waiter
			// blocked on the lease's futex word (it then re-judges and
			// blocks again, with its helper goroutines running).
			for other.FutexWake(lo+16, 1) == 0 {
				runtime.Gosched()
			}
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: %v", i, err)
		}
		other.Close() // unmaps: a late wake-up from Acquire would fault here
		seg.Close()
		if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
}
