package index

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
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

// tableOf returns the table handle of key k's sprig.
func (f *hostileFixture) tableOf(k uint64) Handle {
	return sprigTable(f.ix.v.sprigs.Load(f.sprigOf(k)))
}

// setTable stores h (class c) as key k's sprig's table, keeping its
// version.
func (f *hostileFixture) setTable(k uint64, h Handle, c uint64) {
	sp := f.sprigOf(k)
	f.ix.v.sprigs.Store(sp, f.ix.v.sprigs.Load(sp)&^(sprigTableMask|sprigClassMask)|c<<sprigClassShift|uint64(h))
}

// lineOf returns the words and first word number of line j of key k's
// sprig's table.
func (f *hostileFixture) lineOf(k, j uint64) (arena.Words, uint64) {
	ws, i, _ := f.ix.v.entries(f.tableOf(k))
	return ws, i + j*entryWords
}

// firstFree returns the first run of the first non-empty free list and
// its class.
func (f *hostileFixture) firstFree(t *testing.T) (Handle, uint64) {
	for c := range uint64(numClasses) {
		if h := Handle(f.ix.v.alloc.Load(c)); !h.IsNull() {
			return h, c
		}
	}
	t.Fatal("no free run")
	return 0, 0
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
	t.Run("table-out-of-range", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		f.setTable(k, MakeHandle(200, 5), sprigClass(f.ix.v.sprigs.Load(f.sprigOf(k))))
		f.expectDamage(t, k, "beyond the")
		if err := f.ix.Put(recordOf(k, 9, false)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Put into the damaged sprig: %v, want ErrCorrupt", err)
		}
	})
	t.Run("table-past-its-stage", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		f.setTable(k, MakeHandle(0, 250), 15) // 16 lines from line 250 of a 256-line stage
		f.expectDamage(t, k, "past the end of its stage")
		if _, err := f.ix.Delete(digestOf(k)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Delete in the damaged sprig: %v, want ErrCorrupt", err)
		}
	})
	t.Run("class-out-of-range", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		f.setTable(k, f.tableOf(k), 0xff)
		f.expectDamage(t, k, "size class 255 out of range")
	})
	t.Run("out-of-order", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		// Swap the first two entries of the table.
		ws, i := f.lineOf(k, 0)
		var a, b entry
		j := uint64(1)
		for ; ws.Load(i+j*entryWords+wFlags) == 0; j++ {
		}
		for ; ws.Load(i+wFlags) == 0; i += entryWords {
		}
		ws.LoadN(i, a[:])
		ws.LoadN(i+j*entryWords, b[:])
		for w := range uint64(entryWords) {
			ws.Store(i+w, b[w])
			ws.Store(i+j*entryWords+w, a[w])
		}
		f.expectDamage(t, k, "out of digest order")
	})
	t.Run("displaced", func(t *testing.T) {
		// One sprig of 30 entries: an entry moved two lines on, past an
		// empty line (still in digest order, after its home).
		ix, _ := mustOpen(t, testConfig(t, bHeap), nil)
		defer ix.Close()
		for k := range uint64(30) {
			if err := ix.Put(Record{Digest: samePartition(k), Size: 1}); err != nil {
				t.Fatal(err)
			}
		}
		d := samePartition(0)
		tb, err := ix.table(ix.v.sprig(&d))
		if err != nil {
			t.Fatal(err)
		}
		// An entry followed by two empty lines moves to the second.
		p := uint64(0)
		for p+2 < tb.n && !(tb.live(p) && !tb.live(p+1) && !tb.live(p+2)) {
			p++
		}
		if p+2 >= tb.n {
			t.Fatalf("table of %d lines, %d entries: no entry followed by two empty lines", tb.n, tb.count)
		}
		tb.moveLine(p, p+2)
		tb.clearLine(p)
		err = ix.Check()
		if err == nil || !strings.Contains(err.Error(), "past an empty line") {
			t.Fatalf("Check: %v, want a displaced entry", err)
		}
	})
	t.Run("another-sprigs-table", func(t *testing.T) {
		f := newHostile(t, 2000)
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
		ow := f.ix.v.sprigs.Load(f.sprigOf(other))
		f.setTable(k, sprigTable(ow), sprigClass(ow))
		f.expectDamage(t, k, "belongs to partition")
	})
	t.Run("empty-line-not-zero", func(t *testing.T) {
		f := newHostile(t, 2000)
		k := f.keyInBigSprig(t)
		n := classLines(sprigClass(f.ix.v.sprigs.Load(f.sprigOf(k))))
		for j := range n {
			if ws, i := f.lineOf(k, j); ws.Load(i+wFlags) == 0 {
				ws.Store(i+wDigest0, 1)
				f.expectDamage(t, k, "is empty but its word 0 is 0x1")
				return
			}
		}
		t.Skip("the sprig's table has no empty line")
	})
	t.Run("counts", func(t *testing.T) {
		f := newHostile(t, 500)
		f.ix.v.parts.Store(7*partWords+pCount, 12345)
		f.ix.v.meta.Store(mLive, 1)
		sp := f.sprigOf(3)
		f.ix.v.counts.Store(sp, f.ix.v.counts.Load(sp)+1)
		err := f.ix.Check()
		for _, want := range []string{"partition 7: count 12345", "meta: 1 live entries", "count 2, holds 1"} {
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
		head, _ := f.firstFree(t) // runs of the emptied sprigs

		ws, i, _ := f.ix.v.entries(head)
		ws.Store(i+wNextFree, uint64(head))
		err := f.ix.Check()
		if err == nil || !strings.Contains(err.Error(), "free list") {
			t.Fatalf("Check: %v, want a free list problem", err)
		}
		// The allocator hands the looping run out once, then refuses.
		var perr error
		for k := uint64(1000); k < 1100 && perr == nil; k++ {
			perr = f.ix.Put(recordOf(k, 1, false))
		}
		if !errors.Is(perr, ErrCorrupt) {
			t.Fatalf("Puts over a looping free list: %v, want ErrCorrupt", perr)
		}
	})
	t.Run("free-run-in-a-table", func(t *testing.T) {
		f := newHostile(t, 2000)
		if _, err := f.ix.Delete(digestOf(3)); err != nil {
			t.Fatal(err)
		}
		freed, c := f.firstFree(t)
		k := f.keyInBigSprig(t)
		f.setTable(k, freed, c)
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
	t.Run("in-flight", func(t *testing.T) {
		// A writer killed inside the allocator: the head of a free list
		// moved past its run, the free count not yet lowered, and no sprig
		// odd. With the update counted in flight it is interrupted; the
		// same damage with none in flight is damage (the control).
		f := newHostile(t, 500)
		for k := range uint64(10) {
			if _, err := f.ix.Delete(digestOf(k)); err != nil {
				t.Fatal(err)
			}
		}
		head, c := f.firstFree(t)
		ws, i, _ := f.ix.v.entries(head)
		nx := ws.Load(i + wNextFree)
		f.ix.v.alloc.Store(c, nx)
		if nh := Handle(nx); !nh.IsNull() {
			nw, ni, _ := f.ix.v.entries(nh)
			nw.Store(ni+wPrevFree, 0)
		}
		err := f.ix.Check()
		var ce *CheckError
		if !errors.As(err, &ce) || !containsAny(ce.Problems, "lost") || !containsAny(ce.Problems, "free count") {
			t.Fatalf("Check of a run lost with no update in flight: %v, want the lost lines and the free count as damage", err)
		}
		f.ix.v.meta.Store(mBusy, 1)
		err = f.ix.Check()
		var ie *InterruptedError
		if !errors.As(err, &ie) || errors.Is(err, ErrCorrupt) || ie.InFlight != 1 || ie.Partitions != 0 ||
			!containsAny(ie.Notes, "lost") || !containsAny(ie.Notes, "free count") {
			t.Fatalf("Check of a run lost by an update in flight: %v, want an *InterruptedError noting the lost lines and the free count", err)
		}
		// More in flight than the writer has locks is damage itself.
		f.ix.v.meta.Store(mBusy, 1<<40)
		if err := f.ix.Check(); !errors.As(err, &ce) || !containsAny(ce.Problems, "updates in flight") || !containsAny(ce.Problems, "lost") {
			t.Fatalf("Check with 2^40 updates in flight: %v, want that count and the lost run as damage", err)
		}
		f.ix.v.meta.Store(mBusy, 1)
		// In flight explains one update's count, not two.
		f.ix.v.meta.Store(mLive, f.ix.v.meta.Load(mLive)+2)
		if err := f.ix.Check(); !errors.As(err, &ce) || !containsAny(ce.Problems, "live entries") {
			t.Fatalf("Check with the live total off by 2, one update in flight: %v, want it as damage", err)
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
				f.ix.v.sprigs.Store(i, rng.Uint64()&^sprigVersionOne) // even versions, random tables and classes
			}
		}
		st0 := f.ix.v.stages[0].Load()
		for i := range st0.Len() {
			if rng.IntN(3) == 0 {
				v := rng.Uint64()
				switch rng.IntN(3) {
				case 0:
					v = v&^linkMask | rng.Uint64N(1200)
				case 1:
					v = v&^flagMask | flagLive<<flagShift
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
