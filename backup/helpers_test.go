package backup

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/layout"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testBase returns a SysV test base for index blocks (low 8 bits zero),
// removing blocks 0–15 at the end of the test.
func testBase(t testing.TB) arena.Key {
	t.Helper()
	blocks := make([]arena.Key, index.MaxStages)
	for b := range blocks {
		blocks[b] = arena.Key(b)
	}
	return arenatest.SysVKeySet(t, 0xff0, blocks...)
}

var testStorage = index.StorageID{UUID: [16]byte{1, 2, 3}, Committed: 4242, Seq: 7}

func digest(i int) index.Digest {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return index.Digest(sha1.Sum(b[:]))
}

// indexConfig is a small index (256-entry stages) under base.
func indexConfig(store index.Store) index.Config {
	return index.Config{Store: store, Instance: 2, Namespace: 3, Sprigs: 1, StageEntries: 256, Logger: quiet()}
}

// makeIndex fills an index with n records and shuts it down cleanly.
func makeIndex(t testing.TB, cfg index.Config, n int) {
	t.Helper()
	ix, _, err := index.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := ix.Put(index.Record{Digest: digest(i), Generation: uint16(i), Offset: uint64(i) * 64, Size: 64, FileID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.CloseClean(testStorage); err != nil {
		t.Fatal(err)
	}
}

// checkWarm opens the index and wants a warm start with the n records.
func checkWarm(t testing.TB, cfg index.Config, n int) {
	t.Helper()
	cfg.Storage = testStorage
	ix, info, err := index.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.CloseClean(testStorage)
	if info.Mode != index.Warm {
		t.Fatalf("start is %s (%s), want warm", info.Mode, info.Reason)
	}
	if ix.Count() != uint64(n) {
		t.Fatalf("%d records, want %d", ix.Count(), n)
	}
	for i := range n {
		r, ok, err := ix.Get(digest(i))
		if err != nil || !ok || r.Generation != uint16(i) || r.Offset != uint64(i)*64 {
			t.Fatalf("record %d: %+v %v %v", i, r, ok, err)
		}
	}
}

// startMode opens the index (with rebuild nil) and returns how it started.
func startMode(t testing.TB, cfg index.Config) (index.Mode, index.Reason) {
	t.Helper()
	cfg.Storage = testStorage
	ix, info, err := index.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()
	return info.Mode, info.Reason
}

// snapshot copies the bytes of the segment at loc.
func snapshot(t testing.TB, loc arena.Location) []byte {
	t.Helper()
	st, err := arena.StatOf(loc)
	if err != nil {
		t.Fatal(err)
	}
	return snapshotRange(t, loc, 0, st.Size)
}

// snapshotRange copies n bytes from off of the segment at loc.
func snapshotRange(t testing.TB, loc arena.Location, off, n uint64) []byte {
	t.Helper()
	seg, err := arena.Inspect(loc)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	b, err := seg.QuiescentBytes(off, n)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(b)
}

// removeAll removes the segments at locs.
func removeAll(t testing.TB, locs ...arena.Location) {
	t.Helper()
	for _, l := range locs {
		if err := arena.Remove(l, arena.RemoveOptions{Force: true}); err != nil && !errors.Is(err, arena.ErrNotFound) {
			t.Fatal(err)
		}
	}
}

// patternSegment creates a plain test segment of about size bytes at loc
// whose payload is a position-dependent pattern seeded with seed.
func patternSegment(t testing.TB, loc arena.Location, size uint64, seed uint64) {
	t.Helper()
	spec := layout.Spec{Kind: layout.KindTest, Fields: []layout.Field{{Name: "backup-test", Value: seed}},
		Sections: []layout.SectionSpec{{Name: "data", Size: size}}}
	seg, err := arena.Create(context.Background(), loc, arena.Options{Spec: spec, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	off, n, err := seg.Section("data")
	if err != nil {
		t.Fatal(err)
	}
	b, err := seg.QuiescentBytes(uint64(off), n)
	if err != nil {
		t.Fatal(err)
	}
	fillPattern(b, uint64(off), seed)
}

// fillPattern writes, at each 8-byte word, its position in the segment
// mixed with seed (so a chunk moved or a byte beyond 4 GiB lost shows).
func fillPattern(b []byte, off, seed uint64) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], mix(off+uint64(i), seed))
	}
}

func mix(pos, seed uint64) uint64 {
	x := pos*0x9e3779b97f4a7c15 ^ seed
	x ^= x >> 31
	return x * 0xbf58476d1ce4e5b9
}

// dirOf returns a fresh directory for backups.
func dirOf(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "bk")
}

// noLeftovers fails if the parent of dir holds anything but dir.
func noLeftovers(t testing.TB, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Dir(dir))
	for _, e := range ents {
		if e.Name() != filepath.Base(dir) {
			t.Errorf("left behind next to the backup: %s", e.Name())
		}
	}
}

func uidSelf() int { return os.Geteuid() }
func gidSelf() int { return os.Getegid() }
