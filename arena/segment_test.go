package arena_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

// newSeg creates a segment with testSpec at a fresh location of b.
func newSeg(t *testing.T, b backend) *arena.Segment {
	t.Helper()
	loc := b.loc(t)
	s, err := arena.Create(ctxT(t), loc, arena.Options{Spec: testSpec(16), Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		arena.Remove(loc, arena.RemoveOptions{Force: true})
	})
	return s
}

func TestWordAccessors(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s := newSeg(t, b)
			off, size, err := s.Section("data")
			if err != nil || size != 4096 || off%layout.SectionAlign != 0 {
				t.Fatalf("Section = %d, %d, %v", off, size, err)
			}
			w := off + 64
			s.Store64(w, 10)
			if s.Load64(w) != 10 {
				t.Fatal("Store64/Load64")
			}
			if s.CAS64(w, 11, 12) || s.Load64(w) != 10 {
				t.Error("CAS64 with a wrong old value succeeded")
			}
			if !s.CAS64(w, 10, 12) || s.Load64(w) != 12 {
				t.Error("CAS64 failed")
			}
			if got := s.Add64(w, 5); got != 17 {
				t.Errorf("Add64 = %d, want 17", got)
			}
			if got := s.Add64(w, ^uint64(0)); got != 16 { // subtract 1
				t.Errorf("Add64(-1) = %d", got)
			}
			if old := s.Swap64(w, 99); old != 16 || s.Load64(w) != 99 {
				t.Errorf("Swap64 = %d, then %d", old, s.Load64(w))
			}
			// 32-bit forms, at both halves of a word.
			for _, o := range []arena.Offset{w + 8, w + 12} {
				s.Store32(o, 7)
				if s.Load32(o) != 7 || s.CAS32(o, 8, 9) || !s.CAS32(o, 7, 9) || s.Load32(o) != 9 {
					t.Errorf("32-bit ops at %d", o)
				}
				if got := s.Add32(o, 0xffffffff); got != 8 {
					t.Errorf("Add32 wrap = %d", got)
				}
			}
			if s.Load64(w+8) != 8|8<<32 {
				t.Errorf("32-bit halves read as %#x", s.Load64(w+8))
			}
			// Words.
			src := []uint64{1, 2, 3, 1 << 63}
			s.StoreWords(w, src)
			dst := make([]uint64, 4)
			s.LoadWords(w, dst)
			for i := range src {
				if dst[i] != src[i] {
					t.Fatalf("LoadWords = %v", dst)
				}
			}
			s.LoadWords(arena.Offset(s.Len()), nil) // empty: no bounds to check
			s.StoreWords(arena.Offset(s.Len()), nil)
			last := arena.Offset(s.Len() - 16)
			s.StoreWords(last, []uint64{5, 6})
			if s.Load64(last+8) != 6 {
				t.Error("StoreWords at the end")
			}
		})
	}
}

func TestCheckRange(t *testing.T) {
	s := newSeg(t, backends()[3])
	n := s.Len()
	for _, c := range []struct {
		off arena.Offset
		len uint64
		ok  bool
	}{
		{0, n, true}, {0, 0, true}, {arena.Offset(n), 0, true}, {arena.Offset(n - 1), 1, true},
		{arena.Offset(n), 1, false}, {arena.Offset(n + 1), 0, false}, {0, n + 1, false},
		{1, ^uint64(0), false}, {arena.Offset(n - 8), ^uint64(0) - 4, false},
		{^arena.Offset(0), 2, false}, {^arena.Offset(0) - 7, 16, false},
	} {
		err := s.CheckRange(c.off, c.len)
		if (err == nil) != c.ok {
			t.Errorf("CheckRange(%d, %d) = %v, want ok=%v", c.off, c.len, err, c.ok)
		}
		if err != nil && !errors.Is(err, arena.ErrRange) {
			t.Errorf("CheckRange error %v is not ErrRange", err)
		}
	}
	for _, c := range []struct {
		off arena.Offset
		ok  bool
	}{{0, true}, {8, true}, {arena.Offset(n - 8), true}, {4, false}, {arena.Offset(n), false}, {arena.Offset(n - 4), false}, {^arena.Offset(0) &^ 7, false}} {
		if err := s.CheckWord(c.off); (err == nil) != c.ok || (err != nil && !errors.Is(err, arena.ErrRange)) {
			t.Errorf("CheckWord(%d) = %v", c.off, err)
		}
	}
	if _, _, err := s.Section("nope"); !errors.Is(err, arena.ErrRange) {
		t.Errorf("Section(nope) = %v", err)
	}
}

// mustPanic runs f and asserts that it panics with a message about a
// misaligned or out-of-range offset: the accessors' documented contract
// for programming errors.
func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Errorf("%s did not panic", name)
			return
		}
		msg := fmt.Sprint(r)
		if !strings.Contains(msg, "misaligned or outside") && !strings.Contains(msg, "out of range") {
			t.Errorf("%s panicked with %q", name, msg)
		}
	}()
	f()
}

func TestAccessorsPanicOnBadOffsets(t *testing.T) {
	for _, b := range []backend{backends()[0], backends()[3]} {
		t.Run(b.name, func(t *testing.T) {
			s := newSeg(t, b)
			end := arena.Offset(s.Len())
			for _, off := range []arena.Offset{1, 4, 7, end, end - 4, end + 8, ^arena.Offset(0) &^ 7} {
				mustPanic(t, fmt.Sprintf("Load64(%d)", off), func() { s.Load64(off) })
				mustPanic(t, fmt.Sprintf("Store64(%d)", off), func() { s.Store64(off, 1) })
				mustPanic(t, fmt.Sprintf("CAS64(%d)", off), func() { s.CAS64(off, 0, 1) })
				mustPanic(t, fmt.Sprintf("Add64(%d)", off), func() { s.Add64(off, 1) })
				mustPanic(t, fmt.Sprintf("Swap64(%d)", off), func() { s.Swap64(off, 1) })
			}
			for _, off := range []arena.Offset{1, 2, 6, end, end + 4, ^arena.Offset(0) &^ 3} {
				mustPanic(t, fmt.Sprintf("Load32(%d)", off), func() { s.Load32(off) })
				mustPanic(t, fmt.Sprintf("Store32(%d)", off), func() { s.Store32(off, 1) })
				mustPanic(t, fmt.Sprintf("CAS32(%d)", off), func() { s.CAS32(off, 0, 1) })
				mustPanic(t, fmt.Sprintf("Add32(%d)", off), func() { s.Add32(off, 1) })
				mustPanic(t, fmt.Sprintf("FutexWait(%d)", off), func() { s.FutexWait(off, 0, time.Millisecond) })
				mustPanic(t, fmt.Sprintf("FutexWake(%d)", off), func() { s.FutexWake(off, 1) })
			}
			two := make([]uint64, 2)
			mustPanic(t, "LoadWords past the end", func() { s.LoadWords(end-8, two) })
			mustPanic(t, "StoreWords past the end", func() { s.StoreWords(end-8, two) })
			mustPanic(t, "LoadWords misaligned", func() { s.LoadWords(4, two) })
			mustPanic(t, "StoreWords wrapping", func() { s.StoreWords(^arena.Offset(0)&^7, two) })
			// Nothing was written by the panicking calls.
			if s.State() != layout.StateReady {
				t.Errorf("state %v", s.State())
			}
		})
	}
}

func TestFutexInProcess(t *testing.T) {
	for _, b := range []backend{backends()[0], backends()[3]} {
		t.Run(b.name, func(t *testing.T) {
			s := newSeg(t, b)
			off, _, _ := s.Section("data")
			if s.FutexWait(off, 0, 5*time.Millisecond) {
				t.Error("FutexWait on an unchanged word returned true instead of timing out")
			}
			if s.FutexWait(off, 0, 0) || s.FutexWait(off, 0, -time.Second) {
				t.Error("FutexWait with timeout <= 0 returned true")
			}
			if !s.FutexWait(off, 5, time.Minute) {
				t.Error("FutexWait on a word that differs from val did not return true at once")
			}
			if n := s.FutexWake(off, 10); n != 0 {
				t.Errorf("FutexWake without waiters = %d", n)
			}
			done := make(chan bool)
			go func() {
				for s.Load32(off) == 0 {
					if !s.FutexWait(off, 0, time.Minute) {
						done <- false
						return
					}
				}
				done <- true
			}()
			s.Store32(off, 1)
			s.FutexWake(off, 1)
			if !<-done {
				t.Error("waiter timed out")
			}
		})
	}
}

// TestFileBlocksAllocated: file segments are fallocated at creation, so a
// full filesystem fails Create (ENOSPC, with a hint, nothing left behind)
// instead of a later SIGBUS.
func TestFileBlocksAllocated(t *testing.T) {
	ctx := ctxT(t)
	spec := layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "big", Size: 4 << 20}}}
	for _, p := range []string{tmpPath(t, "blocks"), shmPath(t, "blocks")} {
		s, err := arena.Create(ctx, arena.File(p), arena.Options{Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Blocks*512 < st.Size || uint64(st.Size) < s.Header().TotalSize {
			t.Errorf("%s: %d bytes, %d allocated", p, st.Size, st.Blocks*512)
		}
		mustClose(t, s)
	}
	// tmpfs refuses a fallocate larger than its size limit up front.
	var fs unix.Statfs_t
	if err := unix.Statfs(arena.DefaultDir, &fs); err != nil {
		t.Fatal(err)
	}
	if total := fs.Blocks * uint64(fs.Bsize); total == 0 || total >= 1<<40 {
		t.Skipf("%s has no size limit below 1 TiB", arena.DefaultDir)
	}
	huge := layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "huge", Size: 1 << 40}}}
	p := shmPath(t, "huge")
	_, err := arena.Create(ctx, arena.File(p), arena.Options{Spec: huge})
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Create of a 1 TiB file segment: %v, want ENOSPC", err)
	}
	var ae *arena.Error
	if !errors.As(err, &ae) || !strings.Contains(ae.Hint, "full") {
		t.Errorf("error %v without a hint", err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed segment file is left: %v", err)
	}
}

// TestStatAndList: List shows this test's SysV segment and /dev/shm file
// with their attributes, and no segment outside shmkit's key prefix.
func TestStatAndList(t *testing.T) {
	ctx := ctxT(t)
	start := time.Now().Truncate(time.Second)
	k := testKey(t)
	path := shmPath(t, "list")
	var segs []*arena.Segment
	for _, loc := range []arena.Location{arena.SysV(k), arena.File(path)} {
		s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16), Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		segs = append(segs, s)
	}
	// A segment of another program, outside shmkit's key space.
	foreign := arena.Key(0x1e000000 | uint32(pidBits())<<8)
	if id, err := unix.SysvShmGet(int(foreign), 4096, unix.IPC_CREAT|0o600); err == nil {
		defer unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	} else {
		t.Fatal(err)
	}
	// And a file in the list directory that is not named shmkit.*.
	other := filepath.Join(arena.DefaultDir, fmt.Sprintf("notshmkit-%d", os.Getpid()))
	if err := os.WriteFile(other, make([]byte, 2048), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(other)

	list, err := arena.List("")
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	var sawKey, sawFile bool
	for i, st := range list {
		if i > 0 && list[i-1].Location > st.Location {
			t.Errorf("List not sorted: %q before %q", list[i-1].Location, st.Location)
		}
		if st.Key == foreign || st.Path == other || (st.Key != 0 && !st.Key.IsShmkit()) {
			t.Errorf("List includes %+v", st)
		}
		want := segs[0]
		switch {
		case st.Key == k:
			sawKey = true
		case st.Path == path:
			sawFile = true
			want = segs[1]
		default:
			continue
		}
		if st.Location != want.Location().String() || st.Size < want.Header().TotalSize || st.Attached != 1 ||
			st.OwnerUID != uint32(os.Getuid()) || st.Mode != 0o600 || st.CreatorPID != os.Getpid() || st.Removed {
			t.Errorf("List entry %+v", st)
		}
		if st.Created.Before(start) || st.Created.After(end) {
			t.Errorf("%s: created %v, outside [%v, %v]", st.Location, st.Created, start, end)
		}
		own, err := want.Stat()
		if err != nil || own.Size != st.Size || own.Attached != st.Attached || own.ID != st.ID || own.CreatorPID != st.CreatorPID {
			t.Errorf("Segment.Stat %+v (%v) differs from List %+v", own, err, st)
		}
		if st.Key == k && (st.ID <= 0 && st.ID != 0) {
			t.Errorf("shmid %d", st.ID)
		}
	}
	if !sawKey || !sawFile {
		t.Errorf("List misses our segments (SysV %v, file %v): %+v", sawKey, sawFile, list)
	}
	// Another directory.
	dir := t.TempDir()
	for _, n := range []string{arena.FilePrefix + "a", "b"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list, err = arena.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, st := range list {
		if st.Path != "" {
			files = append(files, st.Path)
		}
	}
	if len(files) != 1 || files[0] != filepath.Join(dir, arena.FilePrefix+"a") {
		t.Errorf("List(%s) files %v", dir, files)
	}
	if _, err := arena.List(filepath.Join(dir, "missing")); err == nil {
		t.Error("List of a missing directory succeeded")
	}
}

func TestKeys(t *testing.T) {
	k := arena.MakeKey(arena.ClassPool, 0x123)
	if k != 0x53031230 || !k.IsShmkit() || k.Stage() != 0 || k.String() != "0x53031230" {
		t.Errorf("MakeKey = %s", k)
	}
	if got := arena.MakeKey(arena.ClassCluster, 0xffff); got != 0x5301fff0 {
		t.Errorf("instance not masked to 12 bits: %s", got)
	}
	if s := k.WithStage(5); s != 0x53031235 || s.Stage() != 5 || s.WithStage(0) != k {
		t.Errorf("WithStage: %s", s)
	}
	if arena.Key(0xA7000000).IsShmkit() || arena.Key(0x52ffffff).IsShmkit() {
		t.Error("IsShmkit of a foreign key")
	}
	for in, want := range map[string]arena.Key{"0x53010000": 0x53010000, "0X5301000A": 0x5301000a, "1392574464": 0x53010000, "0": 0, "0xffffffff": 0xffffffff} {
		got, err := arena.ParseKey(in)
		if err != nil || got != want {
			t.Errorf("ParseKey(%q) = %s, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0x", "12abc", "0x1g", "-1", "+5", "0x100000000", "4294967296", " 5", "0x-1"} {
		if got, err := arena.ParseKey(in); err == nil {
			t.Errorf("ParseKey(%q) = %s, want an error", in, got)
		}
	}
	if p := arena.DefaultFilePath("x"); p != "/dev/shm/shmkit.x" {
		t.Errorf("DefaultFilePath = %q", p)
	}
}

func TestLocations(t *testing.T) {
	k := arena.MakeKey(arena.ClassTest, 1)
	loc := arena.SysV(k)
	if loc.String() != "SysV key 0x537e0010" || loc.RemoveHint() != "ipcrm -M 0x537e0010" {
		t.Errorf("SysV: %q %q", loc, loc.RemoveHint())
	}
	st, err := loc.Stage(3)
	if err != nil || st.String() != "SysV key 0x537e0013" {
		t.Errorf("Stage(3) = %v, %v", st, err)
	}
	if _, err := st.Stage(1); err == nil {
		t.Error("a stage of a stage key")
	}
	f := arena.File("/x/y")
	if f.String() != "file /x/y" || f.RemoveHint() != "rm /x/y" {
		t.Errorf("File: %q %q", f, f.RemoveHint())
	}
	if st, err := f.Stage(15); err != nil || st.String() != "file /x/y.s15" {
		t.Errorf("File.Stage(15) = %v, %v", st, err)
	}
	h := arena.NewHeapStore().At("p")
	if st, err := h.Stage(2); err != nil || st.String() != "heap segment p.s2" {
		t.Errorf("heap Stage(2) = %v, %v", st, err)
	}
	for _, l := range []arena.Location{loc, f, h} {
		for _, n := range []int{0, -1, arena.MaxStages} {
			if _, err := l.Stage(n); err == nil {
				t.Errorf("%s.Stage(%d) succeeded", l, n)
			}
		}
	}
}

func TestErrorMessage(t *testing.T) {
	e := &arena.Error{Op: "open", Seg: "SysV key 0x537e0010", Err: arena.ErrNotFound, Hint: "create it"}
	if got := e.Error(); got != "arena: open SysV key 0x537e0010: segment does not exist (create it)" {
		t.Errorf("Error() = %q", got)
	}
	e.Hint = ""
	if got := e.Error(); got != "arena: open SysV key 0x537e0010: segment does not exist" {
		t.Errorf("Error() without hint = %q", got)
	}
	if !errors.Is(e, arena.ErrNotFound) {
		t.Error("Unwrap")
	}
}

// TestQuiescentWriteAt: bytes written with QuiescentWriteAt (through the
// file for file segments, through the mapping otherwise) read back through
// the mapping, exactly where written, on every backend; a range outside
// the segment is refused.
func TestQuiescentWriteAt(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			loc := b.loc(t)
			const size = 3 << 16
			s, err := arena.CreateRaw(loc, size, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer arena.Remove(loc, arena.RemoveOptions{Force: true})
			p := make([]byte, 1<<16+123)
			for i := range p {
				p[i] = byte(i*7 + 1)
			}
			const off = 4096 + 5
			if err := s.QuiescentWriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			got, err := s.QuiescentBytes(0, size)
			if err != nil {
				t.Fatal(err)
			}
			if string(got[off:off+len(p)]) != string(p) || got[off-1] != 0 || got[off+len(p)] != 0 {
				t.Fatal("the mapping does not show exactly the bytes written")
			}
			if err := s.QuiescentWriteAt(p, size-100); !errors.Is(err, arena.ErrRange) {
				t.Fatalf("write past the end: %v, want ErrRange", err)
			}
			s.Close()
		})
	}
}
