package index

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestHandleArithmetic(t *testing.T) {
	top := MakeHandle(MaxStages-1, MaxElems-1)
	if top != MaxHandle || uint64(top) != 1<<36 {
		t.Fatalf("top handle = %d, want MaxHandle = 2^36 = %d", uint64(top), uint64(1)<<36)
	}
	if MaxCapacity != 1<<36 {
		t.Fatalf("MaxCapacity = %d, want 2^36", MaxCapacity)
	}
	if uint64(top)&^linkMask != 0 {
		t.Fatalf("top handle %#x does not fit a %d-bit link", uint64(top), linkBits)
	}
	if top.Stage() != 255 || top.Elem() != MaxElems-1 {
		t.Fatalf("top handle splits into %d/%d", top.Stage(), top.Elem())
	}
	first := MakeHandle(0, 0)
	if first.IsNull() || first.Stage() != 0 || first.Elem() != 0 {
		t.Fatalf("first handle %d: null %v, %d/%d", uint64(first), first.IsNull(), first.Stage(), first.Elem())
	}
	for _, se := range []uint64{64, 1 << 24, MaxElems} {
		stages := uint64(MaxStages)
		for _, l := range []uint64{0, 1, se - 1, se, se*stages - 2, se*stages - 1} {
			h := handleAt(l, se)
			if h.linear(se) != l {
				t.Fatalf("stage size %d: handleAt(%d).linear = %d", se, l, h.linear(se))
			}
			if h.Stage() != l/se || h.Elem() != l%se {
				t.Fatalf("stage size %d: handleAt(%d) = %s", se, l, h)
			}
		}
	}
	if h := handleAt(MaxCapacity-1, MaxElems); h != MaxHandle {
		t.Fatalf("last linear handle %s, want MaxHandle", h)
	}
	for _, bad := range [][2]uint64{{MaxStages, 0}, {0, MaxElems}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MakeHandle(%d, %d) did not panic", bad[0], bad[1])
				}
			}()
			MakeHandle(bad[0], bad[1])
		}()
	}
}

func TestDigestSprigOrder(t *testing.T) {
	// Within a partition, a higher sprig holds only higher digests.
	cfg := Config{Sprigs: 16, StageEntries: 64}
	v := view{cfg: cfg, shift: cfg.sprigShift()}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		var a, b Digest
		for i := range a {
			a[i], b[i] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		b[0], b[1] = a[0], a[1]&0x0f|b[1]&0xf0 // same partition
		if a.Partition() != b.Partition() {
			t.Fatal("test digests in different partitions")
		}
		sa, sb := v.sprig(&a), v.sprig(&b)
		if sa < sb && string(a[:]) >= string(b[:]) || sa > sb && string(a[:]) <= string(b[:]) {
			t.Fatalf("sprig %d for %x but %d for %x", sa, a[:5], sb, b[:5])
		}
	}
}

func TestPutGetDelete(t *testing.T) {
	for _, b := range backends() {
		for _, inline := range []bool{false, true} {
			name := string(b)
			if inline {
				name += "/data-in-index"
			}
			t.Run(name, func(t *testing.T) {
				cfg := testConfig(t, b)
				cfg.DataInIndex = inline
				ix, info := mustOpen(t, cfg, nil)
				defer ix.Close()
				if info.Mode != Cold || info.Reason.Kind != ReasonSegmentsMissing {
					t.Fatalf("first open: %v %v, want cold, segments missing", info.Mode, info.Reason)
				}
				m := model{}
				rng := rand.New(rand.NewPCG(3, 4))
				n := uint64(1500) // six stages of 256
				for k := range n {
					if err := ix.Put(recordOf(k, 1, inline)); err != nil {
						t.Fatal(err)
					}
					m[k] = 1
				}
				verify(t, ix, m, inline)
				// Overwrite, delete, reinsert (reusing freed entries).
				for range 3000 {
					k := rng.Uint64N(2 * n)
					switch rng.IntN(3) {
					case 0, 1:
						g := m[k] + 1
						if err := ix.Put(recordOf(k, g, inline)); err != nil {
							t.Fatal(err)
						}
						m[k] = g
					case 2:
						ok, err := ix.Delete(digestOf(k))
						if err != nil {
							t.Fatal(err)
						}
						if _, want := m[k]; ok != want {
							t.Fatalf("Delete key %d = %v, want %v", k, ok, want)
						}
						delete(m, k)
					}
				}
				verify(t, ix, m, inline)
				if _, ok, err := ix.Get(digestOf(10 * n)); ok || err != nil {
					t.Fatalf("Get of an absent key: %v %v", ok, err)
				}
				if next, tl, stages := ix.v.meta.Load(mNext), ix.v.meta.Load(mTableLines), ix.v.meta.Load(mStages); next != tl+ix.v.meta.Load(mFreeCount) || tl < uint64(len(m)) || stages < 6 {
					t.Fatalf("allocator: next %d, %d table lines, stages %d, %d live", next, tl, stages, len(m))
				}
				var sum PartitionStats
				for p := range Partitions {
					s := ix.Partition(p)
					sum.Count += s.Count
				}
				if sum.Count != uint64(len(m)) {
					t.Fatalf("partition counts sum to %d, want %d", sum.Count, len(m))
				}
			})
		}
	}
}

func TestRecordRefusedByConfig(t *testing.T) {
	cfg := testConfig(t, bHeap)
	cfg.DataInIndex = true
	ix, _ := mustOpen(t, cfg, nil)
	defer ix.Close()
	r := recordOf(1, 1, false)
	if err := ix.Put(r); !errors.Is(err, ErrRecord) {
		t.Fatalf("Put of a storage location into a data-in-index index: %v, want ErrRecord", err)
	}
	// The last update has 42 bits: the largest fits, one more is refused.
	r = recordOf(2, 1, true)
	r.LastUpdate = MaxLastUpdate
	if err := ix.Put(r); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := ix.Get(r.Digest); err != nil || !ok || got != r {
		t.Fatalf("Get: %+v %v %v, want %+v", got, ok, err, r)
	}
	r.LastUpdate++
	if err := ix.Put(r); !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), "last update") {
		t.Fatalf("Put of a last update past 42 bits: %v, want ErrRecord", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Store: Dir(t.TempDir()), Sprigs: 3},
		{Store: Dir(t.TempDir()), StageEntries: 100},
		{Store: Dir(t.TempDir()), Instance: 16},
		{Store: SysVAt(0x7e000001)},
	} {
		if _, _, err := Open(t.Context(), cfg, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("Open(%+v): %v, want ErrConfig", cfg, err)
		}
	}
}

// samePartition is key k's digest moved into partition 0x312.
func samePartition(k uint64) Digest {
	d := digestOf(k)
	d[0], d[1] = 0x12, d[1]&0xf0|0x03
	return d
}

// TestLargeSprig drives one sprig through thousands of inserts and deletes
// (shifts, grows and shrinks of its table) and checks load, order and
// contents.
func TestLargeSprig(t *testing.T) {
	cfg := testConfig(t, bHeap)
	cfg.StageEntries = 8192 // a sprig's table lies in one stage
	ix, _ := mustOpen(t, cfg, nil)
	defer ix.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	live := map[Digest]bool{}
	n := 6000
	if raceEnabled {
		n = 1500
	}
	for i := range n {
		k := rng.Uint64N(uint64(n) / 2)
		d := samePartition(k)
		if rng.IntN(3) == 0 {
			ok, err := ix.Delete(d)
			if err != nil || ok != live[d] {
				t.Fatalf("op %d: Delete = %v, %v; want %v", i, ok, err, live[d])
			}
			delete(live, d)
		} else {
			if err := ix.Put(Record{Digest: d, Generation: uint16(i)}); err != nil {
				t.Fatal(err)
			}
			live[d] = true
		}
		if i%500 == 0 {
			if err := ix.Check(); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
		}
	}
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
	var prev []byte
	count := 0
	if err := ix.Scan(0x312, func(r Record) bool {
		if !live[r.Digest] || (prev != nil && string(prev) >= string(r.Digest[:])) {
			t.Fatalf("scan: %x unexpected or out of order", r.Digest[:6])
		}
		prev = append(prev[:0], r.Digest[:]...)
		count++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if count != len(live) {
		t.Fatalf("scan found %d, want %d", count, len(live))
	}
	d := samePartition(0)
	tb, err := ix.table(ix.v.sprig(&d))
	if err != nil {
		t.Fatal(err)
	}
	if tb.count != uint64(len(live)) || tb.count > maxEntries(tb.n) || tb.count*100 < tb.n*shrinkLoad {
		t.Fatalf("sprig of %d entries: table of %d lines says %d", len(live), tb.n, tb.count)
	}
	t.Logf("one sprig of %d entries, table of %d lines (load %.2f)", len(live), tb.n, float64(tb.count)/float64(tb.n))
}

// TestCloseDuringReads: Close waits for reads in progress; later reads get
// ErrClosed, never unmapped memory (SysV and file segments really unmap).
func TestCloseDuringReads(t *testing.T) {
	for _, b := range backends() {
		t.Run(string(b), func(t *testing.T) {
			cfg := testConfig(t, b)
			ix, _ := mustOpen(t, cfg, nil)
			for k := range uint64(600) {
				if err := ix.Put(recordOf(k, 1, false)); err != nil {
					t.Fatal(err)
				}
			}
			r, err := OpenReader(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 4)
			for g := range 4 {
				go func() {
					for i := uint64(0); ; i++ {
						var err error
						if g%2 == 0 {
							_, _, err = ix.Get(digestOf(i % 600))
						} else {
							err = r.Scan(int(i%Partitions), func(Record) bool { return true })
						}
						if err != nil {
							done <- err
							return
						}
					}
				}()
			}
			time.Sleep(20 * time.Millisecond)
			ix.Close()
			r.Close()
			for range 4 {
				if err := <-done; !errors.Is(err, ErrClosed) {
					t.Fatalf("read after Close: %v, want ErrClosed", err)
				}
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	cfg := testConfig(t, bHeap)
	ix, _ := mustOpen(t, cfg, nil)
	defer ix.Close()
	d := digestOf(1)
	if err := ix.Put(Record{Digest: d, FileID: 1, Offset: 100, Size: 10}); err != nil {
		t.Fatal(err)
	}
	// A move from file 1 offset 100 to file 2 offset 0, only if still there.
	move := func(cur Record, found bool) (Record, Action) {
		if !found || cur.FileID != 1 || cur.Offset != 100 {
			return cur, Keep
		}
		cur.FileID, cur.Offset = 2, 0
		return cur, Write
	}
	if found, err := ix.Update(d, move); !found || err != nil {
		t.Fatalf("Update: %v %v", found, err)
	}
	r, _, _ := ix.Get(d)
	if r.FileID != 2 || r.Offset != 0 || r.Size != 10 {
		t.Fatalf("after the move: %+v", r)
	}
	// A second move finds the record elsewhere and keeps it.
	if _, err := ix.Update(d, move); err != nil {
		t.Fatal(err)
	}
	if r2, _, _ := ix.Get(d); r2 != r {
		t.Fatalf("Keep changed the record: %+v", r2)
	}
	if _, err := ix.Update(d, func(cur Record, _ bool) (Record, Action) {
		cur.Digest = digestOf(2)
		return cur, Write
	}); !errors.Is(err, ErrRecord) {
		t.Fatalf("Update writing another digest: %v, want ErrRecord", err)
	}
	if found, err := ix.Update(d, func(Record, bool) (Record, Action) { return Record{}, Remove }); !found || err != nil {
		t.Fatalf("Update Remove: %v %v", found, err)
	}
	if found, err := ix.Update(d, func(_ Record, found bool) (Record, Action) {
		if found {
			t.Fatal("removed record still found")
		}
		return Record{Digest: d, Size: 7, Tombstone: true}, Write
	}); found || err != nil {
		t.Fatalf("Update insert: %v %v", found, err)
	}
	if r, ok, _ := ix.Get(d); !ok || !r.Tombstone || r.Size != 7 {
		t.Fatalf("tombstone: %+v %v", r, ok)
	}
	if s := ix.Partition(d.Partition()); s.Count != 1 || s.Tombstones != 1 || s.Bytes != 7 {
		t.Fatalf("partition stats %+v", s)
	}
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestVersionWrapSeen: a sprig word's 19-bit version wraps after 2^18
// changes, so a reader whose read spans exactly 2^18 changes (2^19 bumps)
// of its sprig loads the same word before and after (the word comparison
// alone would accept what it read: the negative control, checked below);
// the wrap count in the meta makes it see the change.
func TestVersionWrapSeen(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("2^19 version bumps")
	}
	ix, _ := mustOpen(t, testConfig(t, bHeap), nil)
	defer ix.Close()
	d := digestOf(1)
	if err := ix.Put(recordOf(1, 1, false)); err != nil {
		t.Fatal(err)
	}
	sp := ix.v.sprig(&d)
	word, wraps := ix.v.stable(sp)
	if !ix.v.unchanged(sp, word, wraps) {
		t.Fatal("unchanged sprig reported changed")
	}
	ix.bump(sp)
	if ix.v.unchanged(sp, word, wraps) {
		t.Fatal("one bump not seen")
	}
	for range 1<<(64-sprigRootBits) - 1 {
		ix.bump(sp)
	}
	if got := ix.v.sprigs.Load(sp); got != word {
		t.Fatalf("after 2^19 bumps the sprig word is %#x, want %#x again (the version wraps)", got, word)
	}
	if ix.v.unchanged(sp, word, wraps) {
		t.Fatal("a walk spanning a version wrap was accepted")
	}
	if got := ix.v.meta.Load(mWraps); got != wraps+1 {
		t.Fatalf("wrap count %d, want %d", got, wraps+1)
	}
	if r, ok, err := ix.Get(d); err != nil || !ok || r != recordOf(1, 1, false) {
		t.Fatalf("Get after the wrap: %+v %v %v", r, ok, err)
	}
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestSizeClasses: classes strictly increase from one line to 2^28 lines
// (a stage at its largest), classFor finds the smallest class that holds
// n lines and sizeClass the largest a run of n lines holds.
func TestSizeClasses(t *testing.T) {
	prev := uint64(0)
	for c := range uint64(numClasses) {
		n := classLines(c)
		if n <= prev || n > MaxElems {
			t.Fatalf("class %d: %d lines after %d", c, n, prev)
		}
		if classFor(n) != c || classFor(prev+1) != c || sizeClass(n) != c || sizeClass(n+1) != c && n+1 < classLines(min(c+1, numClasses-1)) {
			t.Fatalf("class %d (%d lines): classFor %d / %d, sizeClass %d", c, n, classFor(n), classFor(prev+1), sizeClass(n))
		}
		prev = n
	}
	if prev != MaxElems || classFor(MaxElems+1) != numClasses {
		t.Fatalf("largest class %d lines, classFor(2^28+1) = %d", prev, classFor(MaxElems+1))
	}
}

// TestLastEntryDeleteSeenWhole: a reader scanning and getting the only
// key of a sprig while the writer deletes and re-inserts it never sees
// damage: deleting a table's last entry empties the sprig in one change
// of its word (a published table without entries is damage to Scan and
// Check). Before that, the emptied table was published, stable, between
// the delete and the freeing of its run, and this test failed within
// milliseconds.
func TestLastEntryDeleteSeenWhole(t *testing.T) {
	ix, _ := mustOpen(t, testConfig(t, bHeap), nil)
	defer ix.Close()
	d := digestOf(7)
	want := recordOf(7, 1, false)
	done := make(chan struct{})
	var scans, seen int
	var rerr error
	go func() {
		defer close(done)
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end) && rerr == nil; scans++ {
			rerr = ix.Scan(d.Partition(), func(r Record) bool {
				if r != want {
					rerr = fmt.Errorf("scan found %+v", r)
				}
				seen++
				return true
			})
			if r, ok, err := ix.Get(d); err != nil || ok && r != want {
				rerr = fmt.Errorf("Get: %+v %v %v", r, ok, err)
			}
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-done:
			if rerr != nil {
				t.Fatalf("after %d scans: %v", scans, rerr)
			}
			t.Logf("%d scans (%d saw the key), %d deletes", scans, seen, i)
			if err := ix.Check(); err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		if err := ix.Put(want); err != nil {
			t.Fatal(err)
		}
		if _, err := ix.Delete(d); err != nil {
			t.Fatal(err)
		}
	}
}
