package seqlock_test

import (
	"context"
	"errors"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/procid"
	"github.com/shmkit/shmkit/seqlock"
)

// newHeap returns a heap-backed segment (visible to the race detector)
// with a table section of the given geometry at the returned offset.
func newHeap(t testing.TB, records, words int) (*arena.Segment, arena.Offset) {
	t.Helper()
	store := arena.NewHeapStore()
	loc := store.At("seqlock-test")
	spec := layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "table", Size: seqlock.SizeOf(records, words)}}}
	seg, err := arena.Create(context.Background(), loc, arena.Options{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		seg.Close()
		if err := arena.Remove(loc, arena.RemoveOptions{}); err != nil {
			t.Error(err)
		}
		if store.Len() != 0 {
			t.Error("heap segment left behind")
		}
	})
	off, _, err := seg.Section("table")
	if err != nil {
		t.Fatal(err)
	}
	return seg, off
}

func newHeapTable(t testing.TB, records, words int, opts seqlock.Options) (*seqlock.Table, *arena.Segment, arena.Offset) {
	t.Helper()
	seg, off := newHeap(t, records, words)
	tab, err := seqlock.New(seg, off, records, words, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tab, seg, off
}

func TestSizeOf(t *testing.T) {
	for _, tc := range []struct {
		records, words int
		want           uint64
	}{
		{1, 1, 64 + 64},
		{1, 6, 64 + 64},
		{1, 7, 64 + 128},
		{3, 8, 64 + 3*128},
		{2, 14, 64 + 2*128},
		{0, 8, 0},
		{1, 0, 0},
		{-1, 8, 0},
		{seqlock.MaxRecords + 1, 1, 0},
		{1, seqlock.MaxWords + 1, 0},
		{seqlock.MaxRecords, seqlock.MaxWords, 64 + seqlock.MaxRecords*(uint64(8*(seqlock.MaxWords+2)+64-1)&^63)},
	} {
		if got := seqlock.SizeOf(tc.records, tc.words); got != tc.want {
			t.Errorf("SizeOf(%d, %d) = %d, want %d", tc.records, tc.words, got, tc.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	seg, off := newHeap(t, 4, 8)
	size := seqlock.SizeOf(4, 8)
	for _, tc := range []struct {
		name           string
		seg            *arena.Segment
		off            arena.Offset
		records, words int
		want           []error
	}{
		{"zero records", seg, off, 0, 8, []error{seqlock.ErrGeometry}},
		{"zero words", seg, off, 4, 0, []error{seqlock.ErrGeometry}},
		{"negative records", seg, off, -4, 8, []error{seqlock.ErrGeometry}},
		{"too many records", seg, off, seqlock.MaxRecords + 1, 8, []error{seqlock.ErrGeometry}},
		{"too many words", seg, off, 4, seqlock.MaxWords + 1, []error{seqlock.ErrGeometry}},
		{"nil segment", nil, off, 4, 8, []error{seqlock.ErrRegion}},
		{"misaligned", seg, off + 4, 4, 8, []error{seqlock.ErrRegion}},
		{"past the end", seg, arena.Offset(seg.Len()), 4, 8, []error{seqlock.ErrRegion, arena.ErrRange}},
		{"overlaps the end", seg, arena.Offset(seg.Len() - size + 8), 4, 8, []error{seqlock.ErrRegion, arena.ErrRange}},
		{"does not fit", seg, off, 5, 8, []error{seqlock.ErrRegion, arena.ErrRange}},
		{"huge offset", seg, arena.Offset(1<<63 - 8), 4, 8, []error{seqlock.ErrRegion, arena.ErrRange}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := seqlock.New(tc.seg, tc.off, tc.records, tc.words, seqlock.Options{})
			if tab != nil || err == nil {
				t.Fatalf("New = %v, %v; want an error", tab, err)
			}
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Errorf("New error %q does not wrap %q", err, want)
				}
			}
		})
	}
}

func TestNewValidatesRegion(t *testing.T) {
	seg, off := newHeap(t, 4, 8)
	if _, err := seqlock.New(seg, off, 4, 8, seqlock.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := seqlock.New(seg, off, 4, 8, seqlock.Options{}); err != nil {
		t.Fatalf("second handle: %v", err)
	}
	for _, g := range []struct {
		records, words int
	}{{3, 8}, {4, 7}, {1, 1}} {
		if _, err := seqlock.New(seg, off, g.records, g.words, seqlock.Options{}); !errors.Is(err, seqlock.ErrMismatch) {
			t.Errorf("New(%d, %d) over a (4, 8) table: %v, want ErrMismatch", g.records, g.words, err)
		}
	}
	geom := seg.Load64(off)
	for _, bad := range []uint64{0xdeadbeef, geom ^ 0xff<<40 /* another format */, 1 << 63} {
		seg.Store64(off, bad)
		if _, err := seqlock.New(seg, off, 4, 8, seqlock.Options{}); !errors.Is(err, seqlock.ErrNotTable) {
			t.Errorf("New over geometry word %#x: %v, want ErrNotTable", bad, err)
		}
	}
	seg.Store64(off, geom)
}

func TestArgumentErrors(t *testing.T) {
	tab, _, _ := newHeapTable(t, 4, 8, seqlock.Options{})
	good := make([]uint64, 8)
	rows := func(n, w int) [][]uint64 {
		r := make([][]uint64, n)
		for i := range r {
			r[i] = make([]uint64, w)
		}
		return r
	}
	bad := rows(4, 8)
	bad[2] = make([]uint64, 7)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"read -1", tab.Read(-1, good), seqlock.ErrIndex},
		{"read records", tab.Read(4, good), seqlock.ErrIndex},
		{"read short", tab.Read(0, good[:7]), seqlock.ErrLength},
		{"read long", tab.Read(0, make([]uint64, 9)), seqlock.ErrLength},
		{"read nil", tab.Read(0, nil), seqlock.ErrLength},
		{"write -1", tab.Write(-1, good), seqlock.ErrIndex},
		{"write records", tab.Write(4, good), seqlock.ErrIndex},
		{"write huge", tab.Write(1<<40, good), seqlock.ErrIndex},
		{"write short", tab.Write(0, good[:1]), seqlock.ErrLength},
		{"write nil", tab.Write(0, nil), seqlock.ErrLength},
		{"recover -1", func() error { _, err := tab.Recover(-1); return err }(), seqlock.ErrIndex},
		{"recover records", func() error { _, err := tab.Recover(4); return err }(), seqlock.ErrIndex},
		{"snapshot rows", tab.Snapshot(rows(3, 8)), seqlock.ErrLength},
		{"snapshot nil", tab.Snapshot(nil), seqlock.ErrLength},
		{"snapshot row length", tab.Snapshot(bad), seqlock.ErrLength},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if s := tab.Stats(); s != (seqlock.Stats{}) {
		t.Errorf("argument errors changed the stats: %+v", s)
	}
}

func TestReadWrite(t *testing.T) {
	tab, seg, off := newHeapTable(t, 3, 5, seqlock.Options{})
	if tab.Records() != 3 || tab.Words() != 5 {
		t.Fatalf("geometry %d x %d", tab.Records(), tab.Words())
	}
	dst := make([]uint64, 5)
	if err := tab.Read(2, dst); err != nil {
		t.Fatal(err)
	}
	for _, w := range dst {
		if w != 0 {
			t.Fatalf("a new table reads %v, want zeros", dst)
		}
	}
	src := make([]uint64, 5)
	for i := range 3 {
		encode(src, uint64(100+i))
		if err := tab.Write(i, src); err != nil {
			t.Fatal(err)
		}
	}
	// Another handle sees the same table.
	other, err := seqlock.New(seg, off, 3, 5, seqlock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := other.Read(i, dst); err != nil {
			t.Fatal(err)
		}
		if c, ok := decode(dst); !ok || c != uint64(100+i) {
			t.Errorf("record %d reads %v (counter %d, %v)", i, dst, c, ok)
		}
		seq, claim := other.RawState(i)
		if seq != 4 || claim != 0 {
			t.Errorf("record %d after one write: seq %d claim %#x, want 4 and 0", i, seq, claim)
		}
	}
	rows := [][]uint64{make([]uint64, 5), make([]uint64, 5), make([]uint64, 5)}
	if err := tab.Snapshot(rows); err != nil {
		t.Fatal(err)
	}
	for i, row := range rows {
		if c, ok := decode(row); !ok || c != uint64(100+i) {
			t.Errorf("snapshot row %d = %v", i, row)
		}
	}
	if s := tab.Stats(); s != (seqlock.Stats{}) {
		t.Errorf("uncontended operations changed the stats: %+v", s)
	}
}

// deadIdentity returns the identity of a process that has exited.
func deadIdentity(t *testing.T) procid.Identity {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return id
}

// liveIdentity returns the identity of a live process (stopped at cleanup).
func liveIdentity(t *testing.T) procid.Identity {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	id, err := procid.Of(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// halfWrite leaves record i as a writer named by claim would if it died
// in the middle of writing counter c over counter c-1.
func halfWrite(t *testing.T, tab *seqlock.Table, i int, claim, c uint64) {
	t.Helper()
	seq, _ := tab.RawState(i)
	old := make([]uint64, tab.Words())
	encode(old, c-1)
	mixed := make([]uint64, tab.Words())
	encode(mixed, c)
	copy(mixed[tab.Words()/2:], old[tab.Words()/2:])
	tab.SetRawState(i, seq|seqlock.SeqBusy, claim)
	tab.StorePayload(i, mixed)
}

func asStalled(t *testing.T, err error) *seqlock.StalledError {
	t.Helper()
	var st *seqlock.StalledError
	if !errors.Is(err, seqlock.ErrWriterStalled) || !errors.As(err, &st) {
		t.Fatalf("error %v, want a *StalledError wrapping ErrWriterStalled", err)
	}
	return st
}

func TestDeadWriterRecover(t *testing.T) {
	const stall = 5 * time.Second // death must be seen long before this
	tab, _, _ := newHeapTable(t, 2, 8, seqlock.Options{StallTimeout: stall})
	src, dst := make([]uint64, 8), make([]uint64, 8)
	encode(src, 1)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	dead := deadIdentity(t)
	halfWrite(t, tab, 0, seqlock.ClaimWord(0, dead.PID), 2)

	start := time.Now()
	st := asStalled(t, tab.Read(0, dst))
	if !st.Dead || st.PID != dead.PID || st.Record != 0 || st.Op != "read" {
		t.Errorf("stall %+v, want record 0, dead writer pid %d", st, dead.PID)
	}
	if waited := time.Since(start); waited >= stall/2 {
		t.Errorf("a dead writer took %v to detect", waited)
	}
	if !strings.Contains(st.Error(), "is dead") {
		t.Errorf("message %q does not say the writer is dead", st)
	}
	rows := [][]uint64{make([]uint64, 8), make([]uint64, 8)}
	if st := asStalled(t, tab.Snapshot(rows)); !st.Dead || st.Record != 0 || st.Op != "snapshot" {
		t.Errorf("snapshot stall %+v", st)
	}

	seqBefore, _ := tab.RawState(0)
	ok, err := tab.Recover(0)
	if err != nil || !ok {
		t.Fatalf("Recover = %v, %v; want true", ok, err)
	}
	seq, claim := tab.RawState(0)
	if seq&seqlock.SeqBusy != 0 || seq&seqlock.SeqTorn == 0 || seq>>2 <= seqBefore>>2 || claim != 0 {
		t.Errorf("after Recover: seq %#x (was %#x) claim %#x; want a newer, torn, not busy version and no claim", seq, seqBefore, claim)
	}
	if err := tab.Read(0, dst); !errors.Is(err, seqlock.ErrTorn) {
		t.Errorf("Read of a recovered record: %v, want ErrTorn", err)
	}
	if err := tab.Snapshot(rows); !errors.Is(err, seqlock.ErrTorn) {
		t.Errorf("Snapshot with a recovered record: %v, want ErrTorn", err)
	}
	if ok, err := tab.Recover(0); ok || err != nil {
		t.Errorf("second Recover = %v, %v; want false, nil", ok, err)
	}
	encode(src, 3)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	if err := tab.Read(0, dst); err != nil {
		t.Fatal(err)
	}
	if c, ok := decode(dst); !ok || c != 3 {
		t.Errorf("after rewrite: %v", dst)
	}
	s := tab.Stats()
	if s.Takeovers != 1 || s.Recovered != 1 || s.Torn != 2 || s.Stalls != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestDeadWriterTakenOverByWrite(t *testing.T) {
	tab, _, _ := newHeapTable(t, 1, 8, seqlock.Options{StallTimeout: 5 * time.Second})
	src, dst := make([]uint64, 8), make([]uint64, 8)
	encode(src, 1)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	dead := deadIdentity(t)
	halfWrite(t, tab, 0, seqlock.ClaimWord(0, dead.PID), 2)
	encode(src, 7)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	if err := tab.Read(0, dst); err != nil {
		t.Fatal(err)
	}
	if c, ok := decode(dst); !ok || c != 7 {
		t.Errorf("read %v after takeover", dst)
	}
	if s := tab.Stats(); s.Takeovers != 1 || s.Recovered != 1 || s.WriteWaits != 1 {
		t.Errorf("stats %+v", s)
	}

	// A writer that died after publishing, before releasing its claim:
	// the payload is intact; the claim is taken over, nothing is torn.
	seq, _ := tab.RawState(0)
	tab.SetRawState(0, seq, seqlock.ClaimWord(0, dead.PID))
	if ok, err := tab.Recover(0); ok || err != nil {
		t.Errorf("Recover of an intact record = %v, %v; want false, nil", ok, err)
	}
	if _, claim := tab.RawState(0); claim != 0 {
		t.Errorf("Recover left claim %#x", claim)
	}
	tab.SetRawState(0, seq, seqlock.ClaimWord(0, dead.PID))
	if err := tab.Read(0, dst); err != nil {
		t.Errorf("a stable record with a stale claim must read: %v", err)
	}
	encode(src, 8)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	if s := tab.Stats(); s.Takeovers != 3 || s.Recovered != 1 {
		t.Errorf("stats %+v", s)
	}
}

// otherSlot attaches seg again, as another process would, and returns
// that handle's liveness slot; close releases it, as the process's exit
// would.
func otherSlot(t *testing.T, seg *arena.Segment) (slot procid.Slot, close func()) {
	t.Helper()
	_, size, err := seg.Section("table")
	if err != nil {
		t.Fatal(err)
	}
	spec := layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "table", Size: size}}}
	other, err := arena.Open(context.Background(), seg.Location(), arena.Options{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	reg, err := other.Liveness()
	if err != nil {
		t.Fatal(err)
	}
	if slot, err = reg.Register(); err != nil {
		t.Fatal(err)
	}
	return slot, func() { other.Close() }
}

// A claim whose liveness slot is free is dead even though its pid names a
// live process (the pid was reused): the slot, not the pid, is the proof.
func TestReusedPIDIsDead(t *testing.T) {
	tab, seg, _ := newHeapTable(t, 1, 2, seqlock.Options{StallTimeout: 5 * time.Second})
	live := liveIdentity(t)
	slot, release := otherSlot(t, seg)
	halfWrite(t, tab, 0, seqlock.ClaimWord(slot, live.PID), 1)
	release()
	st := asStalled(t, tab.Read(0, make([]uint64, 2)))
	if !st.Dead || !strings.Contains(st.Reason, string(procid.ReasonSlotFree)) {
		t.Errorf("stall %+v, want dead: %s", st, procid.ReasonSlotFree)
	}
}

func TestLiveWriterNotProgressing(t *testing.T) {
	const stall = 150 * time.Millisecond
	tab, seg, _ := newHeapTable(t, 1, 4, seqlock.Options{StallTimeout: stall})
	live := liveIdentity(t)
	heldSlot, _ := otherSlot(t, seg)
	for _, tc := range []struct {
		name  string
		claim uint64
		pid   uint32
	}{
		{"other process", seqlock.ClaimWord(0, live.PID), live.PID},
		{"other process holding its slot", seqlock.ClaimWord(heldSlot, 0), 0},
		{"no claim recorded", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			halfWrite(t, tab, 0, tc.claim, 5)
			start := time.Now()
			st := asStalled(t, tab.Read(0, make([]uint64, 4)))
			if st.Dead || st.PID != tc.pid || st.Waited < stall || time.Since(start) < stall {
				t.Errorf("stall %+v after %v, want not dead, pid %d, after %v", st, time.Since(start), tc.pid, stall)
			}
			if !strings.Contains(st.Error(), "not progressing") {
				t.Errorf("message %q does not say not progressing", st)
			}
			if tc.claim != 0 {
				// A live writer is never taken over.
				st := asStalled(t, tab.Write(0, make([]uint64, 4)))
				if st.Dead || st.Op != "write" {
					t.Errorf("write stall %+v", st)
				}
				if _, err := tab.Recover(0); err == nil {
					t.Error("Recover took over a live writer")
				}
				seq, claim := tab.RawState(0)
				if seq&seqlock.SeqBusy == 0 || claim != tc.claim {
					t.Fatalf("live writer's record changed: seq %#x claim %#x", seq, claim)
				}
				tab.SetRawState(0, seq, 0) // the "writer" gives up its claim
			}
			// No writer holds the claim: a busy record is garbage, and a
			// writer repairs it.
			src, dst := make([]uint64, 4), make([]uint64, 4)
			encode(src, 9)
			if err := tab.Write(0, src); err != nil {
				t.Fatal(err)
			}
			if err := tab.Read(0, dst); err != nil {
				t.Fatal(err)
			}
			if c, ok := decode(dst); !ok || c != 9 {
				t.Errorf("read %v", dst)
			}
		})
	}
}

func TestStarved(t *testing.T) {
	tab, _, _ := newHeapTable(t, 1, 4, seqlock.Options{StallTimeout: 50 * time.Millisecond, MaxWait: 100 * time.Millisecond})
	self, err := procid.Self()
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() { // busy all the time, but always progressing
		for v := uint64(4); !stop.Load(); v += 4 {
			tab.SetRawState(0, v|seqlock.SeqBusy, seqlock.ClaimWord(0, self.PID))
		}
	})
	for seq, _ := tab.RawState(0); seq&seqlock.SeqBusy == 0; seq, _ = tab.RawState(0) {
		runtime.Gosched()
	}
	err = tab.Read(0, make([]uint64, 4))
	stop.Store(true)
	wg.Wait()
	if !errors.Is(err, seqlock.ErrStarved) {
		t.Fatalf("Read under endless progress: %v, want ErrStarved", err)
	}
	if s := tab.Stats(); s.Starved != 1 || s.OverlappedReads != 1 || s.ReadRetries == 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestHeapProtocol runs the protocol with goroutines on a heap segment, so
// that the race detector checks it: writers of their own records and of a
// shared record, readers and snapshot readers.
func TestHeapProtocol(t *testing.T) {
	reads := 1_000_000
	if raceEnabled {
		reads = 100_000
	}
	const records, words = 4, 8
	tab, seg, off := newHeapTable(t, records, words, seqlock.Options{})
	src := make([]uint64, words)
	for i := range records {
		encode(src, 1)
		if err := tab.Write(i, src); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var writers, readers sync.WaitGroup
	errs := make(chan error, 16)
	// Two writers share record 0 (exclusion) and each also writes records
	// of its own; counters only grow per record.
	for wtr := range 2 {
		writers.Go(func() {
			tab, err := seqlock.New(seg, off, records, words, seqlock.Options{})
			if err != nil {
				errs <- err
				return
			}
			src := make([]uint64, words)
			for c := uint64(2); !stop.Load(); c++ {
				encode(src, c<<1|uint64(wtr))
				for _, i := range []int{0, 1 + wtr} {
					if err := tab.Write(i, src); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	var total, torn, overlapped atomic.Uint64
	for r := range 2 {
		readers.Go(func() {
			tab, err := seqlock.New(seg, off, records, words, seqlock.Options{})
			if err != nil {
				errs <- err
				return
			}
			dst := make([]uint64, words)
			// Read until enough reads overlapped a write (bounded).
			deadline := time.Now().Add(20 * time.Second)
			n := 0
			for ; n < reads/2 || tab.Stats().OverlappedReads < 50; n++ {
				if n%1024 == 0 && time.Now().After(deadline) {
					break
				}
				if err := tab.Read((n+r)%records, dst); err != nil {
					errs <- err
					return
				}
				if _, ok := decode(dst); !ok {
					torn.Add(1)
				}
			}
			total.Add(uint64(n))
			overlapped.Add(tab.Stats().OverlappedReads)
		})
	}
	var snaps atomic.Uint64
	readers.Go(func() {
		rows := make([][]uint64, records)
		for i := range rows {
			rows[i] = make([]uint64, words)
		}
		for n := 0; n < reads/100; n++ {
			if err := tab.Snapshot(rows); err != nil {
				errs <- err
				return
			}
			for _, row := range rows {
				if _, ok := decode(row); !ok {
					torn.Add(1)
				}
			}
			snaps.Add(1)
		}
	})
	readers.Wait()
	stop.Store(true)
	writers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d reads, %d overlapped a write, %d snapshots, %d torn", total.Load(), overlapped.Load(), snaps.Load(), torn.Load())
	if torn.Load() != 0 {
		t.Errorf("%d torn copies", torn.Load())
	}
	if overlapped.Load() == 0 {
		t.Error("no read overlapped a write: the test did not race")
	}
}

// TestWriteIf: a refused precondition leaves the record as it was and
// unclaimed; the precondition runs while the claim is held; a record left
// busy by a dead writer is marked torn, not left busy, when refused.
func TestWriteIf(t *testing.T) {
	tab, _, _ := newHeapTable(t, 1, 8, seqlock.Options{StallTimeout: 5 * time.Second})
	src, dst := make([]uint64, 8), make([]uint64, 8)
	encode(src, 1)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	seq0, _ := tab.RawState(0)
	errNo := errors.New("not now")
	encode(src, 2)
	var claimed uint64
	err := tab.WriteIf(0, src, func() error {
		_, claimed = tab.RawState(0)
		return errNo
	})
	if !errors.Is(err, errNo) {
		t.Fatalf("WriteIf refused: %v", err)
	}
	if claimed == 0 {
		t.Error("the precondition ran without the claim held")
	}
	if seq, claim := tab.RawState(0); seq != seq0 || claim != 0 {
		t.Errorf("after a refusal: seq %d claim %#x, want %d and 0", seq, claim, seq0)
	}
	if err := tab.Read(0, dst); err != nil {
		t.Fatal(err)
	}
	if c, ok := decode(dst); !ok || c != 1 {
		t.Errorf("read %v after a refusal, want counter 1", dst)
	}
	if err := tab.WriteIf(0, src, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := tab.Read(0, dst); err != nil {
		t.Fatal(err)
	}
	if c, ok := decode(dst); !ok || c != 2 {
		t.Errorf("read %v after an accepted WriteIf, want counter 2", dst)
	}

	dead := deadIdentity(t)
	halfWrite(t, tab, 0, seqlock.ClaimWord(0, dead.PID), 3)
	if err := tab.WriteIf(0, src, func() error { return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("WriteIf over a dead writer, refused: %v", err)
	}
	seq, claim := tab.RawState(0)
	if seq&seqlock.SeqBusy != 0 || seq&seqlock.SeqTorn == 0 || claim != 0 {
		t.Errorf("refused over a dead writer: seq %#x claim %#x, want torn, not busy, unclaimed", seq, claim)
	}
	if err := tab.Read(0, dst); !errors.Is(err, seqlock.ErrTorn) {
		t.Errorf("read after the refusal: %v, want ErrTorn", err)
	}
	encode(src, 4)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	if err := tab.Read(0, dst); err != nil {
		t.Fatal(err)
	}
	if c, ok := decode(dst); !ok || c != 4 {
		t.Errorf("read %v after rewriting, want counter 4", dst)
	}
}
