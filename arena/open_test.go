package arena_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/procid"
)

func self(t testing.TB) procid.Identity {
	t.Helper()
	id, err := procid.Self()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustClose(t testing.TB, s *arena.Segment) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestCreateOpenBasics runs the life cycle of a segment on every backend.
func TestCreateOpenBasics(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := ctxT(t)
			loc := b.loc(t)
			var ran bool
			opts := arena.Options{Spec: testSpec(16), Init: markInit(&ran), Logger: discard()}

			// Open and Remove of a missing segment.
			_, err := arena.Open(ctx, loc, opts)
			ae := asArenaError(t, err, arena.ErrNotFound)
			if ae.Op != "open" || ae.Seg != loc.String() {
				t.Errorf("error names op %q segment %q", ae.Op, ae.Seg)
			}
			if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
				t.Errorf("StatOf(missing) = %v", err)
			}
			if err := arena.Remove(loc, arena.RemoveOptions{}); !errors.Is(err, arena.ErrNotFound) {
				t.Errorf("Remove(missing) = %v", err)
			}

			before := time.Now()
			s1, err := arena.Create(ctx, loc, opts)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if !ran {
				t.Error("Create did not run Init")
			}
			h := s1.Header()
			if h.State != layout.StateReady || h.InitGen != 1 || h.Kind != layout.KindTest || h.Creator != self(t) {
				t.Errorf("header state %v gen %d kind %v creator %v", h.State, h.InitGen, h.Kind, h.Creator)
			}
			if h.Created.Before(before.Add(-time.Second)) || h.Created.After(time.Now()) {
				t.Errorf("created %v, test started %v", h.Created, before)
			}
			if v, _ := h.Field("max_nodes"); v != 16 {
				t.Errorf("max_nodes = %d", v)
			}
			if s1.State() != layout.StateReady || s1.Location() != loc {
				t.Errorf("State %v Location %v", s1.State(), s1.Location())
			}
			if s1.Len() < h.TotalSize {
				t.Errorf("Len %d < total size %d", s1.Len(), h.TotalSize)
			}
			if got := dataWord(t, s1, 0); got != uint64(os.Getpid()) {
				t.Errorf("Init marker %d", got)
			}
			if removed, err := s1.Removed(); removed || err != nil {
				t.Errorf("Removed = %v, %v", removed, err)
			}

			// Create again: exists.
			_, err = arena.Create(ctx, loc, opts)
			asArenaError(t, err, arena.ErrExists)

			// Open and OpenOrCreate attach the same segment without Init.
			for name, open := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
				"Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate} {
				ran = false
				s2, err := open(ctx, loc, opts)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if ran {
					t.Errorf("%s ran Init on a ready segment", name)
				}
				h2 := s2.Header()
				if h2.Checksum != h.Checksum || h2.InitGen != 1 || h2.Creator != h.Creator {
					t.Errorf("%s: header differs: %+v", name, h2)
				}
				// Both mappings see each other's stores.
				off, _, _ := s2.Section("data")
				s2.Store64(off+16, 77)
				if got := s1.Load64(off + 16); got != 77 {
					t.Errorf("%s: store through one attachment reads %d through the other", name, got)
				}
				s1.Store64(off+16, 0)
				mustClose(t, s2)
				if err := s2.Close(); err != nil {
					t.Errorf("second Close: %v", err)
				}
				if _, err := s2.Removed(); !errors.Is(err, arena.ErrClosed) {
					t.Errorf("Removed after Close = %v, want ErrClosed", err)
				}
			}

			// Remove refuses while s1 is attached, then works.
			err = arena.Remove(loc, arena.RemoveOptions{})
			asArenaError(t, err, arena.ErrInUse)
			mustClose(t, s1)
			if err := arena.Remove(loc, arena.RemoveOptions{}); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
				t.Errorf("StatOf after Remove = %v", err)
			}

			// OpenOrCreate of a missing segment creates it.
			ran = false
			s3, err := arena.OpenOrCreate(ctx, loc, opts)
			if err != nil {
				t.Fatalf("OpenOrCreate(missing): %v", err)
			}
			if !ran || s3.Header().InitGen != 1 {
				t.Errorf("OpenOrCreate(missing): Init ran %v, gen %d", ran, s3.Header().InitGen)
			}
			mustClose(t, s3)
			if err := arena.Remove(loc, arena.RemoveOptions{}); err != nil {
				t.Fatalf("Remove: %v", err)
			}
		})
	}
}

// TestMismatch: an existing segment with another configuration is refused
// with a *layout.MismatchError that names the segment and the remedy.
func TestMismatch(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := ctxT(t)
			loc := b.loc(t)
			s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16), Logger: discard()})
			if err != nil {
				t.Fatal(err)
			}
			defer arena.Remove(loc, arena.RemoveOptions{Force: true})
			defer s.Close()
			for name, open := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
				"Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate} {
				_, err := open(ctx, loc, arena.Options{Spec: testSpec(32), Logger: discard()})
				if !errors.Is(err, layout.ErrMismatch) {
					t.Fatalf("%s: %v, want ErrMismatch", name, err)
				}
				var me *layout.MismatchError
				if !errors.As(err, &me) {
					t.Fatalf("%s: %T is no *layout.MismatchError", name, err)
				}
				if me.Field != "max_nodes" || me.Have != 16 || me.Want != 32 || me.Segment != loc.String() || me.Remedy != loc.RemoveHint() {
					t.Errorf("%s: mismatch %+v", name, me)
				}
				want := fmt.Sprintf("%s has max_nodes=16, this process asks for 32: stop every process using it and remove it (%s)", loc, loc.RemoveHint())
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: message %q\nlacks %q", name, err, want)
				}
				if b.name == "sysv" && !strings.Contains(err.Error(), "(ipcrm -M 0x537e") {
					t.Errorf("%s: message %q lacks the ipcrm remedy", name, err)
				}
				var ae *arena.Error
				if !errors.As(err, &ae) || ae.Op != "open" {
					t.Errorf("%s: not an *arena.Error of op open: %v", name, err)
				}
			}
			// Kind and sections are part of the match too.
			spec := testSpec(16)
			spec.Kind = layout.KindIndex
			_, err = arena.Open(ctx, loc, arena.Options{Spec: spec, Logger: discard()})
			var me *layout.MismatchError
			if !errors.As(err, &me) || me.Field != "kind" || me.HaveText != "test" || me.WantText != "index" {
				t.Errorf("kind mismatch: %v", err)
			}
			spec = testSpec(16)
			spec.Sections[0].Size = 8192
			_, err = arena.Open(ctx, loc, arena.Options{Spec: spec, Logger: discard()})
			if !errors.As(err, &me) || me.Field != "section data size" {
				t.Errorf("section mismatch: %v", err)
			}
			// A bad spec is refused before anything is touched.
			spec.Fields = append(spec.Fields, layout.Field{Name: "bad name"})
			_, err = arena.OpenOrCreate(ctx, loc, arena.Options{Spec: spec})
			if ae := asArenaError(t, err, layout.ErrSpec); ae.Op != "plan" {
				t.Errorf("op %q", ae.Op)
			}
		})
	}
}

// rawSysV creates a SysV segment at k directly (not through arena) and
// fills it.
func rawSysV(t testing.TB, k arena.Key, size int, fill func([]byte)) int {
	t.Helper()
	id, err := unix.SysvShmGet(int(k), size, unix.IPC_CREAT|unix.IPC_EXCL|0o600)
	if err != nil {
		t.Fatalf("shmget(%s): %v", k, err)
	}
	b, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	fill(b)
	if err := unix.SysvShmDetach(b); err != nil {
		t.Fatal(err)
	}
	return id
}

func junk(b []byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	copy(b, "NOTSHMKT") // a non-zero magic that is not ours
}

func readSysV(t testing.TB, k arena.Key) []byte {
	t.Helper()
	id, err := unix.SysvShmGet(int(k), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := unix.SysvShmAttach(id, 0, unix.SHM_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.SysvShmDetach(b)
	return bytes.Clone(b)
}

// TestNotOurs: a segment of another program at our key or path is refused
// with layout.ErrNotOurs and a hint, and left untouched.
func TestNotOurs(t *testing.T) {
	ctx := ctxT(t)
	k := testKey(t)
	rawSysV(t, k, 8192, junk)
	want := readSysV(t, k)
	tmp, shm := tmpPath(t, "junk"), shmPath(t, "junk")
	junkFile := make([]byte, 8192)
	junk(junkFile)
	for _, p := range []string{tmp, shm} {
		if err := os.WriteFile(p, junkFile, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, loc := range []arena.Location{arena.SysV(k), arena.File(tmp), arena.File(shm)} {
		for name, open := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
			"Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate} {
			var ran bool
			_, err := open(ctx, loc, arena.Options{Spec: testSpec(16), Init: markInit(&ran), Logger: discard()})
			ae := asArenaError(t, err, layout.ErrNotOurs)
			var ce *layout.CheckError
			if !errors.As(err, &ce) {
				t.Errorf("%s %s: no *layout.CheckError in %v", name, loc, err)
			}
			if ran {
				t.Errorf("%s %s ran Init on a foreign segment", name, loc)
			}
			if !strings.Contains(ae.Hint, "another program") || !strings.Contains(ae.Hint, loc.RemoveHint()) {
				t.Errorf("%s %s: hint %q", name, loc, ae.Hint)
			}
			if !strings.Contains(err.Error(), loc.String()) {
				t.Errorf("%s: message %q does not name the segment", name, err)
			}
		}
		if _, err := arena.Inspect(loc); !errors.Is(err, layout.ErrNotOurs) {
			t.Errorf("Inspect(%s) = %v", loc, err)
		}
		err := arena.Remove(loc, arena.RemoveOptions{})
		if ae := asArenaError(t, err, layout.ErrNotOurs); !strings.Contains(ae.Hint, "force") {
			t.Errorf("Remove hint %q", ae.Hint)
		}
	}
	if got := readSysV(t, k); !bytes.Equal(got, want) {
		t.Error("the foreign SysV segment was modified")
	}
	for _, p := range []string{tmp, shm} {
		if got, _ := os.ReadFile(p); !bytes.Equal(got, junkFile) {
			t.Errorf("the foreign file %s was modified", p)
		}
	}
	// Force removes them.
	for _, loc := range []arena.Location{arena.SysV(k), arena.File(tmp), arena.File(shm)} {
		if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
			t.Errorf("forced Remove(%s): %v", loc, err)
		}
		if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
			t.Errorf("StatOf(%s) after forced Remove: %v", loc, err)
		}
	}
}

// TestTooSmall: a segment smaller than a header is refused with ErrSize.
func TestTooSmall(t *testing.T) {
	ctx := ctxT(t)
	k := testKey(t)
	rawSysV(t, k, 512, func([]byte) {})
	tmp, shm := tmpPath(t, "small"), shmPath(t, "small")
	for _, p := range []string{tmp, shm} {
		if err := os.WriteFile(p, make([]byte, 100), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, loc := range []arena.Location{arena.SysV(k), arena.File(tmp), arena.File(shm)} {
		for name, open := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
			"Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate} {
			_, err := open(ctx, loc, arena.Options{Spec: testSpec(16), Logger: discard()})
			ae := asArenaError(t, err, arena.ErrSize)
			if !strings.Contains(ae.Hint, loc.RemoveHint()) || !strings.Contains(err.Error(), "smaller than a header") {
				t.Errorf("%s %s: %v (hint %q)", name, loc, err, ae.Hint)
			}
		}
	}
	// An existing SysV segment of another size than asked for by Create
	// is still reported as existing.
	_, err := arena.Create(ctx, arena.SysV(k), arena.Options{Spec: testSpec(16)})
	asArenaError(t, err, arena.ErrExists)

	// An abandoned (zero) segment larger than a header but smaller than
	// the plan is refused when initializing it, and left unclaimed.
	k2 := testKeys(t, 2)[1]
	rawSysV(t, k2, 2048, func([]byte) {})
	var ran bool
	_, err = arena.Open(ctx, arena.SysV(k2), arena.Options{Spec: testSpec(16), Init: markInit(&ran), AbandonAfter: time.Millisecond, Logger: discard()})
	ae := asArenaError(t, err, arena.ErrSize)
	if ae.Op != "init" || ran || !strings.Contains(ae.Hint, "ipcrm -M") {
		t.Errorf("%v (op %q, hint %q), Init ran %v", err, ae.Op, ae.Hint, ran)
	}
	if st, _ := layout.SplitStateWord(binary.NativeEndian.Uint64(readSysV(t, k2)[layout.OffState:])); st != layout.StateEmpty {
		t.Errorf("state left %v", st)
	}
}

// TestRemoveSmallFiles: a file too small to be a segment is not removed
// without Force; an empty file (a creation that never got its size) is.
func TestRemoveSmallFiles(t *testing.T) {
	tiny, empty := tmpPath(t, "tiny"), tmpPath(t, "empty")
	if err := os.WriteFile(tiny, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	asArenaError(t, arena.Remove(arena.File(tiny), arena.RemoveOptions{}), layout.ErrNotOurs)
	if got, _ := os.ReadFile(tiny); string(got) != "0123456789" {
		t.Errorf("tiny file now %q", got)
	}
	for _, c := range []struct {
		p     string
		force bool
	}{{tiny, true}, {empty, false}} {
		if err := arena.Remove(arena.File(c.p), arena.RemoveOptions{Force: c.force}); err != nil {
			t.Errorf("Remove(%s, force %v): %v", c.p, c.force, err)
		}
		if _, err := os.Stat(c.p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists", c.p)
		}
	}
}

// TestOpenRetired: a segment marked retired (being removed) is refused
// with ErrRemoved.
func TestOpenRetired(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := ctxT(t)
			loc := b.loc(t)
			s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16)})
			if err != nil {
				t.Fatal(err)
			}
			defer arena.Remove(loc, arena.RemoveOptions{Force: true})
			defer s.Close()
			s.Store64(layout.OffState, layout.StateWord(layout.StateRetired, 1))
			for name, open := range map[string]func(context.Context, arena.Location, arena.Options) (*arena.Segment, error){
				"Open": arena.Open, "OpenOrCreate": arena.OpenOrCreate} {
				_, err := open(ctx, loc, arena.Options{Spec: testSpec(16)})
				if ae := asArenaError(t, err, arena.ErrRemoved); !strings.Contains(ae.Hint, "open again") {
					t.Errorf("%s: hint %q", name, ae.Hint)
				}
			}
			if removed, err := s.Removed(); !removed || err != nil {
				t.Errorf("Removed = %v, %v", removed, err)
			}
		})
	}
}

// TestReservedKeys: keys in Aerospike's ranges are refused by every
// operation, before any system call touches them.
func TestReservedKeys(t *testing.T) {
	ctx := ctxT(t)
	opts := arena.Options{Spec: testSpec(16), Logger: discard()}
	for _, top := range []uint32{0xA2, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE} {
		for _, low := range []uint32{0, 0x00123456, 0x00ffffff} {
			loc := arena.SysV(arena.Key(top<<24 | low))
			ops := map[string]func() error{
				"Create":       func() error { _, err := arena.Create(ctx, loc, opts); return err },
				"Open":         func() error { _, err := arena.Open(ctx, loc, opts); return err },
				"OpenOrCreate": func() error { _, err := arena.OpenOrCreate(ctx, loc, opts); return err },
				"Remove":       func() error { return arena.Remove(loc, arena.RemoveOptions{Force: true}) },
				"Inspect":      func() error { _, err := arena.Inspect(loc); return err },
				"OpenPool":     func() error { _, err := arena.OpenPool(ctx, loc, poolConfig(8, 4)); return err },
			}
			for name, op := range ops {
				err := op()
				ae := asArenaError(t, err, arena.ErrReservedKey)
				if !strings.Contains(ae.Hint, "Aerospike") || !strings.Contains(err.Error(), loc.String()) {
					t.Errorf("%s(%s): %v, hint %q", name, loc, err, ae.Hint)
				}
			}
		}
	}
	// Neighbouring prefixes are not reserved.
	for _, top := range []uint32{0xA1, 0xA3, 0xA4, 0xAF, 0x53} {
		k := arena.Key(top<<24 | 0x00fedcb0)
		if _, err := arena.Open(ctx, arena.SysV(k), opts); errors.Is(err, arena.ErrReservedKey) {
			t.Errorf("key %s refused as reserved", k)
		}
	}
}

// TestInitFailure: an Init error is reported with ErrInitFailed, and the
// segment is left for another process, which initializes it (generation
// 2) once it has stayed unclaimed for AbandonAfter.
func TestInitFailure(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := ctxT(t)
			loc := b.loc(t)
			boom := errors.New("boom")
			_, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16), Logger: discard(),
				Init: func(*arena.Segment) error { return boom }})
			if ae := asArenaError(t, err, arena.ErrInitFailed); ae.Op != "init" || !errors.Is(err, boom) {
				t.Fatalf("Create with failing Init: %v", err)
			}
			defer arena.Remove(loc, arena.RemoveOptions{Force: true})

			rec := &recorder{}
			var ran bool
			s, err := arena.OpenOrCreate(ctx, loc, arena.Options{Spec: testSpec(16), Init: markInit(&ran),
				Logger: slog.New(rec), AbandonAfter: time.Millisecond})
			if err != nil {
				t.Fatalf("OpenOrCreate after the failed Init: %v", err)
			}
			defer s.Close()
			if !ran || s.Header().InitGen != 2 || s.Header().State != layout.StateReady {
				t.Errorf("Init ran %v, gen %d, state %v", ran, s.Header().InitGen, s.Header().State)
			}
			if !hasRecord(rec, "WARN arena: initializing a segment its creator abandoned") {
				t.Errorf("log %q", rec.records())
			}
		})
	}
}

// TestAbandonedBeforeClaim: a creator that died after creating the
// segment but before claiming it leaves zero memory (SysV) or an empty
// file; Open and OpenOrCreate initialize it after AbandonAfter.
func TestAbandonedBeforeClaim(t *testing.T) {
	ctx := ctxT(t)
	p, err := testSpec(16).Plan()
	if err != nil {
		t.Fatal(err)
	}
	k := testKey(t)
	rawSysV(t, k, int(p.TotalSize), func([]byte) {})
	shm := shmPath(t, "empty")
	if err := os.WriteFile(shm, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Open (not create) never grows an empty file: it times out.
	_, err = arena.Open(ctx, arena.File(shm), arena.Options{Spec: testSpec(16), Timeout: 20 * time.Millisecond})
	asArenaError(t, err, arena.ErrTimeout)

	for _, c := range []struct {
		loc  arena.Location
		open func(context.Context, arena.Location, arena.Options) (*arena.Segment, error)
	}{{arena.SysV(k), arena.Open}, {arena.File(shm), arena.OpenOrCreate}} {
		rec := &recorder{}
		var ran bool
		s, err := c.open(ctx, c.loc, arena.Options{Spec: testSpec(16), Init: markInit(&ran), Logger: slog.New(rec), AbandonAfter: time.Millisecond})
		if err != nil {
			t.Fatalf("%s: %v", c.loc, err)
		}
		if !ran || s.Header().InitGen != 1 || s.Header().Creator != self(t) {
			t.Errorf("%s: Init ran %v, gen %d, creator %v", c.loc, ran, s.Header().InitGen, s.Header().Creator)
		}
		if !hasRecord(rec, "abandoned") {
			t.Errorf("%s: log %q", c.loc, rec.records())
		}
		mustClose(t, s)
	}
}

// TestInitializerStates drives the wait/take-over decisions with a state
// word written by hand: initializing by a live process (this one) times
// out naming the state and pid; initializing by a dead pid is taken over.
func TestInitializerStates(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := ctxT(t)
			loc := b.loc(t)
			s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16), Logger: discard()})
			if err != nil {
				t.Fatal(err)
			}
			defer arena.Remove(loc, arena.RemoveOptions{Force: true})
			defer s.Close()
			held, release := otherSlot(t, loc) // while the segment is ready

			me := uint32(os.Getpid())
			s.Store64(layout.OffState, layout.StateWord(layout.StateInitializing, me))
			_, err = arena.Open(ctx, loc, arena.Options{Spec: testSpec(16), Timeout: 30 * time.Millisecond, Logger: discard()})
			ae := asArenaError(t, err, arena.ErrTimeout)
			if !strings.Contains(err.Error(), "state initializing") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", me)) || ae.Hint == "" {
				t.Errorf("timeout error %v (hint %q) does not name the state and pid", err, ae.Hint)
			}
			// The context bounds the wait as well.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err = arena.Open(cctx, loc, arena.Options{Spec: testSpec(16), Logger: discard()})
			asArenaError(t, err, arena.ErrTimeout)

			// A slot held by a live process names a live initializer, even
			// when the state word's pid is gone from our PID namespace (an
			// initializer in another namespace): never judged dead.
			cmd := exec.Command("true")
			if err := cmd.Run(); err != nil {
				t.Skip("cannot run true:", err)
			}
			gone := uint32(cmd.Process.Pid)
			s.Store64(layout.OffState, layout.InitWord(gone, held))
			_, err = arena.Open(ctx, loc, arena.Options{Spec: testSpec(16), Timeout: 30 * time.Millisecond, Logger: discard()})
			asArenaError(t, err, arena.ErrTimeout)
			// A bare pid proves nothing either: its namespace is unknown.
			s.Store64(layout.OffState, layout.StateWord(layout.StateInitializing, gone))
			_, err = arena.Open(ctx, loc, arena.Options{Spec: testSpec(16), Timeout: 30 * time.Millisecond, Logger: discard()})
			asArenaError(t, err, arena.ErrTimeout)

			// A dead initializer: the lock of its slot is free, as a killed
			// process's is (zombie or reaped), before it recorded its
			// identity.
			release()
			s.Store64(layout.OffState, layout.InitWord(gone, held))
			rec := &recorder{}
			var ran bool
			s2, err := arena.Open(ctx, loc, arena.Options{Spec: testSpec(16), Init: markInit(&ran), Logger: slog.New(rec)})
			if err != nil {
				t.Fatalf("Open with a dead initializer: %v", err)
			}
			defer s2.Close()
			if !ran || s2.Header().InitGen != 2 {
				t.Errorf("Init ran %v, gen %d", ran, s2.Header().InitGen)
			}
			want := fmt.Sprintf("WARN arena: re-initializing a segment whose initializer died segment=%s initializer_pid=%d reason=%s", loc, gone, procid.ReasonSlotFree)
			if !hasRecord(rec, want) {
				t.Errorf("log %q, want %q", rec.records(), want)
			}
		})
	}
}

// otherSlot attaches loc as another process would and registers that
// handle's liveness slot; release closes the handle, which frees the slot
// as the process's exit would.
func otherSlot(t *testing.T, loc arena.Location) (procid.Slot, func()) {
	t.Helper()
	o, err := arena.Open(ctxT(t), loc, arena.Options{Spec: testSpec(16), Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	reg, err := o.Liveness()
	if err != nil {
		t.Fatal(err)
	}
	slot, err := reg.Register()
	if err != nil {
		t.Fatal(err)
	}
	return slot, func() { o.Close() }
}

// TestSetState: ready ⇄ clean shutdown, nothing else; a clean segment is
// opened normally.
func TestSetState(t *testing.T) {
	ctx := ctxT(t)
	loc := arena.NewHeapStore().At("s")
	s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []struct {
		from, to layout.State
		ok       bool
		after    layout.State
	}{
		{layout.StateReady, layout.StateClean, true, layout.StateClean},
		{layout.StateReady, layout.StateClean, false, layout.StateClean},
		{layout.StateClean, layout.StateRetired, false, layout.StateClean},
		{layout.StateClean, layout.StateEmpty, false, layout.StateClean},
		{layout.StateClean, layout.StateReady, true, layout.StateReady},
		{layout.StateReady, layout.StateInitializing, false, layout.StateReady},
		{layout.StateReady, layout.StateClean, true, layout.StateClean},
	}
	for i, st := range steps {
		if ok := s.SetState(st.from, st.to); ok != st.ok || s.State() != st.after {
			t.Errorf("step %d: SetState(%v, %v) = %v, state %v", i, st.from, st.to, ok, s.State())
		}
	}
	if _, pid := layout.SplitStateWord(s.Load64(layout.OffState)); pid != uint32(os.Getpid()) {
		t.Errorf("state pid %d", pid)
	}
	s2, err := arena.Open(ctx, loc, arena.Options{Spec: testSpec(16)})
	if err != nil {
		t.Fatalf("Open of a clean segment: %v", err)
	}
	if s2.Header().State != layout.StateClean {
		t.Errorf("state %v", s2.Header().State)
	}
	s2.Close()
}

// TestRemovedInProcess: Remove with Force while attached marks the
// segment retired; every attachment reports Removed and a new open gets a
// new segment.
func TestRemovedInProcess(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := ctxT(t)
			loc := b.loc(t)
			opts := arena.Options{Spec: testSpec(16), Logger: discard()}
			s1, err := arena.Create(ctx, loc, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s1.Close()
			s2, err := arena.Open(ctx, loc, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			asArenaError(t, arena.Remove(loc, arena.RemoveOptions{}), arena.ErrInUse)
			if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			for i, s := range []*arena.Segment{s1, s2} {
				if removed, err := s.Removed(); !removed || err != nil {
					t.Errorf("attachment %d: Removed = %v, %v", i, removed, err)
				}
				if s.State() != layout.StateRetired {
					t.Errorf("attachment %d: state %v", i, s.State())
				}
			}
			var ran bool
			s3, err := arena.OpenOrCreate(ctx, loc, arena.Options{Spec: testSpec(16), Init: markInit(&ran), Logger: discard()})
			if err != nil {
				t.Fatal(err)
			}
			defer arena.Remove(loc, arena.RemoveOptions{Force: true})
			defer s3.Close()
			if !ran || s3.State() != layout.StateReady {
				t.Errorf("new segment: Init ran %v, state %v", ran, s3.State())
			}
			if removed, _ := s3.Removed(); removed {
				t.Error("the new segment reports Removed")
			}
			if removed, _ := s1.Removed(); !removed {
				t.Error("the old attachment no longer reports Removed")
			}
		})
	}
}

// TestInspect attaches without a spec.
func TestInspect(t *testing.T) {
	ctx := ctxT(t)
	loc := arena.File(tmpPath(t, "i"))
	s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(5)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	in, err := arena.Inspect(loc)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if v, _ := in.Header().Field("max_nodes"); v != 5 || in.Header().Kind != layout.KindTest {
		t.Errorf("header %+v", in.Header())
	}
	if _, err := arena.Inspect(arena.File(tmpPath(t, "missing"))); !errors.Is(err, arena.ErrNotFound) {
		t.Errorf("Inspect(missing) = %v", err)
	}
}

func hasRecord(r *recorder, substr string) bool {
	for _, s := range r.records() {
		if strings.Contains(s, substr) {
			return true
		}
	}
	return false
}
