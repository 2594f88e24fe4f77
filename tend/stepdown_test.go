package tend_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// pair opens two instances on one shared heap view: a (the owner) and b
// (a follower), each with its own log recorder.
func pair(t *testing.T, sim *tendtest.Cluster, cfg tend.Config) (a, b *tend.Cluster, ra, rb *recorder) {
	t.Helper()
	cfg.Seeds, cfg.UseShm, cfg.Location = sim.Seeds(), true, heapLocation(t)
	cfg.TendInterval, cfg.TakeoverThreshold = interval, threshold
	ra, rb = newRecorder(), newRecorder()
	ca, cb := cfg, cfg
	ca.Logger, cb.Logger = ra.logger(), rb.logger()
	ra.dumpOnFailure(t, "a")
	rb.dumpOnFailure(t, "b")
	a = open(t, ca)
	b = open(t, cb)
	if ra, rb := a.Stats().Role, b.Stats().Role; ra != tend.RoleOwner || rb != tend.RoleFollower {
		t.Fatalf("roles %s and %s, want owner and follower", ra, rb)
	}
	return a, b, ra, rb
}

func agreeAll(t testing.TB, sim *tendtest.Cluster, cs ...*tend.Cluster) func() bool {
	return func() bool {
		for _, c := range cs {
			for _, ns := range nsNames() {
				if viewHash(c, ns) != simHash(t, sim, ns) {
					return false
				}
			}
		}
		return true
	}
}

func checkReaders(t *testing.T, stats []readerStats) {
	t.Helper()
	for i, st := range stats {
		if st.Lookups == 0 || st.Errors != 0 || st.Wrong != 0 {
			t.Errorf("reader %d: %d lookups, %d errors, %d wrong nodes (first: %s)", i, st.Lookups, st.Errors, st.Wrong, st.First)
		}
	}
}

// TestOverrunStepsDown: an owner whose tend cycle does not complete in time
// loses the lease. Every node answers later than the threshold and the
// info timeout is longer still, so the owner's cycle is cut off at its
// deadline: it releases the lease and the follower takes over, while
// readers keep answering from the last map. Once the nodes answer again,
// one owner tends and the views agree with the cluster.
func TestOverrunStepsDown(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	a, b, ra, _ := pair(t, sim, tend.Config{InfoTimeout: 10 * threshold})
	eventually(t, "agreement", agreeAll(t, sim, a, b))
	epochA := a.Stats().Epoch
	stopReaders := startReaders([]*tend.Cluster{a, b}, "test", simMasters(t, sim, "test"))

	for i := range 3 {
		if err := sim.SetDelay(i, 2*threshold); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the owner steps down", func() bool { return len(a.Stats().StepDowns) > 0 })
	sd := a.Stats().StepDowns[0]
	if sd.Reason != tend.StepDownOverrun || sd.Epoch != epochA {
		t.Errorf("step-down %+v, want reason %q at epoch %d", sd, tend.StepDownOverrun, epochA)
	}
	t.Logf("step-down: %s (%s)", sd.Reason, sd.Detail)
	// The owner logs the overrun, releases the lease, then becomes a
	// follower, in that order.
	over := ra.index("tend: cycle overran, stepping down", map[string]string{"epoch": strconv.FormatUint(epochA, 10)})
	rel := ra.index("lease: released", map[string]string{"epoch": strconv.FormatUint(epochA, 10)})
	fol := ra.index("tend: became follower", map[string]string{"epoch": strconv.FormatUint(epochA, 10), "reason": tend.StepDownOverrun.String()})
	if over < 0 || rel < 0 || fol < 0 || !(over < rel && rel < fol) {
		t.Errorf("log order: overrun at %d, release at %d, follower at %d; want all present, in that order", over, rel, fol)
	}

	// The follower takes over. It normally finds the lease released; a
	// heavily loaded machine may let the heartbeat expire first.
	var tk tend.Takeover
	eventually(t, "the follower takes over", func() bool {
		for _, x := range b.Stats().Takeovers {
			if x.Epoch > epochA {
				tk = x
				return true
			}
		}
		return false
	})
	if tk.Reason != tend.TakeoverReleased && tk.Reason != tend.TakeoverExpired {
		t.Errorf("takeover %+v, want reason released (or heartbeat expired)", tk)
	}

	for i := range 3 {
		if err := sim.ClearFaults(i); err != nil {
			t.Fatal(err)
		}
	}
	owner := func() *tend.Cluster {
		var o []*tend.Cluster
		for _, c := range []*tend.Cluster{a, b} {
			if c.Stats().Role == tend.RoleOwner {
				o = append(o, c)
			}
		}
		if len(o) != 1 {
			return nil
		}
		return o[0]
	}
	eventually(t, "one owner tends again", func() bool {
		o := owner()
		if o == nil {
			return false
		}
		s := o.Stats()
		return s.LastTend.After(s.Takeovers[len(s.Takeovers)-1].At) && agreeAll(t, sim, a, b)()
	})
	checkReaders(t, stopReaders())
}

// TestNoFlapWhenNodesFail: an owner whose cycles fail but complete keeps
// the lease — no takeover, no step-down — first with nodes that answer
// (quickly enough) nonsense, then with nodes that answer after the
// threshold, so that every request times out (an unreachable cluster).
// Nodes deactivated after failing keep their partitions, so readers keep
// answering the same masters; when the faults clear the nodes are
// reactivated.
func TestNoFlapWhenNodesFail(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	a, b, ra, _ := pair(t, sim, tend.Config{})
	eventually(t, "agreement", agreeAll(t, sim, a, b))
	stopReaders := startReaders([]*tend.Cluster{a, b}, "test", simMasters(t, sim, "test"))

	phases := []struct {
		name      string
		delay     int // in tenths of the threshold
		malformed bool
	}{
		{"short delay, malformed node names", 1, true},
		{"every request times out", 20, false},
	}
	for _, ph := range phases {
		for i := range 3 {
			if err := sim.SetDelay(i, threshold*time.Duration(ph.delay)/10); err != nil {
				t.Fatal(err)
			}
			if ph.malformed {
				if err := sim.SetMalformed(i, "node", "not-a-node!"); err != nil {
					t.Fatal(err)
				}
			}
		}
		e0 := a.Stats().TendErrors
		// Many thresholds' worth of failing cycles.
		eventually(t, ph.name+": failing cycles", func() bool { return a.Stats().TendErrors >= e0+20 })
		for i := range 3 {
			if err := sim.ClearFaults(i); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, ph.name+": nodes back", func() bool {
			nodes := a.Nodes()
			active := 0
			for _, n := range nodes {
				if n.Active {
					active++
				}
			}
			return active == 3 && agreeAll(t, sim, a, b)()
		})
		// Every node failed FailLimit tends in a row and was deactivated,
		// and was reactivated when it answered again.
		for _, n := range sim.Nodes() {
			match := map[string]string{"node": n.Name}
			down := ra.find("tend: node deactivated", match)
			if len(down) != 1 || !strings.HasPrefix(down[0].Attrs["reason"], fmt.Sprintf("failed %d tends in a row", tend.FailLimit)) {
				t.Errorf("%s: node %s: deactivations %+v, want one after %d failures", ph.name, n.Name, down, tend.FailLimit)
			}
			if d, r := ra.index("tend: node deactivated", match), ra.index("tend: node reactivated", match); r < d {
				t.Errorf("%s: node %s deactivated at record %d, reactivated at %d", ph.name, n.Name, d, r)
			}
		}
		ra.reset()
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.Role != tend.RoleOwner || len(sa.Takeovers) != 1 || len(sa.StepDowns) != 0 {
		t.Errorf("owner: role %s, takeovers %+v, step-downs %+v; want one takeover, none lost", sa.Role, sa.Takeovers, sa.StepDowns)
	}
	if len(sb.Takeovers) != 0 || sb.Role != tend.RoleFollower {
		t.Errorf("follower: role %s, takeovers %+v; want none", sb.Role, sb.Takeovers)
	}
	if !slices.Equal([]tend.TakeoverReason{sa.Takeovers[0].Reason}, []tend.TakeoverReason{tend.TakeoverFirst}) {
		t.Errorf("owner's takeover %+v, want first owner", sa.Takeovers[0])
	}
	checkReaders(t, stopReaders())
}

// TestPrivateOverrunTendsOn: a private view (UseShm false) has nobody to
// hand over to, so cycles that overrun are logged and tending goes on.
func TestPrivateOverrunTendsOn(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	rec := newRecorder()
	rec.dumpOnFailure(t, "private")
	c := open(t, tend.Config{Seeds: sim.Seeds(), TendInterval: interval, TakeoverThreshold: threshold,
		InfoTimeout: 10 * threshold, Logger: rec.logger()})
	eventually(t, "agreement", agreeAll(t, sim, c))
	for i := range 3 {
		if err := sim.SetDelay(i, 2*threshold); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "two overrun cycles", func() bool { return len(rec.find("tend: cycle overran the takeover threshold", nil)) >= 2 })
	for i := range 3 {
		if err := sim.ClearFaults(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := sim.MovePartition("test", 9, 0, (masterIndex(t, sim, "test", 9)+1)%3); err != nil {
		t.Fatal(err)
	}
	eventually(t, "agreement after the delays", agreeAll(t, sim, c))
	if s := c.Stats(); s.Role != tend.RoleOwner || len(s.Takeovers) != 1 || len(s.StepDowns) != 0 {
		t.Errorf("role %s, takeovers %+v, step-downs %+v; want the first owner throughout", s.Role, s.Takeovers, s.StepDowns)
	}
}
