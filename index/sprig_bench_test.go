package index

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
)

// The benchmark that chose the sprig structure. A lookup in a sprig is a
// chain of dependent loads, each a likely cache miss once the index is
// larger than the caches, so what decides is how many lines a lookup
// touches and whether updates stay cheap and local. Three shapes, each
// over one big arena of 64-byte entries (many sprigs of n entries, so
// that lookups miss the caches as in a real index), with atomic loads as
// the readers use:
//
//   - treap: the index's structure (links in the entries, priorities a
//     hash of the digest), built by the same insertion algorithm;
//   - balanced: a perfectly balanced binary tree over the same entries,
//     the shape a red-black tree (Aerospike's) approaches at best (depth
//     log2 n; a red-black tree's is up to 2·log2 n);
//   - btree64: a static B+-tree of cache-line nodes (7 separator keys of
//     the digest's first 8 bytes and implicit children, 8-way fan-out)
//     over the entries, a lower bound for any B-tree of 64-byte nodes
//     (real ones are not full and need child links, fewer keys per line).
//
// Run: go test ./index -run '^$' -bench BenchmarkSprigShapes -benchtime 2000000x
//
// Figures and the decision are in the package documentation.

const benchEntries = 1 << 22 // 4 Mi entries of 64 bytes: 256 MiB, far beyond the caches

// The tree links of the shapes measured here, in the words an entry held
// while sprigs were trees (entry words 6 and 7).
const (
	tLeft  = 6
	tRight = 7
)

type benchArena struct {
	w      []uint64 // entries, 8 words each
	keys   []uint64 // digest word 0 of entry i (unique, random)
	n      int      // entries per sprig
	sprigs int
}

func newBenchArena(n int) *benchArena {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	a := &benchArena{w: make([]uint64, benchEntries*entryWords), keys: make([]uint64, benchEntries), n: n, sprigs: benchEntries / n}
	for i := range a.keys {
		a.keys[i] = rng.Uint64()
		a.w[i*entryWords+wDigest0] = a.keys[i]
	}
	return a
}

// treap builds each sprig by inserting its entries in random order.
func (a *benchArena) treap() []uint64 {
	roots := make([]uint64, a.sprigs)
	for s := range a.sprigs {
		var root uint64 // entry index + 1
		for i := s * a.n; i < (s+1)*a.n; i++ {
			root = a.treapInsert(root, uint64(i+1), 0)
		}
		roots[s] = root
	}
	return roots
}

func (a *benchArena) prio(h uint64) uint64 { return mix64(a.keys[h-1]) }

func (a *benchArena) treapInsert(root, h uint64, depth int) uint64 {
	if root == 0 {
		return h
	}
	rb := (root - 1) * entryWords
	if a.keys[h-1] < a.keys[root-1] {
		c := a.treapInsert(a.w[rb+tLeft], h, depth+1)
		a.w[rb+tLeft] = c
		if a.prio(c) > a.prio(root) {
			cb := (c - 1) * entryWords
			a.w[rb+tLeft] = a.w[cb+tRight]
			a.w[cb+tRight] = root
			return c
		}
		return root
	}
	c := a.treapInsert(a.w[rb+tRight], h, depth+1)
	a.w[rb+tRight] = c
	if a.prio(c) > a.prio(root) {
		cb := (c - 1) * entryWords
		a.w[rb+tRight] = a.w[cb+tLeft]
		a.w[cb+tLeft] = root
		return c
	}
	return root
}

// avl builds each sprig as an AVL tree by inserting its entries in order
// of their position (random digests), heights in a side array.
func (a *benchArena) avl() []uint64 {
	ht := make([]int8, benchEntries+1)
	h := func(x uint64) int8 { return ht[x] }
	upd := func(x uint64) {
		b := (x - 1) * entryWords
		ht[x] = 1 + max(h(a.w[b+tLeft]), h(a.w[b+tRight]))
	}
	rot := func(x uint64, right bool) uint64 {
		b := (x - 1) * entryWords
		in, out := uint64(tLeft), uint64(tRight)
		if !right {
			in, out = out, in
		}
		c := a.w[b+in]
		cb := (c - 1) * entryWords
		a.w[b+in] = a.w[cb+out]
		a.w[cb+out] = x
		upd(x)
		upd(c)
		return c
	}
	bal := func(x uint64) uint64 {
		upd(x)
		b := (x - 1) * entryWords
		l, r := a.w[b+tLeft], a.w[b+tRight]
		switch d := h(l) - h(r); {
		case d > 1:
			lb := (l - 1) * entryWords
			if h(a.w[lb+tLeft]) < h(a.w[lb+tRight]) {
				a.w[b+tLeft] = rot(l, false)
			}
			return rot(x, true)
		case d < -1:
			rb := (r - 1) * entryWords
			if h(a.w[rb+tRight]) < h(a.w[rb+tLeft]) {
				a.w[b+tRight] = rot(r, true)
			}
			return rot(x, false)
		}
		return x
	}
	var ins func(root, x uint64) uint64
	ins = func(root, x uint64) uint64 {
		if root == 0 {
			ht[x] = 1
			return x
		}
		b := (root - 1) * entryWords
		if a.keys[x-1] < a.keys[root-1] {
			a.w[b+tLeft] = ins(a.w[b+tLeft], x)
		} else {
			a.w[b+tRight] = ins(a.w[b+tRight], x)
		}
		return bal(root)
	}
	roots := make([]uint64, a.sprigs)
	for s := range a.sprigs {
		var root uint64
		for i := s * a.n; i < (s+1)*a.n; i++ {
			a.w[i*entryWords+tLeft], a.w[i*entryWords+tRight] = 0, 0
			root = ins(root, uint64(i+1))
		}
		roots[s] = root
	}
	return roots
}

// balanced links each sprig's entries as a perfectly balanced tree.
func (a *benchArena) balanced() []uint64 {
	roots := make([]uint64, a.sprigs)
	for s := range a.sprigs {
		idx := make([]int, a.n)
		for i := range idx {
			idx[i] = s*a.n + i
		}
		slices.SortFunc(idx, func(x, y int) int {
			if a.keys[x] < a.keys[y] {
				return -1
			}
			return 1
		})
		var build func(lo, hi int) uint64
		build = func(lo, hi int) uint64 {
			if lo >= hi {
				return 0
			}
			mid := (lo + hi) / 2
			e := idx[mid]
			a.w[e*entryWords+tLeft] = build(lo, mid)
			a.w[e*entryWords+tRight] = build(mid+1, hi)
			return uint64(e + 1)
		}
		roots[s] = build(0, a.n)
	}
	return roots
}

// bplus is a static B+-tree per sprig: levels of 8-word nodes, each node
// 7 separators (+ one unused word); leaves are the sorted entry indexes.
type bplus struct {
	nodes  []uint64 // all sprigs' inner nodes
	leaves []uint32 // sorted entry indexes, n per sprig
	levels []int    // node counts per level, top first
	per    int      // inner nodes per sprig
}

func (a *benchArena) btree() *bplus {
	t := &bplus{leaves: make([]uint32, benchEntries)}
	// Level sizes for n leaves with fan-out 8.
	for m := (a.n + 7) / 8; ; m = (m + 7) / 8 {
		t.levels = append([]int{m}, t.levels...)
		if m == 1 {
			break
		}
	}
	for _, m := range t.levels {
		t.per += m
	}
	t.nodes = make([]uint64, a.sprigs*t.per*8)
	for s := range a.sprigs {
		idx := t.leaves[s*a.n : (s+1)*a.n]
		for i := range idx {
			idx[i] = uint32(s*a.n + i)
		}
		slices.SortFunc(idx, func(x, y uint32) int {
			if a.keys[x] < a.keys[y] {
				return -1
			}
			return 1
		})
		// Bottom level: node j separates leaf groups of 8.
		base := s * t.per
		off := t.per
		span := 1
		for l := len(t.levels) - 1; l >= 0; l-- {
			m := t.levels[l]
			off -= m
			for j := range m {
				node := (base + off + j) * 8
				for k := 1; k < 8; k++ {
					child := (j*8 + k) * span // first leaf under child k
					sep := ^uint64(0)
					if child < a.n {
						sep = a.keys[idx[child]]
					}
					t.nodes[node+k-1] = sep
				}
			}
			span *= 8
		}
	}
	return t
}

func (t *bplus) lookup(a *benchArena, s int, key uint64) bool {
	base := s * t.per
	off, j := 0, 0
	for _, m := range t.levels {
		node := (base + off + j) * 8
		k := 0
		for k < 7 && atomic.LoadUint64(&t.nodes[node+k]) <= key {
			k++
		}
		j = j*8 + k
		off += m
	}
	if j >= a.n {
		return false
	}
	e := t.leaves[s*a.n+j]
	return atomic.LoadUint64(&a.w[int(e)*entryWords+wDigest0]) == key
}

func (a *benchArena) treeLookup(root, key uint64) bool {
	h := root
	for h != 0 {
		b := (h - 1) * entryWords
		k := atomic.LoadUint64(&a.w[b+wDigest0])
		switch {
		case k == key:
			return true
		case key < k:
			h = atomic.LoadUint64(&a.w[b+tLeft])
		default:
			h = atomic.LoadUint64(&a.w[b+tRight])
		}
	}
	return false
}

// depth returns the average lookup depth (entries visited) of a tree.
func (a *benchArena) depth(roots []uint64) float64 {
	var sum, cnt float64
	for s := 0; s < min(a.sprigs, 256); s++ {
		var walk func(h uint64, d int)
		walk = func(h uint64, d int) {
			if h == 0 {
				return
			}
			sum += float64(d)
			cnt++
			b := (h - 1) * entryWords
			walk(a.w[b+tLeft], d+1)
			walk(a.w[b+tRight], d+1)
		}
		walk(roots[s], 1)
	}
	return sum / cnt
}

func BenchmarkSprigShapes(b *testing.B) {
	if testing.Short() || raceEnabled {
		b.Skip("builds 256 MiB arenas")
	}
	for _, n := range []int{16, 256, 4096, 65536} {
		a := newBenchArena(n)
		rng := rand.New(rand.NewPCG(7, 7))
		probe := make([]int, 1<<16)
		for i := range probe {
			probe[i] = rng.IntN(benchEntries)
		}
		run := func(name string, lookup func(s int, key uint64) bool, extra func(b *testing.B)) {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				runtime.GC() // the previous arenas' garbage must not be collected while timing
				b.ResetTimer()
				for i := range b.N {
					e := probe[i&(len(probe)-1)]
					if !lookup(e/n, a.keys[e]) {
						b.Fatal("key not found")
					}
				}
				extra(b)
			})
		}
		troots := a.treap()
		run("treap", func(s int, k uint64) bool { return a.treeLookup(troots[s], k) },
			func(b *testing.B) { b.ReportMetric(a.depth(troots), "depth") })
		aroots := a.avl()
		run("avl", func(s int, k uint64) bool { return a.treeLookup(aroots[s], k) },
			func(b *testing.B) { b.ReportMetric(a.depth(aroots), "depth") })
		broots := a.balanced()
		run("balanced", func(s int, k uint64) bool { return a.treeLookup(broots[s], k) },
			func(b *testing.B) { b.ReportMetric(a.depth(broots), "depth") })
		bt := a.btree()
		run("btree64", func(s int, k uint64) bool { return bt.lookup(a, s, k) },
			func(b *testing.B) {
				b.ReportMetric(float64(len(bt.levels)+1), "lines")
				b.ReportMetric(float64(len(bt.nodes)*8)/float64(benchEntries), "extra-B/entry")
			})
	}
}

// BenchmarkIndex measures the index itself: Get and Put of random keys in
// one process (heap segments; SysV behaves the same once attached).
func BenchmarkIndex(b *testing.B) {
	const keys = 1 << 20
	if testing.Short() || raceEnabled {
		b.Skip("fills a million entries")
	}
	cfg := testConfig(b, bHeap)
	cfg.Sprigs, cfg.StageEntries = 256, 1<<18
	ix, _, err := Open(context.Background(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	for k := range uint64(keys) {
		if err := ix.Put(recordOf(k, 1, false)); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 1))
	probe := make([]Digest, 1<<16)
	for i := range probe {
		probe[i] = digestOf(rng.Uint64N(keys))
	}
	b.Run("Get", func(b *testing.B) {
		for i := range b.N {
			if _, ok, err := ix.Get(probe[i&(len(probe)-1)]); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("Put-update", func(b *testing.B) {
		for i := range b.N {
			r := recordOf(uint64(i)%keys, uint16(i), false)
			if err := ix.Put(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPutInsert measures inserting new keys into a fresh index, the
// work of a cold rebuild (heap segments).
func BenchmarkPutInsert(b *testing.B) {
	if raceEnabled {
		b.Skip("race detector")
	}
	cfg := testConfig(b, bHeap)
	cfg.Sprigs, cfg.StageEntries = 256, 1<<20
	ix, _, err := Open(context.Background(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	recs := make([]Record, b.N)
	for i := range recs {
		recs[i] = recordOf(uint64(i), 1, false)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := ix.Put(recs[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad measures the bulk build of a cold rebuild (Builder.Add of
// every record, then Finish) against the per-record path (Put of each new
// key, as BenchmarkPutInsert), on the same 1M records in the same run, on
// heap segments and on SysV segments (what kvstore uses), reporting
// records/s. Each iteration fills a fresh index (opening it is not timed).
func BenchmarkLoad(b *testing.B) {
	if raceEnabled {
		b.Skip("race detector")
	}
	const n = 1 << 20
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = recordOf(uint64(i), 1, false)
	}
	for _, bk := range []backend{bHeap, bSysV} {
		cfg := testConfig(b, bk)
		cfg.Sprigs, cfg.StageEntries = DefaultSprigs, 1<<20
		open := func(b *testing.B) *Index {
			ix, _, err := Open(context.Background(), cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			return ix
		}
		fill := map[string]func(b *testing.B, ix *Index){
			"Load": func(b *testing.B, ix *Index) {
				bl, err := ix.NewBuilder(BuildOptions{SizeHint: n})
				if err != nil {
					b.Fatal(err)
				}
				for i := range recs {
					if err := bl.Add(0, recs[i]); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := bl.Finish(context.Background()); err != nil {
					b.Fatal(err)
				}
			},
			"PutInsert": func(b *testing.B, ix *Index) {
				for i := range recs {
					if err := ix.Put(recs[i]); err != nil {
						b.Fatal(err)
					}
				}
			},
		}
		for _, how := range []string{"Load", "PutInsert"} {
			b.Run(how+"/"+string(bk), func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					ix := open(b)
					b.StartTimer()
					fill[how](b, ix)
					b.StopTimer()
					if ix.Count() != n {
						b.Fatalf("%d records, want %d", ix.Count(), n)
					}
					ix.Close()
					b.StartTimer()
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}
