package arena

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/layout"
)

// damagedPool opens a heap pool of 2 stages with elements in every state
// (linked 0:0, claimed 0:1, free 0:2 and 0:3 on the list, the rest
// unused), lets damage change it, and returns the problems Check and
// CheckPool report.
func damagedPool(t *testing.T, damage func(p *Pool)) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	loc := NewHeapStore().At("pool")
	p, err := OpenPool(ctx, loc, PoolConfig{ElemSize: 16, StageElems: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var hs []Handle
	for range 6 { // 4 in stage 0, 2 in stage 1
		h, err := p.Alloc(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if err := p.Commit(hs[0]); err != nil {
		t.Fatal(err)
	}
	for _, h := range []Handle{hs[2], hs[3], hs[5]} {
		if err := p.Free(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Check(); err != nil {
		t.Fatalf("Check of an undamaged pool: %v", err)
	}
	if err := CheckPool(loc); err != nil {
		t.Fatalf("CheckPool of an undamaged pool: %v", err)
	}
	damage(p)
	err1, err2 := p.Check(), CheckPool(loc)
	var ce1, ce2 *CheckError
	if !errors.As(err1, &ce1) || !errors.As(err2, &ce2) || !errors.Is(err1, ErrDamaged) {
		t.Fatalf("after damage: Check = %v, CheckPool = %v; want *CheckError from both", err1, err2)
	}
	if strings.Join(ce1.Problems, "\n") != strings.Join(ce2.Problems, "\n") {
		t.Errorf("Check and CheckPool disagree:\n%v\n%v", ce1.Problems, ce2.Problems)
	}
	return ce1.Problems
}

func wantProblem(t *testing.T, probs []string, sub string) {
	t.Helper()
	for _, p := range probs {
		if strings.Contains(p, sub) {
			return
		}
	}
	t.Errorf("no problem mentions %q: %q", sub, probs)
}

// elemOff returns the segment and header offset of h.
func elemOff(t *testing.T, p *Pool, h Handle) (*Segment, Offset) {
	seg, off, err := p.elem(h)
	if err != nil {
		t.Fatal(err)
	}
	return seg, off
}

func TestPoolCheckFreeListCycle(t *testing.T) {
	probs := damagedPool(t, func(p *Pool) {
		// The list is 1:1 -> 0:3 -> 0:2; make 0:2 point back to 1:1.
		seg, off := elemOff(t, p, makeHandle(0, 2))
		seg.Store64(off, freeElem(makeHandle(1, 1)))
	})
	wantProblem(t, probs, "appears twice")
}

func TestPoolCheckLiveOnFreeList(t *testing.T) {
	probs := damagedPool(t, func(p *Pool) {
		seg, off := elemOff(t, p, makeHandle(0, 3))
		seg.Store64(off, freeElem(makeHandle(0, 0))) // the linked element
	})
	wantProblem(t, probs, "element 0:0 is linked, not free")
}

func TestPoolCheckFreeListOutOfRange(t *testing.T) {
	probs := damagedPool(t, func(p *Pool) {
		p.main.Store64(p.ctl+poolOffHead, headWord(9, makeHandle(1, 7))) // stage 1 handed out 2
	})
	wantProblem(t, probs, "free list: element 1:7")
}

func TestPoolCheckControlBlock(t *testing.T) {
	probs := damagedPool(t, func(p *Pool) {
		p.main.Store64(p.ctl+stageUsedOff(0), 5) // capacity 4
		p.main.Store64(p.ctl+stageCapOff(1), 3)  // 8
		p.main.Store64(p.ctl+stageUsedOff(5), 1) // not in use
	})
	wantProblem(t, probs, "stage 0: 5 elements handed out, capacity 4")
	wantProblem(t, probs, "stage 1: capacity 3 in the control block")
	wantProblem(t, probs, "stage 5 (not in use)")
	probs = damagedPool(t, func(p *Pool) { p.main.Store64(p.ctl+poolOffStages, 99) })
	wantProblem(t, probs, "99 stages in use")
}

func TestPoolCheckHeaderBits(t *testing.T) {
	probs := damagedPool(t, func(p *Pool) {
		seg, off := elemOff(t, p, makeHandle(0, 0))
		seg.Store64(off, linkedElem|1<<40)
		seg, off = elemOff(t, p, makeHandle(0, 1))
		seg.Store64(off, seg.Load64(off)|1<<50)
	})
	wantProblem(t, probs, "element 0:0: linked header")
	wantProblem(t, probs, "element 0:1: claimed header")
}

// TestPoolCheckLeaksAreNotProblems: what a killed process leaves (a free
// element off the list, an element bumped but never written) passes.
func TestPoolCheckLeaksAreNotProblems(t *testing.T) {
	ctx := context.Background()
	p, err := OpenPool(ctx, NewHeapStore().At("leak"), PoolConfig{ElemSize: 8, StageElems: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	h, _ := p.Alloc(ctx)
	seg, off := elemOff(t, p, h)
	seg.Store64(off, freeElem(0))          // Free's first step only
	p.main.Add64(p.ctl+stageUsedOff(0), 1) // a bump whose header was never written
	if err := p.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestCheckPoolNotAPool(t *testing.T) {
	ctx := context.Background()
	hs := NewHeapStore()
	s, err := Create(ctx, hs.At("x"), Options{Spec: layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "d", Size: 64}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := CheckPool(hs.At("x")); err == nil || errors.Is(err, ErrDamaged) {
		t.Errorf("CheckPool of a test segment = %v, want a refusal", err)
	}
}

// TestExaminePoolCounts: ExaminePool's counts are Stats' (Dead aside).
func TestExaminePoolCounts(t *testing.T) {
	ctx := context.Background()
	loc := NewHeapStore().At("count")
	p, err := OpenPool(ctx, loc, PoolConfig{ElemSize: 8, StageElems: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := range 5 { // stages 0 (2) and 1 (4): 5 handed out
		h, err := p.Alloc(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			err = p.Commit(h)
		case 1:
			err = p.Free(h)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want.Dead = 0
	got, err := ExaminePool(loc)
	if err != nil || got != want {
		t.Errorf("ExaminePool = %+v, %v; Stats %+v", got, err, want)
	}
}
