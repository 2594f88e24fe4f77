package backup_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/backup"
	"github.com/shmkit/shmkit/layout"
)

// Back up a file segment, lose it, verify the backup and restore it.
func Example() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "backup-example-")
	defer os.RemoveAll(tmp)
	seg := filepath.Join(tmp, "shmkit.cache")
	spec := layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "data", Size: 1 << 20}}}
	s, err := arena.Create(ctx, arena.File(seg), arena.Options{Spec: spec})
	if err != nil {
		fmt.Println(err)
		return
	}
	off, _, _ := s.Section("data")
	s.Store64(off, 42)
	s.Close()

	dir := filepath.Join(tmp, "bk")
	files, _ := backup.FilesWithPrefix(filepath.Join(tmp, "shmkit."))
	res, err := backup.Backup(ctx, backup.Source{Files: files}, dir, backup.Options{Compression: backup.Zstd})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("segments saved:", len(res.Manifest.Segments), "compressed:", res.Stored < res.Bytes)

	arena.Remove(arena.File(seg), arena.RemoveOptions{}) // the reboot
	if _, err := backup.Verify(ctx, dir, backup.Options{}); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := backup.Restore(ctx, dir, backup.Options{}); err != nil {
		fmt.Println(err)
		return
	}
	s, err = arena.Inspect(arena.File(seg))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println("restored word:", s.Load64(off))
	// Output:
	// segments saved: 1 compressed: true
	// restored word: 42
}
