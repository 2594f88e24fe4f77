package partmap_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

func TestSegmentSize(t *testing.T) {
	const cClient = 531576 // as_shm_cluster at shm_max_nodes 16, shm_max_namespaces 8
	size, err := partmap.SegmentSize(partmap.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("segment size at defaults (16 nodes, 8 namespaces): %d bytes (%.2f KiB); C client: %d bytes (%.0f%%)",
		size, float64(size)/1024, cClient, 100*float64(size)/cClient)
	if size > 300_000 {
		t.Errorf("segment size %d > 300 KB", size)
	}
	// The formula documented in layout.go.
	for _, c := range []struct{ n, s int }{{16, 8}, {1, 1}, {255, 32}, {100, 3}} {
		got, err := partmap.SegmentSize(partmap.Config{MaxNodes: c.n, MaxNamespaces: c.s})
		if err != nil {
			t.Fatal(err)
		}
		n, s := uint64(c.n), uint64(c.s)
		want := 1024 + 128 + (136+8*n+8*s+63)&^63 + (64 + 896*n) + (64 + 256*s) + 448 + 32768*s
		if got != want {
			t.Errorf("N=%d S=%d: size %d, formula %d", c.n, c.s, got, want)
		}
	}
	m, _ := heapMap(t, partmap.Config{})
	if m.Segment().Len() != size {
		t.Errorf("segment is %d bytes, SegmentSize says %d", m.Segment().Len(), size)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []partmap.Config{{MaxNodes: 256}, {MaxNodes: -1}, {MaxNamespaces: 33}, {MaxNamespaces: -2}} {
		if _, err := partmap.SegmentSpec(cfg); !errors.Is(err, partmap.ErrConfig) {
			t.Errorf("%+v: want ErrConfig, got %v", cfg, err)
		}
		if _, err := partmap.Open(context.Background(), nil, cfg); !errors.Is(err, partmap.ErrConfig) {
			t.Errorf("Open %+v: want ErrConfig, got %v", cfg, err)
		}
	}
}

func TestConfigMismatch(t *testing.T) {
	_, loc := sysvLoc(t)
	m := openMore(t, loc, partmap.Config{MaxNodes: 16})
	_ = m
	_, err := partmap.Open(context.Background(), loc, partmap.Config{MaxNodes: 32, Logger: quiet()})
	var me *layout.MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("want *layout.MismatchError, got %v", err)
	}
	if me.Field != "max_nodes" || me.Have != 16 || me.Want != 32 || me.Remedy != loc.RemoveHint() || me.Remedy == "" {
		t.Errorf("mismatch error %+v", me)
	}
	if !errors.Is(err, layout.ErrMismatch) {
		t.Errorf("not ErrMismatch: %v", err)
	}
	t.Logf("error: %v", err)
}

func TestBasics(t *testing.T) {
	m, loc := heapMap(t, partmap.Config{})
	reader := openMore(t, loc, partmap.Config{})
	ns0, ok := reader.Namespace("test")
	if ok {
		t.Fatalf("namespace before registration: %v", ns0)
	}
	if g := reader.Generation(); g != 0 {
		t.Fatalf("generation of a new map: %d", g)
	}
	l, w := owner(t, m, time.Minute)
	g0 := reader.Generation()
	if g0 == 0 {
		t.Fatal("StampAll did not publish")
	}
	slots := map[string]int{}
	for _, name := range []string{"BB9000000000001", "BB9000000000002", "BB9000000000003"} {
		s, err := w.AddOrUpdateNode(info(name, true))
		if err != nil {
			t.Fatal(err)
		}
		slots[name] = s
	}
	ns, err := w.EnsureNamespace("test", 2, false)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := slots["BB9000000000001"], slots["BB9000000000002"], slots["BB9000000000003"]
	for pid := range uint32(partmap.Partitions) {
		m, p := a, b
		if pid%2 == 1 {
			m, p = b, c
		}
		if err := w.SetPartition(ns, pid, m, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	if st := reader.Stats(); !st.Publishing {
		t.Errorf("batch not shown open: %+v", st)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	if g := reader.Generation(); g != g0+1 {
		t.Errorf("generation %d after one publish from %d", g, g0)
	}
	rns, ok := reader.Namespace("test")
	if !ok || rns != ns {
		t.Fatalf("reader namespace: %v %v, want %v", rns, ok, ns)
	}
	for pid := range uint32(partmap.Partitions) {
		want0, want1 := "BB9000000000001", "BB9000000000002"
		if pid%2 == 1 {
			want0, want1 = "BB9000000000002", "BB9000000000003"
		}
		n, ok := reader.Master(rns, pid)
		if !ok || n.Name != want0 {
			t.Fatalf("partition %d master: %v %v, want %s", pid, n, ok, want0)
		}
		if err := checkNode(n); err != nil {
			t.Fatal(err)
		}
		n, ok = reader.Replica(rns, pid, 1)
		if !ok || n.Name != want1 {
			t.Fatalf("partition %d prole: %v %v, want %s", pid, n, ok, want1)
		}
		if n, ok := reader.Replica(rns, pid, 2); ok {
			t.Fatalf("partition %d has a second prole %v", pid, n)
		}
		if _, err := reader.Lookup(rns, pid, 2); !errors.Is(err, partmap.ErrNotFound) {
			t.Fatalf("Lookup of a missing replica: %v", err)
		}
	}
	// Same *Node for the same slot: the cache answers.
	n1, _ := reader.Master(rns, 0)
	n2, _ := reader.Master(rns, 2)
	if n1 != n2 {
		t.Error("two lookups of one node returned different *Node")
	}
	// Bad arguments.
	if _, ok := reader.Master(partmap.NS{}, 0); ok {
		t.Error("zero NS resolved")
	}
	if _, ok := reader.Master(rns, partmap.Partitions); ok {
		t.Error("partition 4096 resolved")
	}
	if _, err := reader.Lookup(rns, 5000, 0); !errors.Is(err, partmap.ErrPartitionOutOfRange) {
		t.Errorf("Lookup pid 5000: %v", err)
	}
	if _, err := reader.Lookup(rns, 0, 3); !errors.Is(err, partmap.ErrInvalid) {
		t.Errorf("Lookup replica 3: %v", err)
	}

	// Updating a node keeps its slot and generation; the reader sees it.
	up := info("BB9000000000001", true)
	up.Build = "8.0.0.1"
	if s, err := w.AddOrUpdateNode(up); err != nil || s != a {
		t.Fatalf("update: %d %v", s, err)
	}
	if err := w.DeactivateNode("BB9000000000003"); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	n, _ := reader.Master(rns, 0)
	if n.Build != "8.0.0.1" || n.Gen != n1.Gen || n.Slot != a {
		t.Errorf("updated node %+v (was gen %d)", n, n1.Gen)
	}
	n, _ = reader.Replica(rns, 1, 1)
	if n.Active {
		t.Errorf("deactivated node still active: %+v", n)
	}

	// Nodes, namespaces, stats.
	nodes := reader.Nodes()
	if len(nodes) != 3 {
		t.Fatalf("Nodes: %d", len(nodes))
	}
	if got := reader.Namespaces(); len(got) != 1 || got[0] != (partmap.NamespaceInfo{Name: "test", ReplicaCount: 2}) {
		t.Errorf("Namespaces: %+v", got)
	}
	if err := w.RecordTend(partmap.TendReport{InfoRequests: 7, Duration: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	st := reader.Stats()
	if st.Nodes != 3 || st.ActiveNodes != 2 || st.Namespaces != 1 || st.Owner.Tends != 1 || st.Owner.InfoRequests != 7 ||
		st.Owner.Epoch != l.Epoch() || st.Owner.LastTend.IsZero() || st.Unreadable != 0 || st.Publishing {
		t.Errorf("stats %+v", st)
	}

	// A referenced node cannot be removed; once unreferenced it can, and
	// its slot goes to the next new node with a new generation.
	if err := w.RemoveNode("BB9000000000003"); !errors.Is(err, partmap.ErrInUse) {
		t.Fatalf("remove referenced node: %v", err)
	}
	for pid := uint32(1); pid < partmap.Partitions; pid += 2 {
		if err := w.SetPartition(ns, pid, b, a, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.RemoveNode("BB9000000000003"); err != nil {
		t.Fatal(err)
	}
	s4, err := w.AddOrUpdateNode(info("BB9000000000004", true))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	var n4 *partmap.Node
	for _, n := range reader.Nodes() {
		if n.Name == "BB9000000000004" {
			n4 = n
		}
	}
	if n4 == nil || n4.Slot != s4 {
		t.Fatalf("new node %+v, slot %d", n4, s4)
	}
	if s4 == c && n4.Gen == nodes[c-1].Gen {
		t.Errorf("slot %d reused without a new generation", s4)
	}

	// Snapshot.
	snap, err := reader.Snapshot(rns)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Generation != reader.Generation() || snap.Namespace.Name != "test" {
		t.Errorf("snapshot gen %d (map %d), ns %+v", snap.Generation, reader.Generation(), snap.Namespace)
	}
	for pid := range uint32(partmap.Partitions) {
		want := "BB9000000000001"
		if pid%2 == 1 {
			want = "BB9000000000002"
		}
		if n := snap.Node(pid, 0); n == nil || n.Name != want {
			t.Fatalf("snapshot partition %d: %v", pid, n)
		}
	}

	// Argument errors of the writer.
	if err := w.SetPartition(ns, 0, 99, 0, 0); !errors.Is(err, partmap.ErrInvalid) {
		t.Errorf("slot 99: %v", err)
	}
	if err := w.SetPartition(ns, 0, a, a, 0); !errors.Is(err, partmap.ErrInvalid) {
		t.Errorf("duplicate slot: %v", err)
	}
	if err := w.SetPartition(partmap.NS{}, 0, a, 0, 0); !errors.Is(err, partmap.ErrInvalid) {
		t.Errorf("zero NS: %v", err)
	}
	if _, err := w.AddOrUpdateNode(partmap.NodeInfo{Name: "0123456789012345678901234567890123"}); !errors.Is(err, partmap.ErrInvalid) {
		t.Errorf("long name: %v", err)
	}
	if _, err := w.EnsureNamespace("", 1, false); !errors.Is(err, partmap.ErrInvalid) {
		t.Errorf("empty namespace: %v", err)
	}
	if err := w.RemoveNode("nope"); !errors.Is(err, partmap.ErrNotFound) {
		t.Errorf("remove unknown: %v", err)
	}

	// After the lease is released, the writer refuses.
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := w.SetPartition(ns, 0, a, 0, 0); !errors.Is(err, lease.ErrNotOwner) {
		t.Errorf("after release: %v", err)
	}
	w2 := m.Writer(l)
	if _, err := w2.AddOrUpdateNode(info("x", true)); !errors.Is(err, partmap.ErrNotStamped) {
		t.Errorf("unstamped writer: %v", err)
	}
}

func TestOverflow(t *testing.T) {
	m, _ := heapMap(t, partmap.Config{MaxNodes: 2, MaxNamespaces: 1})
	_, w := owner(t, m, time.Minute)
	a, _ := w.AddOrUpdateNode(info("a", true))
	b, _ := w.AddOrUpdateNode(info("b", true))
	if _, err := w.AddOrUpdateNode(info("c", true)); !errors.Is(err, partmap.ErrNoRoom) {
		t.Fatalf("third node: %v", err)
	}
	ns, err := w.EnsureNamespace("one", 3, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.EnsureNamespace("two", 1, false); !errors.Is(err, partmap.ErrNoRoom) {
		t.Fatalf("second namespace: %v", err)
	}
	for pid := range uint32(partmap.Partitions) {
		// "c" did not fit: its partitions get no master, never another node.
		master := 0
		if pid%3 == 0 {
			master = a
		} else if pid%3 == 1 {
			master = b
		}
		if err := w.SetPartition(ns, pid, master, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	if st.NodeOverflow != 1 || st.NamespaceOverflow != 1 || st.Nodes != 2 || st.Namespaces != 1 {
		t.Errorf("stats %+v", st)
	}
	info, err := m.NamespaceInfo(ns)
	if err != nil || info != (partmap.NamespaceInfo{Name: "one", ReplicaCount: 3, SC: true}) {
		t.Errorf("namespace info %+v %v", info, err)
	}
	for pid := range uint32(partmap.Partitions) {
		n, ok := m.Master(ns, pid)
		switch pid % 3 {
		case 0:
			ok = ok && n.Name == "a"
		case 1:
			ok = ok && n.Name == "b"
		default:
			ok = !ok
		}
		if !ok {
			t.Fatalf("partition %d: %v", pid, n)
		}
	}
}

func TestWaitChangeAndUnstableSnapshot(t *testing.T) {
	m, loc := heapMap(t, partmap.Config{Timeout: 200 * time.Millisecond})
	reader := openMore(t, loc, partmap.Config{Timeout: 200 * time.Millisecond})
	_, w := owner(t, m, time.Minute)
	ns, err := w.EnsureNamespace("test", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := w.AddOrUpdateNode(info("a", true))
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	g := reader.Generation()

	// Cancellation ends the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := reader.WaitChange(ctx, g); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitChange without a change: %v", err)
	}

	// A publish wakes it.
	got := make(chan uint64, 1)
	go func() {
		g2, err := reader.WaitChange(context.Background(), g)
		if err != nil {
			t.Error(err)
		}
		got <- g2
	}()
	waitWaiters(t, reader, 1)
	if err := w.SetPartition(ns, 7, a, 0, 0); err != nil {
		t.Fatal(err)
	}
	// While the batch is open, no snapshot can be taken.
	if _, err := reader.Snapshot(ns); !errors.Is(err, partmap.ErrUnstable) {
		t.Fatalf("snapshot with an open batch: %v", err)
	}
	select {
	case g2 := <-got:
		t.Fatalf("woke up before the publish: %d", g2)
	default:
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	select {
	case g2 := <-got:
		if g2 != g+1 {
			t.Errorf("woke with generation %d, want %d", g2, g+1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitChange not woken by Publish")
	}
	if _, err := reader.Snapshot(ns); err != nil {
		t.Fatal(err)
	}
}
