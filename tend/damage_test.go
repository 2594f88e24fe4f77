package tend_test

import (
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// damageNamespaceRecords breaks the checksum of both copies of every
// namespace record. It knows the layouts of partmap's ns_recs section (a
// seqlock table of 2 records per namespace slot, 7 payload words, the
// checksum in payload word 1) and of a seqlock table (a 64-byte header,
// records of 128 bytes at that size, the payload after the sequence word);
// the test checks that the damage took effect.
func damageNamespaceRecords(t *testing.T, seg *arena.Segment, slots int) {
	t.Helper()
	off, _, err := seg.Section("ns_recs")
	if err != nil {
		t.Fatal(err)
	}
	for rec := range 2 * slots {
		sum := off + 64 + arena.Offset(128*rec) + 8 + 8
		seg.Store64(sum, ^seg.Load64(sum))
	}
}

// TestDamagedNamespaceMoves: a new owner that finds a namespace record
// damaged registers the namespace in another slot; a Cluster that looked
// the namespace up before (and so holds the old slot's handle) must follow
// it there, not fail lookups in it for the rest of its life.
func TestDamagedNamespaceMoves(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	loc := heapLocation(t)
	first := open(t, tend.Config{Seeds: sim.Seeds(), UseShm: true, Location: loc})
	second := open(t, tend.Config{Seeds: sim.Seeds(), UseShm: true, Location: loc})
	d := partmap.StringKeyDigest("demo", "myTestKey")
	want := mustMaster(t, sim, "test", d.PartitionID())
	eventually(t, "the second instance routes", func() bool {
		n, err := second.Master("test", d)
		return err == nil && n.Name == want
	})
	old, ok := second.Map().Namespace("test")
	if !ok {
		t.Fatal("namespace test not found")
	}
	damageNamespaceRecords(t, second.Map().Segment(), partmap.DefaultMaxNamespaces)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new owner registers test in another slot", func() bool {
		ns, ok := second.Map().Namespace("test")
		return ok && ns != old
	})
	eventually(t, "the second instance routes through the new slot", func() bool {
		n, err := second.Master("test", d)
		return err == nil && n.Name == want
	})
	if n, err := second.Replica("test", d, 0); err != nil || n.Name != want {
		t.Errorf("Replica: %v %v, want %s", n, err, want)
	}
}
