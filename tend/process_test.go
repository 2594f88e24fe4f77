package tend_test

import (
	"context"
	"syscall"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

var testNamespaces = []tendtest.NamespaceSpec{
	{Name: "test", ReplicationFactor: 2},
	{Name: "strong", ReplicationFactor: 2, SC: true},
}

func nsNames() []string { return []string{"test", "strong"} }

// allAgree reports whether every listed worker's view equals the sim's.
func allAgree(t testing.TB, sim *tendtest.Cluster, dir, tag string, idx []int) bool {
	want := map[string]string{}
	for _, ns := range nsNames() {
		want[ns] = simHash(t, sim, ns)
	}
	for _, i := range idx {
		st, ok := readStatus(dir, tag, i)
		if !ok {
			return false
		}
		for ns, h := range want {
			if st.Hash[ns] != h {
				return false
			}
		}
	}
	return true
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// TestProcessesOneTender: eight processes on one key; exactly one tends,
// all agree with the cluster, and a moved partition reaches all of them.
func TestProcessesOneTender(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	key := testKey(t)
	dir := t.TempDir()
	const n = 8
	g := startGroup(t, n, memberArgs{Key: uint32(key), Seeds: sim.Seeds(), Namespaces: nsNames(), Dir: dir, Tag: "m"})

	eventually(t, "all workers agree with the simulated cluster", func() bool { return allAgree(t, sim, dir, "m", seq(n)) })

	owners := func() (o []int) {
		for i := range n {
			if st, ok := readStatus(dir, "m", i); ok && st.Role == tend.RoleOwner {
				o = append(o, i)
			}
		}
		return o
	}
	eventually(t, "one owner", func() bool { return len(owners()) == 1 })
	own := owners()[0]
	for i := range n {
		st, _ := readStatus(dir, "m", i)
		if st.OwnerPID != g.Pid(own) {
			t.Errorf("worker %d sees owner pid %d, want %d", i, st.OwnerPID, g.Pid(own))
		}
	}

	// Count the info traffic over a few tend cycles against the owner's
	// cycle count: one tender sends one "node" request per node per cycle.
	m, err := partmap.Open(context.Background(), arena.SysV(key), partmap.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// A takeover inside the window (a loaded machine can make a cycle
	// overrun) makes the new owner re-read everything: measure again, in
	// a window that one owner tends throughout.
	var cycles uint64
	var reqs [3]map[string]uint64
	for attempt := 0; ; attempt++ {
		s0 := m.Stats().Owner
		sim.ResetCounters()
		eventually(t, "ten tend cycles", func() bool { return m.Stats().Owner.Tends >= s0.Tends+10 })
		s1 := m.Stats().Owner
		for i := range reqs {
			reqs[i] = sim.Requests(i)
		}
		cycles = s1.Tends - s0.Tends
		if s1.Epoch == s0.Epoch && s1.PID == s0.PID {
			break
		}
		if attempt == 4 {
			t.Fatalf("the owner changed in each of 5 windows of ten cycles (last: epoch %d to %d)", s0.Epoch, s1.Epoch)
		}
		t.Logf("the owner changed during the window (epoch %d to %d); measuring again", s0.Epoch, s1.Epoch)
	}
	for i := range 3 {
		if got := reqs[i]["node"]; got+1 < cycles || got > cycles+1 {
			t.Errorf("node %d got %d node requests over %d tend cycles of one tender (8 tenders would send %d)", i, got, cycles, 8*cycles)
		}
		if got := reqs[i]["replicas"]; got != 0 {
			t.Errorf("node %d got %d replicas requests with no partition change", i, got)
		}
	}
	if len(owners()) != 1 {
		t.Errorf("owners: %v, want exactly one", owners())
	}

	// Move partition 2709's master (myTestKey's) and one of "strong".
	cur, err := sim.Master("test", 2709)
	if err != nil {
		t.Fatal(err)
	}
	to := 0
	for i, nd := range sim.Nodes() {
		if nd.Name != cur {
			to = i
			break
		}
	}
	if err := sim.MovePartition("test", 2709, 0, to); err != nil {
		t.Fatal(err)
	}
	if err := sim.MovePartition("strong", 7, 0, to); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every worker sees the moved partitions", func() bool { return allAgree(t, sim, dir, "m", seq(n)) })
	if got := sim.Requests(to)["replicas"]; got == 0 {
		t.Errorf("no replicas request after the move")
	}
}

func lastReason(st status) tend.TakeoverReason {
	if len(st.Takeovers) == 0 {
		return tend.TakeoverUnknown
	}
	return st.Takeovers[len(st.Takeovers)-1].Reason
}

// TestTakeoverReasons drives the three takeover paths in order: heartbeat
// expired (owner in a foreign PID namespace, stopped), released (Close),
// owner dead (SIGKILL). Readers keep answering throughout.
func TestTakeoverReasons(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	key := testKey(t)
	dir := t.TempDir()
	args := memberArgs{Key: uint32(key), Seeds: sim.Seeds(), Namespaces: nsNames(), Dir: dir}

	// A lone process whose liveness others cannot know becomes the owner.
	a := args
	a.Tag, a.FlipPIDNS = "a", true
	ga := startGroup(t, 1, a)
	eventually(t, "foreign owner tends", func() bool {
		st, ok := readStatus(dir, "a", 0)
		return ok && st.Role == tend.RoleOwner && allAgree(t, sim, dir, "a", []int{0})
	})
	b := args
	b.Tag = "b"
	gb := startGroup(t, 3, b)
	eventually(t, "followers agree", func() bool { return allAgree(t, sim, dir, "b", seq(3)) })

	reasonIn := func(reason tend.TakeoverReason, skip int) int {
		for i := range 3 {
			if i == skip {
				continue
			}
			if st, ok := readStatus(dir, "b", i); ok && st.Role == tend.RoleOwner && lastReason(st) == reason {
				return i
			}
		}
		return -1
	}

	// 1. Heartbeat expired.
	if err := ga.Stop(0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "takeover by heartbeat expiry", func() bool { return reasonIn(tend.TakeoverExpired, -1) >= 0 })
	owner := reasonIn(tend.TakeoverExpired, -1)
	if err := ga.Cont(0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stale owner steps down", func() bool {
		st, ok := readStatus(dir, "a", 0)
		return ok && st.Role == tend.RoleFollower
	})
	if err := ga.Signal(0, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := ga.Wait(); err != nil {
		t.Fatalf("foreign worker: %v", err)
	}

	// 2. Released: the owner closes its view.
	if err := gb.Signal(owner, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "takeover after release", func() bool { return reasonIn(tend.TakeoverReleased, owner) >= 0 })
	next := reasonIn(tend.TakeoverReleased, owner)
	if st, _ := readStatus(dir, "b", owner); !st.Closed {
		t.Errorf("closed owner did not report a clean Close")
	}

	// 3. Owner dead.
	if err := gb.Kill(next); err != nil {
		t.Fatal(err)
	}
	last := 3 - owner - next
	eventually(t, "takeover after owner death", func() bool { return reasonIn(tend.TakeoverOwnerDead, next) == last })

	// The survivor still tends: a moved partition reaches it.
	if err := sim.MovePartition("test", 100, 0, (masterIndex(t, sim, "test", 100)+1)%3); err != nil {
		t.Fatal(err)
	}
	eventually(t, "survivor sees the move", func() bool { return allAgree(t, sim, dir, "b", []int{last}) })
	// After a heartbeat expiry, a release and a SIGKILL, the segment
	// passes its deep check (shmctl check).
	checkSegment(t, arena.SysV(key))

	if err := gb.Signal(last, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	res, _ := gb.Wait()
	for _, i := range []int{owner, last} {
		if err := res[i].Failure(); err != nil {
			t.Errorf("worker %d: %v", i, err)
		}
		var st status
		if err := res[i].Decode(&st); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
		if st.Lookups == 0 || st.LookupErrors != 0 {
			t.Errorf("worker %d: %d of %d lookups failed", i, st.LookupErrors, st.Lookups)
		}
	}
	if res[next].Signal != syscall.SIGKILL {
		t.Errorf("killed worker: %+v", res[next])
	}
}

func nodeNames(sim *tendtest.Cluster) []string {
	var s []string
	for _, n := range sim.Nodes() {
		s = append(s, n.Name)
	}
	return s
}

func mustMaster(t testing.TB, sim *tendtest.Cluster, ns string, pid uint32) string {
	t.Helper()
	m, err := sim.Master(ns, pid)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
