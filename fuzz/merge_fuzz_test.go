package fuzz

import (
	"fmt"
	"slices"
	"testing"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/info"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// fuzzNodes are the node names claims are made by: few, so that claims
// collide on partitions and ranks.
var fuzzNodes = [...]string{"A", "B", "C", "D"}

// decodeClaims turns fuzz bytes into claims and kept owners. Each claim
// is a header of 4 bytes (node, seq, regime, ranks 1..4) and, per rank, a
// count byte and that many partitions (2 bytes each, big-endian, mod
// 4096); seqs and regimes take few values so that claims collide. A kept
// owner table is built from keep: bit i of keep keeps a node on rank i%3
// of every partition the claims mention.
func decodeClaims(data []byte, keep uint8) ([]tend.Claim, *tend.Owners) {
	var claims []tend.Claim
	for len(data) >= 4 && len(claims) < 16 {
		c := tend.Claim{Node: fuzzNodes[data[0]%4], Seq: uint64(data[1] % 8), Regime: uint32(data[2] % 4)}
		ranks := 1 + int(data[3]%4)
		data = data[4:]
		c.Bitmaps = make([]info.Bitmap, ranks)
		for r := range ranks {
			if len(data) == 0 {
				break
			}
			n := int(data[0] % 32)
			data = data[1:]
			for ; n > 0 && len(data) >= 2; n-- {
				c.Bitmaps[r].Set((uint32(data[0])<<8 | uint32(data[1])) % partmap.Partitions)
				data = data[2:]
			}
		}
		claims = append(claims, c)
	}
	if keep == 0 {
		return claims, nil
	}
	var kept tend.Owners
	for _, c := range claims {
		for r := range c.Bitmaps {
			for pid := range uint32(partmap.Partitions) {
				if c.Bitmaps[r].Has(pid) {
					for i := range 8 {
						if keep&(1<<i) != 0 {
							kept[pid][i%partmap.StoredReplicas] = fuzzNodes[i%4]
						}
					}
				}
			}
		}
	}
	return claims, &kept
}

// mergeFunc is a claim merge under test: tend.MergeClaims, or the
// official rule as the negative control.
type mergeFunc func([]tend.Claim, *tend.Owners) *tend.Owners

func tenderMerge(claims []tend.Claim, kept *tend.Owners) *tend.Owners {
	return &tend.MergeClaims(claims, kept).Owners
}

// officialMerge applies the official clients' rule (tendtest.MergeReplicas)
// to the claims in their order; it knows no kept owners.
func officialMerge(claims []tend.Claim, _ *tend.Owners) *tend.Owners {
	var answers []tendtest.NodeReplicas
	for _, c := range claims {
		answers = append(answers, tendtest.NodeReplicas{Node: c.Node, Namespaces: []info.NamespaceReplicas{
			{Namespace: "ns", Regime: c.Regime, ReplicaCount: len(c.Bitmaps), Bitmaps: c.Bitmaps}}})
	}
	table := tendtest.MergeReplicas(answers)
	var o tend.Owners
	for pid := range uint32(partmap.Partitions) {
		copy(o[pid][:], table.Replicas("ns", pid))
	}
	return &o
}

// mergeProperties checks merge's result on claims: the same for the claims
// reversed and rotated (order independence); no node at two ranks of a
// partition; every owner claims its rank with the partition's highest
// regime, or is the kept owner of the rank. It returns the first
// violation.
func mergeProperties(merge mergeFunc, claims []tend.Claim, kept *tend.Owners) error {
	got := merge(claims, kept)
	rev := slices.Clone(claims)
	slices.Reverse(rev)
	if len(claims) > 1 {
		rot := append(slices.Clone(claims[1:]), claims[0])
		for _, order := range [][]tend.Claim{rev, rot} {
			if *merge(order, kept) != *got {
				return fmt.Errorf("the result depends on the order of %d claims", len(claims))
			}
		}
	}
	var top [partmap.Partitions]uint32
	for _, c := range claims {
		for r := range c.Bitmaps {
			for pid := range uint32(partmap.Partitions) {
				if c.Bitmaps[r].Has(pid) {
					top[pid] = max(top[pid], c.Regime)
				}
			}
		}
	}
	for pid := range uint32(partmap.Partitions) {
		row := got[pid]
		for a := range row {
			if row[a] == "" {
				continue
			}
			for b := a + 1; b < len(row); b++ {
				if row[a] == row[b] {
					return fmt.Errorf("partition %d: %s at ranks %d and %d", pid, row[a], a, b)
				}
			}
			claimed, ok := false, false
			for _, c := range claims {
				if c.Node == row[a] && a < len(c.Bitmaps) && c.Bitmaps[a].Has(pid) {
					claimed = true
					ok = ok || c.Regime == top[pid]
				}
			}
			// An owner either claims the rank at the partition's regime, or
			// is the kept one of a rank no such claim names.
			fromKept := kept != nil && kept[pid][a] == row[a]
			switch {
			case claimed && !ok && !fromKept:
				return fmt.Errorf("partition %d rank %d: %s claims it below the partition's regime %d", pid, a, row[a], top[pid])
			case !claimed && !fromKept:
				return fmt.Errorf("partition %d rank %d: %s neither claims nor kept", pid, a, row[a])
			}
		}
	}
	return nil
}

// FuzzMergeClaims checks tend.MergeClaims on fuzzed claims: no panic, and
// mergeProperties.
func FuzzMergeClaims(f *testing.F) {
	// The freeze's row: A's newer claim as prole of 5, B's older one too,
	// A kept as master.
	f.Add([]byte{0, 5, 0, 1, 0, 1, 0, 5, 1, 4, 0, 1, 0, 1, 0, 5}, uint8(1))
	// A stale prole below the partition's regime.
	f.Add([]byte{0, 1, 3, 0, 1, 0, 7, 1, 1, 1, 1, 0, 1, 0, 7}, uint8(0))
	// Equal regimes and seqs on one rank: the node name decides.
	f.Add([]byte{2, 3, 1, 0, 2, 0, 9, 0, 10, 1, 3, 1, 0, 2, 0, 9, 0, 10}, uint8(0))
	// One answer holding a partition at two ranks, kept owners elsewhere.
	f.Add([]byte{3, 2, 0, 1, 1, 0x0a, 0x95, 1, 0x0a, 0x95}, uint8(0x24))
	f.Fuzz(func(t *testing.T, data []byte, keep uint8) {
		claims, kept := decodeClaims(data, keep)
		if err := mergeProperties(tenderMerge, claims, kept); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMergePropertiesNegativeControl: the properties FuzzMergeClaims
// checks do fail for a merge that breaks them, the official clients'
// rule, on claims of the seeds' kind: a stale prole (kept by the official
// rule when it arrives first) and equal regimes on one rank (decided by
// order).
func TestMergePropertiesNegativeControl(t *testing.T) {
	for _, data := range [][]byte{
		{1, 1, 1, 1, 0, 1, 0, 7, 0, 1, 3, 0, 1, 0, 7}, // B prole of 7 at regime 1, A master at regime 3
		{2, 3, 1, 0, 1, 0, 9, 1, 3, 1, 0, 1, 0, 9},    // C and B both master of 9, regime 1, seq 3
	} {
		claims, _ := decodeClaims(data, 0)
		if err := mergeProperties(tenderMerge, claims, nil); err != nil {
			t.Errorf("tend.MergeClaims on %v: %v", data, err)
		}
		if err := mergeProperties(officialMerge, claims, nil); err == nil {
			t.Errorf("the official rule passes the properties on %v: they cannot fail", data)
		} else {
			t.Logf("official rule on %v: %v", data, err)
		}
	}
}
