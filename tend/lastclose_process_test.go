package tend_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// churnArgs configures a churner: Rounds times open the view at Key,
// look a partition up, close (as the last closer, removing the segment
// when no one else has it attached).
type churnArgs struct {
	Key    uint32
	Seeds  []string
	Rounds int
}

// churnResult is what a churner reports.
type churnResult struct {
	Opens, Lookups, Removed int
	Errors                  []string
}

// churner is a worker process that opens and closes the shared view over
// and over, racing the other churners' closes.
func churner(ctx context.Context, w *harness.Worker) (any, error) {
	var a churnArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	var r churnResult
	fail := func(format string, args ...any) {
		if len(r.Errors) < 10 {
			r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
		}
	}
	d, _ := partmap.DigestForPartition(7)
	rec := newRecorder()
	for i := range a.Rounds {
		c, err := tend.Open(ctx, tend.Config{Seeds: a.Seeds, UseShm: true, ShmKey: arena.Key(a.Key),
			TendInterval: interval, TakeoverThreshold: threshold, Logger: rec.logger()})
		if err != nil {
			fail("round %d: open: %v", i, err)
			continue
		}
		r.Opens++
		// A view that just appeared may not have its first map yet (its
		// owner is tending): wait for it, bounded.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := c.Master(tendtest.DefaultNamespace, d); err == nil {
				r.Lookups++
				break
			} else if time.Now().After(deadline) {
				fail("round %d: no lookup within 5 s: %v (stats %+v)", i, err, c.Stats())
				break
			}
			time.Sleep(time.Millisecond)
		}
		if err := c.Close(); err != nil {
			fail("round %d: close: %v", i, err)
		}
		// Up to half a millisecond without the view, so that the others'
		// closes sometimes find no one attached and remove the segment
		// under this process's next open.
		time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
	}
	r.Removed = len(rec.find("tend: last process to close the view; removed the segment", nil))
	return r, nil
}

// TestLastCloseRaceProcesses: processes open, use and close one shared
// view in a loop, so that closes (which remove the segment when they are
// the last) race attaches. Every open succeeds, every view answers a
// lookup (a process that attaches as the last one leaves gets a fresh
// segment), and when all have closed the segment is gone. The count of
// removals (logged) says how often closes removed the segment under the
// others; at least the last close must have removed it.
func TestLastCloseRaceProcesses(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 2})
	key := testKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stderr io.Writer
	if testing.Verbose() {
		stderr = os.Stderr
	}
	const procs, rounds = 4, 40
	g, err := harness.Start(ctx, harness.Spec{Workload: "churner", N: procs,
		Args: churnArgs{Key: uint32(key), Seeds: sim.Seeds(), Rounds: rounds}, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	opens, lookups, removed := 0, 0, 0
	for i, r := range res {
		if err := r.Failure(); err != nil {
			t.Fatalf("churner %d: %v", i, err)
		}
		var cr churnResult
		if err := r.Decode(&cr); err != nil {
			t.Fatal(err)
		}
		for _, e := range cr.Errors {
			t.Errorf("churner %d: %s", i, e)
		}
		opens += cr.Opens
		lookups += cr.Lookups
		removed += cr.Removed
	}
	t.Logf("%d opens, %d removals by a last closer", opens, removed)
	if removed < 1 {
		t.Errorf("no close removed the segment")
	}
	if opens != procs*rounds || lookups != procs*rounds {
		t.Errorf("%d opens and %d lookups of %d", opens, lookups, procs*rounds)
	}
	if _, err := arena.StatOf(arena.SysV(key)); !errors.Is(err, arena.ErrNotFound) {
		t.Errorf("after every process closed: %v, want the segment removed", err)
	}
}
