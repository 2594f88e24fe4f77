package partmap_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

// The stale-owner scenario. Owner A publishes map X (nodes A-0..A-3), then
// starts batch Y and is stopped after yLanded entries. B takes over,
// stamps, and publishes map Z (nodes B-0..B-4, A's nodes removed). A
// resumes and tries to finish: every remaining write must be refused and
// the map must stay exactly Z.

const (
	yLanded  = 1000
	aNodes   = 4
	bNodes   = 5
	staleNS0 = "test"
	staleNS1 = "bar"
)

// mapX, mapY and mapZ give the node (by index into the owner's node list)
// of each replica of a partition.
func mapX(ns int, pid uint32) [3]int { return [3]int{int(pid) % aNodes, (int(pid) + 1) % aNodes, -1} }
func mapY(ns int, pid uint32) [3]int {
	return [3]int{(int(pid) + 2) % aNodes, (int(pid) + 3) % aNodes, -1}
}
func mapZ(ns int, pid uint32) [3]int {
	return [3]int{(int(pid) + ns) % bNodes, (int(pid) + ns + 1) % bNodes, (int(pid) + ns + 2) % bNodes}
}

func setAll(w *partmap.Writer, ns partmap.NS, nsIdx int, slots []int, assign func(int, uint32) [3]int) error {
	var table [partmap.Partitions]partmap.Replicas
	for pid := range uint32(partmap.Partitions) {
		for r, k := range assign(nsIdx, pid) {
			if k >= 0 {
				table[pid][r] = uint8(slots[k])
			}
		}
	}
	_, err := w.SetPartitions(ns, &table)
	return err
}

// publishX is A's first, complete publish.
func publishX(w *partmap.Writer) ([]partmap.NS, []int, error) {
	var slots []int
	for k := range aNodes {
		s, err := w.AddOrUpdateNode(info(fmt.Sprintf("A-%d", k), true))
		if err != nil {
			return nil, nil, err
		}
		slots = append(slots, s)
	}
	var nss []partmap.NS
	for i, name := range []string{staleNS0, staleNS1} {
		ns, err := w.EnsureNamespace(name, 2, i == 1)
		if err != nil {
			return nil, nil, err
		}
		if err := setAll(w, ns, i, slots, mapX); err != nil {
			return nil, nil, err
		}
		nss = append(nss, ns)
	}
	return nss, slots, w.Publish()
}

// staleResult is what A reports after it resumed.
type staleResult struct {
	Landed int      // entries of batch Y that A wrote
	Fenced int      // operations refused with lease.ErrFenced
	Other  []string // operations that failed otherwise, or succeeded after the stop
}

// finishY is A's batch Y: from the first failure on (the stop), every
// operation must be refused with lease.ErrFenced.
func finishY(w *partmap.Writer, nss []partmap.NS, slots []int, from int) staleResult {
	var res staleResult
	failed := false
	note := func(what string, err error) {
		switch {
		case err == nil && !failed:
			return
		case err == nil:
			res.Other = append(res.Other, what+": succeeded after a refusal")
		case errors.Is(err, lease.ErrFenced):
			res.Fenced++
		default:
			res.Other = append(res.Other, fmt.Sprintf("%s: %v", what, err))
		}
		failed = failed || err != nil
	}
	for pid := uint32(from); pid < partmap.Partitions; pid++ {
		y := mapY(0, pid)
		err := w.SetPartition(nss[0], pid, slots[y[0]], slots[y[1]], 0)
		if err == nil && !failed {
			res.Landed++
		}
		note(fmt.Sprintf("SetPartition %d", pid), err)
	}
	_, err := w.AddOrUpdateNode(info("A-late", true))
	note("AddOrUpdateNode", err)
	note("DeactivateNode", w.DeactivateNode("A-0"))
	_, err = w.EnsureNamespace("late", 1, false)
	note("EnsureNamespace", err)
	note("RecordTend", w.RecordTend(partmap.TendReport{InfoRequests: 1}))
	note("Publish", w.Publish())
	return res
}

// publishZ is B's map after the takeover.
func publishZ(w *partmap.Writer) ([]int, error) {
	var slots []int
	for k := range bNodes {
		s, err := w.AddOrUpdateNode(info(fmt.Sprintf("B-%d", k), true))
		if err != nil {
			return nil, err
		}
		slots = append(slots, s)
	}
	for i, name := range []string{staleNS0, staleNS1} {
		ns, err := w.EnsureNamespace(name, 3, false)
		if err != nil {
			return nil, err
		}
		if err := setAll(w, ns, i, slots, mapZ); err != nil {
			return nil, err
		}
	}
	for k := range aNodes {
		if err := w.RemoveNode(fmt.Sprintf("A-%d", k)); err != nil {
			return nil, err
		}
	}
	return slots, w.Publish()
}

// checkZ verifies, through a fresh handle (empty cache) and snapshots,
// that the map is exactly B's.
func checkZ(t *testing.T, m *partmap.Map) {
	t.Helper()
	var names []string
	for _, n := range m.Nodes() {
		if err := checkNode(n); err != nil {
			t.Error(err)
		}
		names = append(names, n.Name)
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[B-0 B-1 B-2 B-3 B-4]" {
		t.Errorf("nodes %v, want B-0..B-4", names)
	}
	nsl := m.Namespaces()
	if len(nsl) != 2 || nsl[0] != (partmap.NamespaceInfo{Name: staleNS0, ReplicaCount: 3}) ||
		nsl[1] != (partmap.NamespaceInfo{Name: staleNS1, ReplicaCount: 3}) {
		t.Errorf("namespaces %+v", nsl)
	}
	for i, name := range []string{staleNS0, staleNS1} {
		ns, ok := m.Namespace(name)
		if !ok {
			t.Fatalf("namespace %s missing", name)
		}
		snap, err := m.Snapshot(ns)
		if err != nil {
			t.Fatal(err)
		}
		bad := 0
		for pid := range uint32(partmap.Partitions) {
			for r, k := range mapZ(i, pid) {
				want := fmt.Sprintf("B-%d", k)
				n, ok := m.Replica(ns, pid, r)
				sn := snap.Node(pid, r)
				if !ok || n.Name != want || sn == nil || sn.Name != want {
					if bad++; bad < 5 {
						t.Errorf("%s partition %d replica %d: lookup %v, snapshot %v, want %s", name, pid, r, n, sn, want)
					}
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d replicas differ from B's map", name, bad)
		}
	}
	if st := m.Stats(); st.Unreadable != 0 || st.Publishing {
		t.Errorf("stats %+v", st)
	}
}

// staleArgs are the arguments of this file's workers and of
// adopterWorkload: the SysV key of the segment.
type staleArgs struct {
	Key uint32
}

// workerLease opens, in a worker, the map at the SysV key of its
// staleArgs, armed with the worker's failpoints, and a lease handle on it
// with configuration cfg. The caller closes the map.
func workerLease(ctx context.Context, wk *harness.Worker, cfg lease.Config) (*partmap.Map, *lease.Lease, error) {
	var args staleArgs
	if err := wk.DecodeArgs(&args); err != nil {
		return nil, nil, err
	}
	m, err := partmap.Open(ctx, arena.SysV(arena.Key(args.Key)), partmap.Config{Failpoints: wk.Failpoints, Logger: quiet()})
	if err != nil {
		return nil, nil, err
	}
	cfg.Logger = quiet()
	l, err := lease.New(m.Segment(), m.LeaseOffset(), cfg)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, l, nil
}

// workerOwnerX makes a worker the map's owner and publishes map X; the
// caller closes the map.
func workerOwnerX(ctx context.Context, wk *harness.Worker) (*partmap.Map, *partmap.Writer, []partmap.NS, []int, error) {
	m, l, err := workerLease(ctx, wk, lease.Config{})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	w := m.Writer(l)
	if _, err := l.TryAcquire(); err == nil {
		err = w.StampAll()
	}
	if err != nil {
		m.Close()
		return nil, nil, nil, nil, err
	}
	nss, slots, err := publishX(w)
	if err != nil {
		m.Close()
		return nil, nil, nil, nil, err
	}
	return m, w, nss, slots, nil
}

func staleOwnerWorkload(ctx context.Context, wk *harness.Worker) (any, error) {
	m, w, nss, slots, err := workerOwnerX(ctx, wk)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := wk.Barrier(ctx); err != nil {
		return nil, err
	}
	// Batch Y; the failpoint stops this process after yLanded entries.
	return finishY(w, nss, slots, 0), nil
}

// TestStaleOwnerCannotPublish runs the scenario with A in another process,
// stopped by SIGSTOP at the partmap.publish.mid failpoint.
func TestStaleOwnerCannotPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, loc := sysvLoc(t)
	m := openMore(t, loc, partmap.Config{})
	// Batch X changes 2*4096 entries: the failpoint is hit before each but
	// the first; Y's first entry does not hit it either.
	stopAt := 2*partmap.Partitions - 1 + yLanded
	g := partmap.StartStopped(ctx, t, harness.Spec{Workload: "stale", Args: staleArgs{Key: uint32(key)}},
		partmap.FailPublishMid, fmt.Sprintf("@%d", stopAt))
	if st := m.Stats(); !st.Publishing || st.Owner.PID != 0 {
		t.Fatalf("A should be stopped mid-publish: %+v", st)
	}
	if err := m.Check(); err != nil {
		t.Errorf("Check with A stopped mid-publish: %v", err)
	}

	// B takes over once A's heartbeat is 100 ms old.
	l, w := owner(t, m, 100*time.Millisecond)
	if l.Owner().Last != lease.ReasonHeartbeatExpired {
		t.Errorf("takeover reason %v", l.Owner().Last)
	}
	if _, err := publishZ(w); err != nil {
		t.Fatal(err)
	}
	if err := w.RecordTend(partmap.TendReport{InfoRequests: 3}); err != nil {
		t.Fatal(err)
	}
	genZ := m.Generation()

	var res staleResult
	partmap.Resume(t, g, &res)
	t.Logf("A: %d entries of Y landed before the stop, %d writes refused with ErrFenced after it, other: %v",
		res.Landed, res.Fenced, res.Other)
	if res.Landed != yLanded || res.Fenced != partmap.Partitions-yLanded+5 || len(res.Other) != 0 {
		t.Errorf("A's result %+v, want %d landed and %d fenced", res, yLanded, partmap.Partitions-yLanded+5)
	}
	if g := m.Generation(); g != genZ {
		t.Errorf("generation moved from %d to %d after A resumed", genZ, g)
	}
	fresh := openMore(t, loc, partmap.Config{})
	checkZ(t, fresh)
	if st := fresh.Stats(); st.Owner.PID != os.Getpid() || st.Owner.Tends != 1 || st.Owner.Epoch != l.Epoch() {
		t.Errorf("owner stats %+v (we are pid %d, epoch %d)", st.Owner, os.Getpid(), l.Epoch())
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	checkZ(t, openMore(t, loc, partmap.Config{}))
	if err := m.Check(); err != nil {
		t.Errorf("Check after B's publish: %v", err)
	}
}

// TestStaleOwnerStepwise runs the same scenario in one process on a heap
// segment (for the race detector), stopping A by simply not calling it.
func TestStaleOwnerStepwise(t *testing.T) {
	mA, loc := heapMap(t, partmap.Config{})
	mB := openMore(t, loc, partmap.Config{})
	_, wA := owner(t, mA, time.Hour)
	nss, slots, err := publishX(wA)
	if err != nil {
		t.Fatal(err)
	}
	for pid := range uint32(yLanded) {
		y := mapY(0, pid)
		if err := wA.SetPartition(nss[0], pid, slots[y[0]], slots[y[1]], 0); err != nil {
			t.Fatal(err)
		}
	}
	// A is "stopped" here, its batch open.
	_, wB := owner(t, mB, 20*time.Millisecond)
	if _, err := publishZ(wB); err != nil {
		t.Fatal(err)
	}
	genZ := mB.Generation()
	res := finishY(wA, nss, slots, yLanded)
	if res.Landed != 0 || res.Fenced != partmap.Partitions-yLanded+5 || len(res.Other) != 0 {
		t.Errorf("A after resuming: %+v", res)
	}
	if g := mB.Generation(); g != genZ {
		t.Errorf("generation moved from %d to %d", genZ, g)
	}
	checkZ(t, openMore(t, loc, partmap.Config{}))
	// A cannot even stamp again with its old epoch.
	if err := wA.StampAll(); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("stale StampAll: %v", err)
	}
}

// TestTakeoverRace has A write continuously while B takes over; once B
// has published, the map must be exactly B's, whatever A did.
func TestTakeoverRace(t *testing.T) {
	mA, loc := heapMap(t, partmap.Config{})
	mB := openMore(t, loc, partmap.Config{})
	_, wA := owner(t, mA, time.Hour)
	nss, slots, err := publishX(wA)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	busy := make(chan struct{}) // closed once A has made 100 writes
	var wg sync.WaitGroup
	var aOps, aOK int
	var late []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for finished := false; ; {
			select {
			case <-done:
				finished = true
			default:
			}
			var err error
			pid := uint32(rng.IntN(partmap.Partitions))
			switch rng.IntN(20) {
			case 0:
				_, err = wA.AddOrUpdateNode(info(fmt.Sprintf("A-%d", rng.IntN(aNodes)), rng.IntN(2) == 0))
			case 1:
				err = wA.Publish()
			default:
				err = wA.SetPartition(nss[rng.IntN(2)], pid, slots[rng.IntN(aNodes)], 0, 0)
			}
			aOps++
			if err == nil {
				aOK++
			}
			if aOps == 100 {
				close(busy)
			}
			if finished {
				// B has published: everything A tries now must be refused.
				for pid := range uint32(partmap.Partitions) {
					if err := wA.SetPartition(nss[0], pid, slots[0], 0, 0); !errors.Is(err, lease.ErrFenced) {
						late = append(late, fmt.Sprintf("partition %d: %v", pid, err))
					}
				}
				if err := wA.Publish(); !errors.Is(err, lease.ErrFenced) {
					late = append(late, fmt.Sprintf("publish: %v", err))
				}
				return
			}
		}
	}()
	select { // B takes over while A is writing
	case <-busy:
	case <-time.After(30 * time.Second):
		t.Fatal("A made no 100 writes in 30 s")
	}
	_, wB := owner(t, mB, 20*time.Millisecond)
	if _, err := publishZ(wB); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()
	t.Logf("A made %d writes, %d accepted (before B's stamps)", aOps, aOK)
	if len(late) > 0 {
		t.Errorf("%d of A's writes after B's publish were not fenced, e.g. %s", len(late), late[0])
	}
	checkZ(t, openMore(t, loc, partmap.Config{}))
	if err := wB.Publish(); err != nil {
		t.Fatal(err)
	}
	checkZ(t, openMore(t, loc, partmap.Config{}))
	if err := mB.Check(); err != nil {
		t.Errorf("Check after B's publish: %v", err)
	}
}
