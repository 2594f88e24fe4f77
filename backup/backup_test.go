package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/layout"
)

var ctx = context.Background()

func compressions() []Compression { return []Compression{None, Zstd} }

// TestIndexRoundTrip: an index in SysV segments or files (4 stages) is backed
// up, removed, restored bit-exact (but for the writer lease record, which
// records the restore as its last holder) and starts warm with the same
// records.
func TestIndexRoundTrip(t *testing.T) {
	for _, store := range []string{"sysv", "dir"} {
		for _, c := range compressions() {
			t.Run(store+"/"+c.String(), func(t *testing.T) { indexRoundTrip(t, store, c) })
		}
	}
}

func indexRoundTrip(t *testing.T, store string, c Compression) {
	st := index.SysVAt(testBase(t))
	if store == "dir" {
		st = index.Dir(t.TempDir())
	}
	cfg := indexConfig(st)
	const n = 900
	makeIndex(t, cfg, n)
	blocks, err := index.SavedBlocks(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) < 4 {
		t.Fatalf("%d blocks, want a main segment and stages", len(blocks))
	}
	before := map[string][]byte{}
	for _, l := range blocks {
		before[l.String()] = snapshot(t, l)
	}
	dir := dirOf(t)
	res, err := Backup(ctx, Source{Indexes: []index.Config{cfg}}, dir, Options{Compression: c, ChunkSize: MinChunkSize, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, dir)
	if c == Zstd && res.Stored >= res.Bytes {
		t.Errorf("compressed %d bytes into %d", res.Bytes, res.Stored)
	}
	// The backup did not disturb the index.
	for _, l := range blocks {
		if !bytes.Equal(snapshot(t, l), before[l.String()]) && l != blocks[0] {
			t.Errorf("%s changed by the backup", l)
		}
	}
	if _, err := Verify(ctx, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	removeAll(t, blocks...)
	if _, err := Restore(ctx, dir, Options{Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	m := res.Manifest.Segments[0]
	for _, l := range blocks {
		got, want := snapshot(t, l), before[l.String()]
		if l == blocks[0] {
			lo, hi := m.LeaseOffset, m.LeaseOffset+m.LeaseSize
			if !bytes.Equal(got[:lo], want[:lo]) || !bytes.Equal(got[hi:], want[hi:]) {
				t.Errorf("%s: restored bytes differ outside the lease record", l)
			}
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: restored bytes differ", l)
		}
	}
	checkWarm(t, cfg, n)
}

// TestPlainRoundTrip: plain SysV and file segments round-trip bit-exact,
// with owner and mode.
func TestPlainRoundTrip(t *testing.T) {
	for _, c := range compressions() {
		t.Run(c.String(), func(t *testing.T) {
			key := testBase(t)
			shm := t.TempDir()
			files := []string{filepath.Join(shm, "seg.a"), filepath.Join(shm, "seg.b")}
			locs := []arena.Location{arena.SysV(key), arena.File(files[0]), arena.File(files[1])}
			for i, l := range locs {
				patternSegment(t, l, 3*MinChunkSize+12345*uint64(i), uint64(i)+1)
			}
			for _, l := range []arena.Location{locs[0], locs[2]} {
				if err := arena.SetOwnership(l, arena.Ownership{UID: uint32(uidSelf()), GID: uint32(gidSelf()), Mode: 0o640}); err != nil {
					t.Fatal(err)
				}
			}
			before := map[string][]byte{}
			for _, l := range locs {
				before[l.String()] = snapshot(t, l)
			}
			prefix, err := FilesWithPrefix(filepath.Join(shm, "seg."))
			if err != nil || len(prefix) != 2 {
				t.Fatalf("prefix: %v %v", prefix, err)
			}
			dir := dirOf(t)
			if _, err := Backup(ctx, Source{Keys: []arena.Key{key}, Files: prefix}, dir, Options{Compression: c, ChunkSize: MinChunkSize}); err != nil {
				t.Fatal(err)
			}
			removeAll(t, locs...)
			if _, err := Restore(ctx, dir, Options{}); err != nil {
				t.Fatal(err)
			}
			for _, l := range locs {
				if !bytes.Equal(snapshot(t, l), before[l.String()]) {
					t.Errorf("%s: restored bytes differ", l)
				}
			}
			for i, l := range locs {
				want := os.FileMode(0o600)
				if i != 1 {
					want = 0o640
				}
				if o, err := arena.OwnershipOf(l); err != nil || o.Mode != want || o.UID != uint32(uidSelf()) {
					t.Errorf("owner and mode of %s: %+v %v, want uid %d mode %#o", l, o, err, uidSelf(), want)
				}
			}
			// A second restore refuses, naming the targets; Force replaces.
			_, err = Restore(ctx, dir, Options{})
			if !errors.Is(err, ErrExists) || !bytes.Contains([]byte(err.Error()), []byte(files[1])) {
				t.Errorf("restore over existing segments: %v, want ErrExists naming them", err)
			}
			if _, err := Restore(ctx, dir, Options{Force: true}); err != nil {
				t.Errorf("forced restore: %v", err)
			}
			removeAll(t, locs...)
		})
	}
}

// TestBackupRefuses: attached and unclean segments are refused, each
// named, and nothing is written.
func TestBackupRefuses(t *testing.T) {
	base := testBase(t)
	cfg := indexConfig(index.SysVAt(base))
	cfg.Storage = testStorage
	ix, _, err := index.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Put(index.Record{Digest: digest(1)}); err != nil {
		t.Fatal(err)
	}
	dir := dirOf(t)
	_, err = Backup(ctx, Source{Indexes: []index.Config{cfg}}, dir, Options{})
	if !errors.Is(err, ErrAttached) || !Refused(err) {
		t.Errorf("backup of a running index: %v, want ErrAttached", err)
	}
	ix.Close() // not clean: it wrote
	_, err = Backup(ctx, Source{Indexes: []index.Config{cfg}}, dir, Options{})
	if !errors.Is(err, ErrNotClean) {
		t.Errorf("backup of an unclean index: %v, want ErrNotClean", err)
	}
	main, _ := index.BlockLocation(cfg, 0)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(main.String())) {
		t.Errorf("the refusal does not name %s: %v", main, err)
	}
	noLeftovers(t, dir)
	if _, err := filepath.Glob(dir); err != nil {
		t.Fatal(err)
	}
	_, err = Backup(ctx, Source{}, dir, Options{})
	if !errors.Is(err, ErrNoSegments) {
		t.Errorf("empty source: %v", err)
	}
}

// TestRestoreHoldsTheLease: while a restore holds the index (stopped at
// its failpoint in another process is tested in process_test.go), a
// writer refuses; here the lease is checked in-process through the
// state a restore leaves before its clean marker.
func TestAnalyze(t *testing.T) {
	cfg := indexConfig(index.SysVAt(testBase(t)))
	makeIndex(t, cfg, 300)
	dir := dirOf(t)
	p, err := Analyze(Source{Indexes: []index.Config{cfg}}, dir, Options{ChunkSize: MinChunkSize})
	if err != nil {
		t.Fatal(err)
	}
	blocks, _ := index.SavedBlocks(cfg)
	if len(p.Segments) != len(blocks) || p.Bytes == 0 || p.Need < p.Bytes || p.Free == 0 {
		t.Errorf("plan %+v for %d blocks", p, len(blocks))
	}
	noLeftovers(t, dir)
	if p.Segments[0].Role != RoleIndexMain || p.Segments[1].Role != RoleIndexStage {
		t.Errorf("roles %s %s", p.Segments[0].Role, p.Segments[1].Role)
	}
	_ = fmt.Sprint(layout.StateClean)
}
