package partmap_test

import (
	"context"
	"fmt"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

// Examine reads a cluster segment without changing it (shmctl inspect
// and check use it on a segment attached by arena.Inspect) and checks it.
func ExampleExamine() {
	ctx := context.Background()
	loc := arena.NewHeapStore().At("cluster")
	m, err := partmap.Open(ctx, loc, partmap.Config{MaxNodes: 4, MaxNamespaces: 2, Logger: quietLog})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	l, _ := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Logger: quietLog})
	if _, err := l.Acquire(ctx); err != nil {
		fmt.Println(err)
		return
	}
	w := m.Writer(l)
	_ = w.StampAll()
	a, _ := w.AddOrUpdateNode(partmap.NodeInfo{Name: "BB9020011AC4202", Active: true})
	ns, _ := w.EnsureNamespace("test", 1, false)
	for pid := range uint32(100) {
		_ = w.SetPartition(ns, pid, a, 0, 0)
	}
	_ = w.Publish()

	r, err := partmap.Examine(m.Segment())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("lease held %v at epoch %d, generation %d\n", r.Lease.Held, r.Lease.Epoch, r.Generation)
	for _, n := range r.Nodes {
		fmt.Printf("node slot %d %s: %d partition entries\n", n.Slot, n.Name, r.Refs[n.Slot])
	}
	fmt.Println("namespaces:", r.Namespaces[0].Name, "problems:", len(r.Problems))
	fmt.Println("check:", m.Check())
	// Output:
	// lease held true at epoch 1, generation 2
	// node slot 1 BB9020011AC4202: 100 partition entries
	// namespaces: test problems: 0
	// check: <nil>
}
