package backup

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shmkit/shmkit/arena"
)

// benchBackup makes a 128 MiB file segment in /dev/shm and its backup.
func benchBackup(b *testing.B, c Compression) (string, arena.Location) {
	shm, err := os.MkdirTemp("/dev/shm", "backup-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(shm) })
	loc := arena.File(filepath.Join(shm, "seg"))
	patternSegment(b, loc, 128<<20, 1)
	dir := filepath.Join(b.TempDir(), "bk")
	if _, err := Backup(ctx, Source{Files: []string{filepath.Join(shm, "seg")}}, dir, Options{Compression: c}); err != nil {
		b.Fatal(err)
	}
	return dir, loc
}

func BenchmarkRestore(b *testing.B) {
	dir, loc := benchBackup(b, None)
	b.SetBytes(128 << 20)
	for b.Loop() {
		if _, err := Restore(ctx, dir, Options{Force: true}); err != nil {
			b.Fatal(err)
		}
	}
	_ = loc
}

func BenchmarkVerify(b *testing.B) {
	dir, _ := benchBackup(b, None)
	b.SetBytes(128 << 20)
	for b.Loop() {
		if _, err := Verify(ctx, dir, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBackup(b *testing.B) {
	dir, loc := benchBackup(b, None)
	os.RemoveAll(dir)
	path := loc.String()[len("file "):]
	b.SetBytes(128 << 20)
	for b.Loop() {
		d := filepath.Join(b.TempDir(), "bk")
		if _, err := Backup(ctx, Source{Files: []string{path}}, d, Options{}); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(d)
	}
}
