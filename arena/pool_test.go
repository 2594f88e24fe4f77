package arena_test

import (
	"errors"
	"sync"
	"syscall"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/layout"
)

func handle(stage, index int) arena.Handle { return arena.Handle(uint32(stage)<<24 | uint32(index+1)) }

func stats(t testing.TB, p *arena.Pool) arena.PoolStats {
	t.Helper()
	st, err := p.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Free+st.Claimed+st.Linked+st.Unused != st.Capacity {
		t.Fatalf("accounting broken: %+v", st)
	}
	return st
}

func openPool(t testing.TB, loc arena.Location, elemSize, stageElems int) *arena.Pool {
	t.Helper()
	p, err := arena.OpenPool(ctxT(t), loc, poolConfig(elemSize, stageElems))
	if err != nil {
		t.Fatalf("OpenPool: %v", err)
	}
	return p
}

func TestHandle(t *testing.T) {
	h := handle(3, 41)
	if h.Stage() != 3 || h.Index() != 41 || h.IsNull() || h.String() != "3:41" {
		t.Errorf("handle %#x: stage %d index %d null %v %q", uint32(h), h.Stage(), h.Index(), h.IsNull(), h)
	}
	for _, n := range []arena.Handle{0, 1 << 24, 0xff000000} {
		if !n.IsNull() || n.String() != "null" {
			t.Errorf("%#x: null %v %q", uint32(n), n.IsNull(), n)
		}
	}
	if h := handle(0, arena.MaxStageElems-1); h.Index() != arena.MaxStageElems-1 || h.Stage() != 0 {
		t.Errorf("largest index: %v", h)
	}
}

func TestPoolConfigErrors(t *testing.T) {
	loc := arena.NewHeapStore().At("p")
	for _, c := range [][2]int{{0, 4}, {-1, 4}, {1<<20 + 1, 4}, {8, 0}, {8, -3}, {8, arena.MaxStageElems + 1}} {
		if _, err := arena.OpenPool(ctxT(t), loc, poolConfig(c[0], c[1])); !errors.Is(err, arena.ErrPoolConfig) {
			t.Errorf("OpenPool(elem %d, stage %d) = %v", c[0], c[1], err)
		}
	}
}

func TestPoolBasics(t *testing.T) {
	for _, b := range backends() {
		if b.name == "devshm" {
			continue // same as tmpfile
		}
		t.Run(b.name, func(t *testing.T) {
			ctx := ctxT(t)
			loc := b.loc(t)
			p := openPool(t, loc, 20, 4) // payload 24 bytes
			if st := stats(t, p); st != (arena.PoolStats{Stages: 1, Capacity: 4, Unused: 4}) {
				t.Errorf("fresh pool: %+v", st)
			}
			var hs []arena.Handle
			for i := range 4 {
				h, err := p.Alloc(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if h != handle(0, i) {
					t.Errorf("alloc %d = %s", i, h)
				}
				hs = append(hs, h)
			}
			// Payloads are 8-aligned, 24 bytes, and do not overlap.
			for i, h := range hs {
				seg, off, err := p.Payload(h)
				if err != nil || off%8 != 0 {
					t.Fatalf("Payload(%s) = %d, %v", h, off, err)
				}
				if err := seg.CheckRange(off, 24); err != nil {
					t.Fatal(err)
				}
				seg.StoreWords(off, []uint64{uint64(i), uint64(i) << 8, uint64(i) << 16})
			}
			for i, h := range hs {
				seg, off, _ := p.Payload(h)
				w := make([]uint64, 3)
				seg.LoadWords(off, w)
				if w[0] != uint64(i) || w[1] != uint64(i)<<8 || w[2] != uint64(i)<<16 {
					t.Errorf("payload %s = %v", h, w)
				}
			}
			if st := stats(t, p); st.Claimed != 4 || st.Unused != 0 || st.Dead != 0 {
				t.Errorf("after 4 allocs: %+v", st)
			}
			// Growth: the fifth element comes from stage 1, twice as big.
			h5, err := p.Alloc(ctx)
			if err != nil || h5 != handle(1, 0) {
				t.Fatalf("alloc 5 = %s, %v", h5, err)
			}
			if st := stats(t, p); st.Stages != 2 || st.Capacity != 12 || st.Claimed != 5 || st.Unused != 7 {
				t.Errorf("after growth: %+v", st)
			}
			stLoc, _ := loc.Stage(1)
			if _, err := arena.StatOf(stLoc); err != nil {
				t.Errorf("stage 1 segment %s: %v", stLoc, err)
			}
			in, err := arena.Inspect(stLoc)
			if err != nil {
				t.Fatal(err)
			}
			if in.Header().Kind != layout.KindPoolStage {
				t.Errorf("stage kind %v", in.Header().Kind)
			}
			in.Close()

			// Commit, free, double free.
			if err := p.Commit(hs[0]); err != nil {
				t.Fatal(err)
			}
			if err := p.Commit(hs[0]); !errors.Is(err, arena.ErrNotClaimed) {
				t.Errorf("second Commit = %v", err)
			}
			if st := stats(t, p); st.Linked != 1 || st.Claimed != 4 {
				t.Errorf("after commit: %+v", st)
			}
			if err := p.Free(hs[0]); err != nil {
				t.Fatalf("Free(linked): %v", err)
			}
			if err := p.Free(hs[0]); !errors.Is(err, arena.ErrDoubleFree) {
				t.Errorf("double Free = %v", err)
			}
			if err := p.Commit(hs[0]); !errors.Is(err, arena.ErrNotClaimed) {
				t.Errorf("Commit(free) = %v", err)
			}
			if err := p.Free(hs[1]); err != nil {
				t.Fatal(err)
			}
			if st := stats(t, p); st.Free != 2 || st.Claimed != 3 || st.Linked != 0 {
				t.Errorf("after frees: %+v", st)
			}
			// The free list is LIFO.
			for _, want := range []arena.Handle{hs[1], hs[0]} {
				if h, err := p.Alloc(ctx); err != nil || h != want {
					t.Errorf("Alloc = %s, %v; want %s", h, err, want)
				}
			}

			// Bad handles.
			for _, h := range []arena.Handle{0, 1 << 24, handle(0, 4), handle(1, 1), handle(1, 7), handle(1, 8), handle(2, 0),
				handle(15, 0), handle(16, 0), 0xffffffff, handle(0, arena.MaxStageElems-1)} {
				if err := p.Free(h); !errors.Is(err, arena.ErrBadHandle) {
					t.Errorf("Free(%#x) = %v", uint32(h), err)
				}
				if err := p.Commit(h); !errors.Is(err, arena.ErrBadHandle) {
					t.Errorf("Commit(%#x) = %v", uint32(h), err)
				}
				if _, _, err := p.Payload(h); !errors.Is(err, arena.ErrBadHandle) {
					t.Errorf("Payload(%#x) = %v", uint32(h), err)
				}
			}
			if n, err := p.Reclaim(); n != 0 || err != nil {
				t.Errorf("Reclaim with no dead owner = %d, %v", n, err)
			}
			before := stats(t, p)

			// Another configuration is refused; a second opener shares it.
			_, err = arena.OpenPool(ctx, loc, poolConfig(8, 4))
			var me *layout.MismatchError
			if !errors.As(err, &me) || me.Field != "elem_size" || me.Have != 20 || me.Want != 8 {
				t.Errorf("OpenPool with another element size: %v", err)
			}
			p2 := openPool(t, loc, 20, 4)
			if st := stats(t, p2); st != before {
				t.Errorf("second opener sees %+v, want %+v", st, before)
			}
			// A claim belongs to the handle (liveness slot) that made it.
			if err := p2.Commit(h5); !errors.Is(err, arena.ErrNotClaimed) {
				t.Errorf("Commit through another Pool handle: %v, want ErrNotClaimed", err)
			}
			if err := p.Commit(h5); err != nil {
				t.Errorf("Commit through the claiming handle: %v", err)
			}
			if err := p2.Close(); err != nil {
				t.Fatal(err)
			}

			if err := arena.RemovePool(loc, arena.RemoveOptions{}); !errors.Is(err, arena.ErrInUse) {
				t.Errorf("RemovePool while open = %v", err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			// Reopened, the pool has kept its state; the closed handle's
			// claims are now provably abandoned (its slot is released).
			p3 := openPool(t, loc, 20, 4)
			if st := stats(t, p3); st.Linked != 1 || st.Claimed != before.Claimed-1 || st.Dead != st.Claimed || st.Stages != 2 {
				t.Errorf("reopened: %+v", st)
			}
			if n, err := p3.Reclaim(); err != nil || n != before.Claimed-1 {
				t.Errorf("Reclaim of a closed handle's claims = %d, %v; want %d", n, err, before.Claimed-1)
			}
			p3.Close()
			if err := arena.RemovePool(loc, arena.RemoveOptions{}); err != nil {
				t.Fatalf("RemovePool: %v", err)
			}
			for _, l := range []arena.Location{loc, stLoc} {
				if _, err := arena.StatOf(l); !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("%s after RemovePool: %v", l, err)
				}
			}
		})
	}
}

// TestPoolFull grows a pool through all its stages.
func TestPoolFull(t *testing.T) {
	ctx := ctxT(t)
	loc := arena.NewHeapStore().At("full")
	p := openPool(t, loc, 8, 1)
	defer p.Close()
	seen := map[arena.Handle]bool{}
	const total = 1<<arena.MaxStages - 1 // 1 + 2 + 4 + ... + 2^15
	for i := range total {
		h, err := p.Alloc(ctx)
		if err != nil {
			t.Fatalf("alloc %d: %v", i, err)
		}
		if seen[h] {
			t.Fatalf("alloc %d: %s handed out twice", i, h)
		}
		seen[h] = true
	}
	if _, err := p.Alloc(ctx); !errors.Is(err, arena.ErrPoolFull) {
		t.Fatalf("alloc past capacity = %v, want ErrPoolFull", err)
	}
	if st := stats(t, p); st.Stages != arena.MaxStages || st.Capacity != total || st.Claimed != total {
		t.Errorf("full pool: %+v", st)
	}
	last := handle(arena.MaxStages-1, 1<<(arena.MaxStages-1)-1)
	if !seen[last] {
		t.Errorf("last element %s not handed out", last)
	}
	if err := p.Free(last); err != nil {
		t.Fatal(err)
	}
	if h, err := p.Alloc(ctx); err != nil || h != last {
		t.Errorf("alloc after a free = %s, %v", h, err)
	}
}

// TestPoolHammerProcesses: 4 processes allocate, tag, and free elements
// of one SysV pool concurrently (growing it), keeping some. No element is
// ever held by two at once, none is lost, and the kept ones are accounted
// as linked or claimed by a dead owner.
func TestPoolHammerProcesses(t *testing.T) {
	ctx := ctxT(t)
	k := testKey(t)
	a := hammerArgs{Loc: sysvArg(k), ElemSize: 16, StageElems: 8, Rounds: 40000, KeepLinked: 3, KeepClaimed: 2}
	const n = 4
	g := startGroup(t, harness.Spec{Workload: "poolhammer", N: n, Args: a})
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var rs []hammerResult
	for _, r := range waitResults(t, g) {
		var hr hammerResult
		if err := r.Decode(&hr); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, hr)
	}
	p := openPool(t, arena.SysV(k), a.ElemSize, a.StageElems)
	defer arena.RemovePool(arena.SysV(k), arena.RemoveOptions{Force: true})
	defer p.Close()
	checkHammer(t, p, rs, a, n)
}

// TestPoolHammerGoroutines is the same protocol on a heap pool with
// goroutines (each with its own Pool, as a process would have), so that
// the race detector checks it. Each Pool is a registrant of its own (its
// own liveness slot), and each is closed before the check, so the kept
// claimed elements are provably abandoned, as a dead process's are.
func TestPoolHammerGoroutines(t *testing.T) {
	ctx := ctxT(t)
	loc := arena.NewHeapStore().At("hammer")
	a := hammerArgs{ElemSize: 16, StageElems: 8, Rounds: 20000, KeepLinked: 3, KeepClaimed: 2}
	if testing.Short() {
		a.Rounds = 300
	}
	const n = 4
	rs := make([]hammerResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			p, err := arena.OpenPool(ctx, loc, poolConfig(a.ElemSize, a.StageElems))
			if err != nil {
				errs[i] = err
				return
			}
			defer p.Close()
			<-start
			rs[i], errs[i] = hammer(ctx, p, i, a)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	p := openPool(t, loc, a.ElemSize, a.StageElems)
	defer p.Close()
	checkHammer(t, p, rs, a, n)
}

// checkHammer checks a pool after hammer workers (processes, or Pools that
// were closed) ended: their kept claims are provably abandoned.
func checkHammer(t *testing.T, p *arena.Pool, rs []hammerResult, a hammerArgs, n int) {
	t.Helper()
	ctx := ctxT(t)
	kept := map[arena.Handle]keptElem{}
	linked, claimed, allocs := 0, 0, 0
	for w, r := range rs {
		allocs += r.Allocs
		if len(r.Kept) != a.KeepLinked+a.KeepClaimed {
			t.Errorf("worker %d kept %d elements", w, len(r.Kept))
		}
		for _, k := range r.Kept {
			if _, dup := kept[k.H]; dup {
				t.Errorf("element %s kept by two workers", k.H)
			}
			kept[k.H] = k
			if k.Linked {
				linked++
			} else {
				claimed++
			}
			seg, off, err := p.Payload(k.H)
			if err != nil {
				t.Fatal(err)
			}
			if got := seg.Load64(off); got != k.Tag {
				t.Errorf("kept %s holds tag %#x, worker %d wrote %#x", k.H, got, w, k.Tag)
			}
		}
	}
	if want := n * a.Rounds * 10 / 4; allocs != want { // 1+2+3+4 per 4 rounds
		t.Errorf("%d allocations reported, want %d", allocs, want)
	}
	if err := p.Check(); err != nil {
		t.Errorf("Check after the workers ended: %v", err)
	}
	st := stats(t, p)
	dead := claimed // every owner is gone
	if st.Linked != linked || st.Claimed != claimed || st.Dead != dead || st.Stages < 2 {
		t.Errorf("stats %+v; workers kept %d linked, %d claimed", st, linked, claimed)
	}
	got, err := p.Reclaim()
	if err != nil || got != dead {
		t.Errorf("Reclaim = %d, %v; want %d", got, err, dead)
	}
	st2 := stats(t, p)
	if st2.Linked != linked || st2.Claimed != claimed-dead || st2.Free != st.Free+dead || st2.Dead != 0 {
		t.Errorf("after Reclaim: %+v, before %+v", st2, st)
	}
	// Drain the pool: every free and unused element comes out once, and
	// none of them is a linked (or still claimed) one.
	drain := st2.Free + st2.Unused
	got2 := map[arena.Handle]bool{}
	for range drain {
		h, err := p.Alloc(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got2[h] {
			t.Fatalf("drain: %s handed out twice", h)
		}
		got2[h] = true
		if k, ok := kept[h]; ok && k.Linked {
			t.Fatalf("drain: kept element %s handed out", h)
		}
	}
	if st3 := stats(t, p); st3.Free != 0 || st3.Unused != 0 || st3.Capacity != st2.Capacity {
		t.Errorf("after draining: %+v", st3)
	}
}

// TestPoolDeadOwner is the policy for elements taken by a process that
// dies before linking them: a worker commits 3 elements, then is killed by
// the FailPoolClaimed failpoint right after its 4th Alloc. The claimed
// element is counted dead and Reclaim frees exactly it; the committed
// ones are not reclaimed.
func TestPoolDeadOwner(t *testing.T) {
	ctx := ctxT(t)
	k := testKey(t)
	loc := arena.SysV(k)
	p := openPool(t, loc, 16, 8)
	defer arena.RemovePool(loc, arena.RemoveOptions{Force: true})
	defer p.Close()
	// One element this process keeps claimed: never dead.
	mine, err := p.Alloc(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g := startGroup(t, harness.Spec{Workload: "pooldie", N: 1,
		Args:       dieArgs{Loc: sysvArg(k), ElemSize: 16, StageElems: 8, Commit: 3},
		Failpoints: map[int]string{0: arena.FailPoolClaimed + "=kill@4"}})
	// With @4 the failpoint acts (and reports) on the 4th Alloc only.
	if got, err := g.WaitFailpoint(ctx, 0); err != nil || got != arena.FailPoolClaimed {
		t.Fatalf("failpoint report: %q, %v", got, err)
	}
	res, _ := g.Wait()
	if res[0].Signal != syscall.SIGKILL {
		t.Fatalf("worker: %+v", res[0])
	}
	if err := p.Check(); err != nil {
		t.Errorf("Check after the kill: %v", err)
	}
	st := stats(t, p)
	if st.Dead != 1 || st.Claimed != 2 || st.Linked != 3 || st.Free != 0 {
		t.Fatalf("after the worker died: %+v", st)
	}
	n, err := p.Reclaim()
	if err != nil || n != 1 {
		t.Fatalf("Reclaim = %d, %v; want 1", n, err)
	}
	st = stats(t, p)
	if st.Dead != 0 || st.Claimed != 1 || st.Linked != 3 || st.Free != 1 {
		t.Errorf("after Reclaim: %+v", st)
	}
	if n, err := p.Reclaim(); n != 0 || err != nil {
		t.Errorf("second Reclaim = %d, %v", n, err)
	}
	// The worker took 0:1..0:3 (committed) and 0:4 (claimed when killed).
	for i := 1; i <= 3; i++ {
		seg, off, err := p.Payload(handle(0, i))
		if err != nil || seg.Load64(off) != uint64(0xc0de0000+i-1) {
			t.Errorf("committed element %d: %v", i, err)
		}
	}
	h, err := p.Alloc(ctx)
	if err != nil || h != handle(0, 4) {
		t.Errorf("Alloc after Reclaim = %s, %v; want the reclaimed 0:4", h, err)
	}
	if err := p.Commit(h); err != nil {
		t.Error(err)
	}
	if err := p.Free(mine); err != nil {
		t.Error(err)
	}
	if st := stats(t, p); st.Linked != 4 || st.Claimed != 0 || st.Free != 1 {
		t.Errorf("final: %+v", st)
	}
}

// TestRemovePoolInUse: RemovePool without Force refuses a pool another
// opener still uses, before touching any stage (a stage it has not
// attached itself would otherwise be removed from under it).
func TestRemovePoolInUse(t *testing.T) {
	for _, b := range backends() {
		if b.name == "devshm" {
			continue
		}
		t.Run(b.name, func(t *testing.T) {
			ctx := ctxT(t)
			loc := b.loc(t)
			user := openPool(t, loc, 8, 2) // attaches the main segment only
			grower := openPool(t, loc, 8, 2)
			for range 3 {
				if _, err := grower.Alloc(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if st := stats(t, grower); st.Stages != 2 {
				t.Fatalf("stats %+v", st)
			}
			grower.Close()
			stLoc, _ := loc.Stage(1)
			asArenaError(t, arena.RemovePool(loc, arena.RemoveOptions{}), arena.ErrInUse)
			if _, err := arena.StatOf(stLoc); err != nil {
				t.Fatalf("stage 1 after a refused RemovePool: %v", err)
			}
			// The user can still reach stage 1.
			if _, _, err := user.Payload(handle(1, 0)); err != nil {
				t.Errorf("Payload in stage 1: %v", err)
			}
			user.Close()
			if err := arena.RemovePool(loc, arena.RemoveOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, l := range []arena.Location{loc, stLoc} {
				if _, err := arena.StatOf(l); !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("%s after RemovePool: %v", l, err)
				}
			}
			if err := arena.RemovePool(loc, arena.RemoveOptions{}); !errors.Is(err, arena.ErrNotFound) {
				t.Errorf("RemovePool of a removed pool = %v", err)
			}
		})
	}
}
