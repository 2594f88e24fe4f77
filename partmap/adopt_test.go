package partmap_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

// The adoption race. The new owner B adopts each record in StampAll: it
// reads the published copy under the old owner's control word and then
// republishes it under its own epoch. Until B's first CAS of that control
// word, the old owner A, its batch open, can still publish the record,
// into the copy that is not published. B must neither undo A's
// publication (which readers may have verified) nor lose the record: node
// slot 1 must come out of StampAll in use, with A's last content.

// adoptResult is what B reports after StampAll.
type adoptResult struct {
	Slot int  // A-0's slot in B's writer
	Has  bool // B's writer knows A-0 (RemoveNode would find it)
}

// adopterWorkload is B: it takes the lease over once A's heartbeat is
// stale and stamps; the failpoint stops it inside the stamp.
func adopterWorkload(ctx context.Context, wk *harness.Worker) (any, error) {
	m, l, err := workerLease(ctx, wk, lease.Config{Threshold: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := wk.Barrier(ctx); err != nil {
		return nil, err
	}
	if _, err := l.Acquire(ctx); err != nil {
		return nil, err
	}
	w := m.Writer(l)
	if err := w.StampAll(); err != nil {
		return nil, err
	}
	slot, ok := w.NodeSlot("A-0")
	return adoptResult{Slot: slot, Has: ok}, nil
}

// TestAdoptWhileOldOwnerPublishes stops B (another process) at the
// partmap.adopt.read failpoint, after it verified A-0's record and before
// it wrote anything for it; A then republishes A-0 (inactive), and B
// resumes. This is the interleaving behind TestTakeoverRace's rare
// "remove node A-k: not found": B used to write its republication into
// the copy A had just published, and then found that copy tagged with its
// own epoch under A's control word and kept the slot out of use.
func TestAdoptWhileOldOwnerPublishes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, loc := sysvLoc(t)
	m := openMore(t, loc, partmap.Config{})
	_, wA := owner(t, m, time.Hour)
	nss, slots, err := publishX(wA)
	if err != nil {
		t.Fatal(err)
	}
	// A opens a batch, as in the middle of a tend round: B's stamp of the
	// publish word does not stop A's record writes, only B's stamp of
	// each record's control word does.
	if err := wA.SetPartition(nss[0], 0, slots[2], slots[3], 0); err != nil {
		t.Fatal(err)
	}
	// StampAll adopts namespace slots first: "test" and "bar" are the
	// first two records hitting the failpoint, node slot 1 the third.
	g := partmap.StartStopped(ctx, t, harness.Spec{Workload: "adopter", Args: staleArgs{Key: uint32(key)}},
		partmap.FailAdoptRead, "@3")
	// B holds the lease and has stamped the publish word and both
	// namespaces, not A-0's control word: A can still publish A-0.
	s, err := wA.AddOrUpdateNode(info("A-0", false))
	if err != nil {
		t.Fatalf("A's update of A-0 before B stamped its record: %v", err)
	}
	if s != slots[0] {
		t.Fatalf("A-0 moved from slot %d to %d", slots[0], s)
	}
	// Readers see A's publication: it must not be undone.
	checkA0(t, openMore(t, loc, partmap.Config{}), s, false)

	var res adoptResult
	partmap.Resume(t, g, &res)
	if !res.Has || res.Slot != s {
		t.Errorf("B adopted A-0: %+v, want it in slot %d (a slot kept out of use makes RemoveNode fail with ErrNotFound)", res, s)
	}
	fresh := openMore(t, loc, partmap.Config{})
	checkA0(t, fresh, s, false)
	if st := fresh.Stats(); st.Unreadable != 0 {
		t.Errorf("%d records unreadable after B's stamp", st.Unreadable)
	}
	if err := fresh.Check(); err != nil {
		t.Errorf("Check after B's stamp: %v", err)
	}
	// A is fenced out of the record now.
	if _, err := wA.AddOrUpdateNode(info("A-0", true)); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("A's update of A-0 after B's stamp: %v, want ErrFenced", err)
	}
	checkA0(t, openMore(t, loc, partmap.Config{}), s, false)
}

// checkA0 checks that m's node table holds A-0, whole, in slot s with the
// given activity.
func checkA0(t *testing.T, m *partmap.Map, s int, active bool) {
	t.Helper()
	for _, n := range m.Nodes() {
		if n.Name != "A-0" {
			continue
		}
		if err := checkNode(n); err != nil {
			t.Error(err)
		}
		if n.Slot != s || n.Active != active {
			t.Errorf("A-0 in slot %d, active %v; want slot %d, active %v", n.Slot, n.Active, s, active)
		}
		return
	}
	t.Errorf("A-0 is not in the node table (slot %d unreadable?)", s)
}

// pausedResult is what the paused old owner reports once resumed.
type pausedResult struct {
	Err    string // its update's error
	Fenced bool   // the error wraps lease.ErrFenced
}

// pausedWriterWorkload is A: it owns the map, publishes map X, opens a
// batch and updates A-0; the failpoint stops it after its early check
// of A-0's control word and before it writes a copy.
func pausedWriterWorkload(ctx context.Context, wk *harness.Worker) (any, error) {
	m, w, nss, slots, err := workerOwnerX(ctx, wk)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := w.SetPartition(nss[0], 0, slots[2], slots[3], 0); err != nil {
		return nil, err
	}
	if err := wk.Barrier(ctx); err != nil {
		return nil, err
	}
	_, err = w.AddOrUpdateNode(info("A-0", false))
	res := pausedResult{Fenced: errors.Is(err, lease.ErrFenced)}
	if err != nil {
		res.Err = err.Error()
	}
	return res, nil
}

// TestPausedOwnerCannotStoreIntoPublishedCopy stops A (another process)
// between its early check of A-0's control word and its copy write. B
// takes over and publishes A-0 twice (its adoption, then an update), so
// that the copy A is about to write is B's published one. A resumes: its
// write must be refused (ErrFenced) and B's record stay intact. Without
// the check under the copy's seqlock claim, A's store lands in B's
// published copy and A-0 no longer verifies.
func TestPausedOwnerCannotStoreIntoPublishedCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, loc := sysvLoc(t)
	m := openMore(t, loc, partmap.Config{})
	// publishX publishes 6 records (4 nodes, 2 namespaces); the seventh
	// record write is the update of A-0.
	g := partmap.StartStopped(ctx, t, harness.Spec{Workload: "paused-writer", Args: staleArgs{Key: uint32(key)}},
		partmap.FailRecordWrite, "@7")
	_, wB := owner(t, m, 50*time.Millisecond)
	s, ok := wB.NodeSlot("A-0")
	if !ok {
		t.Fatal("B did not adopt A-0")
	}
	b := info("A-0", true)
	b.Build = "7.2.0.1" // B's update: A-0 moved to another build
	if _, err := wB.AddOrUpdateNode(b); err != nil {
		t.Fatal(err)
	}
	var res pausedResult
	partmap.Resume(t, g, &res)
	if !res.Fenced {
		t.Errorf("A's update after resuming: %q, want ErrFenced", res.Err)
	}
	fresh := openMore(t, loc, partmap.Config{})
	found := false
	for _, n := range fresh.Nodes() {
		if n.Name == "A-0" {
			found = true
			if n.Slot != s || n.Build != b.Build || !n.Active {
				t.Errorf("A-0 %+v, want B's update in slot %d", n, s)
			}
		}
	}
	if !found {
		t.Error("A-0 is not in the node table: A's store damaged B's published copy")
	}
	if st := fresh.Stats(); st.Unreadable != 0 {
		t.Errorf("%d records unreadable", st.Unreadable)
	}
}
