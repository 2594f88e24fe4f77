package arena_test

import (
	"bytes"
	"context"
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
	"github.com/shmkit/shmkit/bench/harness"
)

// Segments that another user prepared must not be used, and a symlink that
// another user planted must not be followed (issue 7, section 3).

type plantArgs struct {
	Links    []plantLink
	Segments []plantSeg
}

// plantLink is a symlink at Link pointing to Target.
type plantLink struct{ Target, Link string }

// plantSeg is a segment the worker creates: a shmkit segment (arena.Create
// with testSpec(16)), or with Raw the bare object (a zero-filled SysV
// segment, an empty file). GiveToRoot then hands a SysV segment's
// ownership to uid 0 with IPC_SET, as its creator may.
type plantSeg struct {
	Loc        locArg
	Mode       os.FileMode
	Raw        bool
	GiveToRoot bool
}

type plantResult struct{ UID int }

// wPlant drops to uid/gid 65534 and prepares what an unprivileged user
// could: symlinks and segments of its own at the paths and keys given.
func wPlant(ctx context.Context, w *harness.Worker) (any, error) {
	var a plantArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	if err := becomeNobody(nil); err != nil {
		return nil, err
	}
	for _, l := range a.Links {
		if err := os.Symlink(l.Target, l.Link); err != nil {
			return nil, err
		}
	}
	for _, s := range a.Segments {
		switch {
		case s.Raw && s.Loc.Kind == "sysv":
			if _, err := unix.SysvShmGet(int(s.Loc.Key), 8192, unix.IPC_CREAT|unix.IPC_EXCL|int(s.Mode)); err != nil {
				return nil, fmt.Errorf("shmget %#x: %w", s.Loc.Key, err)
			}
		case s.Raw:
			f, err := os.OpenFile(s.Loc.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL, s.Mode)
			if err != nil {
				return nil, err
			}
			err = f.Chmod(s.Mode)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, err
			}
		default:
			seg, err := arena.Create(ctx, s.Loc.loc(), arena.Options{Spec: testSpec(16), Mode: s.Mode, Logger: w.Log})
			if err != nil {
				return nil, err
			}
			if err := seg.Close(); err != nil {
				return nil, err
			}
		}
		if s.GiveToRoot {
			id, err := unix.SysvShmGet(int(s.Loc.Key), 0, 0)
			if err != nil {
				return nil, err
			}
			var d unix.SysvShmDesc
			if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil {
				return nil, err
			}
			d.Perm.Uid, d.Perm.Gid = 0, 0
			if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &d); err != nil {
				return nil, fmt.Errorf("IPC_SET: %w", err)
			}
		}
	}
	return plantResult{UID: os.Getuid()}, nil
}

// plant runs wPlant and checks that it ran as nobody.
func plant(t *testing.T, a plantArgs) {
	t.Helper()
	g := startGroup(t, harness.Spec{Workload: "plant", N: 1, Args: a})
	var r plantResult
	if err := waitResults(t, g)[0].Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.UID != 65534 {
		t.Fatalf("plant worker ran as uid %d", r.UID)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a worker as another user and to attach its segments")
	}
}

// removeForced removes the SysV segment at k when t ends (through arena,
// so that its liveness lock file goes too); testKeys' cleanup then checks
// nothing is left at the key.
func removeForced(t *testing.T, k arena.Key) {
	t.Cleanup(func() {
		if err := arena.Remove(arena.SysV(k), arena.RemoveOptions{Force: true}); err != nil && !errors.Is(err, arena.ErrNotFound) {
			t.Errorf("remove %s: %v", k, err)
		}
	})
}

// fileState is what a victim file must keep.
type fileState struct {
	size    int64
	mode    os.FileMode
	mtime   time.Time
	content []byte
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileState{size: fi.Size(), mode: fi.Mode(), mtime: fi.ModTime(), content: b}
}

func (s fileState) equal(o fileState) bool {
	return s.size == o.size && s.mode == o.mode && s.mtime.Equal(o.mtime) && bytes.Equal(s.content, o.content)
}

// TestSymlinkNotFollowed reproduces the hijack of issue 7: uid 65534 plants
// symlinks at /dev/shm segment paths pointing to root's files (an empty
// one, which the old code grew and wrote a header into, and one with
// contents) and to a path that does not exist. Root's Create, Open,
// OpenOrCreate, StatOf and Remove (forced) must refuse each with
// ErrSymlink naming the link and its owner, and leave every target as it
// was. The control checks that the set-up is the attack: the links are
// nobody's, and following them reaches root's files.
func TestSymlinkNotFollowed(t *testing.T) {
	needRoot(t)
	ctx := ctxT(t)
	dir := t.TempDir() // root's, 0700
	empty, full, absent := filepath.Join(dir, "victim-empty"), filepath.Join(dir, "victim-full"), filepath.Join(dir, "absent")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte("root's precious contents\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{shmPath(t, "link-empty"): empty, shmPath(t, "link-full"): full, shmPath(t, "link-absent"): absent}
	var a plantArgs
	for link, target := range links {
		a.Links = append(a.Links, plantLink{Target: target, Link: link})
	}
	plant(t, a)

	before := map[string]fileState{empty: stateOf(t, empty), full: stateOf(t, full)}
	for link, target := range links {
		fi, err := os.Lstat(link)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
			t.Fatalf("control: %s is not a symlink of uid 65534: %v, %v", link, fi, err)
		}
		if target == absent {
			continue
		}
		tfi, _ := os.Stat(target)
		if lfi, err := os.Stat(link); err != nil || !os.SameFile(lfi, tfi) {
			t.Fatalf("control: following %s does not reach %s: %v", link, target, err)
		}
	}

	opts := arena.Options{Spec: testSpec(16), Timeout: 5 * time.Second, AbandonAfter: 10 * time.Millisecond, Logger: discard()}
	for link := range links {
		loc := arena.File(link)
		check := func(op string, err error) {
			t.Helper()
			ae := asArenaError(t, err, arena.ErrSymlink)
			if !strings.Contains(err.Error(), link) || !strings.Contains(err.Error(), "uid 65534") {
				t.Errorf("%s %s: %q does not name the link and its owner", op, link, err)
			}
			if !strings.Contains(ae.Hint, "rm "+link) {
				t.Errorf("%s %s: hint %q does not say how to remove the link", op, link, ae.Hint)
			}
		}
		for op, f := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
			"Create": arena.Create, "Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate,
		} {
			s, err := f(ctx, loc, opts)
			if err == nil {
				s.Close()
			}
			check(op, err)
		}
		_, err := arena.StatOf(loc)
		check("StatOf", err)
		check("Remove", arena.Remove(loc, arena.RemoveOptions{Force: true}))
		_, err = arena.Inspect(loc)
		check("Inspect", err)
	}
	for path, st := range before {
		if now := stateOf(t, path); !now.equal(st) {
			t.Errorf("%s changed through a symlink: %+v, was %+v", path, now, st)
		}
	}
	if _, err := os.Lstat(absent); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was created through a dangling symlink: %v", absent, err)
	}
}

// TestForeignOwner: segments uid 65534 created (shmkit segments of mode
// 0600 and 0666, one handed over to root with IPC_SET, and bare ones
// without a header) are refused by root with ErrForeignOwner or
// ErrModeTooWide, naming owner, creator and mode and the ways out, before
// anything is written; configured to accept uid 65534 and the mode, root
// opens the same segments (the control that the refusal is the check's).
func TestForeignOwner(t *testing.T) {
	needRoot(t)
	ctx := ctxT(t)
	keys := testKeys(t, 4)
	for _, k := range keys {
		removeForced(t, k)
	}
	sv := func(i int) locArg { return sysvArg(keys[i]) }
	own, given, wide, raw := sv(0), sv(1), sv(2), sv(3)
	fown, fwide, fraw := fileArg(shmPath(t, "own")), fileArg(shmPath(t, "wide")), fileArg(shmPath(t, "raw"))
	plant(t, plantArgs{Segments: []plantSeg{
		{Loc: own, Mode: 0o600}, {Loc: given, Mode: 0o600, GiveToRoot: true}, {Loc: wide, Mode: 0o666},
		{Loc: raw, Mode: 0o600, Raw: true},
		{Loc: fown, Mode: 0o600}, {Loc: fwide, Mode: 0o666}, {Loc: fraw, Mode: 0o600, Raw: true},
	}})
	if st, err := arena.StatOf(given.loc()); err != nil || st.OwnerUID != 0 {
		t.Fatalf("control: %s owner %d, %v; want handed to root", given.loc(), st.OwnerUID, err)
	}
	if st, err := arena.StatOf(own.loc()); err != nil || st.OwnerUID != 65534 {
		t.Fatalf("control: %s owner %d, %v", own.loc(), st.OwnerUID, err)
	}

	def := arena.Options{Spec: testSpec(16), Timeout: 5 * time.Second, AbandonAfter: 10 * time.Millisecond, Logger: discard()}
	allow := def
	allow.AllowUIDs = []uint32{65534}
	allowWide := allow
	allowWide.Mode = 0o666
	cases := []struct {
		name  string
		loc   locArg
		opts  arena.Options
		want  error    // nil: opens
		parts []string // in the message and hint
	}{
		{"sysv owner", own, def, arena.ErrForeignOwner, []string{"owner uid 65534, mode 0600", "runs as uid 0", "add uid 65534 to Options.AllowUIDs", "ipcrm -M " + keys[0].String()}},
		{"sysv creator", given, def, arena.ErrForeignOwner, []string{"owner uid 0, creator uid 65534, mode 0600", "add uid 65534 to Options.AllowUIDs"}},
		{"sysv bare", raw, def, arena.ErrForeignOwner, []string{"owner uid 65534"}},
		{"sysv mode", wide, allow, arena.ErrModeTooWide, []string{"owner uid 65534, mode 0666, configured mode 0600", "set Options.Mode to 0666", "ipcrm -M " + keys[2].String()}},
		{"file owner", fown, def, arena.ErrForeignOwner, []string{"owner uid 65534, mode 0600", "add uid 65534 to Options.AllowUIDs", "chown it to uid 0", "rm " + fown.Path}},
		{"file bare", fraw, def, arena.ErrForeignOwner, []string{"owner uid 65534"}},
		{"file mode", fwide, allow, arena.ErrModeTooWide, []string{"mode 0666, configured mode 0600", "chmod 0600 " + fwide.Path, "set Options.Mode to 0666"}},
		{"file mode, no uid", fwide, def, arena.ErrForeignOwner, []string{"owner uid 65534, mode 0666"}},
		// Controls: configured to accept them, root opens the same segments.
		{"sysv owner allowed", own, allow, nil, nil},
		{"sysv creator allowed", given, allow, nil, nil},
		{"sysv mode allowed", wide, allowWide, nil, nil},
		{"file owner allowed", fown, allow, nil, nil},
		{"file mode allowed", fwide, allowWide, nil, nil},
	}
	for _, tc := range cases {
		for op, f := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
			"Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate,
		} {
			s, err := f(ctx, tc.loc.loc(), tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Errorf("%s: %s: %v", tc.name, op, err)
					continue
				}
				if pid := s.Header().Creator.PID; pid == uint32(os.Getpid()) {
					t.Errorf("%s: %s: this process created the segment it opened: not the planted one", tc.name, op)
				}
				mustClose(t, s)
				continue
			}
			if err == nil {
				s.Close()
			}
			ae := asArenaError(t, err, tc.want)
			for _, p := range tc.parts {
				if !strings.Contains(err.Error()+" "+ae.Hint, p) {
					t.Errorf("%s: %s: %q (hint %q) does not contain %q", tc.name, op, err, ae.Hint, p)
				}
			}
		}
	}
	// The bare segments were not initialized: nothing was written.
	if b := readSysV(t, keys[3]); !bytes.Equal(b, make([]byte, len(b))) {
		t.Errorf("%s: bytes written into a foreign segment", raw.loc())
	}
	if fi, err := os.Stat(fraw.Path); err != nil || fi.Size() != 0 {
		t.Errorf("%s: foreign empty file grown: %v, %v", fraw.Path, fi, err)
	}
}

// TestGroupSetup is the documented 0660 set-up across users: root creates
// segments of mode 0660, and a worker running as uid 65534 in root's group
// opens them when configured with Mode 0660 and AllowUIDs {0}, and writes
// into them. Unconfigured, the same worker is refused (ErrForeignOwner);
// outside the group, the kernel refuses it (ErrPermission).
func TestGroupSetup(t *testing.T) {
	needRoot(t)
	ctx := ctxT(t)
	k := testKey(t)
	removeForced(t, k)
	locs := []locArg{sysvArg(k), fileArg(shmPath(t, "group"))}
	for _, la := range locs {
		s, err := arena.Create(ctx, la.loc(), arena.Options{Spec: testSpec(16), Mode: 0o660})
		if err != nil {
			t.Fatal(err)
		}
		mustClose(t, s)
	}
	const mark = 0x600df00d
	run := func(a nobodyArgs) []nobodyOutcome {
		t.Helper()
		a.Locs = locs
		g := startGroup(t, harness.Spec{Workload: "nobody", N: 1, Args: a})
		var r nobodyResult
		if err := waitResults(t, g)[0].Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.UID != 65534 || len(r.Outcome) != len(locs) {
			t.Fatalf("worker uid %d, %d outcomes", r.UID, len(r.Outcome))
		}
		return r.Outcome
	}
	for _, o := range run(nobodyArgs{Groups: []int{0}, Mark: mark}) {
		if o.OK || !o.ForeignOwner || !strings.Contains(o.Err, "owner uid 0, mode 0660") {
			t.Errorf("%s unconfigured: ok %v, err %q: want ErrForeignOwner naming owner and mode", o.Loc, o.OK, o.Err)
		}
	}
	for _, o := range run(nobodyArgs{AllowUIDs: []uint32{0}, Mode: 0o660, Mark: mark}) {
		if o.OK || !o.Permission {
			t.Errorf("%s outside the group: ok %v, err %q: want ErrPermission", o.Loc, o.OK, o.Err)
		}
	}
	for _, o := range run(nobodyArgs{Groups: []int{0}, AllowUIDs: []uint32{0}, Mode: 0o660, Mark: mark}) {
		if !o.OK {
			t.Errorf("%s configured: %s (%s)", o.Loc, o.Err, o.Hint)
		}
	}
	for _, la := range locs {
		s, err := arena.Open(ctx, la.loc(), arena.Options{Spec: testSpec(16), Mode: 0o660})
		if err != nil {
			t.Fatal(err)
		}
		if got := dataWord(t, s, 2); got != mark {
			t.Errorf("%s: data word 2 = %#x, want the worker's %#x", la.loc(), got, uint64(mark))
		}
		mustClose(t, s)
		if err := arena.Remove(la.loc(), arena.RemoveOptions{}); err != nil {
			t.Error(err)
		}
	}
}

// TestModeTooWide: in one process and uid, on every backend, a segment
// created with a wider mode than another user of it configures is refused
// by that user (ErrModeTooWide), and accepted by one configured with the
// same or a wider mode.
func TestModeTooWide(t *testing.T) {
	ctx := ctxT(t)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			loc := b.loc(t)
			s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16), Mode: 0o640})
			if err != nil {
				t.Fatal(err)
			}
			defer mustClose(t, s)
			_, err = arena.Open(ctx, loc, arena.Options{Spec: testSpec(16)})
			asArenaError(t, err, arena.ErrModeTooWide)
			if !strings.Contains(err.Error(), "mode 0640, configured mode 0600") {
				t.Errorf("message %q does not name both modes", err)
			}
			for _, m := range []os.FileMode{0o640, 0o660, 0o666} {
				o, err := arena.Open(ctx, loc, arena.Options{Spec: testSpec(16), Mode: m})
				if err != nil {
					t.Errorf("Mode %#o: %v", m, err)
					continue
				}
				mustClose(t, o)
			}
			if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestFileNotRegular: a file segment path that names a FIFO, a directory
// or a file with another hard link is refused with ErrNotRegular (a FIFO
// without blocking), and a symlink of this very user is refused as well
// (ErrSymlink): shmkit never follows one, whoever planted it.
func TestFileNotRegular(t *testing.T) {
	ctx := ctxT(t)
	opts := arena.Options{Spec: testSpec(16), Timeout: 5 * time.Second, Logger: discard()}
	dir := t.TempDir()
	fifo, sub := filepath.Join(dir, "fifo"), filepath.Join(dir, "dir")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	seg, link := filepath.Join(dir, "seg"), filepath.Join(dir, "hardlink")
	s, err := arena.Create(ctx, arena.File(seg), opts)
	if err != nil {
		t.Fatal(err)
	}
	mustClose(t, s)
	// Control: the segment opens while it has one link.
	if s, err = arena.Open(ctx, arena.File(seg), opts); err != nil {
		t.Fatalf("control: %v", err)
	}
	mustClose(t, s)
	if err := os.Link(seg, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, sub, seg, link} {
		for op, f := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
			"Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate,
		} {
			s, err := f(ctx, arena.File(p), opts)
			if err == nil {
				s.Close()
			}
			ae := asArenaError(t, err, arena.ErrNotRegular)
			way := "rm " + p
			if p == sub {
				way = "use another path"
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(ae.Hint, way) {
				t.Errorf("%s %s: %q, hint %q", op, p, err, ae.Hint)
			}
		}
		asArenaError(t, arena.Remove(arena.File(p), arena.RemoveOptions{Force: true}), arena.ErrNotRegular)
	}
	for _, p := range []string{fifo, sub} {
		_, err := arena.StatOf(arena.File(p))
		asArenaError(t, err, arena.ErrNotRegular)
	}
	if _, err := arena.Open(ctx, arena.File(link), opts); !strings.Contains(fmt.Sprint(err), "2 hard links") {
		t.Errorf("hard link: %v does not say why", err)
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}

	// Symlinks of this user: to the segment, and dangling.
	own, dangling, target := filepath.Join(dir, "own-link"), filepath.Join(dir, "dangling"), filepath.Join(dir, "target")
	if err := os.Symlink(seg, own); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, dangling); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{own, dangling} {
		for op, f := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
			"Create": arena.Create, "Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate,
		} {
			s, err := f(ctx, arena.File(p), opts)
			if err == nil {
				s.Close()
			}
			if ae := asArenaError(t, err, arena.ErrSymlink); !strings.Contains(err.Error(), fmt.Sprintf("uid %d", os.Geteuid())) {
				t.Errorf("%s %s: %q (hint %q) does not name the link's owner", op, p, err, ae.Hint)
			}
		}
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("created through a dangling symlink: %v", err)
	}
	// The segment itself is unharmed and still opens.
	if s, err = arena.Open(ctx, arena.File(seg), opts); err != nil {
		t.Fatalf("segment after the attempts: %v", err)
	}
	mustClose(t, s)
}
