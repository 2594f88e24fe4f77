package arena_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/layout"
)

// mpBackends are the backends shared between processes.
func mpBackends(t *testing.T) map[string]locArg {
	return map[string]locArg{
		"sysv":    sysvArg(testKey(t)),
		"devshm":  fileArg(shmPath(t, "mp")),
		"tmpfile": fileArg(tmpPath(t, "mp")),
	}
}

func waitResults(t *testing.T, g *harness.Group) []harness.Result {
	t.Helper()
	res, err := g.Wait()
	if err != nil {
		t.Fatalf("workers failed: %v", err)
	}
	return res
}

// TestConcurrentOpenOrCreate: 8 processes released at once OpenOrCreate
// one location. Exactly one runs Init, and all see the same ready header
// and the initialized contents.
func TestConcurrentOpenOrCreate(t *testing.T) {
	for name, la := range mpBackends(t) {
		t.Run(name, func(t *testing.T) {
			const n = 8
			g := startGroup(t, harness.Spec{Workload: "open", N: n, Args: openArgs{Loc: la, MaxNodes: 16, Barrier: true}})
			if err := g.Release(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			res := waitResults(t, g)
			var rs []openResult
			inits := 0
			var initPid int
			for _, r := range res {
				var o openResult
				if err := r.Decode(&o); err != nil {
					t.Fatal(err)
				}
				if o.InitRan {
					inits++
					initPid = o.Pid
				}
				rs = append(rs, o)
			}
			if inits != 1 {
				t.Fatalf("%d processes ran Init, want exactly 1: %+v", inits, rs)
			}
			for i, o := range rs {
				if o.InitGen != 1 || o.Checksum != rs[0].Checksum || o.Creator != rs[0].Creator {
					t.Errorf("worker %d saw gen %d checksum %#x creator %v; worker 0: %#x %v", i, o.InitGen, o.Checksum, o.Creator, rs[0].Checksum, rs[0].Creator)
				}
				if int(o.Creator.PID) != initPid || o.Marker != uint64(initPid) {
					t.Errorf("worker %d: creator %d, marker %d; the initializer was %d", i, o.Creator.PID, o.Marker, initPid)
				}
				if la.Kind == "sysv" && o.ID != rs[0].ID {
					t.Errorf("worker %d attached shmid %d, worker 0 %d", i, o.ID, rs[0].ID)
				}
			}
			// The segment outlives its users and still reads the same.
			s, err := arena.Open(ctxT(t), la.loc(), arena.Options{Spec: testSpec(16)})
			if err != nil {
				t.Fatal(err)
			}
			if s.Header().Checksum != rs[0].Checksum || s.Header().Creator != rs[0].Creator {
				t.Errorf("header after the workers exited: %+v", s.Header())
			}
			mustClose(t, s)
			if err := arena.Remove(la.loc(), arena.RemoveOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCreatorKilledDuringInit: the creator is killed at a failpoint of
// the initialization; the next opener finds the initializer dead and
// initializes the segment again (generation 2, itself as creator), and
// says so in the log.
func TestCreatorKilledDuringInit(t *testing.T) {
	for _, fp := range []string{arena.FailInitClaimed, arena.FailInitMid} {
		for name, la := range mpBackends(t) {
			t.Run(fp+"/"+name, func(t *testing.T) {
				ctx := ctxT(t)
				g := startGroup(t, harness.Spec{Workload: "open", N: 1, Args: openArgs{Loc: la, MaxNodes: 16},
					Failpoints: map[int]string{0: fp + "=kill"}})
				got, err := g.WaitFailpoint(ctx, 0)
				if err != nil || got != fp {
					t.Fatalf("WaitFailpoint = %q, %v", got, err)
				}
				res, _ := g.Wait()
				if res[0].Signal != syscall.SIGKILL || res[0].Reported {
					t.Fatalf("creator: %+v", res[0])
				}
				victim := res[0].Pid

				rec := &recorder{}
				var ran bool
				s, err := arena.OpenOrCreate(ctx, la.loc(), arena.Options{Spec: testSpec(16), Init: markInit(&ran), Logger: slog.New(rec)})
				if err != nil {
					t.Fatalf("OpenOrCreate after the creator died: %v", err)
				}
				defer arena.Remove(la.loc(), arena.RemoveOptions{Force: true})
				defer s.Close()
				h := s.Header()
				if !ran || h.InitGen != 2 || h.Creator != self(t) || h.State != layout.StateReady {
					t.Errorf("Init ran %v, gen %d, creator %v, state %v", ran, h.InitGen, h.Creator, h.State)
				}
				if dataWord(t, s, 0) != uint64(os.Getpid()) || dataWord(t, s, 1) != 0xfeedface {
					t.Error("Init's contents missing")
				}
				want := fmt.Sprintf("WARN arena: re-initializing a segment whose initializer died segment=%s initializer_pid=%d reason=", la.loc(), victim)
				if !hasRecord(rec, want) {
					t.Errorf("log %q, want %q", rec.records(), want)
				}
				// Another process now simply opens it.
				g2 := startGroup(t, harness.Spec{Workload: "open", N: 1, Args: openArgs{Loc: la, MaxNodes: 16}})
				var o openResult
				if err := waitResults(t, g2)[0].Decode(&o); err != nil {
					t.Fatal(err)
				}
				if o.InitRan || o.InitGen != 2 || o.Creator != h.Creator {
					t.Errorf("later opener: %+v", o)
				}
			})
		}
	}
}

// TestCreatorStoppedDuringInit: while the creator is stopped (alive, not
// finishing) an opener times out with ErrTimeout naming the state and the
// pid; after SIGCONT the creator finishes and opening succeeds.
func TestCreatorStoppedDuringInit(t *testing.T) {
	for name, la := range mpBackends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t)
			g := startGroup(t, harness.Spec{Workload: "open", N: 1, Args: openArgs{Loc: la, MaxNodes: 16},
				Failpoints: map[int]string{0: arena.FailInitMid + "=stop"}})
			if got, err := g.WaitFailpoint(ctx, 0); err != nil || got != arena.FailInitMid {
				t.Fatalf("WaitFailpoint = %q, %v", got, err)
			}
			if err := g.WaitStopped(ctx, 0); err != nil {
				t.Fatal(err)
			}
			_, err := arena.Open(ctx, la.loc(), arena.Options{Spec: testSpec(16), Timeout: 50 * time.Millisecond, Logger: discard()})
			ae := asArenaError(t, err, arena.ErrTimeout)
			want := fmt.Sprintf("state initializing, pid %d", g.Pid(0))
			if !strings.Contains(err.Error(), want) || !strings.Contains(ae.Hint, "alive") {
				t.Errorf("error %v (hint %q), want it to contain %q", err, ae.Hint, want)
			}
			if err := g.Cont(0); err != nil {
				t.Fatal(err)
			}
			var o openResult
			if err := waitResults(t, g)[0].Decode(&o); err != nil {
				t.Fatal(err)
			}
			if !o.InitRan || o.InitGen != 1 {
				t.Errorf("creator: %+v", o)
			}
			s, err := arena.Open(ctx, la.loc(), arena.Options{Spec: testSpec(16), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatalf("Open after SIGCONT: %v", err)
			}
			if int(s.Header().Creator.PID) != g.Pid(0) || s.Header().InitGen != 1 {
				t.Errorf("header %+v", s.Header())
			}
			mustClose(t, s)
			if err := arena.Remove(la.loc(), arena.RemoveOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRemovedWhileAttached: a process keeps a segment attached while it
// is removed (by arena.Remove with Force, or behind shmkit's back with
// IPC_RMID or unlink). The process sees Removed() == true; Remove without
// Force refuses while it is attached; a new OpenOrCreate gets a new
// segment.
func TestRemovedWhileAttached(t *testing.T) {
	for _, how := range []string{"Remove", "raw"} {
		for name, la := range mpBackends(t) {
			if name == "tmpfile" {
				continue // same code path as devshm
			}
			t.Run(how+"/"+name, func(t *testing.T) {
				ctx := ctxT(t)
				loc := la.loc()
				s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16)})
				if err != nil {
					t.Fatal(err)
				}
				oldStat, err := s.Stat()
				if err != nil {
					t.Fatal(err)
				}
				g := startGroup(t, harness.Spec{Workload: "hold", N: 1, Args: holdArgs{Loc: la, MaxNodes: 16}})
				if err := g.Release(ctx); err != nil { // the worker is attached
					t.Fatal(err)
				}
				st, err := arena.StatOf(loc)
				if err != nil || st.Attached != 2 {
					t.Errorf("Stat with two processes attached: Attached %d, %v", st.Attached, err)
				}
				mustClose(t, s)
				st, err = arena.StatOf(loc)
				if err != nil || st.Attached != 1 {
					t.Errorf("Stat with one process attached: Attached %d, %v", st.Attached, err)
				}
				asArenaError(t, arena.Remove(loc, arena.RemoveOptions{}), arena.ErrInUse)

				switch {
				case how == "Remove":
					err = arena.Remove(loc, arena.RemoveOptions{Force: true})
				case la.Kind == "sysv":
					_, err = unix.SysvShmCtl(oldStat.ID, unix.IPC_RMID, nil)
				default:
					err = os.Remove(la.Path)
				}
				if err != nil {
					t.Fatalf("remove: %v", err)
				}
				var h holdResult
				if err := waitResults(t, g)[0].Decode(&h); err != nil {
					t.Fatal(err)
				}
				if !h.Removed {
					t.Fatal("the attached process did not see the segment removed")
				}
				if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("StatOf after removal: %v", err)
				}
				var ran bool
				s2, err := arena.OpenOrCreate(ctx, loc, arena.Options{Spec: testSpec(16), Init: markInit(&ran)})
				if err != nil {
					t.Fatal(err)
				}
				newStat, err := s2.Stat()
				if err != nil {
					t.Fatal(err)
				}
				if !ran || s2.Header().InitGen != 1 {
					t.Errorf("new segment: Init ran %v, gen %d", ran, s2.Header().InitGen)
				}
				if la.Kind == "sysv" && (newStat.ID == h.ID || newStat.ID == oldStat.ID) {
					t.Errorf("new shmid %d, old %d", newStat.ID, h.ID)
				}
				mustClose(t, s2)
				if err := arena.Remove(loc, arena.RemoveOptions{}); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestFutexAcrossProcesses: a worker blocks in FutexWait on a word of a
// SysV segment; FutexWake from this process wakes it (returns 1), and a
// change of the word plus a wake ends its wait loop.
func TestFutexAcrossProcesses(t *testing.T) {
	ctx := ctxT(t)
	k := testKey(t)
	s, err := arena.Create(ctx, arena.SysV(k), arena.Options{Spec: testSpec(16)})
	if err != nil {
		t.Fatal(err)
	}
	defer arena.Remove(arena.SysV(k), arena.RemoveOptions{Force: true})
	defer s.Close()
	off, _, _ := s.Section("data")
	g := startGroup(t, harness.Spec{Workload: "futex", N: 1, Args: futexArgs{Key: uint32(k)}})
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.Load32(off+futexFlag) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Wake (without changing the word) until the wake finds the worker
	// blocked in the kernel.
	woke := 0
	for woke == 0 && time.Now().Before(deadline) {
		woke = s.FutexWake(off+futexWord, 1)
		if woke == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if woke != 1 {
		t.Fatalf("FutexWake woke %d waiters", woke)
	}
	s.Store32(off+futexWord, 1)
	s.FutexWake(off+futexWord, 1)
	var r futexResult
	if err := waitResults(t, g)[0].Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Final != 1 || len(r.Returns) < 1 {
		t.Fatalf("waiter: %+v", r)
	}
	for i, ok := range r.Returns {
		if !ok {
			t.Errorf("FutexWait %d returned false (timeout)", i)
		}
	}
}

// TestPermissionDenied: a process running as nobody cannot attach a
// segment of mode 0600 owned by root (ErrPermission, naming the segment,
// with a hint), but can attach one of mode 0666 when it accepts root's
// segments and that mode (AllowUIDs, Mode; TestForeignOwner checks that it
// is refused otherwise).
func TestPermissionDenied(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to create segments nobody cannot open")
	}
	ctx := ctxT(t)
	keys := testKeys(t, 2)
	locs := []locArg{sysvArg(keys[0]), fileArg(shmPath(t, "private")), sysvArg(keys[1]), fileArg(shmPath(t, "public"))}
	modes := []os.FileMode{0o600, 0o600, 0o666, 0o666}
	for i, la := range locs {
		s, err := arena.Create(ctx, la.loc(), arena.Options{Spec: testSpec(16), Mode: modes[i]})
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := s.Stat(); st.Mode != modes[i] {
			t.Errorf("%s: mode %v, want %v", la.loc(), st.Mode, modes[i])
		}
		mustClose(t, s)
	}
	g := startGroup(t, harness.Spec{Workload: "nobody", N: 1, Args: nobodyArgs{Locs: locs, AllowUIDs: []uint32{0}, Mode: 0o666}})
	var r nobodyResult
	if err := waitResults(t, g)[0].Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.UID != 65534 {
		t.Fatalf("worker uid %d", r.UID)
	}
	for i, o := range r.Outcome {
		if modes[i] == 0o666 {
			if !o.OK {
				t.Errorf("%s (0666): %s", o.Loc, o.Err)
			}
			continue
		}
		if o.OK || !o.Permission {
			t.Errorf("%s (0600): ok %v, err %q: want ErrPermission", o.Loc, o.OK, o.Err)
		}
		if !strings.Contains(o.Err, o.Loc) || !strings.Contains(o.Hint, "owner") {
			t.Errorf("%s: error %q hint %q: want the segment named and a hint", o.Loc, o.Err, o.Hint)
		}
	}
	for _, la := range locs {
		if err := arena.Remove(la.loc(), arena.RemoveOptions{}); err != nil {
			t.Error(err)
		}
	}
}

// TestModes: segments are created 0600 by default; Mode is honoured, for
// files despite the umask (checked with umask 022 here and 077 in a
// worker).
func TestModes(t *testing.T) {
	ctx := ctxT(t)
	for _, b := range backends() {
		if b.name == "heap" {
			continue
		}
		for _, mode := range []os.FileMode{0, 0o660, 0o640, 0o606} {
			loc := b.loc(t)
			s, err := arena.Create(ctx, loc, arena.Options{Spec: testSpec(16), Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			want := mode
			if want == 0 {
				want = 0o600
			}
			st1, err1 := s.Stat()
			st2, err2 := arena.StatOf(loc)
			if err1 != nil || err2 != nil || st1.Mode != want || st2.Mode != want {
				t.Errorf("%s mode %v: Stat %v (%v), StatOf %v (%v)", b.name, mode, st1.Mode, err1, st2.Mode, err2)
			}
			mustClose(t, s)
			if err := arena.Remove(loc, arena.RemoveOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := umaskArgs{Default: shmPath(t, "default"), Group: shmPath(t, "group"), Key: uint32(testKey(t))}
	g := startGroup(t, harness.Spec{Workload: "umask", N: 1, Args: a})
	var r umaskResult
	if err := waitResults(t, g)[0].Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Default != 0o600 || r.Group != 0o660 || r.SysV != 0o660 {
		t.Errorf("under umask 077: default %v, 0660 file %v, 0660 SysV %v", r.Default, r.Group, r.SysV)
	}
	for _, loc := range []arena.Location{arena.File(a.Default), arena.File(a.Group), arena.SysV(arena.Key(a.Key))} {
		if err := arena.Remove(loc, arena.RemoveOptions{}); err != nil {
			t.Error(err)
		}
	}
}
