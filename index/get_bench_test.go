package index

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
)

var getBenchRecords = flag.Int("index.records", 1<<20, "records in BenchmarkGetLarge's index")

// BenchmarkGetLarge measures Get of random keys in an index of
// -index.records records on SysV segments (4 KiB pages), built by Load,
// for several Sprigs, against the floor measured in the same run: one
// dependent random 8-byte load over a heap region as large as the index's
// entries. It is the focused form of `shmbench index` for profiling
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
	b.Run("floor", func(b *testing.B) {
		lines := uint64(n) // one 64-byte line per record
		w := make([]uint64, lines*8)
		perm := make([]uint32, lines)
		for i := range perm {
			perm[i] = uint32(i)
		}
		for i := len(perm) - 1; i > 0; i-- {
			j := rng.IntN(i)
			perm[i], perm[j] = perm[j], perm[i]
		}
		for i := range perm {
			w[uint64(perm[i])*8] = uint64(perm[(i+1)%len(perm)]) * 8
		}
		b.ResetTimer()
		x := uint64(0)
		for range b.N {
			x = w[x]
		}
		b.StopTimer()
		if x == 1 {
			b.Fatal("unreachable")
		}
	})
	for _, sprigs := range []int{256, 1024, 2048, 4096} {
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
			b.ResetTimer()
			for i := range b.N {
				if _, ok, err := ix.Get(probe[i&(len(probe)-1)]); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
