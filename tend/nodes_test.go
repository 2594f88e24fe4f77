package tend_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// nodeSet returns the names of c's nodes that are active (or all).
func nodeSet(c *tend.Cluster, activeOnly bool) []string {
	var out []string
	for _, n := range c.Nodes() {
		if n.Active || !activeOnly {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// routing checks every partition of ns on c against the sim: replica r of
// a partition whose sim owner is in stored routes to that node; any other
// reports partmap.ErrNotFound, never another node.
func routing(t testing.TB, c *tend.Cluster, sim *tendtest.Cluster, ns string, stored []string) []string {
	var diffs []string
	for pid := range uint32(partmap.Partitions) {
		want, err := sim.Replicas(ns, pid)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := partmap.DigestForPartition(pid)
		for r, w := range want {
			n, err := c.Replica(ns, d, r)
			switch {
			case slices.Contains(stored, w):
				if err != nil || n.Name != w {
					diffs = append(diffs, fmt.Sprintf("%s/%d replica %d: %v %v, want %s", ns, pid, r, n, err, w))
				}
			case !errors.Is(err, partmap.ErrNotFound):
				diffs = append(diffs, fmt.Sprintf("%s/%d replica %d: %v %v, want not found (%s was not stored)", ns, pid, r, n, err, w))
			}
			if len(diffs) >= 5 {
				return diffs
			}
		}
	}
	return diffs
}

// TestCapacityOverflow: four nodes and three namespaces into a view of two
// node slots and two namespace slots. The refusals are logged once each
// and counted; what fits routes right, the rest reports not found (or an
// unknown namespace), never a wrong node. When a stored node leaves the
// cluster its slot goes to a node that was left out.
func TestCapacityOverflow(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 4, Namespaces: []tendtest.NamespaceSpec{
		{Name: "test", ReplicationFactor: 2},
		{Name: "strong", ReplicationFactor: 2, SC: true},
		{Name: "extra", ReplicationFactor: 2},
	}})
	rec := newRecorder()
	c := open(t, tend.Config{Seeds: sim.Seeds(), UseShm: true, Location: heapLocation(t), MaxNodes: 2, MaxNamespaces: 2, Logger: rec.logger()})
	names := nodeNames(sim)
	// Seeds are tried in order: the first two nodes fit.
	if got := nodeSet(c, false); !slices.Equal(got, names[:2]) {
		t.Fatalf("stored nodes %v, want %v", got, names[:2])
	}
	t0 := c.Stats().Tends
	eventually(t, "several tends", func() bool { return c.Stats().Tends >= t0+5 })
	st := c.Stats()
	// Counted once each, however many cycles retried them.
	if st.NodeOverflow != 2 || st.NamespaceOverflow != 1 {
		t.Errorf("overflow counters after %d tends: nodes %d, namespaces %d; want 2 and 1", st.Tends-t0, st.NodeOverflow, st.NamespaceOverflow)
	}
	for _, name := range names[2:] {
		if got := len(rec.find("tend: node not stored: no room in the segment; its partitions are left without a node", map[string]string{"node": name})); got != 1 {
			t.Errorf("node %s: %d error records, want 1", name, got)
		}
	}
	if got := len(rec.find("tend: namespace not stored; lookups in it fail with ErrNamespace", map[string]string{"namespace": "extra"})); got != 1 {
		t.Errorf("namespace extra: %d error records, want 1", got)
	}
	for _, ns := range []string{"test", "strong"} {
		if diffs := routing(t, c, sim, ns, names[:2]); len(diffs) != 0 {
			t.Errorf("routing with nodes %v stored:\n  %s", names[:2], strings.Join(diffs, "\n  "))
		}
	}
	if _, err := c.Master("extra", partmap.Digest{}); !errors.Is(err, tend.ErrNamespace) {
		t.Errorf("namespace that did not fit: %v, want ErrNamespace", err)
	}

	// Node 0 leaves: its slot is freed once its partitions moved, and the
	// first node left out takes it.
	if err := sim.RemoveNode(0); err != nil {
		t.Fatal(err)
	}
	want := []string{names[1], names[2]}
	eventually(t, "a left-out node takes the freed slot", func() bool {
		return slices.Equal(nodeSet(c, false), want) && len(routing(t, c, sim, "test", want)) == 0 && len(routing(t, c, sim, "strong", want)) == 0
	})
	if rec.index("tend: node slot freed", map[string]string{"node": names[0]}) > rec.index("tend: node added", map[string]string{"node": names[2]}) {
		t.Error("node added before the slot was freed")
	}
}

// TestNodeRemovedByPeers: a node taken out of the cluster vanishes from
// every peers list; the tender removes it in the cycle that reads the new
// lists — before FailLimit failures — and frees its slot once its
// partitions moved.
func TestNodeRemovedByPeers(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	rec := newRecorder()
	c := open(t, tend.Config{Seeds: sim.Seeds(), Logger: rec.logger()})
	eventually(t, "agreement", agreeAll(t, sim, c))
	victim := sim.Nodes()[1].Name
	if err := sim.RemoveNode(1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "removal and agreement", func() bool {
		return slices.Equal(nodeSet(c, false), []string{sim.Nodes()[0].Name, sim.Nodes()[2].Name}) && agreeAll(t, sim, c)()
	})
	removed := rec.find("tend: node removed", map[string]string{"node": victim})
	if len(removed) != 1 || !strings.HasPrefix(removed[0].Attrs["reason"], "left the cluster") {
		t.Fatalf("removal records %+v, want one, reason left the cluster", removed)
	}
	for _, f := range rec.find("tend: node failed", map[string]string{"node": victim}) {
		if f.Attrs["fails"] == fmt.Sprint(tend.FailLimit) {
			t.Errorf("node reached %d failures before its removal", tend.FailLimit)
		}
	}
	if r, f := rec.index("tend: node removed", map[string]string{"node": victim}), rec.index("tend: node slot freed", map[string]string{"node": victim}); r < 0 || f < r {
		t.Errorf("node removed at record %d, slot freed at %d: want removal first", r, f)
	}
}

// TestNodeDownAfterFailures: a node that stops answering while the
// cluster still lists it is deactivated after FailLimit failed tends in a
// row and keeps its partitions (as the official clients keep routing to
// it); it is reactivated when it answers again. Stopped again and dropped
// by the cluster (a rebalance without it), it is removed and its slot is
// freed once its partitions moved.
func TestNodeDownAfterFailures(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	rec := newRecorder()
	rec.dumpOnFailure(t, "owner")
	c := open(t, tend.Config{Seeds: sim.Seeds(), Logger: rec.logger()})
	eventually(t, "agreement", agreeAll(t, sim, c))
	names := nodeNames(sim)
	victim := names[2]
	if err := sim.StopNode(2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deactivation", func() bool { return slices.Equal(nodeSet(c, true), names[:2]) })
	down := rec.find("tend: node deactivated", map[string]string{"node": victim})
	if len(down) != 1 || !strings.HasPrefix(down[0].Attrs["reason"], fmt.Sprintf("failed %d tends in a row", tend.FailLimit)) {
		t.Fatalf("deactivation records %+v, want one after %d failures", down, tend.FailLimit)
	}
	// Failures 1, 2, 3 in order, then the deactivation.
	last := -1
	for i := 1; i <= tend.FailLimit; i++ {
		at := rec.index("tend: node failed", map[string]string{"node": victim, "fails": fmt.Sprint(i)})
		if at <= last {
			t.Errorf("failure %d logged at %d, after %d", i, at, last)
		}
		last = at
	}
	if at := rec.index("tend: node deactivated", map[string]string{"node": victim}); at <= last {
		t.Errorf("deactivation logged at %d, before failure %d at %d", at, tend.FailLimit, last)
	}
	// Still in the table, inactive, and still the master of its
	// partitions: the cluster has not reassigned them.
	if got := nodeSet(c, false); !slices.Equal(got, names) {
		t.Errorf("nodes %v, want all three: the failed node keeps its slot", got)
	}
	if !agreeAll(t, sim, c)() {
		t.Error("the map changed when the node failed")
	}
	n, err := c.Master("test", digestOf(t, sim, "test", victim))
	if err != nil || n.Name != victim || n.Active {
		t.Errorf("master of a partition of the failed node: %+v %v, want it, inactive", n, err)
	}

	// It comes back.
	if err := sim.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reactivation", func() bool { return slices.Equal(nodeSet(c, true), names) })
	if r, d := rec.index("tend: node reactivated", map[string]string{"node": victim}), rec.index("tend: node deactivated", map[string]string{"node": victim}); r < d {
		t.Errorf("reactivated at record %d, deactivated at %d", r, d)
	}

	// It stops again, and the cluster notices: it leaves every peers
	// list, its partitions move, its slot is freed.
	rec.reset()
	if err := sim.StopNode(2); err != nil {
		t.Fatal(err)
	}
	if err := sim.Rebalance(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "removal and agreement", func() bool {
		return slices.Equal(nodeSet(c, false), names[:2]) && agreeAll(t, sim, c)()
	})
	removed := rec.find("tend: node removed", map[string]string{"node": victim})
	if len(removed) != 1 || removed[0].Attrs["reason"] != "left the cluster: in no peers list, not answering" {
		t.Errorf("removal records %+v, want one: left the cluster", removed)
	}
	if r, f := rec.index("tend: node removed", map[string]string{"node": victim}), rec.index("tend: node slot freed", map[string]string{"node": victim}); r < 0 || f < r {
		t.Errorf("node removed at record %d, slot freed at %d: want removal first", r, f)
	}
}

// digestOf returns a digest of a partition of ns that node masters.
func digestOf(t testing.TB, sim *tendtest.Cluster, ns, node string) partmap.Digest {
	t.Helper()
	for pid := range uint32(partmap.Partitions) {
		if mustMaster(t, sim, ns, pid) == node {
			d, _ := partmap.DigestForPartition(pid)
			return d
		}
	}
	t.Fatalf("%s masters no partition of %s", node, ns)
	return partmap.Digest{}
}
