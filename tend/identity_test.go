package tend_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

func openIdentity(t *testing.T, cfg tend.Config) (*tend.Cluster, error) {
	t.Helper()
	cfg.UseShm = true
	cfg.TendInterval, cfg.TakeoverThreshold = interval, threshold
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	c, err := tend.Open(context.Background(), cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestClusterNameMismatch: a process configured for cluster beta that
// opens cluster alpha's segment gets a *layout.MismatchError naming both
// names, never alpha's map.
func TestClusterNameMismatch(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 2, ClusterName: "alpha"})
	key := testKey(t)
	a, err := openIdentity(t, tend.Config{Seeds: sim.Seeds(), ShmKey: key, ClusterName: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.ClusterName != "alpha" {
		t.Fatalf("recorded cluster name %q, want alpha", s.ClusterName)
	}
	_, err = openIdentity(t, tend.Config{Seeds: sim.Seeds(), ShmKey: key, ClusterName: "beta"})
	var me *layout.MismatchError
	if !errors.As(err, &me) || me.Field != "cluster-name" || me.HaveText != "alpha" || me.WantText != "beta" {
		t.Fatalf("beta opening alpha's segment: %v, want a cluster-name MismatchError alpha/beta", err)
	}
	if !strings.Contains(err.Error(), "alpha") || !strings.Contains(err.Error(), "beta") {
		t.Errorf("the error does not name both clusters: %v", err)
	}
	// A process without a name attaches and reports the recorded one.
	c, err := openIdentity(t, tend.Config{Seeds: sim.Seeds(), ShmKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.ClusterName != "alpha" {
		t.Errorf("a nameless process sees cluster name %q, want alpha", s.ClusterName)
	}
}

// TestClusterNameRecordedLater: a follower configured for beta attached a
// segment that recorded no name yet; when the owner (without a name)
// records the alpha it observed, the follower's lookups fail with the
// mismatch instead of answering from alpha's map.
func TestClusterNameRecordedLater(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 1, ClusterName: "alpha"})
	seeds := sim.Seeds()
	if err := sim.StopNode(0); err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	a, err := openIdentity(t, tend.Config{Seeds: seeds, ShmKey: key})
	if err != nil {
		t.Fatal(err)
	}
	b, err := openIdentity(t, tend.Config{Seeds: seeds, ShmKey: key, ClusterName: "beta"})
	if err != nil {
		t.Fatalf("beta attaching a segment without a name: %v", err)
	}
	if err := sim.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alpha recorded", func() bool { return a.Stats().ClusterName == "alpha" })
	eventually(t, "beta refuses the segment", func() bool { return b.Stats().Foreign != nil })
	var me *layout.MismatchError
	if _, err := b.Master(tendtest.DefaultNamespace, partmap.Digest{}); !errors.As(err, &me) {
		t.Errorf("beta's lookup after alpha was recorded: %v, want the MismatchError", err)
	}
	// alpha itself routes once its first partition tables are published
	// (the name is recorded before them).
	eventually(t, "alpha's own lookup", func() bool {
		_, err := a.Master(tendtest.DefaultNamespace, partmap.Digest{})
		return err == nil
	})
	if b.Stats().Role == tend.RoleOwner {
		t.Error("beta tends alpha's segment")
	}
}

// TestForeignPeerRefused: a node that answers another cluster name and
// appears in the peers lists never enters the map, with a name configured
// or only observed; the refusal is counted once and logged with both
// names. The negative control is the same cluster with the node answering
// the right name: it enters.
func TestForeignPeerRefused(t *testing.T) {
	for _, configured := range []string{"alpha", ""} {
		for _, foreign := range []bool{true, false} {
			t.Run(fmt.Sprintf("configured=%q/foreign=%v", configured, foreign), func(t *testing.T) {
				sim := newSim(t, tendtest.Options{Nodes: 3, ClusterName: "alpha"})
				if foreign {
					if err := sim.SetMalformed(2, "cluster-name", "beta"); err != nil {
						t.Fatal(err)
					}
				}
				rec := newRecorder()
				rec.dumpOnFailure(t, "tend")
				c, err := openIdentity(t, tend.Config{Seeds: sim.Seeds()[:1], ShmKey: testKey(t), ClusterName: configured, Logger: rec.logger()})
				if err != nil {
					t.Fatal(err)
				}
				want := 3
				if foreign {
					want = 2
				}
				eventually(t, "the nodes of alpha in the map", func() bool { return len(c.Nodes()) == want })
				for range 3 { // a few more cycles: the refusal sticks
					g := c.Stats().Tends
					eventually(t, "another tend", func() bool { return c.Stats().Tends > g })
				}
				foreignName := sim.Nodes()[2].Name
				for _, n := range c.Nodes() {
					if foreign && n.Name == foreignName {
						t.Fatalf("node %s of cluster beta entered the map", n.Name)
					}
				}
				s := c.Stats()
				if s.ClusterName != "alpha" {
					t.Errorf("recorded cluster name %q, want alpha", s.ClusterName)
				}
				wantForeign := uint64(0)
				if foreign {
					wantForeign = 1
				}
				if s.ForeignNodes != wantForeign {
					t.Errorf("ForeignNodes %d, want %d", s.ForeignNodes, wantForeign)
				}
				logged := rec.find("tend: node refused: it belongs to another cluster", map[string]string{"node": foreignName, "cluster_name": "beta", "expected": "alpha"})
				if foreign != (len(logged) > 0) {
					t.Errorf("refusal logged %d times, foreign %v", len(logged), foreign)
				}
			})
		}
	}
}

// TestLastCloseRemovesSegment: the last process to close a shared view
// removes its segment; the ones before leave it; KeepSegment keeps it.
func TestLastCloseRemovesSegment(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 1})
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			key := testKey(t)
			cfg := tend.Config{Seeds: sim.Seeds(), ShmKey: key, KeepSegment: keep}
			a, err := openIdentity(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			b, err := openIdentity(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := arena.StatOf(arena.SysV(key)); err != nil {
				t.Fatalf("segment gone while another view is open: %v", err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			_, err = arena.StatOf(arena.SysV(key))
			if keep && err != nil {
				t.Errorf("KeepSegment: segment gone after the last close: %v", err)
			}
			if !keep && !errors.Is(err, arena.ErrNotFound) {
				t.Errorf("after the last close: %v, want the segment removed", err)
			}
			// A process opening afterwards gets a fresh, working view.
			c, err := openIdentity(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Master(tendtest.DefaultNamespace, partmap.Digest{}); err != nil {
				t.Errorf("lookup on the view opened after the last close: %v", err)
			}
		})
	}
}

// TestDefaultKeyPerClusterName: the default key depends on the cluster
// name, so two named clusters on one host do not share a segment.
func TestDefaultKeyPerClusterName(t *testing.T) {
	if tend.ShmKeyFor("") != tend.DefaultShmKey() {
		t.Error("no name: not the default key")
	}
	seen := map[arena.Key]string{}
	for i := range 64 {
		name := fmt.Sprintf("cluster-%d", i)
		k := tend.ShmKeyFor(name)
		if !k.IsShmkit() || k == tend.DefaultShmKey() || k.Stage() != 0 {
			t.Fatalf("%s: key %v", name, k)
		}
		if o, dup := seen[k]; dup {
			t.Logf("%s and %s share key %v (1/4095 per pair)", o, name, k)
		}
		seen[k] = name
	}
	if len(seen) < 60 {
		t.Errorf("64 names gave %d keys", len(seen))
	}
	// Open with a name and no key uses ShmKeyFor(name), and removes it at
	// the last close.
	sim := newSim(t, tendtest.Options{Nodes: 1, ClusterName: fmt.Sprintf("shmkit-test-%d", os.Getpid())})
	name := fmt.Sprintf("shmkit-test-%d", os.Getpid())
	key := tend.ShmKeyFor(name)
	if _, err := arena.StatOf(arena.SysV(key)); err == nil {
		t.Skipf("key %v of %s is in use on this machine", key, name)
	}
	t.Cleanup(func() { arena.Remove(arena.SysV(key), arena.RemoveOptions{Force: true}) })
	c, err := openIdentity(t, tend.Config{Seeds: sim.Seeds(), ClusterName: name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := arena.StatOf(arena.SysV(key)); err != nil {
		t.Fatalf("no segment at ShmKeyFor(%q) = %v: %v", name, key, err)
	}
	c.Close()
	if _, err := arena.StatOf(arena.SysV(key)); !errors.Is(err, arena.ErrNotFound) {
		t.Errorf("after close: %v", err)
	}
}
