package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{"ops": opsWorkload})
	os.Exit(m.Run())
}

// opsArgs configures the "ops" workload.
type opsArgs struct {
	Dir         string
	Seed        uint64
	Keys        int
	Ops         int  // number of operations; with Forever, ignored
	Forever     bool // run until killed
	DefragEvery int  // a Defrag pass after every DefragEvery operations (0: never)
	DefragAtEnd bool // a Defrag pass after the last operation
	FileSize    uint64
}

// op is operation i of a seeded sequence: a put of a unique value or a
// delete, of one of keys keys.
type op struct {
	key   string
	value string
	del   bool
}

func opAt(seed uint64, keys, i int) op {
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	o := op{key: fmt.Sprint("key", rng.IntN(keys)), value: fmt.Sprintf(`{"op":%d}`, i)}
	o.del = rng.IntN(5) == 0
	return o
}

// model is the state after the first n operations.
func model(a opsArgs, n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		o := opAt(a.Seed, a.Keys, i)
		if o.del {
			delete(m, o.key)
		} else {
			m[o.key] = o.value
		}
	}
	return m
}

// opsWorkload runs the operations like a server: append to the log, then
// update its index and release what the index no longer points at.
func opsWorkload(ctx context.Context, w *harness.Worker) (any, error) {
	var a opsArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	s, err := storage.Open(a.Dir, storage.Options{FileSize: a.FileSize, Failpoints: w.Failpoints, Logger: w.Log})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	ix := newMapIndex(s)
	for i := 0; a.Forever || i < a.Ops; i++ {
		o := opAt(a.Seed, a.Keys, i)
		d := digestOf(o.key)
		if o.del {
			if _, err := s.Append(tombRec(o.key)); err != nil {
				return i, err
			}
			if err := ix.delErr(d); err != nil {
				return i, err
			}
		} else {
			loc, err := s.Append(mkRec(o.key, o.value))
			if err != nil {
				return i, err
			}
			if err := ix.putErr(d, loc); err != nil {
				return i, err
			}
		}
		if a.DefragEvery > 0 && i%a.DefragEvery == a.DefragEvery-1 {
			if _, err := s.Defrag(ctx, ix); err != nil {
				return i, err
			}
		}
	}
	if a.DefragAtEnd {
		if _, err := s.Defrag(ctx, ix); err != nil {
			return a.Ops, err
		}
	}
	return a.Ops, s.Close()
}

// killedAt runs the workload with failpoint spec armed, waits until it
// reports reaching point and is killed there.
func killedAt(t *testing.T, a opsArgs, spec, point string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := harness.Start(ctx, harness.Spec{Workload: "ops", N: 1, Args: a, Failpoints: map[int]string{0: spec}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	name, err := g.WaitFailpoint(ctx, 0)
	if err != nil {
		res, werr := g.Wait()
		t.Fatalf("no failpoint: %v (results %+v, %v)", err, res, werr)
	}
	if name != point {
		t.Fatalf("reached %q, want %q", name, point)
	}
	res, _ := g.Wait()
	if res[0].Signal != syscall.SIGKILL {
		t.Fatalf("worker not killed at %s: %+v", point, res[0])
	}
}

// reopen opens the log a killed worker left and rebuilds its contents.
func reopen(t *testing.T, dir string) (*storage.Storage, map[string]entry) {
	t.Helper()
	s := open(t, dir, storage.Options{})
	if s.Clean() {
		t.Fatal("the log of a killed process opens clean")
	}
	return s, rebuild(t, s, false, false)
}

// TestKilledMidAppend kills a process halfway through writing its 300th
// record (the log also went through files and Defrag passes): the torn
// record is cut, the 299 acknowledged operations are all there, and no
// deleted record is back. Negative control: the same check on a log that
// lost its last acknowledged record fails.
func TestKilledMidAppend(t *testing.T) {
	const n = 300
	a := opsArgs{Dir: t.TempDir(), Seed: 1, Keys: 40, Ops: 1000, DefragEvery: 50, FileSize: 8 << 10}
	killedAt(t, a, fmt.Sprintf("%s=kill@%d", storage.FailAppendMid, n), storage.FailAppendMid)
	s, got := reopen(t, a.Dir)
	want := model(a, n-1)
	if err := diff(got, want); err != nil {
		t.Fatal(err)
	}
	if seq := s.Identity().NextSeq; seq != n {
		t.Fatalf("next seq %d after the cut, want %d (the torn record's)", seq, n)
	}
	// The log accepts appends after the cut.
	mustAppend(t, s, mkRec("after", "crash"))
	s.Close()

	t.Run("negative control: a lost acknowledged record", func(t *testing.T) {
		if fmt.Sprint(model(a, n-2)) == fmt.Sprint(want) {
			t.Fatal("operation n-2 changes nothing: pick another seed or n")
		}
		cp := crashCopy(t, a.Dir)
		c := open(t, cp, storage.Options{})
		var last storage.Location
		if err := c.Scan(func(rec storage.Record, loc storage.Location) error {
			if rec.Seq == n-1 {
				last = loc
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if last.File == 0 {
			t.Fatal("the last acknowledged record is not in the log")
		}
		if err := os.Truncate(fmt.Sprintf("%s/log-%08x.dat", cp, last.File), int64(last.Offset)); err != nil {
			t.Fatal(err)
		}
		_, got := reopen(t, cp)
		if err := diff(got, want); err == nil {
			t.Fatal("a log without its last acknowledged record passed the check")
		}
	})
}

// TestKilledAfterAppend kills a process once its 200th record is in the
// log but before Append returned: the 199 acknowledged operations are
// there; the unacknowledged one may be.
func TestKilledAfterAppend(t *testing.T) {
	const n = 200
	a := opsArgs{Dir: t.TempDir(), Seed: 2, Keys: 30, Ops: 1000, DefragEvery: 40, FileSize: 8 << 10}
	killedAt(t, a, fmt.Sprintf("%s=kill@%d", storage.FailAppendAfter, n), storage.FailAppendAfter)
	_, got := reopen(t, a.Dir)
	if err := diff(got, model(a, n-1)); err != nil {
		if err2 := diff(got, model(a, n)); err2 != nil {
			t.Fatalf("neither the acknowledged state (%v) nor it plus the unacknowledged record (%v)", err, err2)
		}
	}
}

// TestKilledMidDefrag kills a process in a Defrag pass after it copied a
// few records: the source file is intact, the copies harmless, every
// acknowledged operation is there and no deleted record is back; a new
// process completes the defragmentation.
func TestKilledMidDefrag(t *testing.T) {
	a := opsArgs{Dir: t.TempDir(), Seed: 3, Keys: 50, Ops: 600, DefragAtEnd: true, FileSize: 8 << 10}
	killedAt(t, a, storage.FailDefragMid+"=kill@5", storage.FailDefragMid)
	s, got := reopen(t, a.Dir)
	want := model(a, a.Ops)
	if err := diff(got, want); err != nil {
		t.Fatal(err)
	}
	copies := 0
	ix := newMapIndex(s)
	if err := s.Scan(func(rec storage.Record, loc storage.Location) error {
		if rec.Copied {
			copies++
		}
		if e, ok := got[string(rec.Key)]; ok && e.loc == loc {
			ix.put(t, rec.Digest, loc)
		} else if !rec.Tombstone {
			s.Release(loc)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if copies == 0 {
		t.Fatal("no copy made before the kill: the test did not stop mid-defragmentation")
	}
	st, err := s.Defrag(context.Background(), ix)
	if err != nil || st.Files == 0 {
		t.Fatalf("Defrag after the crash: %+v, %v", st, err)
	}
	checkIndex(t, s, ix, want)
	if err := diff(rebuild(t, s, false, false), want); err != nil {
		t.Fatal(err)
	}
}

// TestKilledAtRandom kills a process appending, deleting and
// defragmenting at random moments: each time the log opens and holds
// exactly the first j operations, j being the operations whose records
// are in it (NextSeq-1): no gap, no resurrected delete.
func TestKilledAtRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	maxOps := 0
	for round := range 4 {
		a := opsArgs{Dir: t.TempDir(), Seed: uint64(10 + round), Keys: 60, Forever: true, DefragEvery: 30, FileSize: 8 << 10}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		g, err := harness.Start(ctx, harness.Spec{Workload: "ops", N: 1, Args: a})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Release(ctx); err != nil {
			t.Fatal(err)
		}
		d := 30*time.Millisecond + time.Duration(rng.Int64N(int64(270*time.Millisecond)))
		if _, err := g.KillAt(0, d); err != nil {
			t.Fatal(err)
		}
		res, _ := g.Wait()
		g.Close()
		cancel()
		if res[0].Signal != syscall.SIGKILL {
			t.Fatalf("round %d: worker not killed: %+v", round, res[0])
		}
		s, got := reopen(t, a.Dir)
		j := int(s.Identity().NextSeq - 1)
		maxOps = max(maxOps, j)
		if err := diff(got, model(a, j)); err != nil {
			t.Fatalf("round %d (killed after %v, %d operations in the log): %v", round, d, j, err)
		}
		s.Close()
	}
	if maxOps < 20 {
		t.Fatalf("at most %d operations before a kill: the kills came too early to test anything", maxOps)
	}
	t.Logf("up to %d operations before a kill", maxOps)
}
