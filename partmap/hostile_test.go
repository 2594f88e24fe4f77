package partmap_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

// hostileMap builds a valid map (5 nodes, 2 namespaces) on a fresh heap
// segment with short timeouts, so that garbage costs milliseconds.
func hostileMap(t *testing.T) (*partmap.Map, arena.Location, *partmap.Writer, []partmap.NS) {
	t.Helper()
	cfg := partmap.Config{StallTimeout: 2 * time.Millisecond, Timeout: 20 * time.Millisecond}
	m, loc := heapMap(t, cfg)
	_, w := owner(t, m, time.Minute)
	var slots []int
	for k := range 5 {
		s, err := w.AddOrUpdateNode(info(fmt.Sprintf("node-%d", k), true))
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s)
	}
	var nss []partmap.NS
	for j, name := range []string{"test", "bar"} {
		ns, err := w.EnsureNamespace(name, 2, false)
		if err != nil {
			t.Fatal(err)
		}
		for pid := range uint32(partmap.Partitions) {
			if err := w.SetPartition(ns, pid, slots[(int(pid)+j)%5], slots[(int(pid)+j+1)%5], 0); err != nil {
				t.Fatal(err)
			}
		}
		nss = append(nss, ns)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	return m, loc, w, nss
}

// sections returns the offset and size of the named sections.
func section(t *testing.T, seg *arena.Segment, name string) (arena.Offset, uint64) {
	t.Helper()
	off, size, err := seg.Section(name)
	if err != nil {
		t.Fatal(err)
	}
	return off, size
}

// TestHostileSegment writes garbage into the segment in many ways and
// checks that nothing panics or hangs, and that every error is typed.
func TestHostileSegment(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 1))
	garbage := func() uint64 {
		switch rng.IntN(6) {
		case 0:
			return 0
		case 1:
			return ^uint64(0)
		case 2:
			return uint64(rng.IntN(512)) // small: plausible slot numbers, lengths
		case 3:
			return lease.PackFenced(uint64(rng.IntN(4)), rng.Uint64()) // plausible fenced words
		default:
			return rng.Uint64()
		}
	}
	fill := func(seg *arena.Segment, off arena.Offset, size uint64, density int) {
		for o := off; o+8 <= off+arena.Offset(size); o += 8 {
			if rng.IntN(density) == 0 {
				seg.Store64(o, garbage())
			}
		}
	}
	type scenario struct {
		name    string
		corrupt func(t *testing.T, seg *arena.Segment)
	}
	sec := func(names ...string) func(*testing.T, *arena.Segment) {
		return func(t *testing.T, seg *arena.Segment) {
			for _, n := range names {
				off, size := section(t, seg, n)
				fill(seg, off, size, 3)
			}
		}
	}
	scenarios := []scenario{
		{"partition entries", sec("partitions")},
		{"meta (publish word, counters, control words)", sec("meta")},
		{"node records", sec("node_recs")},
		{"namespace and stats records", sec("ns_recs", "stats_recs")},
		{"everything but the lease", sec("meta", "node_recs", "ns_recs", "stats_recs", "partitions")},
		{"bit flips", func(t *testing.T, seg *arena.Segment) {
			off, _ := section(t, seg, "meta")
			end := seg.Len()
			for range 200 {
				o := (off + arena.Offset(rng.Uint64N(end-uint64(off)))) &^ 7
				seg.Store64(o, seg.Load64(o)^1<<rng.IntN(64))
			}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for iter := range 3 {
				m, loc, w, nss := hostileMap(t)
				sc.corrupt(t, m.Segment())
				readers := []*partmap.Map{m}
				cold, err := partmap.Open(context.Background(), loc, m.Config())
				if err != nil {
					// A damaged seqlock table header is refused at Open.
					if !errors.Is(err, partmap.ErrCorrupt) {
						t.Errorf("open a damaged segment: %v", err)
					}
				} else {
					defer cold.Close()
					readers = append(readers, cold)
				}
				for _, r := range readers {
					exercise(t, r, nss)
				}
				// The stale view of the old owner and a new owner.
				for _, err := range []error{
					w.SetPartition(nss[0], 1, 1, 2, 0), w.Publish(),
					w.RecordTend(partmap.TendReport{}), w.DeactivateNode("node-1"),
				} {
					if err != nil && !isTyped(err) {
						t.Errorf("iteration %d: writer: untyped error %v", iter, err)
					}
				}
				newOwner(t, m, nss)
				exercise(t, readers[len(readers)-1], nss)
			}
		})
	}
}

// exercise calls every reader method; errors must be typed.
func exercise(t *testing.T, m *partmap.Map, nss []partmap.NS) {
	t.Helper()
	check := func(what string, err error) {
		if err != nil && !isTyped(err) {
			t.Errorf("%s: untyped error %v", what, err)
		}
	}
	m.Namespace("test")
	m.Namespace("bar")
	m.Namespaces()
	m.Nodes()
	m.Stats()
	m.Generation()
	for _, ns := range append(nss, partmap.NS{}) {
		for pid := range uint32(partmap.Partitions) {
			for r := range partmap.StoredReplicas {
				if n, ok := m.Replica(ns, pid, r); ok && n == nil {
					t.Fatalf("Replica returned ok with a nil node")
				}
			}
		}
		for pid := uint32(0); pid < partmap.Partitions; pid += 97 {
			_, err := m.Lookup(ns, pid, int(pid%3))
			check("Lookup", err)
		}
		_, err := m.Snapshot(ns)
		check("Snapshot", err)
		_, err = m.NamespaceInfo(ns)
		check("NamespaceInfo", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := m.WaitChange(ctx, m.Generation())
	check("WaitChange", err)
}

// newOwner takes the lease over (the record itself is intact) and runs a
// full owner cycle on the damaged segment.
func newOwner(t *testing.T, m *partmap.Map, nss []partmap.NS) {
	t.Helper()
	l, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Threshold: time.Nanosecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryAcquire(); err != nil {
		t.Fatalf("lease: %v", err)
	}
	defer l.Release()
	w := m.Writer(l)
	check := func(what string, err error) {
		if err != nil && !isTyped(err) {
			t.Errorf("new owner: %s: untyped error %v", what, err)
		}
	}
	if err := w.StampAll(); err != nil {
		check("StampAll", err)
		return
	}
	s, err := w.AddOrUpdateNode(info("fresh", true))
	check("AddOrUpdateNode", err)
	ns, err := w.EnsureNamespace("test", 1, false)
	check("EnsureNamespace", err)
	if err == nil && s > 0 {
		for pid := range uint32(partmap.Partitions) {
			if err := w.SetPartition(ns, pid, s, 0, 0); err != nil {
				check("SetPartition", err)
				break
			}
		}
	}
	check("Publish", w.Publish())
	check("RecordTend", w.RecordTend(partmap.TendReport{}))
	// After a full cycle, the owner's namespace is readable and routes to
	// the owner's node.
	if err == nil && s > 0 {
		if err := w.Publish(); err != nil {
			check("Publish", err)
			return
		}
		got, ok := m.Namespace("test")
		if !ok || got != ns {
			t.Errorf("new owner's namespace: %v %v, want %v", got, ok, ns)
			return
		}
		for pid := range uint32(partmap.Partitions) {
			if n, err := m.Lookup(ns, pid, 0); err != nil || n.Name != "fresh" {
				t.Errorf("after the new owner's publish, partition %d: %v %v", pid, n, err)
				return
			}
		}
	}
}
