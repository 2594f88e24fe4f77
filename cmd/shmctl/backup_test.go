package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

// TestBackupVerbs: backup by prefix, verify, restore, and the exit codes
// of a refusal (3), a damaged backup (1) and a usage error (2).
func TestBackupVerbs(t *testing.T) {
	shm := t.TempDir()
	path := filepath.Join(shm, "shmkit.bk-test")
	spec := layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "data", Size: 3 << 20}}}
	seg, err := arena.Create(context.Background(), arena.File(path), arena.Options{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	off, n, _ := seg.Section("data")
	for i := uint64(0); i < n; i += 8 {
		seg.Store64(off+arena.Offset(i), i*2654435761)
	}
	seg.Close()
	before, _ := os.ReadFile(path)

	dir := filepath.Join(t.TempDir(), "bk")
	if code, out, errs := shmctl(t, "backup", "--prefix", filepath.Join(shm, "shmkit."), "--dir", dir, "--analyze"); code != exitOK || !strings.Contains(out, "space needed") {
		t.Fatalf("analyze: %d %q %q", code, out, errs)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("--analyze wrote %s", dir)
	}
	if code, out, errs := shmctl(t, "backup", "--dir", dir, "--compress", "--prefix", filepath.Join(shm, "shmkit."), "--chunk-mib", "1"); code != exitOK {
		t.Fatalf("backup: %d %q %q", code, out, errs)
	}
	if code, out, errs := shmctl(t, "verify", "--dir", dir); code != exitOK || !strings.Contains(out, "intact") {
		t.Fatalf("verify: %d %q %q", code, out, errs)
	}
	if code, _, errs := shmctl(t, "restore", "--dir", dir); code != exitRefused || !strings.Contains(errs, path) {
		t.Errorf("restore over the segment: exit %d, %q; want %d naming it", code, errs, exitRefused)
	}
	if err := arena.Remove(arena.File(path), arena.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := shmctl(t, "restore", "--dir", dir); code != exitOK {
		t.Fatalf("restore: %d %q %q", code, out, errs)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Errorf("restored file differs")
	}
	// Damage: verify and restore say so with exit 1.
	f, _ := os.OpenFile(filepath.Join(dir, "seg-000.data"), os.O_RDWR, 0)
	f.WriteAt([]byte{0xff, 0xfe, 0xfd}, 200)
	f.Close()
	if code, _, errs := shmctl(t, "verify", "--dir", dir); code != exitProblems || !strings.Contains(errs, "seg-000.data") {
		t.Errorf("verify of a damaged backup: exit %d %q", code, errs)
	}
	if code, out, _ := shmctl(t, "verify", "-json", "--dir", dir); code != exitProblems || !strings.Contains(out, `"ok": false`) {
		t.Errorf("verify -json of a damaged backup: exit %d %q", code, out)
	}
	if code, _, _ := shmctl(t, "backup", "--dir", dir); code != exitUsage {
		t.Errorf("backup without a source: exit %d", code)
	}
	arena.Remove(arena.File(path), arena.RemoveOptions{Force: true})
}

func TestRenderBar(t *testing.T) {
	s := renderBar("backup", 1<<30, 4<<30, 2*time.Second)
	for _, want := range []string{"25%", "1.0 GiB/4.0 GiB", "512.0 MiB/s", "6s left"} {
		if !strings.Contains(s, want) {
			t.Errorf("bar %q lacks %q", s, want)
		}
	}
}
