package partmap_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

var quietLog = slog.New(slog.DiscardHandler)

// The tend owner publishes nodes and a partition map; any process reads
// it. Real deployments use arena.SysV(key) or arena.File(path) as the
// location; a heap segment keeps the example self-contained.
func Example() {
	ctx := context.Background()
	loc := arena.NewHeapStore().At("cluster")
	m, err := partmap.Open(ctx, loc, partmap.Config{MaxNodes: 16, MaxNamespaces: 8, Logger: quietLog})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer arena.Remove(loc, arena.RemoveOptions{Force: true})
	defer m.Close()

	// The owner: acquire the lease in the segment, stamp, publish.
	l, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Logger: quietLog})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := l.Acquire(ctx); err != nil {
		fmt.Println(err)
		return
	}
	w := m.Writer(l)
	if err := w.StampAll(); err != nil {
		fmt.Println(err)
		return
	}
	a, _ := w.AddOrUpdateNode(partmap.NodeInfo{Name: "BB9020011AC4202", Active: true,
		Addresses: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:3000")}})
	b, _ := w.AddOrUpdateNode(partmap.NodeInfo{Name: "BB9030011AC4202", Active: true,
		Addresses: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:3000")}})
	ns, _ := w.EnsureNamespace("test", 2, false)
	for pid := range uint32(partmap.Partitions) {
		if pid%2 == 0 {
			_ = w.SetPartition(ns, pid, a, b, 0)
		} else {
			_ = w.SetPartition(ns, pid, b, a, 0)
		}
	}
	if err := w.Publish(); err != nil {
		fmt.Println(err)
		return
	}

	// A reader (normally another process, with its own Open).
	test, ok := m.Namespace("test")
	if !ok {
		fmt.Println("no namespace test")
		return
	}
	// Optional: resolve the table now rather than on the first lookup.
	m.Prepare(test)
	pid := partmap.StringKeyDigest("users", "alice").PartitionID()
	master, _ := m.Master(test, pid)
	prole, _ := m.Replica(test, pid, 1)
	fmt.Printf("partition %d: master %s at %v, prole %s\n", pid, master.Name, master.Addresses[0], prole.Name)
	// Output: partition 2522: master BB9020011AC4202 at 10.0.0.1:3000, prole BB9030011AC4202
}
