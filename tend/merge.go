package tend

import (
	"math/bits"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend/info"
)

// Claim is one node's claims on the partitions of one namespace: its
// "replicas" answer for that namespace, as MergeClaims takes it.
type Claim struct {
	// Node is the claiming node's name.
	Node string
	// Seq orders the answers: a claim with a larger Seq comes from a
	// newer answer. The tender numbers the answers it receives from 1 up,
	// in node name order within a cycle.
	Seq uint64
	// Regime is the node's regime for the namespace (0 outside strong
	// consistency).
	Regime uint32
	// Bitmaps[r] marks the partitions the node holds as replica r (0 the
	// master). Ranks from partmap.StoredReplicas on are not stored, but
	// their claims count for the regime rule.
	Bitmaps []info.Bitmap
}

// Owners is a namespace's partition table by node name: Owners[pid][r] is
// replica r of partition pid, "" for none.
type Owners [partmap.Partitions][partmap.StoredReplicas]string

// Merge is the outcome of MergeClaims.
type Merge struct {
	// Owners is the merged table: no node appears twice in a partition.
	Owners Owners
	// Conflicts counts the partitions in which one node came out at two
	// replica ranks (a node whose newer answer moved it from one rank to
	// another while the node that took its place has not answered yet,
	// or a malformed answer) and lost the older of the two.
	Conflicts int
	// Stale counts the claims (partition and rank) ignored because
	// another node claimed the partition with a higher regime.
	Stale int
}

// MergeClaims merges every node's claims on one namespace into one table,
// by these rules, which make the result a function of the set of claims
// (independent of their order, and so of the order in which nodes
// answered):
//
//  1. Regimes: the highest regime any claim names for a partition, at any
//     rank, is the partition's regime; claims of lower regimes (from nodes
//     behind the cluster's current regime) are ignored for that partition.
//     Outside strong consistency every regime is 0 and every claim counts.
//  2. Among the claims of a partition's regime on one rank, the newest
//     answer (largest Seq) wins; equal Seqs go to the smaller node name.
//  3. A rank no claim names takes its owner from kept, if kept is not
//     nil: the tender passes the published table while some node's
//     answer is missing or out of date, so that an entry is replaced but
//     never emptied until every answer is known. Kept owners are older
//     than every claim.
//  4. A node that comes out at two ranks of one partition keeps the rank
//     of its newer claim (a claim is newer than a kept owner; equal Seqs
//     keep the lower rank) and the other rank is emptied, rather than the
//     row being refused (partmap refuses a node at two ranks). Each such
//     partition counts in Merge.Conflicts.
//
// The official clients apply each answer as it arrives, replacing an
// owner when the claim's regime is at least the partition's recorded one,
// so a lower-regime claim that arrives first stays (see
// tendtest.MergeReplicas, which follows them).
func MergeClaims(claims []Claim, kept *Owners) *Merge {
	const ranks = partmap.StoredReplicas
	out := &Merge{}
	var top [partmap.Partitions]uint32
	for i := range claims {
		c := &claims[i]
		if c.Regime == 0 {
			continue
		}
		for r := range c.Bitmaps {
			eachSet(&c.Bitmaps[r], func(pid int) { top[pid] = max(top[pid], c.Regime) })
		}
	}
	// seq[pid][r] is the Seq of the claim that holds the rank; claimed
	// tells a claim (even one with Seq 0) from a kept owner or none.
	var seq [partmap.Partitions][ranks]uint64
	var claimed [partmap.Partitions][ranks]bool
	for i := range claims {
		c := &claims[i]
		for r := range min(len(c.Bitmaps), ranks) {
			eachSet(&c.Bitmaps[r], func(pid int) {
				if c.Regime < top[pid] {
					out.Stale++
					return
				}
				cur := out.Owners[pid][r]
				if !claimed[pid][r] || c.Seq > seq[pid][r] || (c.Seq == seq[pid][r] && c.Node < cur) {
					out.Owners[pid][r], seq[pid][r], claimed[pid][r] = c.Node, c.Seq, true
				}
			})
		}
	}
	if kept != nil {
		for pid := range out.Owners {
			for r := range ranks {
				if !claimed[pid][r] {
					out.Owners[pid][r] = kept[pid][r]
				}
			}
		}
	}
	// newer reports whether rank b of partition pid holds a newer claim
	// than rank a.
	newer := func(pid, b, a int) bool {
		if claimed[pid][b] != claimed[pid][a] {
			return claimed[pid][b]
		}
		return seq[pid][b] > seq[pid][a]
	}
	for pid := range out.Owners {
		row := &out.Owners[pid]
		conflict := false
		for a := range ranks {
			for b := a + 1; b < ranks && row[a] != ""; b++ {
				if row[b] != row[a] {
					continue
				}
				conflict = true
				if newer(pid, b, a) {
					row[a] = ""
				} else {
					row[b] = ""
				}
			}
		}
		if conflict {
			out.Conflicts++
		}
	}
	return out
}

// eachSet calls f with every partition set in bm, in ascending order.
func eachSet(bm *info.Bitmap, f func(pid int)) {
	for i, x := range bm {
		for x != 0 {
			bit := bits.LeadingZeros8(x) // the first set partition of the byte: bit 0x80>>bit
			f(i<<3 | bit)
			x &^= 0x80 >> bit
		}
	}
}
