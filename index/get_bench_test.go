package index

import (
	"context"
	"flag"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var getBenchRecords = flag.Int("index.records", 1<<20, "records in BenchmarkGetLarge's index")
var getBenchSprigs = flag.String("index.sprigs", "4,16,64", "Config.Sprigs values of BenchmarkGetLarge, comma-separated")

// BenchmarkGetLarge measures Get of random keys in an index of
// -index.records records on SysV segments (4 KiB pages), built by Load,
// for several Sprigs (-index.sprigs), against the floor: one dependent
// random 8-byte load over a heap region of as many 64-byte lines as the
// index has entry lines. The two are timed in alternating rounds of 2^20
// operations and the fastest round of each counts, so a drift in the
// machine's load hits both; it reports Get ns, floor ns and their ratio.
// It is the focused form of `shmbench index` for profiling
// (-cpuprofile): `go test ./index -run '^$' -bench GetLarge
// -index.records 10000000`.
func BenchmarkGetLarge(b *testing.B) {
	if testing.Short() || raceEnabled {
		b.Skip("builds a large index")
	}
	n := *getBenchRecords
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = recordOf(uint64(i), 1, false)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	probe := make([]Digest, 1<<20)
	for i := range probe {
		probe[i] = recs[rng.IntN(n)].Digest
	}
	for _, f := range strings.Split(*getBenchSprigs, ",") {
		sprigs, err := strconv.Atoi(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("sprigs=%d", sprigs), func(b *testing.B) {
			cfg := testConfig(b, bSysV)
			cfg.Sprigs, cfg.StageEntries = sprigs, 1<<20
			if n > (testBlocks-1)*cfg.StageEntries {
				b.Skipf("%d records need more than %d stages", n, testBlocks)
			}
			ix, _, err := Open(context.Background(), cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer ix.Close()
			if err := ix.Load(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
			lines := ix.v.meta.Load(mNext) * EntrySize / 64
			chase := newChase(lines, rng)
			get := func(ops int) {
				for i := range ops {
					if _, ok, err := ix.Get(probe[i&(len(probe)-1)]); !ok || err != nil {
						b.Fatal(ok, err)
					}
				}
			}
			var bestGet, bestFloor time.Duration
			b.ResetTimer()
			for r := range max(b.N, 3) {
				ops := 1 << 20
				t0 := time.Now()
				chase.run(ops)
				t1 := time.Now()
				get(ops)
				t2 := time.Now()
				if r == 0 || t1.Sub(t0) < bestFloor {
					bestFloor = t1.Sub(t0)
				}
				if r == 0 || t2.Sub(t1) < bestGet {
					bestGet = t2.Sub(t1)
				}
			}
			b.StopTimer()
			g, fl := float64(bestGet.Nanoseconds())/(1<<20), float64(bestFloor.Nanoseconds())/(1<<20)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(g, "get-ns")
			b.ReportMetric(fl, "floor-ns")
			b.ReportMetric(g/fl, "x-floor")
			// Lines in tables and free runs per record, and the sprig
			// table's bytes per record.
			b.ReportMetric(float64(ix.v.meta.Load(mNext))/float64(n), "lines/record")
			b.ReportMetric(float64(Partitions*sprigs*8)/float64(n), "sprigB/record")
		})
	}
}

// chase is the floor: a random cycle through a heap region of 64-byte
// lines, one dependent 8-byte load per step.
type chase struct {
	w []uint64
	x uint64
}

func newChase(lines uint64, rng *rand.Rand) *chase {
	perm := make([]uint32, lines)
	for i := range perm {
		perm[i] = uint32(i)
	}
	for i := len(perm) - 1; i > 0; i-- {
		j := rng.IntN(i) // Sattolo: one cycle
		perm[i], perm[j] = perm[j], perm[i]
	}
	w := make([]uint64, lines*8)
	for i := range perm {
		w[uint64(perm[i])*8] = uint64(perm[(i+1)%len(perm)]) * 8
	}
	return &chase{w: w}
}

func (c *chase) run(n int) {
	x := c.x
	for range n {
		x = atomic.LoadUint64(&c.w[x])
	}
	c.x = x
}

// BenchmarkSortedHashShape measures the structure the package doc names
// as the step past sprigs, without building it into the index: the
// -index.records digests (word 0 of random keys) in a table of 64-byte
// lines at load factor 0.85, each placed at its home line (the top bits of
// word 0 scaled to the table) or the first free line after it, in digest
// order (linear probing with an order-preserving hash), looked up with
// atomic loads as readers do; beside the floor over a heap region of the
// same size. It reports lines read per lookup.
func BenchmarkSortedHashShape(b *testing.B) {
	if testing.Short() || raceEnabled {
		b.Skip("builds a large table")
	}
	n := *getBenchRecords
	rng := rand.New(rand.NewPCG(3, 3))
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = rng.Uint64() | 1 // 0 marks a free line
	}
	slices.Sort(keys)
	lines := uint64(float64(n) / 0.85)
	home := func(k uint64) uint64 { hi, _ := bits.Mul64(k, lines); return hi }
	table := make([]uint64, (lines+1024)*8)
	next := uint64(0)
	for _, k := range keys {
		at := max(home(k), next)
		if at >= lines+1024 {
			b.Fatal("table overflow")
		}
		table[at*8] = k
		next = at + 1
	}
	probe := make([]uint64, 1<<20)
	for i := range probe {
		probe[i] = keys[rng.IntN(n)]
	}
	b.Run("floor", func(b *testing.B) { benchFloor(b, lines, rng) })
	// lookup: independent lookups, as the Get benchmarks do (the CPU may
	// overlap one lookup's miss with the next's); dependent: each lookup's
	// probe index depends on the previous lookup's result (through a
	// zero the compiler cannot see), as in the floor.
	for _, dependent := range []bool{false, true} {
		name := "lookup"
		if dependent {
			name = "lookup-dependent"
		}
		b.Run(name, func(b *testing.B) {
			sortedHashLookups(b, table, probe, home, dependent)
			b.ReportMetric(float64(len(table)*8)/float64(n), "B/record")
		})
	}
}

func sortedHashLookups(b *testing.B, table, probe []uint64, home func(uint64) uint64, dependent bool) {
	{
		read := 0
		zero := uint64(b.N) >> 62 // 0, unknown to the compiler
		if !dependent {
			zero = 0
		}
		dep := uint64(0)
		for i := range b.N {
			k := probe[(uint64(i)+dep)&uint64(len(probe)-1)]
			at := home(k)
			for {
				read++
				var e [8]uint64
				for j := range e {
					e[j] = atomic.LoadUint64(&table[at*8+uint64(j)])
				}
				if e[0] == k {
					dep = e[0] & zero
					break
				}
				if e[0] == 0 || e[0] > k {
					b.Fatalf("key %#x not found", k)
				}
				at++
			}
		}
		b.ReportMetric(float64(read)/float64(b.N), "lines/op")
	}
}

// benchFloor times the floor (see chase) over lines 64-byte lines.
func benchFloor(b *testing.B, lines uint64, rng *rand.Rand) {
	c := newChase(lines, rng)
	b.ResetTimer()
	c.run(b.N)
}

// BenchmarkPutFill fills an empty heap index with -index.records random
// keys by Put, the way `shmbench index` does, and reports what the
// tables' growth leaves: lines handed out per record (memory: × 64 B),
// of which in tables and in free runs, and the lines a lookup of a
// present key reads (from its home line to its own). `go test ./index
// -run '^$' -bench PutFill -benchtime 1x -index.records 2000000`.
func BenchmarkPutFill(b *testing.B) {
	if testing.Short() || raceEnabled {
		b.Skip("fills a large index")
	}
	n := *getBenchRecords
	for _, sprigs := range []int{4, 16} {
		b.Run(fmt.Sprintf("sprigs=%d", sprigs), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				cfg := testConfig(b, bHeap)
				cfg.Sprigs, cfg.StageEntries = sprigs, 1<<20
				ix, _, err := Open(context.Background(), cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				for i := range n {
					if err := ix.Put(recordOf(uint64(i), 1, false)); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				var probes, entries float64
				for sp := range uint64(Partitions * sprigs) {
					t, err := ix.table(sp)
					if err != nil {
						b.Fatal(err)
					}
					for j := range t.n {
						if t.live(j) {
							probes += float64(j-t.home(j)) + 1
							entries++
						}
					}
				}
				m := ix.v.meta
				b.ReportMetric(float64(m.Load(mNext))/float64(n), "lines/record")
				b.ReportMetric(float64(m.Load(mTableLines))/float64(n), "table-lines/record")
				b.ReportMetric(float64(m.Load(mFreeCount))/float64(n), "free-lines/record")
				b.ReportMetric(probes/entries, "lines/lookup")
				ix.Close()
				b.StartTimer()
			}
		})
	}
}
