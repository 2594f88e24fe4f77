package arena_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/procid"
)

// workloads are the bodies of the worker processes the tests start
// through package harness (the test binary re-executed).
func workloads() harness.Registry {
	return harness.Registry{
		"open":       wOpen,
		"hold":       wHold,
		"futex":      wFutex,
		"nobody":     wNobody,
		"plant":      wPlant,
		"umask":      wUmask,
		"poolhammer": wPoolHammer,
		"pooldie":    wPoolDie,
	}
}

type openArgs struct {
	Loc       locArg
	MaxNodes  uint64
	Barrier   bool
	TimeoutMS int
}

type openResult struct {
	Pid      int
	InitRan  bool
	InitGen  uint64
	Creator  procid.Identity
	Checksum uint64
	Marker   uint64 // data word 0: the pid of the initializer
	ID       int    // SysV shmid
}

// wOpen: OpenOrCreate the location (after the start barrier, if asked),
// with the worker's failpoints armed, and report what it saw.
func wOpen(ctx context.Context, w *harness.Worker) (any, error) {
	var a openArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	if a.Barrier {
		if err := w.Barrier(ctx); err != nil {
			return nil, err
		}
	}
	var ran bool
	opts := arena.Options{Spec: testSpec(a.MaxNodes), Init: markInit(&ran), Failpoints: w.Failpoints, Logger: w.Log,
		Timeout: time.Duration(a.TimeoutMS) * time.Millisecond}
	seg, err := arena.OpenOrCreate(ctx, a.Loc.loc(), opts)
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	h := seg.Header()
	off, _, err := seg.Section("data")
	if err != nil {
		return nil, err
	}
	st, err := seg.Stat()
	if err != nil {
		return nil, err
	}
	return openResult{Pid: os.Getpid(), InitRan: ran, InitGen: h.InitGen, Creator: h.Creator, Checksum: h.Checksum,
		Marker: seg.Load64(off), ID: st.ID}, nil
}

type holdArgs struct {
	Loc      locArg
	MaxNodes uint64
}

type holdResult struct {
	Removed bool
	ID      int
}

// wHold: attach, pass the barrier, then poll Removed until it reports
// true (bounded), and report.
func wHold(ctx context.Context, w *harness.Worker) (any, error) {
	var a holdArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	seg, err := arena.Open(ctx, a.Loc.loc(), arena.Options{Spec: testSpec(a.MaxNodes), Logger: w.Log})
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	st, err := seg.Stat()
	if err != nil {
		return nil, err
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		removed, err := seg.Removed()
		if err != nil {
			return nil, err
		}
		if removed {
			return holdResult{Removed: true, ID: st.ID}, nil
		}
		time.Sleep(time.Millisecond)
	}
	return holdResult{ID: st.ID}, nil
}

type futexArgs struct{ Key uint32 }

type futexResult struct {
	Returns []bool // what each FutexWait returned
	Final   uint32
}

// Futex test words in the data section.
const (
	futexWord = 0 // the word waited on
	futexFlag = 8 // set to 1 by the waiter before it waits
)

// wFutex: wait on the futex word until it becomes non-zero.
func wFutex(ctx context.Context, w *harness.Worker) (any, error) {
	var a futexArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	seg, err := arena.Open(ctx, arena.SysV(arena.Key(a.Key)), arena.Options{Spec: testSpec(16), Logger: w.Log})
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	off, _, err := seg.Section("data")
	if err != nil {
		return nil, err
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	var res futexResult
	seg.Store32(off+futexFlag, 1)
	for seg.Load32(off+futexWord) == 0 && len(res.Returns) < 100 {
		res.Returns = append(res.Returns, seg.FutexWait(off+futexWord, 0, 20*time.Second))
	}
	res.Final = seg.Load32(off + futexWord)
	return res, nil
}

type nobodyArgs struct {
	Locs []locArg
	// Groups are the supplementary groups the worker keeps (none when
	// empty); AllowUIDs and Mode go into its Options.
	Groups    []int
	AllowUIDs []uint32
	Mode      os.FileMode
	// Mark, when not 0, is stored in data word 2 of each opened segment.
	Mark uint64
}

type nobodyResult struct {
	UID     int
	Outcome []nobodyOutcome
}

type nobodyOutcome struct {
	Loc          string
	OK           bool
	Permission   bool
	ForeignOwner bool
	Err, Hint    string
}

// becomeNobody drops this worker process to uid and gid 65534, keeping the
// supplementary groups given.
func becomeNobody(groups []int) error {
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(65534); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(65534); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return nil
}

// wNobody drops to uid/gid 65534 and opens each location.
func wNobody(ctx context.Context, w *harness.Worker) (any, error) {
	var a nobodyArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	if err := becomeNobody(a.Groups); err != nil {
		return nil, err
	}
	res := nobodyResult{UID: os.Getuid()}
	for _, l := range a.Locs {
		seg, err := arena.Open(ctx, l.loc(), arena.Options{Spec: testSpec(16), Timeout: 5 * time.Second, Logger: w.Log,
			AllowUIDs: a.AllowUIDs, Mode: a.Mode})
		o := nobodyOutcome{Loc: l.loc().String(), OK: err == nil}
		if err != nil {
			o.Err = err.Error()
			o.Permission = errors.Is(err, arena.ErrPermission)
			o.ForeignOwner = errors.Is(err, arena.ErrForeignOwner)
			var ae *arena.Error
			if errors.As(err, &ae) {
				o.Hint = ae.Hint
			}
		} else {
			if a.Mark != 0 {
				off, _, serr := seg.Section("data")
				if serr != nil {
					seg.Close()
					return nil, serr
				}
				seg.Store64(off+16, a.Mark)
			}
			seg.Close()
		}
		res.Outcome = append(res.Outcome, o)
	}
	return res, nil
}

type umaskArgs struct {
	Default, Group string // file paths
	Key            uint32
}

type umaskResult struct {
	Default, Group, SysV os.FileMode
}

// wUmask creates segments under umask 077 (process-wide, hence in a worker
// process) and reports their modes.
func wUmask(ctx context.Context, w *harness.Worker) (any, error) {
	var a umaskArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	unix.Umask(0o077)
	var res umaskResult
	for _, c := range []struct {
		loc  arena.Location
		mode os.FileMode
		out  *os.FileMode
	}{
		{arena.File(a.Default), 0, &res.Default},
		{arena.File(a.Group), 0o660, &res.Group},
		{arena.SysV(arena.Key(a.Key)), 0o660, &res.SysV},
	} {
		seg, err := arena.Create(ctx, c.loc, arena.Options{Spec: testSpec(16), Mode: c.mode, Logger: w.Log})
		if err != nil {
			return nil, err
		}
		st, err := seg.Stat()
		seg.Close()
		if err != nil {
			return nil, err
		}
		*c.out = st.Mode
	}
	return res, nil
}

type hammerArgs struct {
	Loc                     locArg
	ElemSize, StageElems    int
	Rounds                  int
	KeepLinked, KeepClaimed int
}

type keptElem struct {
	H      arena.Handle
	Tag    uint64
	Linked bool
}

type hammerResult struct {
	Pid    int
	Allocs int
	Kept   []keptElem
}

func poolConfig(elemSize, stageElems int) arena.PoolConfig {
	return arena.PoolConfig{ElemSize: elemSize, StageElems: stageElems, Segment: arena.Options{Logger: discard()}}
}

// wPoolHammer runs hammer in a worker process.
func wPoolHammer(ctx context.Context, w *harness.Worker) (any, error) {
	var a hammerArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	p, err := arena.OpenPool(ctx, a.Loc.loc(), poolConfig(a.ElemSize, a.StageElems))
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	return hammer(ctx, p, w.Index, a)
}

// hammer allocates batches of elements, marks each as owned with a CAS of
// its payload word from 0 to a (worker, seq) tag (a failed CAS means the
// element was handed out twice at once), and frees them again in random
// order, keeping some: committed (linked) and merely claimed.
func hammer(ctx context.Context, p *arena.Pool, worker int, a hammerArgs) (hammerResult, error) {
	res := hammerResult{Pid: os.Getpid()}
	rng := rand.New(rand.NewPCG(uint64(worker), 7))
	seq := uint64(0)
	type held struct {
		h   arena.Handle
		seg *arena.Segment
		off arena.Offset
		tag uint64
	}
	keep := a.KeepLinked + a.KeepClaimed
	every := max(1, a.Rounds/(keep+1))
	for r := 0; r < a.Rounds; r++ {
		var hs []held
		for range 1 + r%4 {
			h, err := p.Alloc(ctx)
			if err != nil {
				return res, fmt.Errorf("round %d: alloc: %w", r, err)
			}
			res.Allocs++
			seg, off, err := p.Payload(h)
			if err != nil {
				return res, fmt.Errorf("round %d: payload of %s: %w", r, h, err)
			}
			seq++
			tag := uint64(worker+1)<<32 | seq
			if !seg.CAS64(off, 0, tag) {
				return res, fmt.Errorf("round %d: element %s handed out twice: payload owner %#x", r, h, seg.Load64(off))
			}
			seg.Store64(off+8, uint64(r))
			hs = append(hs, held{h, seg, off, tag})
		}
		if r%every == every-1 && len(res.Kept) < keep {
			k := hs[0]
			hs = hs[1:]
			linked := len(res.Kept) < a.KeepLinked
			if linked {
				if err := p.Commit(k.h); err != nil {
					return res, fmt.Errorf("commit %s: %w", k.h, err)
				}
			}
			res.Kept = append(res.Kept, keptElem{H: k.h, Tag: k.tag, Linked: linked})
		}
		rng.Shuffle(len(hs), func(i, j int) { hs[i], hs[j] = hs[j], hs[i] })
		for _, x := range hs {
			if !x.seg.CAS64(x.off, x.tag, 0) {
				return res, fmt.Errorf("round %d: element %s changed owner while held: payload %#x, ours %#x", r, x.h, x.seg.Load64(x.off), x.tag)
			}
			if err := p.Free(x.h); err != nil {
				return res, fmt.Errorf("round %d: free %s: %w", r, x.h, err)
			}
		}
	}
	return res, nil
}

type dieArgs struct {
	Loc                  locArg
	ElemSize, StageElems int
	Commit               int
}

// wPoolDie commits a.Commit elements, then allocates one more, at which
// the armed FailPoolClaimed failpoint kills it.
func wPoolDie(ctx context.Context, w *harness.Worker) (any, error) {
	var a dieArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	cfg := poolConfig(a.ElemSize, a.StageElems)
	cfg.Segment.Failpoints = w.Failpoints
	p, err := arena.OpenPool(ctx, a.Loc.loc(), cfg)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	for i := range a.Commit {
		h, err := p.Alloc(ctx)
		if err != nil {
			return nil, err
		}
		seg, off, err := p.Payload(h)
		if err != nil {
			return nil, err
		}
		seg.Store64(off, uint64(0xc0de0000+i))
		if err := p.Commit(h); err != nil {
			return nil, err
		}
	}
	h, err := p.Alloc(ctx)
	return nil, fmt.Errorf("alloc returned %v, %v: the failpoint did not kill the worker", h, err)
}
