package fuzz

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/index"
)

// The persisted index the fuzz target damages: a file-backed index of
// fuzzIndexKeys records in 64-line stages (five stages), with sprig tables
// of one and more lines and free runs, closed cleanly. Its structures are documented in package index
// (shared.go, entry.go); the seeds below use those word numbers.
const (
	fuzzIndexKeys  = 300
	fuzzStageElems = 64
)

var fuzzStorage = index.StorageID{UUID: [16]byte{0xf0, 0x22}, Committed: 1 << 20}

func fuzzIndexConfig(dir string) index.Config {
	return index.Config{Store: index.Dir(dir), Sprigs: 1, StageEntries: fuzzStageElems, Storage: fuzzStorage,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func fuzzDigest(k uint64) index.Digest {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], k)
	s := sha256.Sum256(b[:])
	var d index.Digest
	copy(d[:], s[:])
	return d
}

// buildIndexTemplate writes the real arena every fuzz input starts from.
func buildIndexTemplate(tb testing.TB, dir string) {
	ix, _, err := index.Open(context.Background(), fuzzIndexConfig(dir), nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k := range uint64(fuzzIndexKeys) {
		if err := ix.Put(index.Record{Digest: fuzzDigest(k), Generation: uint16(k), Offset: k * 128, Size: 128}); err != nil {
			tb.Fatal(err)
		}
	}
	for k := uint64(0); k < fuzzIndexKeys; k += 7 {
		if _, err := ix.Delete(fuzzDigest(k)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := ix.CloseClean(fuzzStorage); err != nil {
		tb.Fatal(err)
	}
}

// A patch is 11 bytes: section selector, word number (uint16, taken
// modulo the section's words), value (uint64), little-endian.
const patchSize = 11

// Section selectors.
const (
	selMeta = iota
	selSprigs
	selParts
	selStage0
	selStage1
	selStage2
	selAlloc
	numSel
)

func patch(sel byte, word uint16, v uint64) []byte {
	b := make([]byte, patchSize)
	b[0] = sel
	binary.LittleEndian.PutUint16(b[1:], word)
	binary.LittleEndian.PutUint64(b[3:], v)
	return b
}

// applyPatches stores the patches' words into the index files in dir.
func applyPatches(t *testing.T, dir string, data []byte) {
	segs := map[int]*arena.Segment{}
	defer func() {
		for _, s := range segs {
			s.Close()
		}
	}()
	seg := func(block int) *arena.Segment {
		if s, ok := segs[block]; ok {
			return s
		}
		s, err := arena.Inspect(arena.File(filepath.Join(dir, blockName(block))))
		if err != nil {
			t.Fatalf("template block %d: %v", block, err)
		}
		segs[block] = s
		return s
	}
	for ; len(data) >= patchSize; data = data[patchSize:] {
		sel := int(data[0]) % numSel
		word := uint64(binary.LittleEndian.Uint16(data[1:]))
		v := binary.LittleEndian.Uint64(data[3:])
		block, name := 0, ""
		switch sel {
		case selMeta:
			name = "meta"
		case selSprigs:
			name = "sprigs"
			// An odd version (bit 45 of a sprig word) only makes reads of
			// that sprig wait out their retry budget (index's own tests
			// cover it).
			v &^= 1 << 45
		case selParts:
			name = "parts"
		case selStage0:
			name = "stage0"
		case selAlloc:
			name = "alloc"
		default:
			block, name = sel-selStage0, "entries"
		}
		s := seg(block)
		off, size, err := s.Section(name)
		if err != nil {
			t.Fatalf("template block %d section %s: %v", block, name, err)
		}
		s.Store64(off+arena.Offset(8*(word%(size/8))), v)
	}
}

func blockName(b int) string {
	return "index-i0-n0.b" + string([]byte{'0' + byte(b/100), '0' + byte(b/10%10), '0' + byte(b%10)})
}

func copyDir(t *testing.T, from, to string) {
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// typed reports whether err is one of the errors damage may cause.
func typed(err error) bool {
	return err == nil || errors.Is(err, index.ErrCorrupt) || errors.Is(err, index.ErrContended)
}

// FuzzIndexArena damages a real persisted index (a clean file-backed
// index with five stages and a free list) with fuzzed word patches, then
// reads it as a Reader (Get, Scan, Check) and opens it as the writer (warm
// or cold) and writes to it. Nothing may panic or hang; Get never returns
// another key's record; every error is ErrCorrupt or ErrContended; a
// start whose checks pass with Config.CheckOnWarm, and every cold start,
// leaves an index that passes Check.
func FuzzIndexArena(f *testing.F) {
	template := f.TempDir()
	buildIndexTemplate(f, template)
	key0 := fuzzDigest(1)
	p0 := uint16(key0.Partition())
	last := uint64(index.MakeHandle(4, 63))
	f.Add([]byte{})                                                    // undamaged: warm, Check passes
	f.Add(patch(selSprigs, p0, 1<<36+5))                               // table handle out of range
	f.Add(patch(selSprigs, p0, 1))                                     // table → line 0/0 (another sprig's)
	f.Add(patch(selSprigs, p0, 3<<46|last))                            // another version, table → the last line
	f.Add(patch(selSprigs, p0, 200<<37|1))                             // size class 200: past the stage's end
	f.Add(patch(selSprigs, p0, 3<<37|uint64(index.MakeHandle(0, 62)))) // a 4-line table across the stage's end
	f.Add(patch(selMeta, 12, 1<<63))                                   // the version wrap count
	f.Add(patch(selMeta, 0, 200))                                      // 200 stages
	f.Add(patch(selMeta, 2, 3))                                        // table line count disagrees
	f.Add(patch(selMeta, 4, 7))                                        // live count disagrees
	f.Add(append(patch(selStage0, 6, 1), patch(selStage0, 7, 5)...))   // line 0/0: reserved bits, table count 5
	f.Add(append(patch(selStage1, 8*3+6, 1<<40|70), patch(selParts, 4*p0, 0)...))
	f.Add(patch(selStage2, 8*5+1, 0xdeadbeef)) // a digest changed: out of order
	f.Add(patch(selAlloc, 0, 1))               // free list of class 0 → a table's line
	self := uint64(index.MakeHandle(2, 60))
	f.Add(append(append(patch(selAlloc, 0, self), patch(selStage2, 60*8+6, 0)...), patch(selStage2, 60*8+7, self)...)) // a free run linking to itself
	f.Add(patch(selAlloc, 250, 1))                                                                                     // a free list of no class
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16*patchSize {
			data = data[:16*patchSize]
		}
		dir := t.TempDir()
		copyDir(t, template, dir)
		applyPatches(t, dir, data)
		start := time.Now()
		cfg := fuzzIndexConfig(dir)

		r, err := index.OpenReader(context.Background(), cfg)
		if err != nil {
			t.Fatalf("OpenReader: %v", err)
		}
		for k := range uint64(40) {
			d := fuzzDigest(k)
			rec, ok, err := r.Get(d)
			if !typed(err) {
				t.Fatalf("Get: untyped error %v", err)
			}
			if err == nil && ok && rec.Digest != d {
				t.Fatalf("Get(%x) returned the record of %x", d[:4], rec.Digest[:4])
			}
		}
		for p := 0; p < index.Partitions; p += 37 {
			if err := r.Scan(p, func(index.Record) bool { return true }); !typed(err) {
				t.Fatalf("Scan(%d): untyped error %v", p, err)
			}
		}
		if err := r.Check(); err != nil && !errors.Is(err, index.ErrCorrupt) && !errors.Is(err, index.ErrInterrupted) {
			t.Fatalf("Reader.Check: untyped error %v", err)
		}
		r.Close()

		cfg.CheckOnWarm = true
		ix, info, err := index.Open(context.Background(), cfg, func(ctx context.Context, ix *index.Index) error {
			for k := range uint64(20) {
				if err := ix.Put(index.Record{Digest: fuzzDigest(k), Offset: k, Size: 1}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer ix.Close()
		t.Logf("%v start: %v", info.Mode, info.Reason)
		if err := ix.Check(); err != nil {
			t.Fatalf("%v start (%v) left an index that fails Check: %v", info.Mode, info.Reason, err)
		}
		if len(data) < patchSize && info.Mode != index.Warm {
			t.Fatalf("undamaged index started %v: %v", info.Mode, info.Reason)
		}
		for k := uint64(500); k < 520; k++ {
			if err := ix.Put(index.Record{Digest: fuzzDigest(k), Offset: k, Size: 1}); err != nil {
				t.Fatalf("Put after a %v start: %v", info.Mode, err)
			}
		}
		if err := ix.Check(); err != nil {
			t.Fatalf("Check after writes: %v", err)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("one input took %v", el)
		}
	})
}
