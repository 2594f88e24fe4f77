package arena_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

func TestParseHugePagePolicy(t *testing.T) {
	for _, p := range []arena.HugePagePolicy{arena.HugePagesOff, arena.HugePagesTry, arena.HugePagesRequire} {
		got, err := arena.ParseHugePagePolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseHugePagePolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if got, err := arena.ParseHugePagePolicy(" Require "); err != nil || got != arena.HugePagesRequire {
		t.Errorf("ParseHugePagePolicy(\" Require \") = %v, %v", got, err)
	}
	if _, err := arena.ParseHugePagePolicy("always"); err == nil || !strings.Contains(err.Error(), "off, try or require") {
		t.Errorf("ParseHugePagePolicy(always) = %v, want an error listing the values", err)
	}
	if s := arena.HugePagePolicy(9).String(); s != "HugePagePolicy(9)" {
		t.Errorf("String of an unknown policy = %q", s)
	}
}

// readUint reads a number from a /proc file.
func readUint(t testing.TB, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("%s: %v", path, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// hugeFree returns HugePages_Free from /proc/meminfo.
func hugeFree(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "HugePages_Free:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	t.Skip("no HugePages_Free in /proc/meminfo")
	return 0
}

// hugeSpec is a segment larger than the huge pages that can be had now
// (free and overcommit), so that SHM_HUGETLB fails whatever is reserved.
func hugeSpec(t testing.TB) layout.Spec {
	pages := hugeFree(t) + readUint(t, "/proc/sys/vm/nr_overcommit_hugepages") + 1
	return layout.Spec{Kind: layout.KindTest, Fields: []layout.Field{{Name: "huge", Value: 1}},
		Sections: []layout.SectionSpec{{Name: "data", Size: pages * arena.HugePageSize}}}
}

// TestHugePagesSysVUnavailable: with fewer huge pages free than the
// segment needs, Require fails with ErrNoHugePages naming nr_hugepages and
// creates nothing; Try logs the fallback and creates the segment with
// normal pages.
func TestHugePagesSysVUnavailable(t *testing.T) {
	ctx := ctxT(t)
	spec := hugeSpec(t)
	key := testKeys(t, 1)[0]
	_, err := arena.Create(ctx, arena.SysV(key), arena.Options{Spec: spec, HugePages: arena.HugePagesRequire, Logger: discard()})
	ae := asArenaError(t, err, arena.ErrNoHugePages)
	if ae.Op != "create" || !strings.Contains(ae.Hint, "/proc/sys/vm/nr_hugepages") || !strings.Contains(ae.Error(), "huge pages reserved") {
		t.Errorf("error %v: want op create, the reservation and a hint naming /proc/sys/vm/nr_hugepages", ae)
	}
	if _, err := arena.StatOf(arena.SysV(key)); !errors.Is(err, arena.ErrNotFound) {
		t.Fatalf("Require left a segment behind: %v", err)
	}

	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	seg, err := arena.Create(ctx, arena.SysV(key), arena.Options{Spec: spec, HugePages: arena.HugePagesTry, Logger: log})
	if err != nil {
		t.Fatalf("Try: %v", err)
	}
	defer mustClose(t, seg)
	if s := logged.String(); !strings.Contains(s, "huge pages unavailable, using normal pages") || !strings.Contains(s, "nr_hugepages") {
		t.Errorf("Try logged %q, want the fallback and what to do", s)
	}
	seg.Store64(layout.HeaderSize, 1)
	u, err := seg.PageUse()
	if err != nil {
		t.Fatal(err)
	}
	if u.KernelPageSize != uint64(os.Getpagesize()) || u.Huge != 0 || u.Resident == 0 {
		t.Errorf("fallback segment's pages: %+v, want normal pages only", u)
	}
}

// TestHugePagesSysV creates a SHM_HUGETLB segment where two huge pages
// are free (the test reserves none itself).
func TestHugePagesSysV(t *testing.T) {
	if hugeFree(t) < 2 {
		t.Skip("fewer than 2 huge pages free (reserve some: echo 2 > /proc/sys/vm/nr_hugepages)")
	}
	spec := layout.Spec{Kind: layout.KindTest, Fields: []layout.Field{{Name: "huge", Value: 2}},
		Sections: []layout.SectionSpec{{Name: "data", Size: arena.HugePageSize}}}
	seg, err := arena.Create(ctxT(t), arena.SysV(testKeys(t, 1)[0]), arena.Options{Spec: spec, HugePages: arena.HugePagesRequire, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer mustClose(t, seg)
	u, err := seg.PageUse()
	if err != nil {
		t.Fatal(err)
	}
	if u.KernelPageSize != arena.HugePageSize || u.Huge == 0 {
		t.Errorf("pages: %+v, want hugetlb pages", u)
	}
}

// TestHugePagesFileUnavailable: a file segment in a directory whose file
// system has no huge pages fails under Require, naming the tmpfs mount to
// use, and falls back under Try.
func TestHugePagesFileUnavailable(t *testing.T) {
	ctx := ctxT(t)
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == 0x01021994 {
		t.Skipf("%s is a tmpfs, which may have huge pages", dir)
	}
	loc := arena.File(dir + "/seg")
	_, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(1), HugePages: arena.HugePagesRequire, Logger: discard()})
	ae := asArenaError(t, err, arena.ErrNoHugePages)
	if !strings.Contains(ae.Hint, "huge=always") || !strings.Contains(ae.Error(), "not on a tmpfs") {
		t.Errorf("error %v: want why and a hint naming huge=always", ae)
	}
	if _, err := os.Stat(dir + "/seg"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Require left a file behind: %v", err)
	}
	var logged bytes.Buffer
	seg, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(1), HugePages: arena.HugePagesTry, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatalf("Try: %v", err)
	}
	defer mustClose(t, seg)
	if !strings.Contains(logged.String(), "huge pages unavailable") {
		t.Errorf("Try logged %q, want the fallback", logged.String())
	}
}

// TestHugePagesTmpfs mounts a tmpfs with huge=always (root only) and
// creates a file segment on it with Require: its pages are 2 MiB.
func TestHugePagesTmpfs(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "huge=always,size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs with huge=always: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	spec := layout.Spec{Kind: layout.KindTest, Fields: []layout.Field{{Name: "huge", Value: 3}},
		Sections: []layout.SectionSpec{{Name: "data", Size: 2 * arena.HugePageSize}}}
	loc := arena.File(dir + "/seg")
	seg, err := arena.Create(ctxT(t), loc, arena.Options{Spec: spec, HugePages: arena.HugePagesRequire, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	off, size, err := seg.Section("data")
	if err != nil {
		t.Fatal(err)
	}
	for o := uint64(0); o < size; o += 4096 {
		seg.Store64(off+arena.Offset(o), o)
	}
	u, err := seg.PageUse()
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, seg)
	if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if u.Huge < arena.HugePageSize {
		t.Errorf("pages on a huge=always tmpfs: %+v, want at least one 2 MiB page", u)
	}
}

// TestHugePagesHeap: heap segments have no huge pages.
func TestHugePagesHeap(t *testing.T) {
	h := arena.NewHeapStore()
	_, err := arena.Create(ctxT(t), h.At("x"), arena.Options{Spec: testSpec(1), HugePages: arena.HugePagesRequire, Logger: discard()})
	asArenaError(t, err, arena.ErrNoHugePages)
}
