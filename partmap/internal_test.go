package partmap

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/seqlock"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestRecordCodec(t *testing.T) {
	in := NodeInfo{Name: "BB9020011AC4202", TLSName: "cluster.example.com", Build: "7.1.0.3", Active: true,
		Addresses: []netip.AddrPort{
			netip.MustParseAddrPort("10.1.2.3:3000"),
			netip.MustParseAddrPort("[2001:db8::1]:4333"),
			netip.MustParseAddrPort("[::ffff:10.0.0.9]:3000"),
			netip.MustParseAddrPort("[::]:1"),
		}}
	if err := in.validate(); err != nil {
		t.Fatal(err)
	}
	rec := make([]uint64, nodeWords)
	encodeNode(rec, 42, &in, true)
	n, err := decodeNode(3, rec)
	if err != nil {
		t.Fatal(err)
	}
	if n.Slot != 3 || n.Gen != 42 || !n.NodeInfo.equal(&in) { // 4in6 stays 4in6
		t.Errorf("round trip: %+v", n)
	}
	encodeNode(rec, 43, &NodeInfo{}, false)
	if n, err := decodeNode(3, rec); n != nil || err != nil {
		t.Errorf("empty slot: %v %v", n, err)
	}
	// Damaged meta words, families and lengths are CorruptErrors.
	for _, damage := range []func([]uint64){
		func(r []uint64) { r[nodeMeta] |= 0xff << 8 },                      // name length 255
		func(r []uint64) { r[nodeMeta] |= 1 << 45 },                        // unknown bits
		func(r []uint64) { r[nodeMeta] &^= 0xff << 8 },                     // name length 0
		func(r []uint64) { r[nodeAddrs+2] = 3000 | 5<<16 },                 // family 5
		func(r []uint64) { r[nodeAddrs+2] = 3000 | 4<<16 },                 // "IPv4" that is not 4in6
		func(r []uint64) { r[nodeMeta] = r[nodeMeta]&^(0xff<<32) | 9<<32 }, // 9 addresses
	} {
		encodeNode(rec, 1, &in, true)
		rec[nodeAddrs], rec[nodeAddrs+1] = 0, 1 // ::1 at address 0
		damage(rec)
		var ce *CorruptError
		if _, err := decodeNode(1, rec); !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("damaged record decoded: %v", err)
		}
	}
	ns := NamespaceInfo{Name: "0123456789012345678901234567890", ReplicaCount: 5, SC: true}
	nrec := make([]uint64, nsWords)
	encodeNamespace(nrec, &ns)
	if got, err := decodeNamespace(0, nrec); err != nil || got != ns {
		t.Errorf("namespace round trip: %+v %v", got, err)
	}
	nrec[nsMeta] = 40
	if _, err := decodeNamespace(0, nrec); !errors.Is(err, ErrCorrupt) {
		t.Errorf("namespace name length 40: %v", err)
	}
	// The checksum covers every word but itself.
	encodeNode(rec, 1, &in, true)
	sum := checksum(rec)
	for i := range rec {
		if i == wSum {
			continue
		}
		rec[i] ^= 1 << (i % 64)
		if checksum(rec) == sum {
			t.Errorf("checksum misses a flip in word %d", i)
		}
		rec[i] ^= 1 << (i % 64)
	}
}

func testMap(t *testing.T, cfg Config) (*Map, arena.Location) {
	t.Helper()
	loc := arena.NewHeapStore().At("internal")
	cfg.Logger = quietLogger()
	m, err := Open(context.Background(), loc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); arena.Remove(loc, arena.RemoveOptions{Force: true}) })
	return m, loc
}

func testOwner(t *testing.T, m *Map) (*lease.Lease, *Writer) {
	t.Helper()
	l := freeLease(t, m)
	w := m.Writer(l)
	if err := w.StampAll(); err != nil {
		t.Fatal(err)
	}
	return l, w
}

// TestStaleCopyOverwrite: a stale owner's plain stores into a published
// copy are detected by readers; warm readers keep the node they verified;
// the owner's next Publish repairs the record.
func TestStaleCopyOverwrite(t *testing.T) {
	m, loc := testMap(t, Config{})
	l, w := testOwner(t, m)
	a, _ := w.AddOrUpdateNode(NodeInfo{Name: "node-a", Active: true, Build: "1"})
	ns, _ := w.EnsureNamespace("test", 1, false)
	for pid := range uint32(Partitions) {
		if err := w.SetPartition(ns, pid, a, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	warm, err := Open(context.Background(), loc, Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer warm.Close()
	if n, ok := warm.Master(ns, 0); !ok || n.Build != "1" {
		t.Fatalf("warm reader: %v", n)
	}
	// The stale owner (an older epoch) rewrites the published copy.
	stale := func(build string) {
		ctl := m.seg.Load64(m.nodeCtlOff(a - 1))
		_, p := lease.SplitFenced(ctl)
		rec := make([]uint64, nodeWords)
		encodeNode(rec, 99, &NodeInfo{Name: "impostor", Active: true, Build: build}, true)
		rec[wTag] = lease.PackFenced(l.Epoch()-1, p)
		rec[wSum] = checksum(rec)
		if err := m.nodeT.Write(2*(a-1)+copyOf(p), rec); err != nil {
			t.Fatal(err)
		}
	}
	stale("x")
	cold, err := Open(context.Background(), loc, Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer cold.Close()
	var ce *CorruptError
	if n, err := cold.Lookup(ns, 0, 0); !errors.As(err, &ce) || ce.What != "node slot" || ce.Index != a {
		t.Fatalf("cold reader of an overwritten copy: %v %v", n, err)
	}
	if n, ok := warm.Master(ns, 0); !ok || n.Name != "node-a" {
		t.Fatalf("warm reader: %v", n)
	}
	// The owner republishes the node (new attributes) and the stale owner
	// overwrites the new copy too: now no process has a verified copy of
	// the current publication, and every reader reports the damage.
	if _, err := w.AddOrUpdateNode(NodeInfo{Name: "node-a", Active: true, Build: "2"}); err != nil {
		t.Fatal(err)
	}
	stale("y")
	for _, r := range []*Map{warm, cold} {
		if n, err := r.Lookup(ns, 0, 0); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("reader of a second overwritten copy: %v %v", n, err)
		}
	}
	// Publish repairs.
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Map{warm, cold, m} {
		if n, err := r.Lookup(ns, 0, 0); err != nil || n.Name != "node-a" || n.Build != "2" {
			t.Fatalf("after repair: %v %v", n, err)
		}
	}
	if st := cold.Stats(); st.Unreadable != 0 {
		t.Errorf("stats after repair: %+v", st)
	}
}

// stalledCopyArgs are the arguments of StalledCopyWorkload.
type stalledCopyArgs struct {
	Key    uint32
	Record int
}

// StalledCopyWorkload is the stale writer of TestStalledCopy (registered
// by TestMain): it opens the map at the SysV key of its arguments with the
// worker's failpoints and writes zeros into node record copy
// args.Record, as a stale owner would. Armed with seqlock.write.mid=stop,
// it stops in the middle of that write, holding the record's claim, until
// SIGCONT. It reports the write's error, if any.
func StalledCopyWorkload(ctx context.Context, wk *harness.Worker) (any, error) {
	var a stalledCopyArgs
	if err := wk.DecodeArgs(&a); err != nil {
		return nil, err
	}
	m, err := Open(ctx, arena.SysV(arena.Key(a.Key)), Config{Failpoints: wk.Failpoints, Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if err := wk.Barrier(ctx); err != nil {
		return nil, err
	}
	if err := m.nodeT.Write(a.Record, make([]uint64, nodeWords)); err != nil {
		return err.Error(), nil
	}
	return "", nil
}

// StartStopped starts spec's single worker with failpoint fp armed as
// "fp=stop" plus at (e.g. "@3", or ""), releases it, and returns once
// the worker has stopped there; the group is closed at cleanup.
func StartStopped(ctx context.Context, t testing.TB, spec harness.Spec, fp, at string) *harness.Group {
	t.Helper()
	spec.N = 1
	spec.Failpoints = map[int]string{0: fp + "=stop" + at}
	if spec.Stderr == nil {
		spec.Stderr = os.Stderr
	}
	g, err := harness.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if name, err := g.WaitFailpoint(ctx, 0); err != nil || name != fp {
		t.Fatalf("failpoint: %q %v, want %s", name, err, fp)
	}
	if err := g.WaitStopped(ctx, 0); err != nil {
		t.Fatal(err)
	}
	return g
}

// stallCopy starts StalledCopyWorkload on node record copy rec of the
// segment at key and returns once it is stopped in the middle of its
// write, holding the copy's seqlock claim until SIGCONT.
func stallCopy(ctx context.Context, t *testing.T, key arena.Key, rec int) *harness.Group {
	t.Helper()
	return StartStopped(ctx, t, harness.Spec{Workload: "stalled-copy",
		Args: stalledCopyArgs{Key: uint32(key), Record: rec}}, seqlock.FailWriteMid, "")
}

// Resume continues StartStopped's worker, waits for it to exit and
// decodes its result into v.
func Resume(t testing.TB, g *harness.Group, v any) {
	t.Helper()
	if err := g.Cont(0); err != nil {
		t.Fatal(err)
	}
	res, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if err := res[0].Decode(v); err != nil {
		t.Fatal(err)
	}
}

// resumeStalled lets stallCopy's worker finish its write and exit.
func resumeStalled(t *testing.T, g *harness.Group) {
	t.Helper()
	var werr string
	Resume(t, g, &werr)
	t.Logf("the stale write, resumed, returned %q", werr)
}

// TestStalledCopy: a writer stopped in the middle of writing the
// unpublished copy (a stale owner, here another process stopped at the
// seqlock.write.mid failpoint) holds its seqlock claim; the owner
// publishes through the other copy after StallTimeout.
func TestStalledCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := arenatest.SysVKey(t)
	m, err := Open(ctx, arena.SysV(key), Config{StallTimeout: 50 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	_, w := testOwner(t, m)
	a, _ := w.AddOrUpdateNode(NodeInfo{Name: "node-a", Active: true, Build: "1"})
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	_, p := lease.SplitFenced(m.seg.Load64(m.nodeCtlOff(a - 1)))
	// The stale writer is mid-write, and stays so until SIGCONT.
	g := stallCopy(ctx, t, key, 2*(a-1)+1-copyOf(p))
	stalls := m.nodeT.Stats().Stalls
	start := time.Now()
	if _, err := w.AddOrUpdateNode(NodeInfo{Name: "node-a", Active: true, Build: "2"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("published through the other copy after %v", time.Since(start))
	if n := m.nodeT.Stats().Stalls - stalls; n != 1 {
		t.Errorf("the owner's write met %d stalled copies, want 1", n)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	if _, p2 := lease.SplitFenced(m.seg.Load64(m.nodeCtlOff(a - 1))); copyOf(p2) != copyOf(p) {
		t.Errorf("published copy %d, want the unstalled copy %d", copyOf(p2), copyOf(p))
	}
	if n, err := m.node(a - 1); err != nil || n.Build != "2" {
		t.Errorf("node after the stalled write: %v %v", n, err)
	}
	resumeStalled(t, g)
	if n, err := m.node(a - 1); err != nil || n.Build != "2" {
		t.Errorf("node after the stale write finished: %v %v", n, err)
	}
}

// TestAdoptPastStalledCopy: the old owner is stopped in the middle of
// writing a record's unpublished copy (holding its seqlock claim) when a
// new owner takes over. StampAll stamps the record's control word and
// rewrites the copy that word names, not the one the old owner writes:
// it meets no stalled copy (so the record is unverifiable for one copy
// write, not for StallTimeout), and the old owner's write, when it
// resumes, lands in a copy that is not published.
func TestAdoptPastStalledCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := arenatest.SysVKey(t)
	cfg := Config{StallTimeout: 50 * time.Millisecond, Logger: quietLogger()}
	mA, err := Open(ctx, arena.SysV(key), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mA.Close() })
	_, _, a := ownerOfNodeA(t, mA)
	_, p := lease.SplitFenced(mA.seg.Load64(mA.nodeCtlOff(a - 1)))
	g := stallCopy(ctx, t, key, 2*(a-1)+1-copyOf(p))

	// B takes over in another handle.
	mB, err := Open(ctx, arena.SysV(key), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mB.Close() })
	lB, err := lease.New(mB.seg, mB.leaseOff, lease.Config{Threshold: 20 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lB.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	wB := mB.Writer(lB)
	if err := wB.StampAll(); err != nil {
		t.Fatal(err)
	}
	if n := mB.nodeT.Stats().Stalls; n != 0 {
		t.Errorf("StampAll met %d stalled copies, want 0", n)
	}
	c := mB.seg.Load64(mB.nodeCtlOff(a - 1))
	if ce, p2 := lease.SplitFenced(c); ce != wB.Epoch() || copyOf(p2) != copyOf(p) {
		t.Errorf("control word %#x after the takeover: want epoch %d, copy %d (the one A does not write)", c, wB.Epoch(), copyOf(p))
	}
	if s, ok := wB.NodeSlot("node-a"); !ok || s != a {
		t.Errorf("B's writer has node-a in slot %d (%v), want %d", s, ok, a)
	}
	resumeStalled(t, g)
	fresh, err := Open(ctx, arena.SysV(key), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Close() })
	if n, err := fresh.node(a - 1); err != nil || n == nil || n.Name != "node-a" || n.Build != "1" {
		t.Errorf("node after the stale write finished: %v %v", n, err)
	}
	if st := fresh.Stats(); st.Unreadable != 0 {
		t.Errorf("%d records unreadable", st.Unreadable)
	}
}

// ownerOfNodeA makes m's first owner publish node-a (build 1) and
// returns its lease, its writer and node-a's slot.
func ownerOfNodeA(t *testing.T, m *Map) (*lease.Lease, *Writer, int) {
	t.Helper()
	l, w := testOwner(t, m)
	a, err := w.AddOrUpdateNode(NodeInfo{Name: "node-a", Active: true, Build: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	return l, w, a
}

// freeLease returns a lease on m acquired once the previous owner
// released it.
func freeLease(t *testing.T, m *Map) *lease.Lease {
	t.Helper()
	l, err := lease.New(m.seg, m.leaseOff, lease.Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryAcquire(); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestAdoptFinishesStampedRecord: an owner that stamped a record's
// control word and died before republishing it leaves a record readers
// reject; the next owner adopts it from the copy the stamp names.
func TestAdoptFinishesStampedRecord(t *testing.T) {
	m, _ := testMap(t, Config{})
	l1, _, a := ownerOfNodeA(t, m)
	if err := l1.Release(); err != nil {
		t.Fatal(err)
	}
	// The second owner's StampAll stamps node-a's control word as it is,
	// and the owner dies.
	l2 := freeLease(t, m)
	ctlOff := m.nodeCtlOff(a - 1)
	c := m.seg.Load64(ctlOff)
	_, p := lease.SplitFenced(c)
	if !m.seg.CAS64(ctlOff, c, lease.PackFenced(l2.Epoch()&epochMask, p)) {
		t.Fatal("control word changed")
	}
	if err := l2.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.fillNode(a - 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a stamped record not republished must not verify for readers: %v", err)
	}
	_, w3 := testOwner(t, m)
	if s, ok := w3.NodeSlot("node-a"); !ok || s != a {
		t.Errorf("the third owner has node-a in slot %d (%v), want %d", s, ok, a)
	}
	if n, err := m.fillNode(a - 1); err != nil || n.node == nil || n.node.Name != "node-a" || n.node.Build != "1" {
		t.Errorf("node-a after the third owner's StampAll: %v %v", n, err)
	}
	if st := m.Stats(); st.Unreadable != 0 {
		t.Errorf("%d records unreadable", st.Unreadable)
	}
}

// TestAdoptExhausted: a record published with the last publication
// number makes the next owner's StampAll fail with ErrExhausted before
// it stamps the record's control word, so that readers keep verifying it.
func TestAdoptExhausted(t *testing.T) {
	m, _ := testMap(t, Config{})
	lA, wA, a := ownerOfNodeA(t, m)
	// Republish node-a as A would after ctlSeqMask publications.
	ctlOff := m.nodeCtlOff(a - 1)
	c := m.seg.Load64(ctlOff)
	_, p := lease.SplitFenced(c)
	rec := make([]uint64, nodeWords)
	if err := m.nodeT.Read(2*(a-1)+copyOf(p), rec); err != nil {
		t.Fatal(err)
	}
	last := uint64(1-copyOf(p))<<ctlCopyShift | ctlSeqMask
	rec[wTag] = lease.PackFenced(wA.Epoch(), last)
	rec[wSum] = checksum(rec)
	if err := m.nodeT.Write(2*(a-1)+1-copyOf(p), rec); err != nil {
		t.Fatal(err)
	}
	if !m.seg.CAS64(ctlOff, c, lease.PackFenced(wA.Epoch(), last)) {
		t.Fatal("control word changed")
	}
	if err := lA.Release(); err != nil {
		t.Fatal(err)
	}
	if err := m.Writer(freeLease(t, m)).StampAll(); !errors.Is(err, ErrExhausted) {
		t.Fatalf("StampAll: %v, want ErrExhausted", err)
	}
	if got := m.seg.Load64(ctlOff); got != lease.PackFenced(wA.Epoch(), last) {
		t.Errorf("control word %#x, want A's %#x untouched", got, lease.PackFenced(wA.Epoch(), last))
	}
	if n, err := m.fillNode(a - 1); err != nil || n.node == nil || n.node.Name != "node-a" {
		t.Errorf("node-a after the failed StampAll: %v %v", n, err)
	}
}

func TestPublishCounterAndSeqWrap(t *testing.T) {
	m, _ := testMap(t, Config{})
	_, w := testOwner(t, m)
	rec := make([]uint64, nodeWords)
	if _, err := w.writeCopy(m.nodeT, 0, 1<<ctlCopyShift|ctlSeqMask, rec, "node slot", 1); !errors.Is(err, ErrExhausted) {
		t.Errorf("node slot publication number past the largest: %v", err)
	}
	srec := make([]uint64, statsWords)
	np, err := w.writeCopy(m.statsT, 0, 1<<ctlCopyShift|ctlSeqMask, srec, "stats", 0)
	if err != nil || np != 1 {
		t.Errorf("stats after the largest seq: payload %#x %v, want copy 0 seq 1", np, err)
	}
	w.pub = lease.PayloadMask - 1
	if err := w.begin(); !errors.Is(err, ErrExhausted) {
		t.Errorf("exhausted publish counter: %v", err)
	}
}

// TestDecodeRecordsHostile feeds arbitrary record words to the decoders:
// they must return a record or a *CorruptError, never panic. (The fuzz
// target over whole damaged segments is fuzz.FuzzPartmapHostileSegment;
// this keeps the decoder-level inputs, including one it found: a node name
// with NUL bytes that used to be accepted.)
func TestDecodeRecordsHostile(t *testing.T) {
	rec := make([]uint64, nodeWords)
	in := NodeInfo{Name: "n", Active: true, Addresses: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:3000")}}
	encodeNode(rec, 1, &in, true)
	b := make([]byte, 8*nodeWords)
	for i, w := range rec {
		binary.LittleEndian.PutUint64(b[8*i:], w)
	}
	inputs := [][]byte{b, make([]byte, 8*nodeWords), []byte("000000000000000000000000\x03 0 \x00\x00\x00\x00")}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		d := append([]byte(nil), b...)
		for range 1 + rng.IntN(8) {
			d[rng.IntN(len(d))] = byte(rng.Uint32())
		}
		inputs = append(inputs, d)
	}
	for _, data := range inputs {
		words := make([]uint64, nodeWords)
		for i := range min(len(data)/8, nodeWords) {
			words[i] = binary.LittleEndian.Uint64(data[8*i:])
		}
		if n, err := decodeNode(1, words); err != nil {
			if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v: want ErrCorrupt only", err)
			}
		} else if n != nil {
			if err := n.NodeInfo.validate(); err != nil {
				t.Fatalf("decoded an invalid node %+v: %v", n, err)
			}
		}
		if _, err := decodeNamespace(0, words[:nsWords]); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("untyped error %v", err)
		}
		if s, err := decodeStats(words[:statsWords]); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("untyped error %v", err)
		} else if err == nil && len(s.ClusterName) > MaxClusterName {
			t.Fatalf("decoded a cluster name of %d bytes", len(s.ClusterName))
		}
	}
}

// TestReaderWaitsOutAdoption: between a new owner's stamp of a record's
// control word and its republication the published copy's tag is not the
// control word. A reader meeting that waits (bounded) for the control word
// to move instead of reporting the namespace unknown; the control word
// left stamped (an owner stopped mid-adoption) is reported after the
// bound, so the wait cannot hang.
func TestReaderWaitsOutAdoption(t *testing.T) {
	m, loc := testMap(t, Config{})
	_, w := testOwner(t, m)
	if _, err := w.EnsureNamespace("test", 1, false); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	ctl := m.nsCtlOff(0)
	c := m.seg.Load64(ctl)
	e, p := lease.SplitFenced(c)
	stamped := lease.PackFenced(e+1, p)
	fresh := func() *Map { // a reader with nothing cached
		r, err := Open(context.Background(), loc, Config{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}

	// The adoption finishes 5 ms after the stamp: the reader waits.
	r := fresh()
	m.seg.Store64(ctl, stamped)
	done := make(chan bool)
	go func() {
		_, ok := r.Namespace("test")
		done <- ok
	}()
	time.Sleep(5 * time.Millisecond)
	m.seg.Store64(ctl, c) // republished (under the verified word)
	if !<-done {
		t.Error("a reader meeting an adoption in progress reported the namespace unknown")
	}

	// Control: the stamp never followed by a republication. The reader
	// gives up after the bound (adoptWait), not before, and does not hang.
	r = fresh()
	m.seg.Store64(ctl, stamped)
	start := time.Now()
	if _, ok := r.Namespace("test"); ok {
		t.Error("a namespace whose copy never verifies was found")
	}
	if el := time.Since(start); el < adoptWait || el > 10*time.Second {
		t.Errorf("gave up after %v, want about %v", el, adoptWait)
	}
	m.seg.Store64(ctl, c)
}
