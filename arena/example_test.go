package arena_test

import (
	"context"
	"fmt"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

// A segment with one section, created by whichever process gets there
// first; every other process waits until it is ready. The heap store stands
// in for the machine's SysV key space (use arena.SysV(arena.MakeKey(…)) or
// arena.File(path) for real shared memory).
func ExampleOpenOrCreate() {
	store := arena.NewHeapStore()
	loc := store.At("counters")
	opts := arena.Options{
		Spec: layout.Spec{
			Kind:     layout.KindTest,
			Fields:   []layout.Field{{Name: "slots", Value: 8}},
			Sections: []layout.SectionSpec{{Name: "counters", Size: 8 * 8}},
		},
		Init: func(s *arena.Segment) error {
			off, _, err := s.Section("counters")
			if err != nil {
				return err
			}
			s.Store64(off, 100) // runs exactly once, before anyone uses it
			return nil
		},
	}
	a, err := arena.OpenOrCreate(context.Background(), loc, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()
	b, err := arena.OpenOrCreate(context.Background(), loc, opts) // a second user
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	off, _, _ := b.Section("counters")
	a.Add64(off, 1)
	fmt.Println(b.Load64(off), b.Header().State)

	// A process configured differently is refused with a typed error.
	opts.Spec.Fields[0].Value = 16
	_, err = arena.Open(context.Background(), loc, opts)
	fmt.Println(err != nil)

	a.Close()
	b.Close()
	fmt.Println(arena.Remove(loc, arena.RemoveOptions{}))
	// Output:
	// 101 ready
	// true
	// <nil>
}

// Allocating pool elements, publishing them (Commit) and freeing them.
func ExampleOpenPool() {
	store := arena.NewHeapStore()
	loc := store.At("records")
	p, err := arena.OpenPool(context.Background(), loc, arena.PoolConfig{ElemSize: 48, StageElems: 1024})
	if err != nil {
		fmt.Println(err)
		return
	}
	h, _ := p.Alloc(context.Background())
	seg, off, _ := p.Payload(h)
	seg.Store64(off, 42)
	_ = p.Commit(h) // linked: Reclaim never takes it back
	fmt.Println(h, seg.Load64(off))
	fmt.Println(p.Free(h), p.Free(h) != nil) // the second free is detected
	p.Close()
	fmt.Println(arena.RemovePool(loc, arena.RemoveOptions{}))
	// Output:
	// 0:0 42
	// <nil> true
	// <nil>
}
