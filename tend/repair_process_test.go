package tend_test

import (
	"context"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// shared is the test process's own handle on a view its workers tend: it
// reads and damages the segment like any other process could, without
// competing for the lease.
type shared struct {
	t     *testing.T
	m     *partmap.Map
	l     *lease.Lease // only to read the lease record
	meta  arena.Offset
	parts arena.Offset
}

func openShared(t *testing.T, key arena.Key) *shared {
	t.Helper()
	m, err := partmap.Open(context.Background(), arena.SysV(key), partmap.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	sh := &shared{t: t, m: m, l: l}
	// partmap's layout (partmap/layout.go): the publish word opens the
	// meta section, node control words start 128 bytes into it, and
	// namespace slot j's 4096 entries are 32 KiB apart.
	if sh.meta, _, err = m.Segment().Section("meta"); err != nil {
		t.Fatal(err)
	}
	if sh.parts, _, err = m.Segment().Section("partitions"); err != nil {
		t.Fatal(err)
	}
	return sh
}

func (sh *shared) pub() arena.Offset             { return sh.meta }
func (sh *shared) nodeCtl(slot int) arena.Offset { return sh.meta + 128 + arena.Offset(8*(slot-1)) }
func (sh *shared) entry(ns partmap.NS, pid uint32) arena.Offset {
	return sh.parts + arena.Offset(ns.Index())*partmap.Partitions*8 + arena.Offset(pid)*8
}

// flip flips one bit of the word at off (with a CAS, so that an owner's
// concurrent write is not undone) and returns the damaged value.
func (sh *shared) flip(off arena.Offset, bit int) uint64 {
	seg := sh.m.Segment()
	for {
		v := seg.Load64(off)
		if seg.CAS64(off, v, v^1<<bit) {
			return v ^ 1<<bit
		}
	}
}

// epochOf returns the epoch of the fenced word at off.
func (sh *shared) epochOf(off arena.Offset) uint64 {
	e, _ := lease.SplitFenced(sh.m.Segment().Load64(off))
	return e
}

// leaseEpoch is the lease's epoch as fenced words carry it.
func (sh *shared) leaseEpoch() uint64 { return sh.l.Owner().Epoch & (1<<lease.EpochBits - 1) }

// tends is the owners' tend cycle count.
func (sh *shared) tends() uint64 { return sh.m.Stats().Owner.Tends }

// ns resolves a namespace or fails the test.
func (sh *shared) ns(name string) partmap.NS {
	sh.t.Helper()
	ns, ok := sh.m.Namespace(name)
	if !ok {
		sh.t.Fatalf("namespace %s not found", name)
	}
	return ns
}

// wrongMasters counts the partitions of ns whose master, read through the
// entry (as a process that built no table after the damage reads it), is
// not want's.
func (sh *shared) wrongMasters(ns partmap.NS, want []string) int {
	wrong := 0
	for pid := range uint32(partmap.Partitions) {
		if n, err := sh.m.Lookup(ns, pid, 0); err != nil || n.Name != want[pid] {
			wrong++
		}
	}
	return wrong
}

// logRecords sums the log records the workers of tag emitted.
func logRecords(dir, tag string, n int) int64 {
	var sum int64
	for i := range n {
		if st, ok := readStatus(dir, tag, i); ok {
			sum += st.LogRecords
		}
	}
	return sum
}

// ownerIndex returns the worker of tag that is the owner, or -1.
func ownerIndex(dir, tag string, n int) int {
	for i := range n {
		if st, ok := readStatus(dir, tag, i); ok && st.Role == tend.RoleOwner {
			return i
		}
	}
	return -1
}

// waitRepaired polls until repaired holds and returns the tend cycles it
// took (counted from t0); it fails the test after maxCycles cycles.
func waitRepaired(t *testing.T, sh *shared, what string, t0 uint64, maxCycles uint64, repaired func() bool) uint64 {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !repaired() {
		if c := sh.tends() - t0; c > maxCycles {
			t.Fatalf("%s: not repaired after %d tend cycles", what, c)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not repaired after %v (%d cycles)", what, waitLimit, sh.tends()-t0)
		}
		time.Sleep(time.Millisecond)
	}
	return sh.tends() - t0
}

// TestFlippedBitsRepairedInProcesses: flipped bits in a real segment under
// two tend processes. An epoch bit flipped in the publish word, in 100
// entries and in a node's control word made every fenced write of the
// owner fail for good (and, after a takeover, StampAll fail in a loop of
// ~20k attempts and 40k log records per second, the takeovers list
// growing without bound); a flipped counter bit in the publish word froze
// publishing. Each damage must be repaired within two tend cycles by the
// owner, a takeover onto damaged words must succeed at once, and the log
// records stay bounded throughout.
func TestFlippedBitsRepairedInProcesses(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	key := testKey(t)
	dir := t.TempDir()
	const n = 2
	g := startGroup(t, n, memberArgs{Key: uint32(key), Seeds: sim.Seeds(), Namespaces: nsNames(), Dir: dir, Tag: "f"})
	eventually(t, "agreement and one owner", func() bool { return allAgree(t, sim, dir, "f", seq(n)) && ownerIndex(dir, "f", n) >= 0 })
	sh := openShared(t, key)
	ns := sh.ns("test")
	start, logs0 := time.Now(), logRecords(dir, "f", n)

	// 1. Epoch bits: the publish word, 100 entries, node slot 1's control word.
	t0 := sh.tends()
	sh.flip(sh.pub(), 62)
	for pid := range uint32(100) {
		sh.flip(sh.entry(ns, pid), 62-int(pid%30))
	}
	sh.flip(sh.nodeCtl(1), 62)
	cycles := waitRepaired(t, sh, "epoch bits", t0, 2, func() bool {
		e := sh.leaseEpoch()
		if sh.epochOf(sh.pub()) != e || sh.epochOf(sh.nodeCtl(1)) != e {
			return false
		}
		for pid := range uint32(100) {
			if sh.epochOf(sh.entry(ns, pid)) != e {
				return false
			}
		}
		return true
	})
	t.Logf("epoch bits in the publish word, 100 entries and a control word: repaired in %d tend cycles", cycles)

	// 2. A counter bit of the publish word (same epoch): publishing goes
	// on, past the damaged value.
	t0 = sh.tends()
	damaged := sh.flip(sh.pub(), 4)
	if err := sim.MovePartition("test", 77, 0, (masterIndex(t, sim, "test", 77)+1)%3); err != nil {
		t.Fatal(err)
	}
	cycles = waitRepaired(t, sh, "publish counter bit", t0, 3, func() bool {
		v := sh.m.Segment().Load64(sh.pub())
		_, p := lease.SplitFenced(v)
		_, dp := lease.SplitFenced(damaged)
		return v&1 == 0 && p > dp
	})
	t.Logf("a counter bit of the publish word: publishing resumed past it in %d tend cycles", cycles)
	eventually(t, "the move after the counter damage reaches every process", func() bool { return allAgree(t, sim, dir, "f", seq(n)) })

	// 3. Epoch bits again, and the owner killed: the follower's StampAll
	// meets words of a later epoch and must reclaim them, once.
	own := ownerIndex(dir, "f", n)
	fol := 1 - own
	before, _ := readStatus(dir, "f", fol)
	sh.flip(sh.pub(), 61)
	for pid := range uint32(100) {
		sh.flip(sh.entry(ns, pid), 61-int(pid%30))
	}
	if err := g.Kill(own); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the follower takes over and tends", func() bool {
		st, ok := readStatus(dir, "f", fol)
		return ok && st.Role == tend.RoleOwner && sh.epochOf(sh.pub()) == sh.leaseEpoch() && allAgree(t, sim, dir, "f", []int{fol})
	})
	if err := sim.MovePartition("test", 78, 0, (masterIndex(t, sim, "test", 78)+1)%3); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a move after the takeover reaches the new owner", func() bool { return allAgree(t, sim, dir, "f", []int{fol}) })
	after, _ := readStatus(dir, "f", fol)
	if d := after.TakeoverCount - before.TakeoverCount; d != 1 || after.StepDownCount != before.StepDownCount {
		t.Errorf("the follower took the lease %d times and stepped down %d times; want once and never",
			d, after.StepDownCount-before.StepDownCount)
	}
	if st := sh.m.Stats(); st.Repairs < 2*100+3 {
		t.Errorf("Stats.Repairs %d, want at least %d", st.Repairs, 2*100+3)
	}
	// The owner killed, the damage repaired: the deep check passes.
	if err := sh.m.Check(); err != nil {
		t.Errorf("deep check after the kill and the repairs: %v", err)
	}

	elapsed := time.Since(start)
	recs := logRecords(dir, "f", n) - logs0
	t.Logf("single flips: %d log records in %v over both processes (%.1f/s), %d repairs counted", recs, elapsed.Round(time.Millisecond),
		float64(recs)/elapsed.Seconds(), sh.m.Stats().Repairs)
	// Bounded: a few records per takeover and per repair summary, nothing
	// per damaged word or per retry (a spin logged 40k per second).
	if limit := int64(40); recs > limit {
		t.Errorf("%d log records during the single flips, want at most %d", recs, limit)
	}

	// 4. Sustained damage: a flipped epoch bit in the publish word and
	// in an entry every 2 ms for 40 tend cycles. The owner keeps tending
	// and publishing, logs at most one repair summary per cycle, never
	// steps down; once the damage stops, one cycle repairs everything.
	logs1, t1, g1 := logRecords(dir, "f", n), sh.tends(), sh.m.Generation()
	st1, _ := readStatus(dir, "f", fol)
	start = time.Now()
	for k := 0; sh.tends() < t1+40; k++ {
		sh.flip(sh.pub(), 40+k%23)
		sh.flip(sh.entry(ns, uint32(k*7919)%partmap.Partitions), 40+k%23)
		time.Sleep(2 * time.Millisecond)
		if time.Since(start) > waitLimit {
			t.Fatalf("only %d tend cycles in %v of sustained damage", sh.tends()-t1, waitLimit)
		}
	}
	elapsed, cycles = time.Since(start), sh.tends()-t1
	recs = logRecords(dir, "f", n) - logs1
	t0 = sh.tends()
	cycles2 := waitRepaired(t, sh, "after the sustained damage", t0, 2, func() bool {
		e := sh.leaseEpoch()
		if sh.epochOf(sh.pub()) != e {
			return false
		}
		for pid := range uint32(partmap.Partitions) {
			if sh.epochOf(sh.entry(ns, pid)) != e {
				return false
			}
		}
		return true
	})
	st2, _ := readStatus(dir, "f", fol)
	t.Logf("sustained damage: %d tend cycles in %v, generation %d -> %d, %d log records (%.1f/s, %.2f per cycle), repaired %d cycles after it stopped",
		cycles, elapsed.Round(time.Millisecond), g1, sh.m.Generation(), recs, float64(recs)/elapsed.Seconds(), float64(recs)/float64(cycles), cycles2)
	if recs > int64(cycles)+5 {
		t.Errorf("%d log records over %d cycles of sustained damage, want at most one per cycle", recs, cycles)
	}
	if sh.m.Generation() <= g1 {
		t.Errorf("no publish during the sustained damage")
	}
	if st2.StepDownCount != st1.StepDownCount || st2.TakeoverCount != st1.TakeoverCount || st2.Role != tend.RoleOwner {
		t.Errorf("the owner stepped down or took over again during the sustained damage: %+v -> %+v", st1, st2)
	}
}

// TestScrubRepairsEntriesInProcesses: slot bits flipped in 300 entries of
// a namespace serve wrong masters to a process reading the entries; the
// owner's scrub rewrites them from its mirror within two cycles. Negative
// control: with the scrub off, the wrong answers last (10 cycles here),
// as they lasted forever before.
func TestScrubRepairsEntriesInProcesses(t *testing.T) {
	for _, scrub := range []bool{true, false} {
		name := "scrub"
		if !scrub {
			name = "no-scrub"
		}
		t.Run(name, func(t *testing.T) {
			sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
			key := testKey(t)
			dir := t.TempDir()
			startGroup(t, 1, memberArgs{Key: uint32(key), Seeds: sim.Seeds(), Namespaces: nsNames(), Dir: dir, Tag: "s", NoScrub: !scrub})
			eventually(t, "agreement", func() bool { return allAgree(t, sim, dir, "s", []int{0}) })
			sh := openShared(t, key)
			ns := sh.ns("test")
			want := simMasters(t, sim, "test")
			if w := sh.wrongMasters(ns, want); w != 0 {
				t.Fatalf("%d wrong masters before the damage", w)
			}
			t0 := sh.tends()
			for k := range uint32(300) {
				sh.flip(sh.entry(ns, k*13), 1) // master slot s becomes s^2
			}
			lookups, wrong, initial := 0, 0, -1
			repaired := uint64(0)
			for {
				w := sh.wrongMasters(ns, want)
				lookups += partmap.Partitions
				wrong += w
				if initial < 0 {
					initial = w
				}
				c := sh.tends() - t0
				if w == 0 {
					repaired = c
					break
				}
				if c > 10 {
					repaired = c
					break
				}
				time.Sleep(time.Millisecond)
			}
			if initial < 200 {
				t.Fatalf("the damage did not take effect: %d wrong masters", initial)
			}
			t.Logf("scrub %v: %d wrong masters after the damage, %d wrong of %d lookups until cycle %d",
				scrub, initial, wrong, lookups, repaired)
			final := sh.wrongMasters(ns, want)
			switch {
			case scrub && (final != 0 || repaired > 2):
				t.Errorf("with the scrub: %d wrong masters after %d cycles, want 0 within 2", final, repaired)
			case !scrub && final != initial:
				t.Errorf("without the scrub: %d wrong masters after %d cycles, want the %d of the damage (negative control)", final, repaired, initial)
			}
		})
	}
}

// TestRemovedSegmentConverges: the segment is removed (arena.Remove with
// force, as ipcrm -M does) under two running tend processes, and a third
// process starts on the key. It creates a second segment there; before,
// the first two went on tending the removed one, each owner unaware of
// the other. Now every process checks for removal each TendInterval and
// moves to the segment at the key: all three end on one segment with one
// owner, and agree with the cluster. Not vacuous: the segment id changes,
// and the first two report a move.
func TestRemovedSegmentConverges(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 3, Namespaces: testNamespaces})
	key := testKey(t)
	dir := t.TempDir()
	args := memberArgs{Key: uint32(key), Seeds: sim.Seeds(), Namespaces: nsNames(), Dir: dir}
	a := args
	a.Tag = "r"
	startGroup(t, 2, a)
	eventually(t, "agreement and one owner", func() bool { return allAgree(t, sim, dir, "r", seq(2)) && ownerIndex(dir, "r", 2) >= 0 })
	before, err := arena.StatOf(arena.SysV(key))
	if err != nil {
		t.Fatal(err)
	}
	if err := arena.Remove(arena.SysV(key), arena.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	b := args
	b.Tag = "n"
	startGroup(t, 1, b)

	type member struct {
		tag string
		i   int
	}
	all := []member{{"r", 0}, {"r", 1}, {"n", 0}}
	// converged reports the segment id all three are on (0 if they are
	// not on one), and the number of owners among them.
	converged := func() (id, owners int) {
		cur, err := arena.StatOf(arena.SysV(key))
		if err != nil {
			return 0, 0
		}
		for _, m := range all {
			st, ok := readStatus(dir, m.tag, m.i)
			if !ok || st.SegID != cur.ID {
				return 0, 0
			}
			if st.Role == tend.RoleOwner {
				owners++
			}
		}
		return cur.ID, owners
	}
	eventually(t, "one segment, one owner, agreement", func() bool {
		id, owners := converged()
		return id != 0 && owners == 1 && allAgree(t, sim, dir, "r", seq(2)) && allAgree(t, sim, dir, "n", []int{0})
	})
	id, _ := converged()
	if id == before.ID {
		t.Fatalf("segment id %d unchanged: the removal did not take effect", id)
	}
	for i := range 2 {
		if st, _ := readStatus(dir, "r", i); st.Moves != 1 {
			t.Errorf("worker r%d reports %d moves, want 1", i, st.Moves)
		}
	}
	// It stays so: one owner over ten more cycles, and a move in the
	// cluster reaches all three.
	sh := openShared(t, key)
	t0 := sh.tends()
	if err := sim.MovePartition("test", 99, 0, (masterIndex(t, sim, "test", 99)+1)%3); err != nil {
		t.Fatal(err)
	}
	for sh.tends() < t0+10 {
		if cid, owners := converged(); cid != 0 && owners != 1 {
			t.Fatalf("%d owners on segment %d", owners, cid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	eventually(t, "the move reaches all three", func() bool {
		return allAgree(t, sim, dir, "r", seq(2)) && allAgree(t, sim, dir, "n", []int{0})
	})
	t.Logf("segment %d removed; all three on segment %d with one owner", before.ID, id)
}
