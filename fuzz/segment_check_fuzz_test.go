package fuzz

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/partmap"
)

// checkedCluster publishes a cluster view (3 nodes, one namespace, every
// partition) on a heap segment and returns it with its location.
func checkedCluster(tb testing.TB) (*partmap.Map, arena.Location) {
	tb.Helper()
	loc := arena.NewHeapStore().At("check")
	quiet := slog.New(slog.DiscardHandler)
	m, err := partmap.Open(context.Background(), loc, partmap.Config{MaxNodes: 4, MaxNamespaces: 2,
		StallTimeout: time.Millisecond, Timeout: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	publishCluster(tb, m, quiet)
	return m, loc
}

// segmentBytes copies n bytes of seg from off (word loads).
func segmentBytes(seg *arena.Segment, off arena.Offset, n int) []byte {
	out := make([]byte, 0, n)
	for o := off &^ 7; len(out) < n && seg.CheckWord(o) == nil; o += 8 {
		w := seg.Load64(o)
		for i := range 8 {
			out = append(out, byte(w>>(8*i)))
		}
	}
	return out[:min(n, len(out))]
}

// checkTyped fails unless err is nil or a typed check result: an
// *arena.CheckError, or a refusal wrapping partmap.ErrCorrupt.
func checkTyped(t *testing.T, what string, err error) {
	t.Helper()
	var ce *arena.CheckError
	if err != nil && !errors.As(err, &ce) && !errors.Is(err, partmap.ErrCorrupt) && !errors.Is(err, arena.ErrPoolState) {
		t.Fatalf("%s: untyped error %T: %v", what, err, err)
	}
	if ce != nil && ce.Problems == nil && ce.Dropped == 0 {
		t.Fatalf("%s: a CheckError without problems", what)
	}
}

// FuzzCheckHostile writes fuzzed bytes at a fuzzed place of a real cluster
// view (which even) or a real pool (which odd), then runs the structural
// checks: partmap's Check and CheckSegment (which run lease.CheckRecord,
// seqlock.CheckRegion and seqlock.ReadRegion on every table), or the
// pool's Check and arena.CheckPool. Nothing may panic or hang, every
// result is typed, and the undamaged segment passes. The seeds are pieces
// of the real segments moved elsewhere (a record copied into another
// slot, a partition row into the meta section, the pool's control block
// over its elements) and classic hostile words.
func FuzzCheckHostile(f *testing.F) {
	m, _ := checkedCluster(f)
	seg := m.Segment()
	for _, s := range []string{"lease", "meta", "node_recs", "ns_recs", "partitions"} {
		off, _, err := seg.Section(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(0), uint32(off)+1024, segmentBytes(seg, off, 128))
		f.Add(uint8(2), uint32(off)+64, segmentBytes(seg, off+320, 320))
	}
	m.Close()
	pool, err := arena.OpenPool(context.Background(), arena.NewHeapStore().At("seed"), arena.PoolConfig{ElemSize: 16, StageElems: 2})
	if err != nil {
		f.Fatal(err)
	}
	for range 3 {
		if _, err := pool.Alloc(context.Background()); err != nil {
			f.Fatal(err)
		}
	}
	ps, _, _ := pool.Payload(mkHandle(0, 0))
	ctl, _, _ := ps.Section("pool")
	f.Add(uint8(1), uint32(ctl)+8, segmentBytes(ps, ctl, 64))
	f.Add(uint8(3), uint32(ctl), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(1), uint32(ctl)+256, []byte{2, 0, 0, 1, 0, 0, 0, 0x40}) // a free header naming stage 1 element 1
	f.Add(uint8(0), uint32(2000), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	pool.Close()

	f.Fuzz(func(t *testing.T, which uint8, at uint32, data []byte) {
		if which%2 == 0 {
			m, _ := checkedCluster(t)
			defer m.Close()
			if err := m.Check(); err != nil {
				t.Fatalf("undamaged cluster view: %v", err)
			}
			seg := m.Segment()
			start := uint64(at) % seg.Len()
			if err := damage(seg, arena.Offset(start), data[:min(uint64(len(data)), seg.Len()-start)]); err != nil {
				t.Fatal(err)
			}
			checkTyped(t, "Map.Check", m.Check())
			checkTyped(t, "CheckSegment", partmap.CheckSegment(seg))
			return
		}
		fx := newPoolFixture(t)
		p := fx.p
		if err := p.Check(); err != nil {
			t.Fatalf("undamaged pool: %v", err)
		}
		// Stage 0 lives in the main segment; damage it (control block and
		// elements) or stage 1 or 2.
		stage := int(which/2) % 3
		seg, _, err := p.Payload(mkHandle(stage, 0))
		if err != nil {
			t.Fatal(err)
		}
		start := uint64(at) % seg.Len()
		if start < 1024 {
			start = 1024 + start%8 // the header was validated at attach; damage what follows it
		}
		if start >= seg.Len() {
			return
		}
		if err := damage(seg, arena.Offset(start), data[:min(uint64(len(data)), seg.Len()-start)]); err != nil {
			t.Fatal(err)
		}
		checkTyped(t, "Pool.Check", p.Check())
	})
}
