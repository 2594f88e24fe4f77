package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/shmkit/shmkit/arena"
)

// plainBackup backs up two file segments (removed afterwards) and returns
// the backup directory and the segments' locations.
func plainBackup(t *testing.T, c Compression) (string, []arena.Location) {
	t.Helper()
	shm := t.TempDir()
	var locs []arena.Location
	var paths []string
	for i, name := range []string{"a", "b"} {
		p := filepath.Join(shm, "seg."+name)
		l := arena.File(p)
		patternSegment(t, l, 2*MinChunkSize+999, uint64(i)+7)
		locs = append(locs, l)
		paths = append(paths, p)
	}
	dir := dirOf(t)
	if _, err := Backup(ctx, Source{Files: paths}, dir, Options{Compression: c, ChunkSize: MinChunkSize}); err != nil {
		t.Fatal(err)
	}
	removeAll(t, locs...)
	return dir, locs
}

// rewriteManifest applies edit to the manifest and writes it back with a
// valid checksum (a self-consistent but lying manifest).
func rewriteManifest(t *testing.T, dir string, edit func(*Manifest)) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	nb, err := encodeManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), nb, 0o600); err != nil {
		t.Fatal(err)
	}
}

func flipBit(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestBadBackupsRefused: every kind of damage is refused by Verify and
// Restore with its own error, and Restore creates nothing. The first case
// is the negative control: the undamaged backup restores.
func TestBadBackupsRefused(t *testing.T) {
	type tc struct {
		name   string
		comp   Compression
		damage func(t *testing.T, dir string)
		want   error // nil: accepted
	}
	cases := []tc{
		{"intact", None, func(*testing.T, string) {}, nil},
		{"intact-zstd", Zstd, func(*testing.T, string) {}, nil},
		{"truncated-data", None, func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, "seg-001.data"), MinChunkSize+10)
		}, ErrTruncated},
		{"flipped-bit", None, func(t *testing.T, dir string) { flipBit(t, filepath.Join(dir, "seg-001.data"), MinChunkSize+77) }, ErrChecksum},
		{"flipped-bit-zstd", Zstd, func(t *testing.T, dir string) { flipBit(t, filepath.Join(dir, "seg-000.data"), 40) }, ErrChecksum},
		{"flipped-bit-manifest", None, func(t *testing.T, dir string) { flipBit(t, filepath.Join(dir, ManifestName), 100) }, ErrManifest},
		{"truncated-manifest", None, func(t *testing.T, dir string) {
			p := filepath.Join(dir, ManifestName)
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}, ErrManifest},
		{"missing-data-file", None, func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "seg-000.data")) }, ErrMissing},
		{"missing-manifest", None, func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ManifestName)) }, ErrMissing},
		{"missing-chunk", None, func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m *Manifest) { m.Segments[0].Chunks = m.Segments[0].Chunks[1:] })
		}, ErrManifest},
		{"other-version", None, func(t *testing.T, dir string) {
			p := filepath.Join(dir, ManifestName)
			b, _ := os.ReadFile(p)
			cur := fmt.Sprintf("%s%d\n", manifestHead, FormatVersion)
			os.WriteFile(p, []byte(strings.Replace(string(b), cur, fmt.Sprintf("%s%d\n", manifestHead, FormatVersion+1), 1)), 0o600)
		}, ErrVersion},
		{"decompressed-length", Zstd, func(t *testing.T, dir string) {
			// Chunk 0 of segment 0 replaced by a valid frame of fewer
			// bytes, the manifest updated to match (checksum included).
			enc, _ := zstd.NewWriter(nil)
			frame := enc.EncodeAll(make([]byte, 1000), nil)
			p := filepath.Join(dir, "seg-000.data")
			old, _ := os.ReadFile(p)
			rewriteManifest(t, dir, func(m *Manifest) {
				s := &m.Segments[0]
				rest := old[s.Chunks[0].FileLen:]
				os.WriteFile(p, append(append([]byte{}, frame...), rest...), 0o600)
				delta := int64(len(frame)) - int64(s.Chunks[0].FileLen)
				s.Chunks[0].FileLen = uint64(len(frame))
				for j := 1; j < len(s.Chunks); j++ {
					s.Chunks[j].FileOff = uint64(int64(s.Chunks[j].FileOff) + delta)
				}
				s.DataSize = uint64(int64(s.DataSize) + delta)
			})
		}, ErrLength},
		{"foreign-file", None, func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600) }, ErrForeign},
		{"partial-dir", None, func(t *testing.T, dir string) {
			os.Rename(dir, filepath.Join(filepath.Dir(dir), ".bk"+partialMarker+"1"))
			os.Symlink(filepath.Join(filepath.Dir(dir), ".bk"+partialMarker+"1"), dir)
		}, ErrPartial},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, locs := plainBackup(t, c.comp)
			c.damage(t, dir)
			vdir := dir
			if c.want == ErrPartial {
				vdir, _ = os.Readlink(dir)
			}
			_, verr := Verify(ctx, vdir, Options{})
			_, rerr := Restore(ctx, vdir, Options{})
			if c.want == nil {
				if verr != nil || rerr != nil {
					t.Fatalf("intact backup refused: verify %v, restore %v", verr, rerr)
				}
				removeAll(t, locs...)
				return
			}
			if !errors.Is(verr, c.want) || !Damaged(verr) {
				t.Errorf("verify: %v, want %v", verr, c.want)
			}
			if !errors.Is(rerr, c.want) {
				t.Errorf("restore: %v, want %v", rerr, c.want)
			}
			for _, l := range locs {
				if _, err := arena.StatOf(l); !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("%s created by a refused restore", l)
					removeAll(t, l)
				}
			}
		})
	}
}

// fakeProbe reports fixed free space.
type fakeProbe struct{ disk, room, maxSeg uint64 }

func (f fakeProbe) freeDisk(string) (uint64, error)   { return f.disk, nil }
func (f fakeProbe) sysvRoom() (uint64, uint64, error) { return f.room, f.maxSeg, nil }

// TestNoSpaceRefused: too little disk for a backup, too little room for a
// restore (files and SysV): refused before anything is written.
func TestNoSpaceRefused(t *testing.T) {
	dir, locs := plainBackup(t, None)
	_, err := Restore(ctx, dir, Options{probe: fakeProbe{disk: 1000, room: 1 << 40, maxSeg: 1 << 40}})
	if !errors.Is(err, ErrNoSpace) {
		t.Errorf("restore with 1000 bytes free: %v, want ErrNoSpace", err)
	}
	for _, l := range locs {
		if _, err := arena.StatOf(l); !errors.Is(err, arena.ErrNotFound) {
			t.Errorf("%s created", l)
		}
	}
	// Negative control: enough room restores.
	if _, err := Restore(ctx, dir, Options{probe: fakeProbe{disk: 1 << 40, room: 1 << 40, maxSeg: 1 << 40}}); err != nil {
		t.Fatal(err)
	}
	paths := []string{}
	for _, l := range locs {
		paths = append(paths, strings.TrimPrefix(l.String(), "file "))
	}
	dir2 := dirOf(t)
	_, err = Backup(ctx, Source{Files: paths}, dir2, Options{probe: fakeProbe{disk: 1000}})
	if !errors.Is(err, ErrNoSpace) {
		t.Errorf("backup with 1000 bytes free: %v, want ErrNoSpace", err)
	}
	noLeftovers(t, dir2)
	removeAll(t, locs...)

	key := testBase(t)
	patternSegment(t, arena.SysV(key), MinChunkSize, 3)
	dir3 := dirOf(t)
	if _, err := Backup(ctx, Source{Keys: []arena.Key{key}}, dir3, Options{}); err != nil {
		t.Fatal(err)
	}
	removeAll(t, arena.SysV(key))
	for _, p := range []fakeProbe{{disk: 1 << 40, room: 1000, maxSeg: 1 << 40}, {disk: 1 << 40, room: 1 << 40, maxSeg: 1000}} {
		if _, err := Restore(ctx, dir3, Options{probe: p}); !errors.Is(err, ErrNoSpace) {
			t.Errorf("SysV restore with %+v: %v, want ErrNoSpace", p, err)
		}
		if _, err := arena.StatOf(arena.SysV(key)); !errors.Is(err, arena.ErrNotFound) {
			t.Errorf("SysV segment created")
		}
	}
}

// TestChangedAfterVerifyRefused: a chunk changed between Restore's
// verification and its copy is refused, and what was created removed.
// Negative control: the same restore without the change succeeds.
func TestChangedAfterVerifyRefused(t *testing.T) {
	for _, c := range compressions() {
		t.Run(c.String(), func(t *testing.T) {
			dir, locs := plainBackup(t, c)
			_, err := Restore(ctx, dir, Options{afterVerify: func() { flipBit(t, filepath.Join(dir, "seg-001.data"), 300) }})
			if !errors.Is(err, ErrChecksum) {
				t.Errorf("restore of a backup changed after verification: %v, want ErrChecksum", err)
			}
			for _, l := range locs {
				if _, err := arena.StatOf(l); !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("%s left by the failed restore", l)
				}
			}
			flipBit(t, filepath.Join(dir, "seg-001.data"), 300) // back as it was
			if _, err := Restore(ctx, dir, Options{afterVerify: func() {}}); err != nil {
				t.Fatal(err)
			}
			removeAll(t, locs...)
		})
	}
}
