package arena_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/shmkit/shmkit/arena"
)

// Check walks a pool's structures and lists every problem; a pool whose
// users were killed at any point passes (their leftovers are leaks that
// Reclaim recovers, not damage).
func ExamplePool_Check() {
	ctx := context.Background()
	p, err := arena.OpenPool(ctx, arena.NewHeapStore().At("pool"), arena.PoolConfig{ElemSize: 32, StageElems: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	a, _ := p.Alloc(ctx)
	b, _ := p.Alloc(ctx)
	_ = p.Commit(a)
	_ = p.Free(b)
	fmt.Println("check:", p.Check())

	var ce *arena.CheckError
	if err := p.Free(b); err != nil {
		fmt.Println("second free refused:", errors.Is(err, arena.ErrDoubleFree), errors.As(err, &ce))
	}
	// Output:
	// check: <nil>
	// second free refused: true false
}

// Scan lists the segments on this machine, with their headers; shmctl ls
// prints the same.
func ExampleScan() {
	ls, err := arena.Scan(arena.ScanOptions{Foreign: true})
	if err != nil {
		fmt.Println(err)
	}
	for _, l := range ls {
		state := "-"
		if l.Header != nil {
			state = l.Header.State.String()
		}
		fmt.Println(l.Location, l.Origin, l.Size, l.Attached, state)
	}
}
