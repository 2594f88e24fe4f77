package tendtest

import (
	"cmp"
	"slices"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend/info"
)

// NodeReplicas is one node's parsed "replicas" answer.
type NodeReplicas struct {
	// Node is the answering node's name.
	Node string
	// Namespaces is the parsed value (info.ParseReplicas).
	Namespaces []info.NamespaceReplicas
}

// PartitionTable is a merged partition map: for each namespace, one row
// per replica index (0 = master), each row holding the owning node name of
// every partition ("" when nobody claims it).
type PartitionTable map[string][][partmap.Partitions]string

// Replicas returns the owners of partition pid of namespace ns, master
// first; nil when the namespace is unknown or pid is out of range.
func (t PartitionTable) Replicas(ns string, pid uint32) []string {
	rows, ok := t[ns]
	if !ok || pid >= partmap.Partitions {
		return nil
	}
	out := make([]string, len(rows))
	for r := range rows {
		out[r] = rows[r][pid]
	}
	return out
}

// MergeReplicas merges per-node "replicas" answers into one table with the
// rule the official clients apply: a node's claim on (partition, replica)
// replaces the stored owner only if the node's regime for the namespace is
// >= the regime stored for the partition (one regime per partition, shared
// by its replicas), and the stored regime becomes the larger of the two.
//
// Cluster.ClientReplicas is what this rule concludes; a tender's rule is
// tend.MergeClaims (Cluster.Replicas), which ignores claims below a
// partition's highest regime at every rank.
//
// The official clients apply answers in whatever order nodes reply; here
// each namespace's answers are applied in ascending regime order (input
// order among equals), which makes the result independent of reply order
// whenever no two nodes with the same regime claim the same replica.
func MergeReplicas(answers []NodeReplicas) PartitionTable {
	type claim struct {
		node string
		ns   info.NamespaceReplicas
	}
	byNS := map[string][]claim{}
	var order []string
	for _, a := range answers {
		for _, ns := range a.Namespaces {
			if _, ok := byNS[ns.Namespace]; !ok {
				order = append(order, ns.Namespace)
			}
			byNS[ns.Namespace] = append(byNS[ns.Namespace], claim{node: a.Node, ns: ns})
		}
	}
	out := PartitionTable{}
	for _, name := range order {
		claims := byNS[name]
		slices.SortStableFunc(claims, func(a, b claim) int { return cmp.Compare(a.ns.Regime, b.ns.Regime) })
		count := 0
		for _, c := range claims {
			count = max(count, len(c.ns.Bitmaps))
		}
		rows := make([][partmap.Partitions]string, count)
		var regimes [partmap.Partitions]uint32
		for _, c := range claims {
			for r := range c.ns.Bitmaps {
				b := &c.ns.Bitmaps[r]
				for p := range uint32(partmap.Partitions) {
					if !b.Has(p) {
						continue
					}
					if c.ns.Regime == 0 || c.ns.Regime >= regimes[p] {
						regimes[p] = max(regimes[p], c.ns.Regime)
						rows[r][p] = c.node
					}
				}
			}
		}
		out[name] = rows
	}
	return out
}
