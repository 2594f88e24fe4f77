package tend_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

func open(t testing.TB, cfg tend.Config) *tend.Cluster {
	t.Helper()
	if cfg.TendInterval == 0 {
		cfg.TendInterval, cfg.TakeoverThreshold = interval, threshold
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConfigMismatch: MaxNodes 16 vs 32 on one key is a typed error naming
// the field and both values; a new key used side by side works.
func TestConfigMismatch(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 2})
	oldKey, newKey := testKey(t), testKey(t)
	old := open(t, tend.Config{Seeds: sim.Seeds(), UseShm: true, ShmKey: oldKey, MaxNodes: 16})

	_, err := tend.Open(context.Background(), tend.Config{Seeds: sim.Seeds(), UseShm: true, ShmKey: oldKey, MaxNodes: 32,
		TendInterval: interval, TakeoverThreshold: threshold, Logger: quiet()})
	var mm *layout.MismatchError
	if !errors.As(err, &mm) || !errors.Is(err, layout.ErrMismatch) {
		t.Fatalf("Open with MaxNodes 32 on a 16-node segment: %v, want *layout.MismatchError", err)
	}
	if mm.Field != "max_nodes" || mm.Have != 16 || mm.Want != 32 {
		t.Errorf("mismatch %+v, want max_nodes 16 vs 32", mm)
	}
	t.Log(err)

	// Rolling upgrade: the new configuration on a new key, side by side.
	upgraded := open(t, tend.Config{Seeds: sim.Seeds(), UseShm: true, ShmKey: newKey, MaxNodes: 32})
	d := partmap.StringKeyDigest("demo", "myTestKey")
	want := mustMaster(t, sim, "test", d.PartitionID())
	for _, c := range []*tend.Cluster{old, upgraded} {
		n, err := c.Master("test", d)
		if err != nil || n.Name != want {
			t.Errorf("master: %v %v, want %s", n, err, want)
		}
		if s := c.Stats(); s.Role != tend.RoleOwner {
			t.Errorf("role %s, want owner of its own key", s.Role)
		}
	}
}

// TestMalformedReplicas: replicas answers that do not parse leave the
// published map as it was; once the faults clear the map catches up.
func TestMalformedReplicas(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3})
	c := open(t, tend.Config{Seeds: sim.Seeds()})
	before, err := c.Snapshot("test")
	if err != nil {
		t.Fatal(err)
	}
	if viewHash(c, "test") != simHash(t, sim, "test") {
		t.Fatal("first tend does not match the cluster")
	}
	for i := range 3 {
		if err := sim.SetMalformed(i, "replicas", "test:0,2,not-base64"); err != nil {
			t.Fatal(err)
		}
	}
	if err := sim.MovePartition("test", 2709, 0, (masterIndex(t, sim, "test", 2709)+1)%3); err != nil {
		t.Fatal(err)
	}
	t0 := c.Stats().Tends
	eventually(t, "several tends on malformed replies", func() bool { return c.Stats().Tends >= t0+4 })
	if r := sim.Requests(0)["replicas"] + sim.Requests(1)["replicas"] + sim.Requests(2)["replicas"]; r == 0 {
		t.Fatal("no replicas requests made")
	}
	after, err := c.Snapshot("test")
	if err != nil {
		t.Fatal(err)
	}
	if after.Partitions != before.Partitions {
		t.Error("map changed on malformed replies")
	}
	for i := range 3 {
		sim.ClearFaults(i)
	}
	eventually(t, "map catches up after the faults clear", func() bool { return viewHash(c, "test") == simHash(t, sim, "test") })
}

// masterIndex returns the index of the sim node that masters partition
// pid of ns.
func masterIndex(t testing.TB, sim *tendtest.Cluster, ns string, pid uint32) int {
	t.Helper()
	return slices.Index(nodeNames(sim), mustMaster(t, sim, ns, pid))
}

// TestPrivate: UseShm false tends for itself (every instance is an owner).
func TestPrivate(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3})
	a := open(t, tend.Config{Seeds: sim.Seeds()})
	b := open(t, tend.Config{Seeds: sim.Seeds()})
	for _, c := range []*tend.Cluster{a, b} {
		if s := c.Stats(); s.Role != tend.RoleOwner || len(c.Nodes()) != 3 {
			t.Errorf("private view: role %s, %d nodes", s.Role, len(c.Nodes()))
		}
		if viewHash(c, "test") != simHash(t, sim, "test") {
			t.Error("private view disagrees with the cluster")
		}
	}
}

// TestHeapGoroutines runs the shared protocol with goroutines standing in
// for processes on a heap segment, so that -race checks it: one owner,
// agreement, a move, and a takeover on Close with reason released.
func TestHeapGoroutines(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	loc := heapLocation(t)
	const n = 4
	cs := make([]*tend.Cluster, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := tend.Open(context.Background(), tend.Config{Seeds: sim.Seeds(), UseShm: true, Location: loc,
				TendInterval: interval, TakeoverThreshold: threshold, Logger: quiet()})
			if err != nil {
				t.Error(err)
				return
			}
			cs[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	closed := make([]bool, n)
	t.Cleanup(func() {
		for i, c := range cs {
			if !closed[i] {
				c.Close()
			}
		}
	})
	agree := func() bool {
		for i, c := range cs {
			if closed[i] {
				continue
			}
			for _, ns := range nsNames() {
				if viewHash(c, ns) != simHash(t, sim, ns) {
					return false
				}
			}
		}
		return true
	}
	owners := func() (o []int) {
		for i, c := range cs {
			if !closed[i] && c.Stats().Role == tend.RoleOwner {
				o = append(o, i)
			}
		}
		return o
	}
	eventually(t, "agreement", agree)
	if o := owners(); len(o) != 1 {
		t.Fatalf("owners %v, want one", o)
	}
	own := owners()[0]
	if err := cs[own].Close(); err != nil {
		t.Fatal(err)
	}
	closed[own] = true
	eventually(t, "takeover after release", func() bool {
		for _, i := range owners() {
			tk := cs[i].Stats().Takeovers
			return len(tk) > 0 && tk[len(tk)-1].Reason == tend.TakeoverReleased
		}
		return false
	})
	if err := sim.MovePartition("test", 5, 0, (masterIndex(t, sim, "test", 5)+1)%3); err != nil {
		t.Fatal(err)
	}
	eventually(t, "agreement after the move", agree)
	for i, c := range cs {
		if closed[i] {
			continue
		}
		if _, err := c.Master("nope", partmap.Digest{}); !errors.Is(err, tend.ErrNamespace) {
			t.Errorf("unknown namespace: %v", err)
		}
	}
}
