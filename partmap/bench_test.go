package partmap_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
)

var sink *partmap.Node

// benchMap publishes 8 nodes and one namespace with every partition set.
func benchMap(b *testing.B, sysv bool) (*partmap.Map, partmap.NS, []*partmap.Node) {
	var m *partmap.Map
	if sysv {
		_, loc := sysvLoc(b)
		m = openMore(b, loc, partmap.Config{})
	} else {
		m, _ = heapMap(b, partmap.Config{})
	}
	_, w := owner(b, m, time.Minute)
	var slots []int
	for k := range 8 {
		s, err := w.AddOrUpdateNode(info(fmt.Sprintf("BB90%011d", k), true))
		if err != nil {
			b.Fatal(err)
		}
		slots = append(slots, s)
	}
	ns, err := w.EnsureNamespace("test", 2, false)
	if err != nil {
		b.Fatal(err)
	}
	for pid := range uint32(partmap.Partitions) {
		if err := w.SetPartition(ns, pid, slots[pid%8], slots[(pid+1)%8], 0); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Publish(); err != nil {
		b.Fatal(err)
	}
	return m, ns, m.Nodes()
}

// BenchmarkMasterLookup measures Map.Master on a warm cache: three atomic
// loads of shared memory, one of the process's cache, two compares.
func BenchmarkMasterLookup(b *testing.B) {
	for _, sysv := range []bool{false, true} {
		name := "heap"
		if sysv {
			name = "sysv"
		}
		b.Run(name, func(b *testing.B) {
			m, ns, _ := benchMap(b, sysv)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n, ok := m.Master(ns, uint32(i)&(partmap.Partitions-1))
				if !ok {
					b.Fatal("no master")
				}
				sink = n
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		m, ns, _ := benchMap(b, true)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var pid uint32
			var n *partmap.Node
			for pb.Next() {
				n, _ = m.Master(ns, pid&(partmap.Partitions-1))
				pid++
			}
			_ = n
		})
	})
}

// atomicPartitionMap is the baseline: the official Go client's design, an
// in-process atomic.Pointer to per-namespace arrays of node pointers,
// replaced as a whole on every change.
type atomicPartitionMap struct {
	namespaces map[string]int
	replicas   [][partmap.StoredReplicas][partmap.Partitions]*partmap.Node
}

// BenchmarkAtomicPointerMapLookup measures the baseline lookup returning
// the same *Node.
func BenchmarkAtomicPointerMapLookup(b *testing.B) {
	m, ns, _ := benchMap(b, false)
	pm := &atomicPartitionMap{namespaces: map[string]int{"test": 0},
		replicas: make([][partmap.StoredReplicas][partmap.Partitions]*partmap.Node, 1)}
	for pid := range uint32(partmap.Partitions) {
		pm.replicas[0][0][pid], _ = m.Master(ns, pid)
	}
	var p atomic.Pointer[atomicPartitionMap]
	p.Store(pm)
	lookup := func(ns int, pid uint32) (*partmap.Node, bool) {
		t := p.Load()
		if ns >= len(t.replicas) || pid >= partmap.Partitions {
			return nil, false
		}
		n := t.replicas[ns][0][pid]
		return n, n != nil
	}
	b.Run("serial", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			n, ok := lookup(0, uint32(i)&(partmap.Partitions-1))
			if !ok {
				b.Fatal("no master")
			}
			sink = n
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var pid uint32
			var n *partmap.Node
			for pb.Next() {
				n, _ = lookup(0, pid&(partmap.Partitions-1))
				pid++
			}
			_ = n
		})
	})
}

// BenchmarkResolveTable measures the build of a namespace's resolved table
// (what the first lookup after a publish does): 4096 entries, 8 nodes.
func BenchmarkResolveTable(b *testing.B) {
	m, ns, _ := benchMap(b, true)
	b.ResetTimer()
	for b.Loop() {
		if _, ok := m.BuildTable(ns, nil, false); !ok {
			b.Fatal("build refused")
		}
	}
}
