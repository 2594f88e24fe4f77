package tend_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/info"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// bitmaps builds replica bitmaps: ranks[r] lists the partitions held at
// rank r.
func bitmaps(ranks ...[]uint32) []info.Bitmap {
	out := make([]info.Bitmap, len(ranks))
	for r, pids := range ranks {
		for _, p := range pids {
			out[r].Set(p)
		}
	}
	return out
}

// official merges claims with the official clients' rule, in the given
// order (tendtest.MergeReplicas): the negative control of the tender's.
func official(claims []tend.Claim) tendtest.PartitionTable {
	var answers []tendtest.NodeReplicas
	for _, c := range claims {
		answers = append(answers, tendtest.NodeReplicas{Node: c.Node, Namespaces: []info.NamespaceReplicas{
			{Namespace: "ns", Regime: c.Regime, ReplicaCount: len(c.Bitmaps), Bitmaps: c.Bitmaps}}})
	}
	return tendtest.MergeReplicas(answers)
}

func row(o *tend.Owners, pid uint32) []string { return o[pid][:] }

// TestMergeClaimsStaleRegime: node A (regime 5) masters partition 7, node
// B (regime 3, behind the cluster) still claims its prole. The claim is
// below the partition's regime and is ignored. Negative control: the
// official rule, applying claims in ascending regime order, keeps it.
func TestMergeClaimsStaleRegime(t *testing.T) {
	claims := []tend.Claim{
		{Node: "A", Seq: 1, Regime: 5, Bitmaps: bitmaps([]uint32{7, 8}, nil)},
		{Node: "B", Seq: 2, Regime: 3, Bitmaps: bitmaps([]uint32{9}, []uint32{7})},
		{Node: "C", Seq: 3, Regime: 5, Bitmaps: bitmaps(nil, []uint32{8})},
	}
	mg := tend.MergeClaims(claims, nil)
	for pid, want := range map[uint32][]string{7: {"A", "", ""}, 8: {"A", "C", ""}, 9: {"B", "", ""}} {
		if got := row(&mg.Owners, pid); !slices.Equal(got, want) {
			t.Errorf("partition %d: %q, want %q", pid, got, want)
		}
	}
	if mg.Stale != 1 || mg.Conflicts != 0 {
		t.Errorf("stale %d, conflicts %d; want 1 and 0", mg.Stale, mg.Conflicts)
	}
	if got := official(claims).Replicas("ns", 7); !slices.Equal(got, []string{"A", "B"}) {
		t.Errorf("negative control: the official rule gives %q for partition 7, want the stale prole kept", got)
	}
}

// TestMergeClaimsOrderIndependent: random claims, many with equal regimes
// on the same ranks, merged in many orders, give one table. Negative
// control: the official rule's result changes with the order for the
// same claims.
func TestMergeClaimsOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	names := []string{"A", "B", "C", "D", "E"}
	var claims []tend.Claim
	for i, n := range names {
		c := tend.Claim{Node: n, Seq: uint64(1 + rng.IntN(3)), Regime: uint32(rng.IntN(3)), Bitmaps: make([]info.Bitmap, 1+rng.IntN(3))}
		for r := range c.Bitmaps {
			for range 2000 {
				c.Bitmaps[r].Set(uint32(rng.IntN(partmap.Partitions)))
			}
		}
		if i == 0 {
			c.Regime = 0 // a node without a regime among nodes with one
		}
		claims = append(claims, c)
	}
	want := tend.MergeClaims(claims, nil)
	officialDiffers := false
	first := official(claims)
	for range 20 {
		perm := slices.Clone(claims)
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		got := tend.MergeClaims(perm, nil)
		if got.Owners != want.Owners || got.Conflicts != want.Conflicts || got.Stale != want.Stale {
			t.Fatalf("order %v: a different table (conflicts %d/%d, stale %d/%d)", nodesOf(perm), got.Conflicts, want.Conflicts, got.Stale, want.Stale)
		}
		o := official(perm)
		for pid := range uint32(partmap.Partitions) {
			if !slices.Equal(o.Replicas("ns", pid), first.Replicas("ns", pid)) {
				officialDiffers = true
			}
		}
	}
	if !officialDiffers {
		t.Error("negative control: the official rule gave one table for every order; the claims do not exercise order")
	}
	for pid := range want.Owners {
		for a := range partmap.StoredReplicas {
			for b := a + 1; b < partmap.StoredReplicas; b++ {
				if n := want.Owners[pid][a]; n != "" && n == want.Owners[pid][b] {
					t.Fatalf("partition %d: %s at ranks %d and %d", pid, n, a, b)
				}
			}
		}
	}
}

func nodesOf(cs []tend.Claim) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Node)
	}
	return out
}

// TestMergeClaimsConflict: the freeze's row. A's newer answer makes it the
// prole of partition 5; nobody claims the master, which kept its published
// node, A: the newer claim keeps its rank and the kept one is dropped.
// Within one answer, a node at two ranks keeps the lower one.
func TestMergeClaimsConflict(t *testing.T) {
	var kept tend.Owners
	kept[5] = [partmap.StoredReplicas]string{"A", "B", ""}
	kept[6] = [partmap.StoredReplicas]string{"C", "", ""}
	claims := []tend.Claim{
		{Node: "A", Seq: 9, Bitmaps: bitmaps(nil, []uint32{5})},
		{Node: "B", Seq: 4, Bitmaps: bitmaps(nil, []uint32{5})}, // B's old answer: prole
		{Node: "C", Seq: 5, Bitmaps: bitmaps([]uint32{6}, []uint32{6})},
	}
	mg := tend.MergeClaims(claims, &kept)
	if got := row(&mg.Owners, 5); !slices.Equal(got, []string{"", "A", ""}) {
		t.Errorf("partition 5: %q, want A as prole only", got)
	}
	if got := row(&mg.Owners, 6); !slices.Equal(got, []string{"C", "", ""}) {
		t.Errorf("partition 6: %q, want C as master only", got)
	}
	if mg.Conflicts != 2 {
		t.Errorf("conflicts %d, want 2", mg.Conflicts)
	}
	// Without kept owners there is no conflict in partition 5.
	if mg := tend.MergeClaims(claims, nil); !slices.Equal(row(&mg.Owners, 5), []string{"", "A", ""}) || mg.Conflicts != 1 {
		t.Errorf("without kept owners: partition 5 %q, conflicts %d", row(&mg.Owners, 5), mg.Conflicts)
	}
}
