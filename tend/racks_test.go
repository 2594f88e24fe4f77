package tend_test

import (
	"fmt"
	"testing"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// TestRackAware: with RackAware the view keeps every node's rack per
// namespace, and RackReplica picks, for every partition, the replica on
// the first preferred rack that holds one, else the next preferred rack,
// else the master: the official clients' prefer-rack choice. Without
// RackAware (the control) no node has a rack and every read goes to the
// master.
func TestRackAware(t *testing.T) {
	for _, aware := range []bool{true, false} {
		t.Run(fmt.Sprintf("aware=%v", aware), func(t *testing.T) {
			sim := newSim(t, tendtest.Options{Nodes: 3, Racks: []int{10, 11, 12}})
			ns := tendtest.DefaultNamespace
			rackOf := map[string]int{}
			for i, n := range sim.Nodes() {
				rackOf[n.Name] = 10 + i
			}
			c, err := openIdentity(t, tend.Config{Seeds: sim.Seeds(), ShmKey: testKey(t), RackAware: aware})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "three nodes with their racks", func() bool {
				nodes := c.Nodes()
				if len(nodes) != 3 {
					return false
				}
				for _, n := range nodes {
					r, ok := n.Rack(ns)
					if aware != ok || (ok && r != rackOf[n.Name]) {
						return false
					}
				}
				return true
			})
			eventually(t, "the map converged", func() bool { return viewHash(c, ns) == simHash(t, sim, ns) })
			prefer := []int{11, 12} // node 1's rack first, then node 2's
			counts := map[string]int{}
			for pid := range uint32(partmap.Partitions) {
				d, err := partmap.DigestForPartition(pid)
				if err != nil {
					t.Fatal(err)
				}
				reps, err := sim.ClientReplicas(ns, pid)
				if err != nil {
					t.Fatal(err)
				}
				want := reps[0]
				if aware {
				racks:
					for _, r := range prefer {
						for _, name := range reps {
							if rackOf[name] == r {
								want = name
								break racks
							}
						}
					}
				}
				got, err := c.RackReplica(ns, d, prefer)
				if err != nil {
					t.Fatalf("partition %d: %v", pid, err)
				}
				if got.Name != want {
					t.Fatalf("partition %d (replicas %v): RackReplica chose %s, want %s", pid, reps, got.Name, want)
				}
				counts[got.Name]++
			}
			t.Logf("reads per node: %v", counts)
		})
	}
}

// TestServicesAlternate: with UseServicesAlternate the tender, seeded
// with an alternate address, learns peers from peers-clear-alt (never
// asking peers-clear-std), routes to the nodes' alternate addresses and
// never connects to a standard one; the control asks the standard list
// only and never touches an alternate listener.
func TestServicesAlternate(t *testing.T) {
	for _, alt := range []bool{true, false} {
		t.Run(fmt.Sprintf("alternate=%v", alt), func(t *testing.T) {
			sim := newSim(t, tendtest.Options{Nodes: 3, Alternate: true})
			seed := sim.Nodes()[0].Addr
			if alt {
				seed = sim.Nodes()[0].AltAddr
			}
			c, err := openIdentity(t, tend.Config{Seeds: []string{seed}, ShmKey: testKey(t), UseServicesAlternate: alt})
			if err != nil {
				t.Fatal(err)
			}
			waitConverged(t, c, sim, 3)
			used, unused := tendtest.EndpointClear, tendtest.EndpointClearAlt
			if alt {
				used, unused = unused, used
			}
			checkEndpoints(t, c, sim, func(n tendtest.NodeInfo) string {
				if alt {
					return n.AltAddr
				}
				return n.Addr
			}, used, unused)
			var std, altN uint64
			for i := range 3 {
				r := sim.Requests(i)
				std += r["peers-clear-std"]
				altN += r["peers-clear-alt"]
			}
			if alt && (altN == 0 || std != 0) || !alt && (std == 0 || altN != 0) {
				t.Errorf("peers-clear-std asked %d times, peers-clear-alt %d times", std, altN)
			}
		})
	}
}
