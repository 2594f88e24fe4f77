package tend_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// replicaOf returns the name of replica r of partition pid of ns in c's
// view, or "" (with the error) if there is none.
func replicaOf(c *tend.Cluster, ns string, pid uint32, r int) (string, error) {
	d, _ := partmap.DigestForPartition(pid)
	n, err := c.Replica(ns, d, r)
	if err != nil {
		return "", err
	}
	return n.Name, nil
}

// pickPartition returns a partition of ns whose master and prole 1 are the
// nodes with indexes master and prole.
func pickPartition(t *testing.T, sim *tendtest.Cluster, ns string, master, prole int) uint32 {
	t.Helper()
	names := nodeNames(sim)
	for pid := range uint32(partmap.Partitions) {
		r, err := sim.Replicas(ns, pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(r) >= 2 && r[0] == names[master] && r[1] == names[prole] {
			return pid
		}
	}
	t.Fatalf("no partition of %s with master %d and prole %d", ns, master, prole)
	return 0
}

// TestConflictDoesNotFreeze reproduces the freeze of issue 7: the master
// and prole of partition p swap while the new master's replicas answer
// cannot be parsed. The old master answers that it is now the prole; the
// new master's old answer still says prole too; nobody claims the master,
// so it keeps its published node, the old master: the merged row is
// [A, A]. partmap refuses such a row, and the tender used to give up the
// whole cycle on it: nothing more was written or published for any
// namespace until the node answered again.
//
// Now the row is resolved (A's newer claim, prole, wins; the master is
// dropped), counted, and everything else is published: a healthy move
// elsewhere reaches the follower, whose snapshots keep working. Once the
// node answers, the view agrees with the cluster again.
func TestConflictDoesNotFreeze(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	a, b, _, _ := pair(t, sim, tend.Config{})
	eventually(t, "agreement", agreeAll(t, sim, a, b))
	names := nodeNames(sim)
	const A, B, C = 0, 1, 2
	p := pickPartition(t, sim, "test", A, B)
	q := pickPartition(t, sim, "test", C, A)
	gen := b.Stats().MapGeneration

	if err := sim.SetMalformed(B, "replicas", "garbage"); err != nil {
		t.Fatal(err)
	}
	if err := sim.MovePartition("test", p, 0, B); err != nil { // B master, A prole
		t.Fatal(err)
	}
	if err := sim.MovePartition("test", q, 0, A); err != nil { // A master, C prole: healthy nodes only
		t.Fatal(err)
	}
	eventually(t, "the healthy move reaches the follower", func() bool {
		m, err := replicaOf(b, "test", q, 0)
		return err == nil && m == names[A]
	})
	if _, err := b.Snapshot("test"); err != nil {
		t.Errorf("follower's snapshot during the conflict: %v", err)
	}
	if g := b.Stats().MapGeneration; g <= gen {
		t.Errorf("generation %d, was %d: nothing published", g, gen)
	}
	// The conflicting row: A's newer claim (prole) stands, the older
	// (its kept master entry) is dropped, never A twice.
	if r1, err := replicaOf(b, "test", p, 1); err != nil || r1 != names[A] {
		t.Errorf("partition %d prole: %q %v, want %s (the newer claim)", p, r1, err, names[A])
	}
	if m, err := replicaOf(b, "test", p, 0); !errors.Is(err, partmap.ErrNotFound) {
		t.Errorf("partition %d master: %q %v, want none (the older claim dropped)", p, m, err)
	}
	// The cycle's report (with its counts) is written after its publish,
	// which the follower may see first.
	eventually(t, "the conflict counted in Stats.Conflicts", func() bool { return b.Stats().Conflicts > 0 })

	if err := sim.ClearFaults(B); err != nil {
		t.Fatal(err)
	}
	eventually(t, "agreement once the node answers", agreeAll(t, sim, a, b))
	if r, _ := sim.Replicas("test", p); !slices.Equal(r, []string{names[B], names[A]}) {
		t.Errorf("sim partition %d: %v", p, r)
	}
}

// replicasAgree reports the partitions of ns whose stored replicas in c's
// view differ from the sim's expectation (tend's rule).
func replicasAgree(t *testing.T, c *tend.Cluster, sim *tendtest.Cluster, ns string) (diffs int) {
	s, err := c.Snapshot(ns)
	if err != nil {
		return partmap.Partitions
	}
	for pid := range uint32(partmap.Partitions) {
		want, err := sim.Replicas(ns, pid)
		if err != nil {
			t.Fatal(err)
		}
		padded := make([]string, partmap.StoredReplicas)
		copy(padded, want)
		for r := range partmap.StoredReplicas {
			got := ""
			if n := s.Node(pid, r); n != nil {
				got = n.Name
			}
			if got != padded[r] {
				diffs++
				break
			}
		}
	}
	return diffs
}

// TestStaleRegimeIgnored: one node of the strong-consistency namespace
// moves to a newer regime; the other nodes' claims on the partitions it
// holds are from the older regime and are ignored, whichever node answers
// first (the new-regime node answers last here, so the official rule,
// which applies claims as they arrive, would keep them). Negative control:
// the official clients' expectation differs on those partitions, so the
// check is not vacuous.
func TestStaleRegimeIgnored(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	a, b, _, _ := pair(t, sim, tend.Config{})
	eventually(t, "agreement", agreeAll(t, sim, a, b))
	const X = 0
	base, err := sim.Regime("strong", X)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.SetDelay(X, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := sim.SetRegime("strong", X, base+1); err != nil {
		t.Fatal(err)
	}
	differ := 0
	for pid := range uint32(partmap.Partitions) {
		tr, _ := sim.Replicas("strong", pid)
		cr, _ := sim.ClientReplicas("strong", pid)
		if !slices.Equal(tr, cr) {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("negative control: the tender's and the clients' rules agree everywhere; the regime change tests nothing")
	}
	eventually(t, "every replica as the regime rule says", func() bool {
		return replicasAgree(t, a, sim, "strong") == 0 && replicasAgree(t, b, sim, "strong") == 0
	})
	t.Logf("%d partitions where the official rule would keep a stale claim", differ)
}
