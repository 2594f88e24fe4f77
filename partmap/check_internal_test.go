package partmap

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/lease"
)

// checkedMap returns a heap cluster segment of 4 node slots and 2
// namespaces whose owner published nodes in slots 1 and 2, namespace
// "test" (every partition: 1 then 2 or 2 then 1) and its statistics, with
// the owner's Writer and lease.
func checkedMap(t *testing.T) (*Map, *Writer, *lease.Lease) {
	t.Helper()
	ctx := context.Background()
	loc := arena.NewHeapStore().At("check")
	m, err := Open(ctx, loc, Config{MaxNodes: 4, MaxNamespaces: 2, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); arena.Remove(loc, arena.RemoveOptions{Force: true}) })
	if err := m.Check(); err != nil {
		t.Fatalf("Check of a fresh segment: %v", err)
	}
	l, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	w := m.Writer(l)
	if err := w.StampAll(); err != nil {
		t.Fatal(err)
	}
	a, _ := w.AddOrUpdateNode(NodeInfo{Name: "A1", Active: true, Addresses: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:3000")}})
	b, _ := w.AddOrUpdateNode(NodeInfo{Name: "B2", Active: true, Build: "8.1.0.0"})
	ns, err := w.EnsureNamespace("test", 2, false)
	if err != nil {
		t.Fatal(err)
	}
	for pid := range uint32(Partitions) {
		if pid%2 == 0 {
			err = w.SetPartition(ns, pid, a, b, 0)
		} else {
			err = w.SetPartition(ns, pid, b, a, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.RecordTend(TendReport{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	return m, w, l
}

func TestExamineReportsWhatTheOwnerWrote(t *testing.T) {
	m, w, l := checkedMap(t)
	r, err := Examine(m.Segment())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 0 {
		t.Fatalf("problems in an undamaged segment: %q", r.Problems)
	}
	if !slices.Equal(r.Refs[1:], w.Refs()) || r.Refs[1] != Partitions || r.Refs[3] != 0 {
		t.Errorf("reference counts %v, the owner's %v", r.Refs, w.Refs())
	}
	if len(r.Nodes) != 2 || r.Nodes[0].Name != "A1" || r.Nodes[1].Build != "8.1.0.0" ||
		len(r.Namespaces) != 1 || r.Namespaces[0].Name != "test" || r.NamespaceSlots[0] != 0 {
		t.Errorf("nodes %v, namespaces %v", r.Nodes, r.Namespaces)
	}
	if !r.Lease.Held || r.Lease.Epoch != l.Epoch() || r.Lease.Identity.PID == 0 || r.Generation == 0 || r.Publishing || r.Owner.Epoch != l.Epoch() {
		t.Errorf("lease %+v, generation %d, publishing %v, owner %+v", r.Lease, r.Generation, r.Publishing, r.Owner)
	}
}

// TestCheckFindsPlantedDamage plants one kind of damage per case and
// wants Check to name it.
func TestCheckFindsPlantedDamage(t *testing.T) {
	entry := func(m *Map, ns int, pid uint32) arena.Offset { return m.entryOff(ns, pid) }
	rewriteNode := func(m *Map, slot int, edit func(rec []uint64)) {
		ctl := m.seg.Load64(m.nodeCtlOff(slot - 1))
		_, p := lease.SplitFenced(ctl)
		rec := make([]uint64, nodeWords)
		if err := m.nodeT.Read(2*(slot-1)+copyOf(p), rec); err != nil {
			t.Fatal(err)
		}
		edit(rec)
		if err := m.nodeT.Write(2*(slot-1)+copyOf(p), rec); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name   string
		damage func(m *Map, l *lease.Lease)
		want   string
	}{
		{"entry names an empty slot", func(m *Map, l *lease.Lease) {
			m.seg.Store64(entry(m, 0, 5), lease.PackFenced(l.Epoch(), 3|1<<8))
		}, "partition 5: replica 0 names node slot 3, which holds no published node"},
		{"entry names a slot twice", func(m *Map, l *lease.Lease) {
			m.seg.Store64(entry(m, 0, 6), lease.PackFenced(l.Epoch(), 1|1<<8))
		}, "partition 6: node slot 1 at replicas 0 and 1"},
		{"entry beyond max_nodes", func(m *Map, l *lease.Lease) {
			m.seg.Store64(entry(m, 1, 7), lease.PackFenced(l.Epoch(), 9<<16))
		}, "namespace slot 1 partition 7: replica 2 names node slot 9, max_nodes is 4"},
		{"entry of a later epoch", func(m *Map, l *lease.Lease) {
			m.seg.Store64(entry(m, 0, 8), lease.PackFenced(l.Epoch()+3, 1))
		}, "partition 8: entry"},
		{"record tag", func(m *Map, l *lease.Lease) {
			rewriteNode(m, 2, func(rec []uint64) { rec[wTag]--; rec[wSum] = checksum(rec) })
		}, "node slot 2: published copy 0 carries tag"},
		{"record checksum", func(m *Map, l *lease.Lease) {
			rewriteNode(m, 1, func(rec []uint64) { rec[nodeName] ^= 1 })
		}, "node slot 1: published copy 0 checksum"},
		{"record content", func(m *Map, l *lease.Lease) {
			rewriteNode(m, 1, func(rec []uint64) { rec[nodeMeta] |= 0xff << 8; rec[wSum] = checksum(rec) })
		}, "node slot 1: partmap"},
		{"publish word epoch", func(m *Map, l *lease.Lease) {
			m.seg.Store64(m.pub, lease.PackFenced(l.Epoch()+1, 2))
		}, "publish word"},
		{"control word epoch", func(m *Map, l *lease.Lease) {
			m.seg.Store64(m.nsCtlOff(1), lease.PackFenced(l.Epoch()+1, 0))
		}, "namespace slot 1: control word"},
		{"meta reserved", func(m *Map, l *lease.Lease) {
			m.seg.Store64(m.pub+64, 1)
		}, "meta: reserved word at 64"},
		{"lease record", func(m *Map, l *lease.Lease) {
			m.seg.Store64(m.leaseOff+72, 1<<30) // takeovers
		}, "takeovers counted"},
		{"seqlock table", func(m *Map, l *lease.Lease) {
			off, _, _ := m.seg.Section(secNodes)
			rec5 := off + 64 + 5*448                  // table header, then records of 48+2 words padded to 448 bytes
			m.seg.Store64(rec5, m.seg.Load64(rec5)|1) // busy, no claim
		}, "node_recs: record 5: busy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, _, l := checkedMap(t)
			c.damage(m, l)
			err := m.Check()
			arenatest.WantProblem(t, err, c.want)
			if err2 := CheckSegment(m.Segment()); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("CheckSegment = %v, Check = %v", err2, err)
			}
		})
	}
}
