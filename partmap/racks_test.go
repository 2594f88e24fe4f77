package partmap_test

import (
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
)

// TestNodeRacks: a node's racks round-trip through the segment and a
// change of rack republishes the node; racks that do not fit, or with a
// bad name or id, are refused.
func TestNodeRacks(t *testing.T) {
	m, _ := heapMap(t, partmap.Config{})
	_, w := owner(t, m, time.Minute)
	addr := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:3000")}
	racks := map[string]int{"test": 2, "bar": 1_000_000, "a": 0}
	slot, err := w.AddOrUpdateNode(partmap.NodeInfo{Name: "n1", Addresses: addr, Active: true, Racks: racks})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	n := m.Nodes()[0]
	if n.Slot != slot || !maps.Equal(n.Racks, racks) {
		t.Fatalf("node read back with racks %v, want %v", n.Racks, racks)
	}
	if r, ok := n.Rack("test"); !ok || r != 2 {
		t.Errorf("Rack(test) = %d %v", r, ok)
	}
	if _, ok := n.Rack("nope"); ok {
		t.Error("a rack for a namespace the node did not report")
	}
	gen := n.Gen
	racks["test"] = 3
	if _, err := w.AddOrUpdateNode(partmap.NodeInfo{Name: "n1", Addresses: addr, Active: true, Racks: racks}); err != nil {
		t.Fatal(err)
	}
	if n := m.Nodes()[0]; n.Racks["test"] != 3 || n.Gen != gen {
		t.Errorf("after a rack change: racks %v gen %d (was %d): want rack 3 in the same slot generation", n.Racks, n.Gen, gen)
	}
	for _, bad := range []map[string]int{
		{"test": -1},
		{"test": partmap.MaxRackID + 1},
		{"a:b": 1},
		{strings.Repeat("x", 31) + "1": 1, strings.Repeat("x", 31) + "2": 1, strings.Repeat("x", 31) + "3": 1, strings.Repeat("x", 31) + "4": 1},
	} {
		_, err := w.AddOrUpdateNode(partmap.NodeInfo{Name: "n2", Addresses: addr, Active: true, Racks: bad})
		if !errors.Is(err, partmap.ErrInvalid) {
			t.Errorf("racks %v: %v, want ErrInvalid", bad, err)
		}
	}
}
