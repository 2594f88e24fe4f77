package index

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
)

// quiet is a logger for tests that do not look at the log.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testBlocks is how many blocks (main + stages) a test may create under a
// SysV test base: the cleanup removes them all.
const testBlocks = 16

// sysvBase returns an unused base key of arena.ClassTest whose low 8 bits
// are zero, and removes blocks 0–15 under it when the test ends, failing
// the test if one is left behind.
func sysvBase(t testing.TB) arena.Key {
	t.Helper()
	blocks := make([]arena.Key, testBlocks)
	for b := range blocks {
		blocks[b] = arena.Key(b)
	}
	return arenatest.SysVKeySet(t, 0xff0, blocks...)
}

// backend names a store for table tests.
type backend string

const (
	bHeap backend = "heap"
	bSysV backend = "sysv"
	bDir  backend = "dir"
)

func backends() []backend {
	if raceEnabled {
		return []backend{bHeap}
	}
	return []backend{bHeap, bSysV, bDir}
}

// testConfig returns a small configuration on backend b: 1 sprig per
// partition, 256-entry stages.
func testConfig(t testing.TB, b backend) Config {
	t.Helper()
	cfg := Config{Sprigs: 1, StageEntries: 256, Logger: quiet(), Instance: 3, Namespace: 5}
	switch b {
	case bHeap:
		hs := arena.NewHeapStore()
		cfg.Store = Heap(hs, "ix")
		t.Cleanup(func() {
			if n := hs.Len(); n != 0 {
				// Closed indexes leave their segments; remove them.
				for blk := range testBlocks {
					arena.Remove(hs.At(fmt.Sprintf("ix.b%03d", blk)), arena.RemoveOptions{Force: true})
				}
			}
		})
	case bSysV:
		cfg.Store = SysVAt(sysvBase(t))
	case bDir:
		cfg.Store = Dir(t.TempDir())
	}
	return cfg
}

// digestOf is the digest of key k in tests.
func digestOf(k uint64) Digest {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], k)
	s := sha256.Sum256(b[:])
	var d Digest
	copy(d[:], s[:])
	return d
}

// recordOf is key k's record at generation g: every field derived from
// the digest and g, so a reader can tell a torn or foreign record.
func recordOf(k uint64, g uint16, inline bool) Record {
	d := digestOf(k)
	h := binary.LittleEndian.Uint64(d[8:16])
	r := Record{Digest: d, Generation: g, VoidTime: uint32(h>>32) ^ uint32(g), LastUpdate: (h ^ uint64(g)<<7) & MaxLastUpdate,
		Size: uint32(h) ^ uint32(g)*977}
	if inline {
		r.Value = int64(h ^ uint64(g)*0x9e3779b97f4a7c15)
	} else {
		r.FileID = uint16(h>>16) ^ g
		r.Offset = h ^ uint64(g)*0x9e3779b97f4a7c15
	}
	r.Size &= 0xffff // keeps partition byte counts small
	return r
}

// consistent reports why r is not a record recordOf could have made for
// its digest at its generation ("" if it is).
func consistent(r Record, inline bool) string {
	d := r.Digest
	h := binary.LittleEndian.Uint64(d[8:16])
	g := r.Generation
	want := Record{Digest: d, Generation: g, VoidTime: uint32(h>>32) ^ uint32(g), LastUpdate: (h ^ uint64(g)<<7) & MaxLastUpdate,
		Size: (uint32(h) ^ uint32(g)*977) & 0xffff}
	if inline {
		want.Value = int64(h ^ uint64(g)*0x9e3779b97f4a7c15)
	} else {
		want.FileID = uint16(h>>16) ^ g
		want.Offset = h ^ uint64(g)*0x9e3779b97f4a7c15
	}
	if r != want {
		return fmt.Sprintf("torn record %+v, want %+v", r, want)
	}
	return ""
}

// model is what a test expects the index to hold: key → generation.
type model map[uint64]uint16

// rebuildFrom returns a rebuild function that puts every record of m.
func rebuildFrom(m model, inline bool) RebuildFunc {
	return func(ctx context.Context, ix *Index) error {
		for k, g := range m {
			if err := ix.Put(recordOf(k, g, inline)); err != nil {
				return err
			}
		}
		return nil
	}
}

// verify checks that ix holds exactly m, by Get and by Scan.
func verify(t testing.TB, ix *Index, m model, inline bool) {
	t.Helper()
	if got := ix.Count(); got != uint64(len(m)) {
		t.Errorf("Count = %d, want %d", got, len(m))
	}
	for k, g := range m {
		r, ok, err := ix.Get(digestOf(k))
		if err != nil || !ok {
			t.Fatalf("Get key %d: found %v, err %v", k, ok, err)
		}
		if r != recordOf(k, g, inline) {
			t.Fatalf("Get key %d = %+v, want %+v", k, r, recordOf(k, g, inline))
		}
	}
	byDigest := map[Digest]uint16{}
	for k, g := range m {
		byDigest[digestOf(k)] = g
	}
	seen := 0
	for p := range Partitions {
		var prev *Digest
		err := ix.Scan(p, func(r Record) bool {
			g, ok := byDigest[r.Digest]
			if !ok || g != r.Generation {
				t.Errorf("scan partition %d: unexpected record %x gen %d", p, r.Digest[:6], r.Generation)
			}
			if r.Digest.Partition() != p {
				t.Errorf("scan partition %d: record of partition %d", p, r.Digest.Partition())
			}
			if prev != nil && string(prev[:]) >= string(r.Digest[:]) {
				t.Errorf("scan partition %d: %x after %x: not in digest order", p, r.Digest[:6], prev[:6])
			}
			d := r.Digest
			prev = &d
			seen++
			return true
		})
		if err != nil {
			t.Fatalf("Scan(%d): %v", p, err)
		}
	}
	if seen != len(m) {
		t.Errorf("scans reported %d records, want %d", seen, len(m))
	}
	if err := ix.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func mustOpen(t testing.TB, cfg Config, rebuild RebuildFunc) (*Index, RestartInfo) {
	t.Helper()
	ix, info, err := Open(context.Background(), cfg, rebuild)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return ix, info
}

func removeLoc(loc arena.Location) error {
	return arena.Remove(loc, arena.RemoveOptions{Force: true})
}
