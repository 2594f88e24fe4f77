package record

import (
	"slices"
	"testing"

	"github.com/shmkit/shmkit/partmap"
)

// fixedReplicas is a partition's replicas as a list (nil: no node at the
// rank).
type fixedReplicas []*partmap.Node

func (f fixedReplicas) replica(r int) (*partmap.Node, bool) {
	if r >= len(f) || f[r] == nil {
		return nil, false
	}
	return f[r], true
}

func rackedNode(name string, rack int, active bool) *partmap.Node {
	return &partmap.Node{NodeInfo: partmap.NodeInfo{Name: name, Active: active, Racks: map[string]int{"test": rack}}}
}

// attempts runs the replica choice of a command's first n attempts as
// execute does (the sequence moves on by one between attempts) and
// returns the nodes' names ("-" for no node).
func attempts(src fixedReplicas, pol ReplicaPolicy, racks []int, n int) []string {
	var rt router
	var out []string
	for range n {
		var got *partmap.Node
		if pol == PREFER_RACK {
			got = rackNode(&rt, src, "test", len(src), racks)
		} else {
			got = sequenceNode(&rt, src, len(src))
		}
		if got == nil {
			out = append(out, "-")
		} else {
			out = append(out, got.Name)
		}
		rt.seq++
	}
	return out
}

// TestRackSequence checks PREFER_RACK's choices over retries against the
// official Go client's getRackNode (v8.5.0 partition.go), worked out by
// hand for each case: racks are tried in order; on a rack, replicas from
// the sequence on, skipping the previous attempt's node; a hit moves the
// sequence past it; with no hit, the first active replica from the
// sequence on, the previous node included.
func TestRackSequence(t *testing.T) {
	a, b, c := rackedNode("A", 1, true), rackedNode("B", 2, true), rackedNode("C", 2, true)
	for _, tc := range []struct {
		name  string
		src   fixedReplicas
		racks []int
		want  []string
	}{
		// Two replicas on rack 2 alternate: B (seq 2), then from seq 3
		// B is the previous node, C (seq 6), then from 7 B again.
		{"two on the rack", fixedReplicas{a, b, c}, []int{2}, []string{"B", "C", "B", "C"}},
		// One replica on the rack: B; the retry from seq 3 skips B
		// (previous), finds none on rack 2 and falls back to rank 3%2 =
		// B; the next from 4 falls back to A; then B again.
		{"one on the rack", fixedReplicas{a, b}, []int{2}, []string{"B", "B", "A", "B"}},
		// No replica on any preferred rack: the sequence (A, B, A, ...).
		{"none on the racks", fixedReplicas{a, b}, []int{7, 8}, []string{"A", "B", "A", "B"}},
		// Racks in order of preference: rack 1 first.
		{"preference order", fixedReplicas{b, a}, []int{1, 2}, []string{"A", "B", "A", "B"}},
		// An inactive rack replica is passed over.
		{"inactive on the rack", fixedReplicas{a, rackedNode("B", 2, false)}, []int{2}, []string{"A", "A", "A", "A"}},
		// No rack preference: the sequence.
		{"no racks", fixedReplicas{a, b, c}, nil, []string{"A", "B", "C", "A"}},
		// Nothing active.
		{"no node", fixedReplicas{nil, rackedNode("B", 2, false)}, []int{2}, []string{"-", "-"}},
	} {
		if got := attempts(tc.src, PREFER_RACK, tc.racks, len(tc.want)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// SEQUENCE skips inactive replicas and goes on from the one used.
	if got := attempts(fixedReplicas{rackedNode("A", 1, false), b, c}, SEQUENCE, nil, 4); !slices.Equal(got, []string{"B", "C", "B", "C"}) {
		t.Errorf("sequence: %v", got)
	}
}
