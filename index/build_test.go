package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmkit/shmkit/bench/harness"
)

// buildOp is one Add (del false) or Delete given to a Builder.
type buildOp struct {
	seq uint64
	del bool
	r   Record
}

// randomOps returns ops over keys [0, keys): several versions of many
// keys with random order keys (ties included), tombstone records, deletes
// (some winning, some losing), and a run of keys in one partition (long
// sprigs, sorted by the comparison sort).
func randomOps(keys, ops int, inline bool, seed uint64) []buildOp {
	rng := rand.New(rand.NewPCG(seed, 3))
	out := make([]buildOp, 0, ops)
	for i := range ops {
		k := uint64(rng.IntN(keys))
		r := recordOf(k, uint16(rng.IntN(5)), inline)
		if k%7 == 0 {
			r.Digest = samePartition(k)
		}
		seq := uint64(rng.IntN(ops / 2))
		switch {
		case i%11 == 0:
			out = append(out, buildOp{seq: seq, del: true, r: Record{Digest: r.Digest}})
		case i%13 == 0:
			r.Tombstone = true
			out = append(out, buildOp{seq: seq, r: r})
		default:
			out = append(out, buildOp{seq: seq, r: r})
		}
	}
	return out
}

// applyByPut applies ops to ix with Put and Delete in the winner order
// (order key, then position), which Builder must match.
func applyByPut(t testing.TB, ix *Index, ops []buildOp) {
	t.Helper()
	idx := make([]int, len(ops))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case ops[a].seq < ops[b].seq:
			return -1
		case ops[a].seq > ops[b].seq:
			return 1
		}
		return 0
	})
	for _, i := range idx {
		o := ops[i]
		if o.del {
			if _, err := ix.Delete(o.r.Digest); err != nil {
				t.Fatal(err)
			}
		} else if err := ix.Put(o.r); err != nil {
			t.Fatal(err)
		}
	}
}

// buildFrom gives ops to a new Builder of ix and finishes it.
func buildFrom(t testing.TB, ix *Index, ops []buildOp, opts BuildOptions) BuildStats {
	t.Helper()
	b, err := ix.NewBuilder(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if o.del {
			err = b.Delete(o.seq, o.r.Digest)
		} else {
			err = b.Add(o.seq, o.r)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.Finish(context.Background())
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return st
}

// sameIndex checks that a and b hold the same records, counts and
// statistics (Get of every digest in ops, Scan of every partition,
// Count, Partition), and that both pass Check.
func sameIndex(t testing.TB, a, b *Index, ops []buildOp) {
	t.Helper()
	if a.Count() != b.Count() {
		t.Errorf("Count %d, by Put %d", a.Count(), b.Count())
	}
	for _, o := range ops {
		ra, fa, ea := a.Get(o.r.Digest)
		rb, fb, eb := b.Get(o.r.Digest)
		if ea != nil || eb != nil || fa != fb || ra != rb {
			t.Fatalf("Get %x: built %+v %v %v, by Put %+v %v %v", o.r.Digest[:6], ra, fa, ea, rb, fb, eb)
		}
	}
	for p := range Partitions {
		var sa, sb []Record
		if err := a.Scan(p, func(r Record) bool { sa = append(sa, r); return true }); err != nil {
			t.Fatal(err)
		}
		if err := b.Scan(p, func(r Record) bool { sb = append(sb, r); return true }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sa, sb) {
			t.Fatalf("Scan(%d): built %d records, by Put %d, or they differ", p, len(sa), len(sb))
		}
		if pa, pb := a.Partition(p), b.Partition(p); pa != pb {
			t.Fatalf("Partition(%d): built %+v, by Put %+v", p, pa, pb)
		}
	}
	if err := a.Check(); err != nil {
		t.Errorf("Check of the built index: %v", err)
	}
	if err := b.Check(); err != nil {
		t.Errorf("Check of the index by Put: %v", err)
	}
}

func TestBuildMatchesPut(t *testing.T) {
	for _, bk := range backends() {
		for _, inline := range []bool{false, true} {
			// Stages sized for 4–6 stages at the larger sizes (at most
			// testBlocks blocks under a SysV test base); the last size
			// fills more than one chunk of items.
			for _, size := range []struct{ keys, ops, sprigs, stage int }{{1, 5, 1, 64}, {300, 1000, 1, 128}, {5000, 9000, 4, 1024}, {20000, 24000, 256, 4096}, {30000, chunkItems + 7000, 256, 8192}} {
				name := fmt.Sprintf("%s/inline=%v/%d-ops-%d-sprigs", bk, inline, size.ops, size.sprigs)
				t.Run(name, func(t *testing.T) {
					if raceEnabled && size.ops > 10000 {
						t.Skip("the race detector: TestBuildReadersRaceHeap covers the concurrency; the sizes run without it")
					}
					ops := randomOps(size.keys, size.ops, inline, uint64(size.ops))
					cfg := testConfig(t, bk)
					cfg.DataInIndex, cfg.Sprigs, cfg.StageEntries = inline, size.sprigs, size.stage
					cfgPut := testConfig(t, bHeap)
					cfgPut.DataInIndex, cfgPut.Sprigs, cfgPut.StageEntries = inline, size.sprigs, size.stage
					var losers []Record
					var built *Index
					_, info := mustOpen(t, cfg, func(ctx context.Context, ix *Index) error {
						built = ix
						st := buildFrom(t, ix, ops, BuildOptions{Superseded: func(r Record) { losers = append(losers, r) }})
						if st.Given != uint64(len(ops)) || st.Entries != ix.Count() || st.Superseded != uint64(len(losers)) {
							t.Errorf("stats %+v: %d ops, %d entries, %d superseded calls", st, len(ops), ix.Count(), len(losers))
						}
						return nil
					})
					if info.Mode != Cold || info.Records != built.Count() {
						t.Errorf("Open: %+v", info)
					}
					if st := built.v.meta.Load(mStages); st > testBlocks || size.keys > 100 && st < 2 {
						t.Fatalf("the build used %d stages: want several, at most %d", st, testBlocks)
					}
					byPut, _ := mustOpen(t, cfgPut, nil)
					defer byPut.Close()
					applyByPut(t, byPut, ops)
					sameIndex(t, built, byPut, ops)
					// Every Add that is not in the index was reported once.
					adds := 0
					for _, o := range ops {
						if !o.del {
							adds++
						}
					}
					if adds != len(losers)+int(built.Count()) {
						t.Errorf("%d adds, %d entries + %d superseded", adds, built.Count(), len(losers))
					}
					for _, r := range losers {
						if cur, ok, _ := built.Get(r.Digest); ok && cur == r && !hasTwin(ops, r) {
							t.Errorf("superseded record %x is the index's", r.Digest[:6])
						}
					}
					// Warm restart after a clean close, then the per-record
					// path on the built index.
					id := StorageID{UUID: [16]byte{9}, Committed: 77}
					if err := built.CloseClean(id); err != nil {
						t.Fatal(err)
					}
					cfg.Storage = id
					again, info := mustOpen(t, cfg, nil)
					defer again.Close()
					if info.Mode != Warm {
						t.Fatalf("restart after CloseClean: %v (%s)", info.Mode, info.Reason)
					}
					sameIndex(t, again, byPut, ops)
					more := randomOps(size.keys*2, size.ops/2+1, inline, 99)
					for i := range more {
						more[i].seq = 0
					}
					applyByPut(t, again, more)
					applyByPut(t, byPut, more)
					sameIndex(t, again, byPut, append(ops, more...))
				})
			}
		}
	}
}

// hasTwin reports whether ops give r more than once (a loser equal to
// the winner).
func hasTwin(ops []buildOp, r Record) bool {
	n := 0
	for _, o := range ops {
		if !o.del && o.r == r {
			n++
		}
	}
	return n > 1
}

func TestLoadLastWins(t *testing.T) {
	cfg := testConfig(t, bHeap)
	ix, _ := mustOpen(t, cfg, nil)
	defer ix.Close()
	var recs []Record
	m := model{}
	for g := uint16(1); g <= 3; g++ {
		for k := range uint64(500) {
			if k%uint64(g) == 0 {
				recs = append(recs, recordOf(k, g, false))
				m[k] = g
			}
		}
	}
	if err := ix.Load(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	verify(t, ix, m, false)
	// Load again: the index is no longer empty.
	if err := ix.Load(context.Background(), recs); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("second Load: %v, want ErrNotEmpty", err)
	}
}

func TestBuildTombstonesAndDeletes(t *testing.T) {
	cfg := testConfig(t, bHeap)
	ix, _ := mustOpen(t, cfg, nil)
	defer ix.Close()
	b, err := ix.NewBuilder(BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tomb := func(k uint64) Record { r := recordOf(k, 2, false); r.Tombstone = true; return r }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Add(5, recordOf(1, 1, false))) // 1: a tombstone record wins (kept)
	must(b.Add(6, tomb(1)))
	must(b.Add(5, recordOf(2, 1, false))) // 2: deleted later: no entry
	must(b.Delete(6, digestOf(2)))
	must(b.Delete(5, digestOf(3))) // 3: re-put after the delete: present
	must(b.Add(6, recordOf(3, 1, false)))
	must(b.Add(9, recordOf(4, 1, false))) // 4: a delete given later but older: present
	must(b.Delete(8, digestOf(4)))
	must(b.Delete(1, digestOf(5)))        // 5: only a delete: nothing
	must(b.Add(3, recordOf(6, 3, false))) // 6: equal order keys: the last given wins
	must(b.Add(3, recordOf(6, 4, false)))
	st, err := b.Finish(context.Background())
	must(err)
	want := BuildStats{Given: 11, Entries: 4, Tombstones: 1, Superseded: 3, Deleted: 2}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	for k, w := range map[uint64]*Record{1: ptr(tomb(1)), 2: nil, 3: ptr(recordOf(3, 1, false)), 4: ptr(recordOf(4, 1, false)), 5: nil, 6: ptr(recordOf(6, 4, false))} {
		r, ok, err := ix.Get(digestOf(k))
		must(err)
		if ok != (w != nil) || ok && r != *w {
			t.Errorf("key %d: %+v %v, want %+v", k, r, ok, w)
		}
	}
	if p := ix.Partition(digestOf(1).Partition()); p.Tombstones != 1 {
		t.Errorf("partition of key 1: %+v, want a tombstone", p)
	}
	if err := ix.Check(); err != nil {
		t.Fatal(err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestBuildRefused(t *testing.T) {
	ctx := context.Background()
	t.Run("not-empty", func(t *testing.T) {
		ix, _ := mustOpen(t, testConfig(t, bHeap), nil)
		defer ix.Close()
		b, err := ix.NewBuilder(BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b.Add(0, recordOf(1, 1, false))
		if err := ix.Put(recordOf(2, 1, false)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Finish(ctx); !errors.Is(err, ErrNotEmpty) {
			t.Fatalf("Finish after a Put: %v, want ErrNotEmpty", err)
		}
		if _, err := ix.Delete(digestOf(2)); err != nil {
			t.Fatal(err)
		}
		// Empty again, but an entry was handed out (on the free list).
		if _, err := ix.NewBuilder(BuildOptions{}); !errors.Is(err, ErrNotEmpty) {
			t.Fatalf("NewBuilder after Put and Delete: %v, want ErrNotEmpty", err)
		}
		if err := ix.Check(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("records", func(t *testing.T) {
		for _, inline := range []bool{false, true} {
			cfg := testConfig(t, bHeap)
			cfg.DataInIndex = inline
			ix, _ := mustOpen(t, cfg, nil)
			bad := recordOf(1, 1, !inline)
			if bad.Value == 0 && bad.Offset == 0 {
				t.Fatal("test record has neither value nor offset")
			}
			err := ix.Load(ctx, []Record{recordOf(2, 1, inline), bad})
			if !errors.Is(err, ErrRecord) {
				t.Fatalf("inline %v: Load of a misfit record: %v, want ErrRecord", inline, err)
			}
			if ix.Count() != 0 || ix.v.meta.Load(mNext) != 0 {
				t.Fatalf("refused Load wrote %d entries", ix.v.meta.Load(mNext))
			}
			ix.Close()
		}
	})
	t.Run("finished", func(t *testing.T) {
		ix, _ := mustOpen(t, testConfig(t, bHeap), nil)
		defer ix.Close()
		b, _ := ix.NewBuilder(BuildOptions{})
		if _, err := b.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Finish(ctx); !errors.Is(err, ErrBuilderDone) {
			t.Fatalf("second Finish: %v", err)
		}
		if err := b.Add(0, recordOf(1, 1, false)); !errors.Is(err, ErrBuilderDone) {
			t.Fatalf("Add after Finish: %v", err)
		}
		if err := b.Delete(0, digestOf(1)); !errors.Is(err, ErrBuilderDone) {
			t.Fatalf("Delete after Finish: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ix, _ := mustOpen(t, testConfig(t, bHeap), nil)
		defer ix.Close()
		b, _ := ix.NewBuilder(BuildOptions{})
		b.Add(0, recordOf(1, 1, false))
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := b.Finish(cctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Finish with a cancelled context: %v", err)
		}
		// Nothing was written: the index is still empty and loadable.
		if err := ix.Load(ctx, []Record{recordOf(3, 1, false)}); err != nil {
			t.Fatal(err)
		}
		verify(t, ix, model{3: 1}, false)
	})
	t.Run("full", func(t *testing.T) {
		cfg := testConfig(t, bHeap)
		cfg.StageEntries = minStageEntries
		ix, _ := mustOpen(t, cfg, nil)
		defer ix.Close()
		recs := make([]Record, MaxStages*minStageEntries+1)
		for i := range recs {
			recs[i] = recordOf(uint64(i), 1, false)
		}
		if err := ix.Load(ctx, recs); !errors.Is(err, ErrFull) {
			t.Fatalf("Load beyond capacity: %v, want ErrFull", err)
		}
		if ix.Count() != 0 || ix.v.meta.Load(mStages) != 1 {
			t.Fatalf("refused Load left %d entries, %d stages", ix.Count(), ix.v.meta.Load(mStages))
		}
	})
	t.Run("closed", func(t *testing.T) {
		ix, _ := mustOpen(t, testConfig(t, bHeap), nil)
		b, _ := ix.NewBuilder(BuildOptions{})
		b.Add(0, recordOf(1, 1, false))
		ix.Close()
		if _, err := b.Finish(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Finish on a closed index: %v", err)
		}
		if _, err := ix.NewBuilder(BuildOptions{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("NewBuilder on a closed index: %v", err)
		}
	})
	t.Run("lease-lost", func(t *testing.T) {
		ix, _ := mustOpen(t, testConfig(t, bHeap), nil)
		defer ix.Close()
		b, _ := ix.NewBuilder(BuildOptions{})
		b.Add(0, recordOf(1, 1, false))
		ix.lost.Store(true)
		if _, err := b.Finish(ctx); !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("Finish after the lease was lost: %v", err)
		}
		if ix.v.meta.Load(mNext) != 0 {
			t.Fatal("a writer without its lease wrote entries")
		}
	})
}

// TestBuildOnWarmEmpty loads an empty index attached warm: the build is
// its first mutation and passes the writer gate, so a crash (Close
// without CloseClean) makes the next start cold.
func TestBuildOnWarmEmpty(t *testing.T) {
	cfg := testConfig(t, bHeap)
	ix, _ := mustOpen(t, cfg, nil)
	if err := ix.CloseClean(StorageID{}); err != nil {
		t.Fatal(err)
	}
	ix, info := mustOpen(t, cfg, nil)
	if info.Mode != Warm {
		t.Fatalf("reopen: %v", info.Mode)
	}
	if st, e := ix.gateState(); st != gateClean {
		t.Fatalf("gate %d (epoch %d) before the build", st, e)
	}
	if err := ix.Load(context.Background(), []Record{recordOf(1, 1, false)}); err != nil {
		t.Fatal(err)
	}
	if st, _ := ix.gateState(); st != gateDirty {
		t.Fatalf("gate %d after the build, want dirty", st)
	}
	ix.Close()
	ix, info = mustOpen(t, cfg, nil)
	defer ix.Close()
	if info.Mode != Cold || info.Reason.Kind != ReasonUnclean {
		t.Fatalf("start after a build and a crash: %v %s", info.Mode, info.Reason)
	}
}

// sprigView is what a reader saw of the sprigs during a build: sprigs
// complete (every expected record), sprigs empty, and violations (a sprig
// neither, or a record that is not the expected one).
type sprigView struct {
	Complete, Empty, Bad int
	First                string
}

// checkSprigs scans every partition of r (a Reader or Index) and sorts
// each sprig, as the keys [0, n) of recordOf(k, 1) are spread over them,
// into complete, empty or bad. Get of each key must find it if its sprig
// was complete (a build publishes, it never unpublishes) and, when it
// finds it, return exactly its record.
func checkSprigs(v *view, scan func(int, func(Record) bool) error, get func(Digest) (Record, bool, error), n uint64) sprigView {
	var out sprigView
	bad := func(format string, args ...any) {
		if out.Bad == 0 {
			out.First = fmt.Sprintf(format, args...)
		}
		out.Bad++
	}
	want := map[uint64]map[Digest]bool{}
	for k := range n {
		d := digestOf(k)
		sp := v.sprig(&d)
		if want[sp] == nil {
			want[sp] = map[Digest]bool{}
		}
		want[sp][d] = true
	}
	got := map[uint64]int{}
	for p := range Partitions {
		err := scan(p, func(r Record) bool {
			sp := v.sprig(&r.Digest)
			if !want[sp][r.Digest] {
				bad("partition %d: unexpected record %x", p, r.Digest[:6])
			} else if msg := consistent(r, false); msg != "" || r.Generation != 1 {
				bad("partition %d: %s (generation %d)", p, msg, r.Generation)
			}
			got[sp]++
			return true
		})
		if err != nil {
			bad("scan %d: %v", p, err)
		}
	}
	for sp, ds := range want {
		switch got[sp] {
		case 0:
			out.Empty++
		case len(ds):
			out.Complete++
		default:
			bad("sprig %d: %d of its %d records", sp, got[sp], len(ds))
		}
		for d := range ds {
			r, ok, err := get(d)
			// A sprig published after the scan may be found; one the
			// scan saw complete never disappears.
			if err != nil || !ok && got[sp] > 0 || ok && (r.Digest != d || consistent(r, false) != "") {
				bad("get %x: %v %v %+v, sprig has %d", d[:6], ok, err, r, got[sp])
			}
		}
	}
	return out
}

// loadReaderWorkload attaches a Reader and reports what it sees of the
// sprigs (checkSprigs) for the keys [0, a.Stable).
func loadReaderWorkload(ctx context.Context, w *harness.Worker) (any, error) {
	var a wArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	r, err := OpenReader(ctx, a.config(nil))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return checkSprigs(&r.v, r.Scan, r.Get, a.Stable), nil
}

// TestBuildSeenFromAnotherProcess pauses a build halfway (the pause hook
// FailBuildMid marks) and lets a reader in another process scan and get
// every key: each sprig is complete or empty, never partial, and both
// kinds are there; after Finish it sees every sprig complete.
func TestBuildSeenFromAnotherProcess(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector cannot see SysV memory: TestBuildReadersRaceHeap runs this on heap segments")
	}
	for _, bk := range []backend{bSysV, bDir} {
		t.Run(string(bk), func(t *testing.T) {
			a := wArgs{Sprigs: 4, StageEntries: 4096, Stable: 30000}
			if bk == bSysV {
				a.Base = uint32(sysvBase(t))
			} else {
				a.Dir = t.TempDir()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			look := func() sprigView {
				g, err := harness.Start(ctx, harness.Spec{Workload: "load-reader", N: 1, Args: a, Stderr: os.Stderr})
				if err != nil {
					t.Fatal(err)
				}
				defer g.Close()
				res, err := g.Wait()
				if err != nil {
					t.Fatal(err)
				}
				var v sprigView
				if err := res[0].Decode(&v); err != nil {
					t.Fatal(err)
				}
				return v
			}
			var mid sprigView
			ix, _ := mustOpen(t, a.config(nil), func(ctx context.Context, ix *Index) error {
				b, err := ix.NewBuilder(BuildOptions{SizeHint: int(a.Stable)})
				if err != nil {
					return err
				}
				for k := range a.Stable {
					if err := b.Add(k, recordOf(k, 1, false)); err != nil {
						return err
					}
				}
				b.pause = func() { mid = look() }
				_, err = b.Finish(ctx)
				return err
			})
			defer ix.Close()
			end := look()
			t.Logf("halfway: %+v; after: %+v", mid, end)
			if mid.Bad != 0 || mid.Complete == 0 || mid.Empty == 0 {
				t.Errorf("halfway through the build the reader saw %+v: want complete and empty sprigs and nothing else", mid)
			}
			if end.Bad != 0 || end.Empty != 0 || end.Complete == 0 {
				t.Errorf("after the build the reader saw %+v", end)
			}
		})
	}
}

// TestBuildReadersRaceHeap runs readers (goroutines, heap segments, so
// the race detector sees the shared words) while a build publishes, and
// the same checks at the pause.
func TestBuildReadersRaceHeap(t *testing.T) {
	const n = 20000
	cfg := testConfig(t, bHeap)
	cfg.Sprigs, cfg.StageEntries = 4, 4096
	var mid sprigView
	var stop atomic.Bool
	var wg sync.WaitGroup
	var views []sprigView
	var mu sync.Mutex
	ix, _ := mustOpen(t, cfg, func(ctx context.Context, ix *Index) error {
		r, err := OpenReader(ctx, cfg)
		if err != nil {
			return err
		}
		defer r.Close()
		for range 2 {
			wg.Go(func() {
				for !stop.Load() {
					v := checkSprigs(&r.v, r.Scan, r.Get, n)
					mu.Lock()
					views = append(views, v)
					mu.Unlock()
				}
			})
		}
		b, err := builderOf(ix, n)
		if err != nil {
			return err
		}
		b.pause = func() { mid = checkSprigs(&r.v, r.Scan, r.Get, n) }
		_, err = b.Finish(ctx)
		stop.Store(true)
		wg.Wait()
		return err
	})
	defer ix.Close()
	if mid.Bad != 0 || mid.Complete == 0 || mid.Empty == 0 {
		t.Errorf("halfway: %+v", mid)
	}
	for _, v := range views {
		if v.Bad != 0 {
			t.Fatalf("a reader during the build saw %+v", v)
		}
	}
	t.Logf("halfway %+v; %d reader passes during the build", mid, len(views))
	m := model{}
	for k := range uint64(n) {
		m[k] = 1
	}
	verify(t, ix, m, false)
}

// TestBuildKilled kills a writer process halfway through a bulk build
// (FailBuildMid): the next start is cold (unclean) and rebuilds. Without
// the kill the build's clean close makes the next start warm with every
// key.
func TestBuildKilled(t *testing.T) {
	if raceEnabled {
		t.Skip("SysV memory: the race detector cannot see it")
	}
	for _, kill := range []bool{true, false} {
		t.Run(fmt.Sprintf("kill=%v", kill), func(t *testing.T) {
			a := wArgs{Base: uint32(sysvBase(t)), Sprigs: 4, StageEntries: 4096, Stable: 20000, Mode: "build",
				Storage: StorageID{UUID: [16]byte{7}, Committed: 20000}}
			cfg := a.config(nil)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			spec := harness.Spec{Workload: "writer", N: 1, Args: a, Stderr: os.Stderr}
			if kill {
				spec.Failpoints = map[int]string{0: FailBuildMid + "=kill"}
			}
			g, err := harness.Start(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { g.Close() })
			m := model{}
			for k := range a.Stable {
				m[k] = 1
			}
			if kill {
				name, err := g.WaitFailpoint(ctx, 0)
				if err != nil || name != FailBuildMid {
					t.Fatalf("WaitFailpoint: %q %v", name, err)
				}
				if _, err := g.Wait(); err == nil {
					t.Fatal("the writer exited normally; it should have been killed")
				}
				expectStart(t, cfg, m, Cold, ReasonUnclean, "not clean-shutdown")
				return
			}
			res, err := g.Wait()
			if err != nil {
				t.Fatal(err)
			}
			var mode string
			if err := res[0].Decode(&mode); err != nil || mode != "cold" {
				t.Fatalf("writer's start: %q %v", mode, err)
			}
			cfg.Storage = a.Storage
			expectStart(t, cfg, m, Warm, ReasonNone, "")
		})
	}
}

// TestBuildKeyBits checks the builder's partition and sprig arithmetic on
// digest word 0 against Digest.Partition and sprigBits.
func TestBuildKeyBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 100000 {
		var d Digest
		for i := range d {
			d[i] = byte(rng.Uint32())
		}
		w0, _, _ := d.words()
		if got := keyPartition(w0); got != uint64(d.Partition()) {
			t.Fatalf("%x: keyPartition %d, Partition %d", d[:5], got, d.Partition())
		}
		if got := keySprigBits(w0); got != uint64(d.sprigBits()) {
			t.Fatalf("%x: keySprigBits %#x, sprigBits %#x", d[:5], got, d.sprigBits())
		}
	}
}

// TestBuildRootsFirstCaught is the negative control of the build's
// publication order: a build that publishes sprigs before writing their
// entries (Config.buildRootsFirst) is caught by the same check that finds
// nothing wrong with the real build (TestBuildReadersRaceHeap,
// TestBuildSeenFromAnotherProcess).
func TestBuildRootsFirstCaught(t *testing.T) {
	const n = 20000
	cfg := testConfig(t, bHeap)
	cfg.Sprigs, cfg.StageEntries = 4, 4096
	cfg.buildRootsFirst = true
	var mid sprigView
	ix, _ := mustOpen(t, cfg, func(ctx context.Context, ix *Index) error {
		r, err := OpenReader(ctx, cfg)
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := builderOf(ix, n)
		if err != nil {
			return err
		}
		b.pause = func() { mid = checkSprigs(&r.v, r.Scan, r.Get, n) }
		_, err = b.Finish(ctx)
		return err
	})
	defer ix.Close()
	t.Logf("halfway: %+v", mid)
	if mid.Bad == 0 {
		t.Fatalf("a sprig published before its entries went unnoticed: %+v", mid)
	}
	m := model{}
	for k := range uint64(n) {
		m[k] = 1
	}
	verify(t, ix, m, false)
}

// builderOf returns a Builder of ix holding the records of keys [0, n)
// (generation 1), not finished.
func builderOf(ix *Index, n int) (*Builder, error) {
	b, err := ix.NewBuilder(BuildOptions{})
	if err != nil {
		return nil, err
	}
	for k := range uint64(n) {
		if err := b.Add(0, recordOf(k, 1, false)); err != nil {
			return nil, err
		}
	}
	return b, nil
}
