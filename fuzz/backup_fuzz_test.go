package fuzz

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/backup"
	"github.com/shmkit/shmkit/layout"
)

// packBackup packs a backup directory of one segment into one input:
// 4 bytes of manifest length (little endian), the manifest, the data file.
func packBackup(manifest, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(manifest)))
	return append(append(b, manifest...), data...)
}

// unpackBackup writes an input as the backup directory dir (which
// exists; its two files are overwritten).
func unpackBackup(t *testing.T, dir string, in []byte) string {
	var manifest, data []byte
	if len(in) >= 4 {
		n := int(binary.LittleEndian.Uint32(in))
		if n <= len(in)-4 {
			manifest, data = in[4:4+n], in[4+n:]
		} else {
			manifest = in[4:]
		}
	}
	if err := os.WriteFile(filepath.Join(dir, backup.ManifestName), manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seg-000.data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// realBackup makes a real backup of a small file segment and returns it
// packed.
func realBackup(f *testing.F, c backup.Compression) []byte {
	root := f.TempDir()
	path := filepath.Join(root, "seg")
	spec := layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "data", Size: 256}}}
	seg, err := arena.Create(context.Background(), arena.File(path), arena.Options{Spec: spec})
	if err != nil {
		f.Fatal(err)
	}
	off, n, _ := seg.Section("data")
	for i := uint64(0); i+8 <= n; i += 8 {
		seg.Store64(off+arena.Offset(i), i/8%7)
	}
	seg.Close()
	dir := filepath.Join(root, "bk")
	if _, err := backup.Backup(context.Background(), backup.Source{Files: []string{path}}, dir,
		backup.Options{Compression: c, ChunkSize: backup.MinChunkSize}); err != nil {
		f.Fatal(err)
	}
	m, err := os.ReadFile(filepath.Join(dir, backup.ManifestName))
	if err != nil {
		f.Fatal(err)
	}
	d, err := os.ReadFile(filepath.Join(dir, "seg-000.data"))
	if err != nil {
		f.Fatal(err)
	}
	return packBackup(m, d)
}

// FuzzBackupReader: Verify (the reader Restore uses before creating
// anything) on arbitrary manifests and data files never panics or hangs,
// and every error it returns is one of package backup's typed errors.
// Seeded with real backups, uncompressed and zstd.
func FuzzBackupReader(f *testing.F) {
	for _, c := range []backup.Compression{backup.None, backup.Zstd} {
		good := realBackup(f, c)
		f.Add(good)
		// A bit flipped in the data and in the manifest.
		bad := append([]byte{}, good...)
		bad[len(bad)-10] ^= 1
		f.Add(bad)
		bad = append([]byte{}, good...)
		bad[40] ^= 4
		f.Add(bad)
	}
	f.Add([]byte{})
	// One directory for every run of this process (runs are sequential
	// within a fuzz worker): a fresh one per run would dominate the cost.
	dir := filepath.Join(f.TempDir(), "bk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		unpackBackup(t, dir, in)
		m, err := backup.Verify(context.Background(), dir, backup.Options{Workers: 1})
		if err != nil {
			var be *backup.Error
			if !errors.As(err, &be) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		// Accepted: then the manifest is self-consistent.
		if len(m.Segments) != 1 || m.Segments[0].Size == 0 {
			t.Fatalf("accepted a manifest of %d segments", len(m.Segments))
		}
	})
}
