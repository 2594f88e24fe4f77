package fuzz

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/shmkit/shmkit/arena"
)

// Element states of the pool model.
type elemState int

const (
	stUnused elemState = iota
	stFree
	stClaimed
	stLinked
)

func (s elemState) String() string {
	return [...]string{"unused", "free", "claimed", "linked"}[s]
}

// poolFixture is a fresh heap pool with three stages (capacities 2, 4, 8)
// holding elements in every state, and a model of what each element is.
type poolFixture struct {
	p     *arena.Pool
	model map[arena.Handle]elemState
	used  [3]int // elements handed out per stage
}

func mkHandle(stage, index int) arena.Handle {
	return arena.Handle(uint32(stage)<<24 | uint32(index+1))
}

func newPoolFixture(t *testing.T) *poolFixture {
	ctx := context.Background()
	loc := arena.NewHeapStore().At("fuzzpool")
	p, err := arena.OpenPool(ctx, loc, arena.PoolConfig{ElemSize: 16, StageElems: 2,
		Segment: arena.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	fx := &poolFixture{p: p, model: map[arena.Handle]elemState{}, used: [3]int{2, 4, 3}}
	// 2 + 4 + 3 allocations fill stages 0 and 1 and start stage 2.
	var hs []arena.Handle
	for range 9 {
		h, err := p.Alloc(ctx)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
		fx.model[h] = stClaimed
	}
	for i, h := range hs {
		switch i % 3 {
		case 1:
			if err := p.Commit(h); err != nil {
				t.Fatal(err)
			}
			fx.model[h] = stLinked
		case 2:
			if err := p.Free(h); err != nil {
				t.Fatal(err)
			}
			fx.model[h] = stFree
		}
	}
	for s, n := range fx.used {
		for i := range n {
			if _, ok := fx.model[mkHandle(s, i)]; !ok {
				t.Fatalf("fixture: element %d:%d not allocated", s, i)
			}
		}
	}
	return fx
}

// valid reports whether h names an element that was ever handed out.
func (fx *poolFixture) valid(h arena.Handle) bool {
	_, ok := fx.model[h]
	return ok
}

func (fx *poolFixture) check(t *testing.T) {
	st, err := fx.p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Free+st.Claimed+st.Linked+st.Unused != st.Capacity {
		t.Fatalf("accounting broken: %+v", st)
	}
	var want arena.PoolStats
	for _, s := range fx.model {
		switch s {
		case stFree:
			want.Free++
		case stClaimed:
			want.Claimed++
		case stLinked:
			want.Linked++
		}
	}
	if st.Free != want.Free || st.Claimed != want.Claimed || st.Linked != want.Linked || st.Dead != 0 {
		t.Fatalf("stats %+v, model %+v", st, want)
	}
}

// FuzzPoolHandle runs a fuzzed sequence of operations with arbitrary
// handles (5 bytes each: operation, then the handle as a little-endian
// uint32) on a fresh pool, against a model of each element's state:
// invalid handles give ErrBadHandle, frees of free elements ErrDoubleFree,
// commits of unclaimed ones ErrNotClaimed, nothing panics, and afterwards
// the accounting holds and every free or unused element is handed out
// exactly once.
func FuzzPoolHandle(f *testing.F) {
	cmd := func(op byte, h arena.Handle) []byte {
		b := []byte{op, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[1:], uint32(h))
		return b
	}
	join := func(cs ...[]byte) []byte {
		var b []byte
		for _, c := range cs {
			b = append(b, c...)
		}
		return b
	}
	const opFree, opCommit, opPayload, opAlloc = 0, 1, 2, 3
	f.Add(cmd(opFree, mkHandle(0, 0)))
	f.Add(join(cmd(opFree, mkHandle(0, 0)), cmd(opFree, mkHandle(0, 0))))
	f.Add(join(cmd(opCommit, mkHandle(1, 0)), cmd(opCommit, mkHandle(1, 0)), cmd(opFree, mkHandle(1, 0))))
	f.Add(join(cmd(opFree, mkHandle(0, 1)), cmd(opCommit, mkHandle(0, 1)), cmd(opPayload, mkHandle(0, 1))))
	f.Add(join(cmd(opFree, mkHandle(2, 0)), cmd(opAlloc, 0), cmd(opAlloc, 0), cmd(opAlloc, 0)))
	f.Add(join(cmd(opPayload, mkHandle(2, 2)), cmd(opPayload, mkHandle(2, 3)), cmd(opFree, mkHandle(2, 7))))
	for _, h := range []arena.Handle{0, 1 << 24, 0xffffffff, mkHandle(3, 0), mkHandle(15, 0), mkHandle(16, 0), mkHandle(0, 2), mkHandle(1, 4), mkHandle(0, 1<<23)} {
		f.Add(join(cmd(opFree, h), cmd(opCommit, h), cmd(opPayload, h)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 5*64 {
			data = data[:5*64]
		}
		fx := newPoolFixture(t)
		ctx := context.Background()
		for ; len(data) >= 5; data = data[5:] {
			op := data[0] % 4
			h := arena.Handle(binary.LittleEndian.Uint32(data[1:5]))
			st, valid := fx.model[h]
			switch op {
			case opFree:
				err := fx.p.Free(h)
				switch {
				case !valid:
					wantErr(t, "Free", h, err, arena.ErrBadHandle)
				case st == stFree:
					wantErr(t, "Free", h, err, arena.ErrDoubleFree)
				case err != nil:
					t.Fatalf("Free(%s) of a %s element: %v", h, st, err)
				default:
					fx.model[h] = stFree
				}
			case opCommit:
				err := fx.p.Commit(h)
				switch {
				case !valid:
					wantErr(t, "Commit", h, err, arena.ErrBadHandle)
				case st != stClaimed:
					wantErr(t, "Commit", h, err, arena.ErrNotClaimed)
				case err != nil:
					t.Fatalf("Commit(%s) of a claimed element: %v", h, err)
				default:
					fx.model[h] = stLinked
				}
			case opPayload:
				seg, off, err := fx.p.Payload(h)
				switch {
				case !valid:
					wantErr(t, "Payload", h, err, arena.ErrBadHandle)
				case err != nil:
					t.Fatalf("Payload(%s): %v", h, err)
				case off%8 != 0 || seg.CheckRange(off, 16) != nil:
					t.Fatalf("Payload(%s) = offset %d of %d bytes", h, off, seg.Len())
				}
			case opAlloc:
				got, err := fx.p.Alloc(ctx)
				if err != nil {
					t.Fatalf("Alloc: %v", err)
				}
				if s, ok := fx.model[got]; ok && s != stFree {
					t.Fatalf("Alloc handed out %s, which is %s", got, s)
				}
				fx.model[got] = stClaimed
			}
		}
		fx.check(t)
		// Every free or unused element comes out once, and only those.
		st, err := fx.p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[arena.Handle]bool{}
		for range st.Free + st.Unused {
			got, err := fx.p.Alloc(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if s := fx.model[got]; seen[got] || s == stClaimed || s == stLinked {
				t.Fatalf("drain: %s handed out again (model %s)", got, s)
			}
			seen[got] = true
			fx.model[got] = stClaimed
		}
		fx.check(t)
	})
}

func wantErr(t *testing.T, op string, h arena.Handle, err, want error) {
	if !errors.Is(err, want) {
		t.Fatalf("%s(%#x) = %v, want %v", op, uint32(h), err, want)
	}
}
