package partmap_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/partmap"
)

// Slot churn. In round r the writer adds churnK nodes named r<r>-n<k>,
// points every partition of two namespaces at them (replica j of partition
// pid of namespace ns is node (pick(ns, pid, r) + j) % churnK), removes the
// previous round's nodes and publishes, all in one batch. With 16 slots and
// least-recently-freed reuse, every slot changes hands every few rounds.
// A reader can check any node it gets against the round in its name: a
// node whose k is not the one its round assigned to that partition is a
// misroute.

const churnK = 5

var churnNames = []string{"churn0", "churn1"}

func churnName(round, k int) string { return fmt.Sprintf("r%07d-n%d", round, k) }

func churnExpect(ns int, pid uint32, round, r int) int {
	h := uint64(ns)*0x9e3779b97f4a7c15 ^ uint64(pid)*0xbf58476d1ce4e5b9 ^ uint64(round)*0x94d049bb133111eb
	h ^= h >> 31
	h *= 0xd6e8feb86659fd93
	h ^= h >> 32
	return (int(h%churnK) + r) % churnK
}

// parsed is what a checker learned about one *Node (nodes are immutable).
type parsed struct {
	round, k int
	bad      string
}

// checker checks nodes against the churn's assignment, parsing each *Node
// once.
type checker map[*partmap.Node]parsed

func (c checker) parse(n *partmap.Node) parsed {
	if p, ok := c[n]; ok {
		return p
	}
	var p parsed
	if cnt, err := fmt.Sscanf(n.Name, "r%07d-n%d", &p.round, &p.k); err != nil || cnt != 2 {
		p.bad = fmt.Sprintf("unexpected node %q", n.Name)
	} else if err := checkNode(n); err != nil {
		p.bad = err.Error()
	}
	if len(c) > 1<<16 {
		clear(c)
	}
	c[n] = p
	return p
}

// route returns "" if n is a node that some round assigned as replica r
// of partition pid of namespace ns, and whose record is whole.
func (c checker) route(ns int, pid uint32, r int, n *partmap.Node) string {
	p := c.parse(n)
	if p.bad != "" {
		return fmt.Sprintf("namespace %d partition %d replica %d: %s", ns, pid, r, p.bad)
	}
	if want := churnExpect(ns, pid, p.round, r); p.k != want {
		return fmt.Sprintf("MISROUTE namespace %d partition %d replica %d got %s (slot %d gen %d); round %d assigned n%d",
			ns, pid, r, n.Name, n.Slot, n.Gen, p.round, want)
	}
	return ""
}

// churn runs the writer until stop is closed. It returns the rounds and
// how many times a slot was given to a different node.
func churn(w *partmap.Writer, nss []partmap.NS, stop <-chan struct{}, pause time.Duration) (rounds, reused int, err error) {
	var prev []string
	holder := map[int]string{}
	for round := 1; ; round++ {
		select {
		case <-stop:
			return round - 1, reused, nil
		default:
		}
		slots := make([]int, churnK)
		var names []string
		for k := range churnK {
			name := churnName(round, k)
			s, err := w.AddOrUpdateNode(info(name, true))
			if err != nil {
				return round, reused, err
			}
			if old, ok := holder[s]; ok && old != name {
				reused++
			}
			holder[s] = name
			slots[k], names = s, append(names, name)
		}
		for j, ns := range nss {
			var table [partmap.Partitions]partmap.Replicas
			for pid := range uint32(partmap.Partitions) {
				for r := range partmap.StoredReplicas {
					table[pid][r] = uint8(slots[churnExpect(j, pid, round, r)])
				}
			}
			if _, err := w.SetPartitions(ns, &table); err != nil {
				return round, reused, err
			}
		}
		for _, name := range prev {
			if err := w.RemoveNode(name); err != nil {
				return round, reused, err
			}
		}
		prev = names
		if err := w.Publish(); err != nil {
			return round, reused, err
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

type churnStats struct {
	Lookups, Found, Missing, Misroutes    int
	Snapshots, SnapshotErrs, BadSnapshots int
	Examples                              []string
}

func (s *churnStats) add(o churnStats) {
	s.Lookups += o.Lookups
	s.Found += o.Found
	s.Missing += o.Missing
	s.Misroutes += o.Misroutes
	s.Snapshots += o.Snapshots
	s.SnapshotErrs += o.SnapshotErrs
	s.BadSnapshots += o.BadSnapshots
	if len(s.Examples) < 5 {
		s.Examples = append(s.Examples, o.Examples...)
	}
}

func (s *churnStats) example(msg string) {
	if len(s.Examples) < 5 {
		s.Examples = append(s.Examples, msg)
	}
}

type lookupFunc func(ns partmap.NS, pid uint32, r int) (*partmap.Node, bool)

// readChurn looks random partitions up with lookup (replicas 0..replicas-1)
// until the deadline, and takes a snapshot every 256 lookups if snapshots.
func readChurn(m *partmap.Map, until time.Time, seed uint64, replicas int, lookup lookupFunc, snapshots bool) churnStats {
	var st churnStats
	rng := rand.New(rand.NewPCG(seed, 7))
	check := checker{}
	var nss []partmap.NS
	for _, name := range churnNames {
		for {
			ns, ok := m.Namespace(name)
			if _, mapped := m.Master(ns, 0); ok && mapped { // the first round is published
				nss = append(nss, ns)
				break
			}
			if time.Now().After(until) {
				st.example("namespace " + name + " never mapped")
				return st
			}
			time.Sleep(time.Millisecond)
		}
	}
	nextSnap := time.Now()
	for time.Now().Before(until) {
		// Let the writer run: spinning readers on every P delay its timer
		// wake-ups until the scheduler preempts one (~10 ms).
		runtime.Gosched()
		for i := 0; i < 256 && (i%8 != 0 || time.Now().Before(until)); i++ {
			j, pid, r := rng.IntN(len(nss)), uint32(rng.IntN(partmap.Partitions)), rng.IntN(replicas)
			st.Lookups++
			n, ok := lookup(nss[j], pid, r)
			if !ok {
				st.Missing++
				continue
			}
			st.Found++
			if msg := check.route(j, pid, r, n); msg != "" {
				st.Misroutes++
				st.example(msg)
			}
		}
		if !snapshots || time.Now().Before(nextSnap) {
			continue
		}
		nextSnap = time.Now().Add(20 * time.Millisecond)
		j := rng.IntN(len(nss))
		st.Snapshots++
		snap, err := m.Snapshot(nss[j])
		if err != nil {
			st.SnapshotErrs++
			if !errors.Is(err, partmap.ErrUnstable) {
				st.example(fmt.Sprintf("snapshot: %v", err))
			}
			continue
		}
		if msg := check.snapshot(j, snap); msg != "" {
			st.BadSnapshots++
			st.example(msg)
		}
	}
	return st
}

// snapshot verifies that a snapshot is one round's map, whole.
func (c checker) snapshot(ns int, snap *partmap.Snapshot) string {
	round := -1
	for pid := range uint32(partmap.Partitions) {
		for r := range partmap.StoredReplicas {
			n := snap.Node(pid, r)
			if n == nil {
				return fmt.Sprintf("snapshot generation %d: partition %d replica %d missing", snap.Generation, pid, r)
			}
			if msg := c.route(ns, pid, r, n); msg != "" {
				return "snapshot: " + msg
			}
			rd := c.parse(n).round
			if round < 0 {
				round = rd
			} else if rd != round {
				return fmt.Sprintf("snapshot generation %d mixes rounds %d and %d", snap.Generation, round, rd)
			}
		}
	}
	return ""
}

type readerArgs struct {
	Key    uint32
	Millis int
}

func churnReaderWorkload(ctx context.Context, wk *harness.Worker) (any, error) {
	var args readerArgs
	if err := wk.DecodeArgs(&args); err != nil {
		return nil, err
	}
	m, err := partmap.Open(ctx, arena.SysV(arena.Key(args.Key)), partmap.Config{Logger: quiet()})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := wk.Barrier(ctx); err != nil {
		return nil, err
	}
	until := time.Now().Add(time.Duration(args.Millis) * time.Millisecond)
	return readChurn(m, until, uint64(wk.Index), partmap.StoredReplicas, m.Replica, true), nil
}

func setupChurn(t *testing.T, m *partmap.Map) (*partmap.Writer, []partmap.NS) {
	t.Helper()
	_, w := owner(t, m, time.Minute)
	var nss []partmap.NS
	for _, name := range churnNames {
		ns, err := w.EnsureNamespace(name, 3, false)
		if err != nil {
			t.Fatal(err)
		}
		nss = append(nss, ns)
	}
	return w, nss
}

// TestSlotReuseNoMisroute churns nodes through slots in this process while
// readers in two other processes look partitions up and take snapshots.
func TestSlotReuseNoMisroute(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key, loc := sysvLoc(t)
	m := openMore(t, loc, partmap.Config{})
	w, nss := setupChurn(t, m)
	g, err := harness.Start(ctx, harness.Spec{Workload: "reader", N: 2,
		Args: readerArgs{Key: uint32(key), Millis: 1500}, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var results []harness.Result
	var werr error
	go func() {
		results, werr = g.Wait()
		close(stop)
	}()
	rounds, reused, err := churn(w, nss, stop, 500*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	<-stop
	if werr != nil {
		t.Fatal(werr)
	}
	var total churnStats
	for _, r := range results {
		var st churnStats
		if err := r.Decode(&st); err != nil {
			t.Fatal(err)
		}
		total.add(st)
	}
	t.Logf("writer: %d rounds, %d slot reuses; readers (2 processes): %d lookups, %d found, %d not found, %d misroutes; %d snapshots, %d unstable, %d bad",
		rounds, reused, total.Lookups, total.Found, total.Missing, total.Misroutes, total.Snapshots, total.SnapshotErrs, total.BadSnapshots)
	checkChurn(t, total, rounds, reused)
}

func checkChurn(t *testing.T, st churnStats, rounds, reused int) {
	t.Helper()
	if st.Misroutes != 0 || st.BadSnapshots != 0 {
		t.Errorf("%d misroutes, %d inconsistent snapshots, e.g. %v", st.Misroutes, st.BadSnapshots, st.Examples)
	}
	if rounds < 10 || reused < 20 {
		t.Errorf("only %d rounds and %d slot reuses: the test did not churn", rounds, reused)
	}
	if st.Found == 0 || st.Missing > st.Lookups/100 {
		t.Errorf("%d of %d lookups found nothing, e.g. %v", st.Missing, st.Lookups, st.Examples)
	}
	if st.Snapshots > 0 && st.Snapshots == st.SnapshotErrs {
		t.Errorf("no snapshot succeeded in %d attempts", st.Snapshots)
	}
}

// TestSlotReuseHeap runs the churn on a heap segment, for the race
// detector, with readers that widen the race window by sleeping between
// the entry's load and the control word's — and a naive lookup without the
// reuse counter as the negative control, which does misroute.
func TestSlotReuseHeap(t *testing.T) {
	m, loc := heapMap(t, partmap.Config{})
	w, nss := setupChurn(t, m)
	until := time.Now().Add(time.Second)
	var mu sync.Mutex
	var real, paused, naive churnStats
	var wg sync.WaitGroup
	run := func(r *partmap.Map, into *churnStats, f func() churnStats) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := f()
			mu.Lock()
			into.add(st)
			mu.Unlock()
		}()
	}
	sleeper := func(seed uint64, every int, upTo time.Duration) func() {
		rng := rand.New(rand.NewPCG(seed, 9))
		return func() {
			if rng.IntN(every) == 0 {
				time.Sleep(time.Duration(rng.Int64N(int64(upTo))))
			}
		}
	}
	// Two handles, as two processes, each with a plain reader keeping its
	// cache fresh and a paused one: the real protocol on the first, the
	// naive lookup on the second.
	h1, h2 := openMore(t, loc, partmap.Config{}), openMore(t, loc, partmap.Config{})
	for i, h := range []*partmap.Map{h1, h2} {
		run(h, &real, func() churnStats {
			return readChurn(h, until, uint64(i), partmap.StoredReplicas, h.Replica, true)
		})
	}
	run(h1, &paused, func() churnStats {
		pause := sleeper(3, 2, 10*time.Millisecond)
		return readChurn(h1, until, 3, partmap.StoredReplicas, func(ns partmap.NS, pid uint32, rep int) (*partmap.Node, bool) {
			n, err := h1.PausedReplica(ns, pid, rep, pause)
			return n, err == nil
		}, false)
	})
	run(h2, &naive, func() churnStats {
		pause := sleeper(4, 2, 10*time.Millisecond)
		return readChurn(h2, until, 4, 1, func(ns partmap.NS, pid uint32, _ int) (*partmap.Node, bool) {
			return h2.NaiveMaster(ns, pid, pause)
		}, false)
	})
	// Resolved tables built with a pause between the entries' load and the
	// slots' resolution: the real build (tables torn by a publish refused)
	// and, as the negative control, one that keeps torn tables.
	var tables, torn churnStats
	run(h1, &tables, func() churnStats {
		return readChurn(h1, until, 5, partmap.StoredReplicas, tableLookup(h1, sleeper(5, 2, 10*time.Millisecond), false), false)
	})
	run(h2, &torn, func() churnStats {
		return readChurn(h2, until, 6, partmap.StoredReplicas, tableLookup(h2, sleeper(6, 2, 10*time.Millisecond), true), false)
	})
	stop := make(chan struct{})
	go func() { wg.Wait(); close(stop) }()
	rounds, reused, err := churn(w, nss, stop, 200*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	<-stop
	t.Logf("writer: %d rounds, %d slot reuses", rounds, reused)
	t.Logf("readers: %d lookups, %d found, %d not found, %d misroutes; %d snapshots, %d unstable, %d bad",
		real.Lookups, real.Found, real.Missing, real.Misroutes, real.Snapshots, real.SnapshotErrs, real.BadSnapshots)
	t.Logf("paused readers (sleep up to 10ms between entry and slot loads): %d lookups, %d found, %d not found, %d misroutes",
		paused.Lookups, paused.Found, paused.Missing, paused.Misroutes)
	t.Logf("naive paused reader (negative control: accepts records verified after its entry load): %d lookups, %d found, %d misroutes, e.g. %v",
		naive.Lookups, naive.Found, naive.Misroutes, naive.Examples)
	t.Logf("paused table builds: %d lookups, %d found, %d misroutes; negative control keeping torn tables: %d lookups, %d found, %d misroutes, e.g. %v",
		tables.Lookups, tables.Found, tables.Misroutes, torn.Lookups, torn.Found, torn.Misroutes, torn.Examples)
	checkChurn(t, real, rounds, reused)
	if tables.Misroutes != 0 || tables.Found == 0 {
		t.Errorf("paused table builds: %d misroutes, %d found, e.g. %v", tables.Misroutes, tables.Found, tables.Examples)
	}
	if torn.Misroutes == 0 && torn.Found >= 1000 && rounds >= 300 {
		t.Errorf("the torn-table control made no misroute in %d lookups over %d rounds: the test has lost its power", torn.Found, rounds)
	}
	if paused.Misroutes != 0 || paused.Found == 0 {
		t.Errorf("paused readers: %d misroutes, %d found, e.g. %v", paused.Misroutes, paused.Found, paused.Examples)
	}
	// The test must be able to see misroutes: the naive lookup makes them
	// (about one in five of its paused lookups when slots churn faster
	// than it pauses).
	if naive.Misroutes == 0 && naive.Found >= 100 && rounds >= 300 {
		t.Errorf("the negative control made no misroute in %d lookups over %d rounds: the test has lost its power", naive.Found, rounds)
	}
}

// tableLookup returns a lookup that answers from a resolved table it
// builds (BuildTable, with pause) for each namespace every 64 lookups; a
// build refused as torn answers nothing until the next. keepTorn is the
// negative control.
func tableLookup(m *partmap.Map, pause func(), keepTorn bool) lookupFunc {
	tabs := map[partmap.NS]func(uint32, int) *partmap.Node{}
	n := 0
	return func(ns partmap.NS, pid uint32, r int) (*partmap.Node, bool) {
		if n++; n%64 == 1 {
			clear(tabs)
		}
		tab, ok := tabs[ns]
		if !ok {
			tab, _ = m.BuildTable(ns, pause, keepTorn)
			tabs[ns] = tab
		}
		if tab == nil {
			return nil, false
		}
		node := tab(pid, r)
		return node, node != nil
	}
}

type waiterArgs struct {
	Key uint32
}

type waiterResult struct {
	From, To          uint64
	Started, Returned time.Time
}

func waiterWorkload(ctx context.Context, wk *harness.Worker) (any, error) {
	var args waiterArgs
	if err := wk.DecodeArgs(&args); err != nil {
		return nil, err
	}
	m, err := partmap.Open(ctx, arena.SysV(arena.Key(args.Key)), partmap.Config{Logger: quiet()})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	from := m.Generation()
	if err := wk.Barrier(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res := waiterResult{From: from, Started: time.Now()}
	res.To, err = m.WaitChange(wctx, from)
	res.Returned = time.Now()
	return res, err
}

// TestWaitChangeAcrossProcesses has followers in two processes wait for a
// change; a publish in this process wakes them.
func TestWaitChangeAcrossProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, loc := sysvLoc(t)
	m := openMore(t, loc, partmap.Config{})
	_, w := owner(t, m, time.Minute)
	g, err := harness.Start(ctx, harness.Spec{Workload: "waiter", N: 2, Args: waiterArgs{Key: uint32(key)}, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Both followers are blocked in WaitChange before the publish.
	waitWaiters(t, m, 2)
	if _, err := w.AddOrUpdateNode(info("n1", true)); err != nil {
		t.Fatal(err)
	}
	published := time.Now() // the publish is after this instant
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	results, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		var res waiterResult
		if err := r.Decode(&res); err != nil {
			t.Fatal(err)
		}
		t.Logf("follower %d: generation %d -> %d; waited %v, woke %v after the publish",
			r.Index, res.From, res.To, res.Returned.Sub(res.Started), res.Returned.Sub(published))
		if res.To != res.From+1 || res.To != m.Generation() {
			t.Errorf("follower %d: %d -> %d, map at %d", r.Index, res.From, res.To, m.Generation())
		}
		if res.Returned.Before(published.Add(-time.Millisecond)) {
			t.Errorf("follower %d returned at %v, before the publish at %v", r.Index, res.Returned, published)
		}
		if !res.Started.Before(published) {
			t.Errorf("follower %d started waiting at %v, after the publish at %v, though it was seen blocked", r.Index, res.Started, published)
		}
	}
}
