package partmap_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

// counter is a slog.Handler that counts records by message.
type counter struct {
	mu *sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{mu: new(sync.Mutex), n: map[string]int{}} }

func (c *counter) Enabled(context.Context, slog.Level) bool { return true }
func (c *counter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.n[r.Message]++
	c.mu.Unlock()
	return nil
}
func (c *counter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *counter) WithGroup(string) slog.Handler      { return c }

func (c *counter) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

func (c *counter) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, n := range c.n {
		t += n
	}
	return t
}

const repairMsg = "partmap: repaired damaged shared memory (the owner's copy is the truth)"

// words locates the shared words the damage tests hit. It knows partmap's
// layout (layout.go): the publish word at the start of the meta section,
// node control words from meta+128, namespace control words after them,
// and 4096 entries per namespace slot in the partitions section.
type words struct {
	seg   *arena.Segment
	meta  arena.Offset
	parts arena.Offset
	nodes int
}

func locate(t *testing.T, m *partmap.Map) words {
	t.Helper()
	seg := m.Segment()
	meta, _ := section(t, seg, "meta")
	parts, _ := section(t, seg, "partitions")
	return words{seg: seg, meta: meta, parts: parts, nodes: m.Config().MaxNodes}
}

func (w words) pub() arena.Offset             { return w.meta }
func (w words) nodeCtl(slot int) arena.Offset { return w.meta + 128 + arena.Offset(8*(slot-1)) }
func (w words) nsCtl(i int) arena.Offset      { return w.meta + 128 + arena.Offset(8*(w.nodes+i)) }
func (w words) entry(ns partmap.NS, pid uint32) arena.Offset {
	return w.parts + arena.Offset(ns.Index())*partmap.Partitions*8 + arena.Offset(pid)*8
}
func (w words) flip(off arena.Offset, bit int) { w.seg.Store64(off, w.seg.Load64(off)^1<<bit) }

// epochBit is a bit of a fenced word's epoch: flipping it puts the epoch
// far above any lease's.
const epochBit = 62

// mapOf3 publishes nodes a, b, c and namespace "test" with partition pid
// mastered by slot pid%3 and prole (pid+1)%3.
func mapOf3(t *testing.T, w *partmap.Writer) (partmap.NS, []int) {
	t.Helper()
	var slots []int
	for _, n := range []string{"a", "b", "c"} {
		s, err := w.AddOrUpdateNode(info(n, true))
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s)
	}
	ns, err := w.EnsureNamespace("test", 2, false)
	if err != nil {
		t.Fatal(err)
	}
	for pid := range uint32(partmap.Partitions) {
		if err := w.SetPartition(ns, pid, slots[pid%3], slots[(pid+1)%3], 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	return ns, slots
}

// wrongMasters counts the partitions whose master (read through the
// per-entry path, as a process that built no table reads it) is not the
// one mapOf3 assigned.
func wrongMasters(m *partmap.Map, ns partmap.NS) int {
	wrong := 0
	for pid := range uint32(partmap.Partitions) {
		n, err := m.Lookup(ns, pid, 0)
		if err != nil || n.Name != []string{"a", "b", "c"}[pid%3] {
			wrong++
		}
	}
	return wrong
}

// TestRepairDamagedFencedWords: the publish word, a partition entry and a
// node's control word each get an epoch bit flipped (an epoch above the
// lease's), and another entry a slot bit. The owner still holds the lease,
// so its next Publish reclaims all of them instead of failing with
// ErrFenced forever; one summary record is logged, the repairs are
// counted. Negative control: the same damage after the lease moved to
// another owner is refused with ErrFenced and left alone.
func TestRepairDamagedFencedWords(t *testing.T) {
	logs := newCounter()
	m, _ := heapMap(t, partmap.Config{Logger: slog.New(logs)})
	l, w := owner(t, m, time.Minute)
	ns, _ := mapOf3(t, w)
	ws := locate(t, m)

	ws.flip(ws.pub(), epochBit)
	ws.flip(ws.entry(ns, 7), epochBit)
	ws.flip(ws.nodeCtl(2), epochBit)
	ws.flip(ws.entry(ns, 9), 0) // master slot 1 (a) becomes 0 (none), or 0 becomes 1
	if got := wrongMasters(m, ns); got == 0 {
		t.Fatal("the damage did not take effect: no wrong master")
	}
	before := logs.count(repairMsg)
	if err := w.Publish(); err != nil {
		t.Fatalf("Publish after damage: %v", err)
	}
	if got := wrongMasters(m, ns); got != 0 {
		t.Errorf("%d wrong masters after the repairing Publish", got)
	}
	e := l.Epoch() & (1<<lease.EpochBits - 1)
	for what, off := range map[string]arena.Offset{"publish word": ws.pub(), "entry 7": ws.entry(ns, 7), "entry 9": ws.entry(ns, 9), "node 2 control word": ws.nodeCtl(2)} {
		if we, _ := lease.SplitFenced(ws.seg.Load64(off)); we != e {
			t.Errorf("%s has epoch %d after the repair, want %d", what, we, e)
		}
	}
	if st := m.Stats(); st.Repairs < 4 {
		t.Errorf("Stats.Repairs %d, want at least 4", st.Repairs)
	}
	if got := logs.count(repairMsg) - before; got != 1 {
		t.Errorf("%d repair records for one Publish, want 1", got)
	}
	if n, err := m.Lookup(ns, 1, 0); err != nil || n.Name != "b" {
		t.Errorf("node b after its control word's repair: %v %v", n, err)
	}
	// The writer goes on as usual, and a clean Publish repairs nothing.
	if err := w.SetPartition(ns, 0, 2, 3, 0); err != nil {
		t.Fatal(err)
	}
	before, repairs := logs.count(repairMsg), m.Stats().Repairs
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	if logs.count(repairMsg) != before || m.Stats().Repairs != repairs {
		t.Errorf("a clean Publish logged or counted repairs")
	}

	// Negative control: another process takes the lease (and has not
	// stamped anything yet). The same damage is now not ours to repair.
	l2, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Threshold: time.Nanosecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l2.TryAcquire(); err != nil {
		t.Fatal(err)
	}
	ws.flip(ws.pub(), epochBit)
	ws.flip(ws.entry(ns, 7), epochBit)
	damaged := ws.seg.Load64(ws.pub())
	if err := w.Publish(); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("Publish after the lease moved: %v, want ErrFenced", err)
	}
	if err := w.SetPartition(ns, 7, 1, 0, 0); !errors.Is(err, lease.ErrFenced) {
		t.Errorf("SetPartition after the lease moved: %v, want ErrFenced", err)
	}
	if ws.seg.Load64(ws.pub()) != damaged {
		t.Errorf("the old owner rewrote the publish word of a lease it no longer holds")
	}
}

// TestRepairPublishCounter: a flipped counter bit in the publish word
// (same epoch) froze publishing for good. Now Publish moves the counter
// past both values, keeping the parity, so the word never repeats a value;
// a counter pushed to the end of its range is ErrExhausted (the owner must
// start a new epoch).
func TestRepairPublishCounter(t *testing.T) {
	m, _ := heapMap(t, partmap.Config{})
	_, w := owner(t, m, time.Minute)
	ns, _ := mapOf3(t, w)
	ws := locate(t, m)
	seen := map[uint64]bool{ws.seg.Load64(ws.pub()): true}
	for _, bit := range []int{6, 1, 0, 12, 3} {
		ws.flip(ws.pub(), bit)
		damaged := ws.seg.Load64(ws.pub())
		if err := w.SetPartition(ns, 5, 3, 1, 0); err != nil {
			t.Fatalf("bit %d: SetPartition: %v", bit, err)
		}
		if err := w.SetPartition(ns, 5, 3, 2, 0); err != nil {
			t.Fatalf("bit %d: SetPartition: %v", bit, err)
		}
		if err := w.Publish(); err != nil {
			t.Fatalf("bit %d: Publish: %v", bit, err)
		}
		v := ws.seg.Load64(ws.pub())
		_, p := lease.SplitFenced(v)
		_, dp := lease.SplitFenced(damaged)
		if p&1 != 0 || p <= dp || seen[v] {
			t.Errorf("bit %d: publish word %#x after damage %#x: want even, above the damaged counter, never seen before", bit, v, damaged)
		}
		seen[v] = true
		if _, err := m.Snapshot(ns); err != nil {
			t.Errorf("bit %d: Snapshot: %v", bit, err)
		}
	}
	// The counter pushed to its end: no room for another epoch's worth.
	e, _ := lease.SplitFenced(ws.seg.Load64(ws.pub()))
	ws.seg.Store64(ws.pub(), lease.PackFenced(e, lease.PayloadMask-1))
	if err := w.Publish(); !errors.Is(err, partmap.ErrExhausted) {
		t.Errorf("Publish with the counter at its end: %v, want ErrExhausted", err)
	}
}

// TestScrubRepairsEntries: entries changed behind the owner (slot bits
// flipped) serve wrong masters until the owner's next Publish rewrites
// them from its mirror. Negative control: with the scrub off, they are
// still wrong after many publishes.
func TestScrubRepairsEntries(t *testing.T) {
	for _, scrub := range []bool{true, false} {
		t.Run(fmt.Sprintf("scrub=%v", scrub), func(t *testing.T) {
			m, _ := heapMap(t, partmap.Config{NoScrub: !scrub})
			_, w := owner(t, m, time.Minute)
			ns, _ := mapOf3(t, w)
			ws := locate(t, m)
			const damaged = 300
			for pid := range uint32(damaged) {
				ws.flip(ws.entry(ns, pid*13), 1) // slot 1<->3, 2<->0
			}
			wrong := wrongMasters(m, ns)
			if wrong < damaged/2 {
				t.Fatalf("the damage did not take effect: %d wrong masters", wrong)
			}
			for range 3 {
				if err := w.Publish(); err != nil {
					t.Fatal(err)
				}
			}
			got := wrongMasters(m, ns)
			switch {
			case scrub && got != 0:
				t.Errorf("%d wrong masters after three publishes with scrubbing", got)
			case !scrub && got != wrong:
				t.Errorf("%d wrong masters after three publishes without scrubbing, want the %d of the damage", got, wrong)
			}
			if st := m.Stats(); scrub != (st.Repairs >= damaged) {
				t.Errorf("Stats.Repairs %d with scrub %v", st.Repairs, scrub)
			}
		})
	}
}

// TestStampAllReclaimsLaterEpochs: a new owner finds the publish word,
// every entry of a namespace and the control words of a node and of the
// namespace with an epoch above its own (bit flips after the old owner
// released the lease). StampAll used to fail with ErrFenced forever; now it
// reclaims them: records whose copies verify under their own tags are
// kept (the namespace stays in its slot). Negative control: a node whose
// record copy is damaged too is kept out of use, as any record that does
// not verify.
func TestStampAllReclaimsLaterEpochs(t *testing.T) {
	m, loc := heapMap(t, partmap.Config{})
	l, w := owner(t, m, time.Minute)
	ns, _ := mapOf3(t, w)
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	ws := locate(t, m)
	ws.flip(ws.pub(), epochBit)
	for pid := range uint32(partmap.Partitions) {
		ws.flip(ws.entry(ns, pid), epochBit-(int(pid)%20))
	}
	ws.flip(ws.nsCtl(ns.Index()), epochBit)
	ws.flip(ws.nodeCtl(1), epochBit)
	ws.flip(ws.nodeCtl(3), epochBit)
	// Node 3's published copy gets its checksum broken as well: record
	// 2*2+copy of the node_recs seqlock table (64-byte header, records of
	// 448 bytes for 48 words, the checksum in payload word 1, after the
	// sequence word).
	recs, _ := section(t, ws.seg, "node_recs")
	_, p := lease.SplitFenced(ws.seg.Load64(ws.nodeCtl(3)))
	cp := int(p >> 23 & 1)
	ws.flip(recs+64+arena.Offset(2*2+cp)*448+16, 3)

	m2 := openMore(t, loc, partmap.Config{})
	_, w2 := owner(t, m2, time.Minute)
	if got, ok := m2.Namespace("test"); !ok || got != ns {
		t.Errorf("namespace test after StampAll: %v %v, want slot %d", got, ok, ns.Index())
	}
	nodes := map[string]bool{}
	for _, n := range m2.Nodes() {
		nodes[n.Name] = true
	}
	if !nodes["a"] || !nodes["b"] || nodes["c"] {
		t.Errorf("nodes after StampAll %v: want a and b (intact records), not c (its copy is damaged)", nodes)
	}
	if st := m2.Stats(); st.Repairs < partmap.Partitions+4 {
		t.Errorf("Stats.Repairs %d, want at least %d", st.Repairs, partmap.Partitions+4)
	}
	// The new owner works: it re-adds c in a free slot and routes to it.
	s, err := w2.AddOrUpdateNode(info("c", true))
	if err != nil {
		t.Fatal(err)
	}
	for pid := uint32(2); pid < partmap.Partitions; pid += 3 {
		if err := w2.SetPartition(ns, pid, s, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w2.Publish(); err != nil {
		t.Fatal(err)
	}
	if got := wrongMasters(m2, ns); got != 0 {
		t.Errorf("%d wrong masters after the new owner's publish", got)
	}
}

// TestOverflowCountsItems: the overflow words count the nodes and
// namespaces left out, not the attempts: retrying a refused node does not
// raise it, storing or removing one lowers it.
func TestOverflowCountsItems(t *testing.T) {
	m, _ := heapMap(t, partmap.Config{MaxNodes: 2, MaxNamespaces: 1})
	_, w := owner(t, m, time.Minute)
	for _, n := range []string{"a", "b"} {
		if _, err := w.AddOrUpdateNode(info(n, true)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.EnsureNamespace("one", 1, false); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := w.AddOrUpdateNode(info("c", true)); !errors.Is(err, partmap.ErrNoRoom) {
			t.Fatalf("node c: %v", err)
		}
		if _, err := w.EnsureNamespace("two", 1, false); !errors.Is(err, partmap.ErrNoRoom) {
			t.Fatalf("namespace two: %v", err)
		}
	}
	if st := m.Stats(); st.NodeOverflow != 1 || st.NamespaceOverflow != 1 {
		t.Errorf("after 5 attempts each: node overflow %d, namespace overflow %d; want 1 and 1", st.NodeOverflow, st.NamespaceOverflow)
	}
	if _, err := w.AddOrUpdateNode(info("d", true)); !errors.Is(err, partmap.ErrNoRoom) {
		t.Fatalf("node d: %v", err)
	}
	if st := m.Stats(); st.NodeOverflow != 2 {
		t.Errorf("after d: node overflow %d, want 2", st.NodeOverflow)
	}
	// b leaves (no partition refers to it): c takes its slot; d left the
	// cluster too and is forgotten.
	if err := w.RemoveNode("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddOrUpdateNode(info("c", true)); err != nil {
		t.Fatal(err)
	}
	if err := w.RemoveNode("d"); !errors.Is(err, partmap.ErrNotFound) {
		t.Fatalf("remove d: %v", err)
	}
	if st := m.Stats(); st.NodeOverflow != 0 || st.NamespaceOverflow != 1 {
		t.Errorf("after c stored and d removed: node overflow %d, namespace overflow %d; want 0 and 1", st.NodeOverflow, st.NamespaceOverflow)
	}
}
