package index

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// hostileFixture is a heap index with n keys and helpers to damage it.
type hostileFixture struct {
	ix *Index
	m  model
}

func newHostile(t *testing.T, n uint64) *hostileFixture {
	t.Helper()
	cfg := testConfig(t, bHeap)
	ix, _ := mustOpen(t, cfg, nil)
	t.Cleanup(func() { ix.Close() })
	m := model{}
	for k := range n {
		if err := ix.Put(recordOf(k, 1, false)); err != nil {
			t.Fatal(err)
		}
		m[k] = 1
	}
	ix.v.retryBudget = 20 * time.Millisecond
	return &hostileFixture{ix: ix, m: m}
}

// sprigOf returns the sprig record (word) number of key k.
func (f *hostileFixture) sprigOf(k uint64) uint64 {
	d := digestOf(k)
	return f.ix.v.sprig(&d)
}

// rootOf returns the root handle of key k's sprig.
func (f *hostileFixture) rootOf(k uint64) Handle {
	return sprigRoot(f.ix.v.sprigs.Load(f.sprigOf(k)))
}

// setRoot stores h as the root of key k's sprig, keeping its version.
func (f *hostileFixture) setRoot(k uint64, h Handle) {
	sp := f.sprigOf(k)
	f.ix.v.sprigs.Store(sp, f.ix.v.sprigs.Load(sp)&^sprigRootMask|uint64(h))
}

// keyInBigSprig returns a key whose sprig holds at least 3 entries.
func (f *hostileFixture) keyInBigSprig(t *testing.T) uint64 {
	per := map[uint64]int{}
	for k := range f.m {
		per[f.sprigOf(k)]++
	}
	for k := range f.m {
		if per[f.sprigOf(k)] >= 3 {
			return k
		}
	}
	t.Fatal("no sprig with 3 entries")
	return 0
}

// expectDamage checks that Get, Scan and Check report ErrCorrupt (or, for
// Get and Scan, ErrContended) for key k's sprig, quickly and without a
// panic, and that Check names want.
func (f *hostileFixture) expectDamage(t *testing.T, k uint64, want string) {
	t.Helper()
	start := time.Now()
	d := digestOf(k)
	typed := func(err error) bool { return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrContended) }
	// A Get of an absent key in the sprig walks as far as the damage goes.
	var absent Digest
	for a := uint64(1 << 40); ; a++ {
		absent = digestOf(a)
		if f.ix.v.sprig(&absent) == f.ix.v.sprig(&d) {
			break
		}
	}
	for _, dd := range []Digest{d, absent} {
		if r, ok, err := f.ix.Get(dd); err != nil && !typed(err) {
			t.Errorf("Get: untyped error %v", err)
		} else if err == nil && ok && r.Digest != dd {
			t.Errorf("Get returned another key's record")
		}
	}
	if err := f.ix.Scan(d.Partition(), func(Record) bool { return true }); !typed(err) {
		t.Errorf("Scan of the damaged partition: %v, want ErrCorrupt", err)
	}
	err := f.ix.Check()
	var ce *CheckError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check: %v, want a *CheckError", err)
	}
	if !containsAny(ce.Problems, want) {
		t.Errorf("Check problems %q lack %q", ce.Problems, want)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("reporting the damage took %v", el)
	}
}

func TestHostileArena(t *testing.T) {
	t.Run("root-out-of-range", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		f.setRoot(k, MakeHandle(200, 5))
		f.expectDamage(t, k, "beyond the")
		if err := f.ix.Put(recordOf(k, 9, false)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Put into the damaged sprig: %v, want ErrCorrupt", err)
		}
	})
	t.Run("link-out-of-range", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		ws, i, _ := f.ix.v.entries(f.rootOf(k))
		ws.Store(i+wLeft, ws.Load(i+wLeft)&^linkMask|uint64(MaxHandle+5))
		ws.Store(i+wRight, ws.Load(i+wRight)&^linkMask|uint64(MaxHandle+5))
		f.expectDamage(t, k, "out of range")
		if _, err := f.ix.Delete(digestOf(k)); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("Delete in the damaged sprig: %v", err)
		}
	})
	t.Run("cycle", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		root := f.rootOf(k)
		ws, i, _ := f.ix.v.entries(root)
		ws.Store(i+wLeft, ws.Load(i+wLeft)&^linkMask|uint64(root))
		ws.Store(i+wRight, ws.Load(i+wRight)&^linkMask|uint64(root))
		f.expectDamage(t, k, "already reached")
		if err := f.ix.Put(recordOf(1<<41, 1, false)); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("Put: %v", err)
		}
	})
	t.Run("height-wrong", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		ws, i, _ := f.ix.v.entries(f.rootOf(k))
		ws.Store(i+wRight, ws.Load(i+wRight)&^heightMask|9<<heightShift)
		err := f.ix.Check()
		if err == nil || !strings.Contains(err.Error(), "not an AVL tree") {
			t.Fatalf("Check: %v, want an AVL height problem", err)
		}
	})
	t.Run("another-sprigs-tree", func(t *testing.T) {
		f := newHostile(t, 2000)
		// k is in the first sprig holding 3 entries, other in the last
		// sprig: Check walks k's sprig (and finds the foreign entries)
		// before their own.
		per := map[uint64]int{}
		for o := range f.m {
			per[f.sprigOf(o)]++
		}
		var k, other uint64
		kFound := false
		for o := range f.m {
			if per[f.sprigOf(o)] >= 3 && (!kFound || f.sprigOf(o) < f.sprigOf(k)) {
				k, kFound = o, true
			}
			if f.sprigOf(o) > f.sprigOf(other) {
				other = o
			}
		}
		if !kFound || f.sprigOf(other) <= f.sprigOf(k) {
			t.Fatal("no sprig of 3 entries before the last sprig")
		}
		f.setRoot(k, f.rootOf(other))
		f.expectDamage(t, k, "belongs to partition")
	})
	t.Run("partition-and-meta-counts", func(t *testing.T) {
		f := newHostile(t, 500)
		f.ix.v.parts.Store(7*partWords+pCount, 12345)
		f.ix.v.meta.Store(mLive, 1)
		err := f.ix.Check()
		for _, want := range []string{"partition 7: count 12345", "meta: 1 live entries"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Check: %v, want %q", err, want)
			}
		}
	})
	t.Run("free-list-cycle", func(t *testing.T) {
		f := newHostile(t, 500)
		for k := range uint64(10) {
			if _, err := f.ix.Delete(digestOf(k)); err != nil {
				t.Fatal(err)
			}
		}
		head := Handle(f.ix.v.meta.Load(mFreeHead))
		ws, i, _ := f.ix.v.entries(head)
		ws.Store(i+wRight, uint64(head))
		err := f.ix.Check()
		if err == nil || !strings.Contains(err.Error(), "free list") {
			t.Fatalf("Check: %v, want a free list problem", err)
		}
		// The allocator hands the looping entry out once, then refuses.
		var perr error
		for k := uint64(1000); k < 1010 && perr == nil; k++ {
			perr = f.ix.Put(recordOf(k, 1, false))
		}
		if !errors.Is(perr, ErrCorrupt) {
			t.Fatalf("Puts over a looping free list: %v, want ErrCorrupt", perr)
		}
	})
	t.Run("free-entry-linked", func(t *testing.T) {
		f := newHostile(t, 2000)
		if _, err := f.ix.Delete(digestOf(3)); err != nil {
			t.Fatal(err)
		}
		freed := Handle(f.ix.v.meta.Load(mFreeHead))
		k := f.keyInBigSprig(t)
		f.setRoot(k, freed)
		f.expectDamage(t, k, "already reached")
	})
	t.Run("odd-version", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		f.ix.v.sprigs.Store(f.sprigOf(k), f.ix.v.sprigs.Load(f.sprigOf(k))|sprigVersionOne)
		if _, _, err := f.ix.Get(digestOf(k)); !errors.Is(err, ErrContended) {
			t.Fatalf("Get in a sprig held odd: %v, want ErrContended", err)
		}
		// An odd sprig is a writer stopped mid-update: Check reports it
		// as such (not as damage), counts off by its one update included.
		p := uint64(digestOf(k).Partition())
		f.ix.v.parts.Store(p*partWords+pCount, f.ix.v.parts.Load(p*partWords+pCount)+1)
		f.ix.v.meta.Store(mLive, f.ix.v.meta.Load(mLive)+1)
		err := f.ix.Check()
		var ie *InterruptedError
		if !errors.As(err, &ie) || !errors.Is(err, ErrInterrupted) || errors.Is(err, ErrCorrupt) ||
			ie.Partitions != 1 || !containsAny(ie.Notes, "is odd") || !containsAny(ie.Notes, "count") {
			t.Fatalf("Check of an interrupted update: %v, want an *InterruptedError naming the odd sprig and its count", err)
		}
		// Control: the same finding in a partition without an odd sprig
		// (or a total off by more than the interrupted updates explain)
		// is damage.
		q := (p + 1) % Partitions
		f.ix.v.parts.Store(q*partWords+pCount, f.ix.v.parts.Load(q*partWords+pCount)+1)
		f.ix.v.meta.Store(mLive, f.ix.v.meta.Load(mLive)+1)
		err = f.ix.Check()
		var ce *CheckError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || !containsAny(ce.Problems, fmt.Sprintf("partition %d: count", q)) ||
			!containsAny(ce.Problems, "live entries") || containsAny(ce.Problems, fmt.Sprintf("partition %d:", p)) || !containsAny(ce.Interrupted, "is odd") {
			t.Fatalf("Check with damage beside the interrupted update: %v (interrupted %q), want partition %d's count and the live total as problems", err, ce.Interrupted, q)
		}
	})
	t.Run("stage-count", func(t *testing.T) {
		f := newHostile(t, 1000) // four stages
		f.ix.v.meta.Store(mStages, 1000)
		if err := f.ix.Check(); err == nil || !strings.Contains(err.Error(), "1000 stages") {
			t.Fatalf("Check: %v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		f := newHostile(t, 1000)
		rng := rand.New(rand.NewPCG(9, 9))
		for i := range f.ix.v.sprigs.Len() {
			if rng.IntN(4) == 0 {
				f.ix.v.sprigs.Store(i, rng.Uint64()&^1) // even versions, random roots and counts
			}
		}
		st0 := f.ix.v.stages[0].Load()
		for i := range st0.Len() {
			if rng.IntN(3) == 0 {
				v := rng.Uint64()
				if rng.IntN(2) == 0 {
					v = v&^linkMask | rng.Uint64N(1200)
				}
				st0.Store(i, v)
			}
		}
		start := time.Now()
		for k := range uint64(3000) {
			d := digestOf(k)
			if r, ok, err := f.ix.Get(d); err == nil && ok && r.Digest != d {
				t.Fatal("Get returned another key's record")
			}
		}
		for p := range Partitions {
			f.ix.Scan(p, func(Record) bool { return true })
		}
		err := f.ix.Check()
		var ce *CheckError
		if !errors.As(err, &ce) || len(ce.Problems) < 10 {
			t.Fatalf("Check of garbage: %v", err)
		}
		if el := time.Since(start); el > 20*time.Second {
			t.Fatalf("reading garbage took %v", el)
		}
	})
}
