package seqlock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/seqlock"
)

// runReaders runs a looping writer process and one reader process per
// entry of modes until the readers are done, then stops the writer, and
// returns the readers' results.
func runReaders(t *testing.T, a segArgs, modes []readerArgs, pause time.Duration) ([]readerResult, writerResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	seg, tab, ctl, err := a.attach(ctx, seqlock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	src := make([]uint64, a.Words)
	encode(src, 1)
	for i := range a.Records { // consistent before any reader starts
		if err := tab.Write(i, src); err != nil {
			t.Fatal(err)
		}
	}
	wmode := modeLoop
	if pause > 0 {
		wmode = modeSnap
	}
	wg := startGroup(t, ctx, harness.Spec{Workload: "writer", N: 1, Args: writerArgs{segArgs: a, Mode: wmode, Start: 1, Pause: pause}})
	if err := wg.Release(ctx); err != nil { // the writer has initialized every record
		t.Fatal(err)
	}
	groups := make([]*harness.Group, len(modes))
	for i, m := range modes {
		m.segArgs = a
		groups[i] = startGroup(t, ctx, harness.Spec{Workload: "reader", N: 1, Args: m})
	}
	for _, g := range groups {
		if err := g.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]readerResult, len(modes))
	for i, g := range groups {
		res, err := g.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if err := res[0].Decode(&out[i]); err != nil {
			t.Fatal(err)
		}
	}
	seg.Store64(ctl+ctlStop, 1)
	res, err := wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	var wr writerResult
	if err := res[0].Decode(&wr); err != nil {
		t.Fatal(err)
	}
	return out, wr
}

// TestProcessesNoTornReads: a writer process writes continuously, reader
// processes verify every copy: no copy is torn, and many reads overlapped
// a write.
func TestProcessesNoTornReads(t *testing.T) {
	total, overlaps := int64(10_000_000), uint64(1000)
	if raceEnabled {
		total, overlaps = 100_000, 100
	}
	const readers = 2
	a, _ := newSysV(t, 2, 8)
	modes := make([]readerArgs, readers)
	for i := range modes {
		modes[i] = readerArgs{Mode: readCheck, Reads: total / readers, MinOverlaps: overlaps, Duration: 30 * time.Second}
	}
	res, wr := runReaders(t, a, modes, 0)
	var reads, torn, overlapped, retries uint64
	var longest time.Duration
	for _, r := range res {
		reads += r.Reads
		torn += r.Torn
		overlapped += r.Stats.OverlappedReads
		retries += r.Stats.ReadRetries
		longest = max(longest, r.Elapsed)
	}
	t.Logf("%d reads by %d processes in %v (writer: %d writes), %d overlapped a write (%d attempts discarded), %d torn",
		reads, readers, longest.Round(time.Millisecond), wr.Writes, overlapped, retries, torn)
	if torn != 0 {
		t.Errorf("%d torn reads", torn)
	}
	if reads < uint64(total) && longest < 29*time.Second {
		t.Errorf("%d reads, want %d (or 30 s)", reads, total)
	}
	if overlapped == 0 {
		t.Error("no read overlapped a write: the test did not race")
	}
}

// TestProcessesNegativeControl: the same setup with large records, read
// by a reader without the second sequence check (which must see torn
// copies, proving the check can fail) and by Read (which must not).
func TestProcessesNegativeControl(t *testing.T) {
	// Each reader goes on until it has raced enough, so that the test is
	// meaningful whatever the load of the machine. (Under the race
	// detector a 64-word copy outlasts the gap between two writes: Read
	// then succeeds only when the writer is descheduled, and is slow.)
	reads := int64(1_000_000)
	if raceEnabled {
		reads = 20_000
	}
	a, _ := newSysV(t, 1, 64)
	res, wr := runReaders(t, a, []readerArgs{
		{Mode: readNoRecheck, Reads: reads, MinTorn: 100, Duration: 10 * time.Second},
		{Mode: readCheck, Reads: reads, MinOverlaps: 20, Duration: 10 * time.Second},
	}, 0)
	control, checked := res[0], res[1]
	t.Logf("control (no recheck): %d reads, %d torn; Read: %d reads, %d overlapped, %d torn; writer: %d writes",
		control.Reads, control.Torn, checked.Reads, checked.Stats.OverlappedReads, checked.Torn, wr.Writes)
	if control.Torn == 0 {
		t.Error("the reader without the second sequence check saw no torn copy: the test cannot detect tearing")
	}
	if checked.Torn != 0 {
		t.Errorf("Read returned %d torn copies", checked.Torn)
	}
	if checked.Stats.OverlappedReads == 0 {
		t.Error("no Read overlapped a write")
	}
}

// TestProcessesSnapshot: a writer process writes counter c to every record
// in order, round after round; a snapshot reader process checks that each
// snapshot is the state at one instant (a prefix of the records at c, the
// rest at c-1), and that some snapshots caught the writer mid-round.
func TestProcessesSnapshot(t *testing.T) {
	snaps := int64(200_000)
	if raceEnabled {
		snaps = 10_000
	}
	a, _ := newSysV(t, 16, 8)
	res, wr := runReaders(t, a, []readerArgs{{Mode: readSnapshot, Reads: snaps, MinOverlaps: 100, Duration: 10 * time.Second}}, 2*time.Microsecond)
	r := res[0]
	t.Logf("%d snapshots (%d caught the writer mid-round, %d overlapped writes, %d attempts discarded), %d inconsistent; writer: %d writes",
		r.Reads, r.Mixed, r.Stats.OverlappedSnapshots, r.Stats.SnapshotRetries, r.Torn, wr.Writes)
	if r.Torn != 0 {
		t.Errorf("%d snapshots were not the state of one instant", r.Torn)
	}
	if r.Mixed == 0 || r.Stats.OverlappedSnapshots == 0 {
		t.Error("no snapshot caught the writer mid-round or overlapped a write: the test did not race")
	}
}

// TestProcessesWriterKilled: a writer is killed (SIGKILL from the
// failpoint) in the middle of a write. Readers in other processes get a
// *StalledError saying the writer is dead, instead of hanging; a new
// writer process takes the record over and readers read its value;
// Recover marks such a record torn until it is rewritten.
func TestProcessesWriterKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	a, _ := newSysV(t, 1, 8)
	seg, tab, _, err := a.attach(ctx, seqlock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()

	src := make([]uint64, a.Words)
	encode(src, 1)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	// The readers read while the writer writes; the writer dies in the
	// middle of its kill-th write.
	kill := 200_000
	if raceEnabled {
		kill = 20_000
	}
	rg := startGroup(t, ctx, harness.Spec{Workload: "reader", N: 2,
		Args: readerArgs{segArgs: a, Mode: readUntilErr, Reads: 1 << 62, Duration: 30 * time.Second}})
	wg := startGroup(t, ctx, harness.Spec{Workload: "writer", N: 1,
		Args:       writerArgs{segArgs: a, Mode: modeLoop, Start: 1},
		Failpoints: map[int]string{0: fmt.Sprintf("%s=kill@%d", seqlock.FailWriteMid, kill)}})
	if err := rg.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := wg.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if name, err := wg.WaitFailpoint(ctx, 0); err != nil || name != seqlock.FailWriteMid {
		t.Fatalf("WaitFailpoint = %q, %v", name, err)
	}
	writerPID := uint32(wg.Pid(0))
	wres, _ := wg.Wait()
	if wres[0].Signal != syscall.SIGKILL {
		t.Fatalf("writer: %+v, want killed", wres[0])
	}
	if err := tab.Check(); err != nil {
		t.Errorf("Check after the kill: %v", err)
	}
	rres, err := rg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rres {
		var rr readerResult
		if err := r.Decode(&rr); err != nil {
			t.Fatal(err)
		}
		st := rr.Stalled
		t.Logf("reader %d: %d reads, %d overlapped, then: %s", i, rr.Reads, rr.Stats.OverlappedReads, rr.Err)
		if st == nil || !st.Dead || st.PID != writerPID || st.Record != 0 || st.Waited >= seqlock.DefaultStallTimeout {
			t.Errorf("reader %d ended with %q (%+v), want a StalledError: writer %d dead", i, rr.Err, st, writerPID)
		}
		if rr.Torn != 0 {
			t.Errorf("reader %d: %d torn reads", i, rr.Torn)
		}
	}
	dst := make([]uint64, a.Words)
	if st := asStalled(t, tab.Read(0, dst)); !st.Dead || st.PID != writerPID {
		t.Errorf("read after the kill: %v", st)
	}

	// A new writer process takes the record over.
	ng := startGroup(t, ctx, harness.Spec{Workload: "writer", N: 1, Args: writerArgs{segArgs: a, Mode: modeOnce, Record: 0, Start: 777}})
	res, err := ng.Wait()
	if err != nil {
		t.Fatal(err)
	}
	var nw writerResult
	if err := res[0].Decode(&nw); err != nil {
		t.Fatal(err)
	}
	if nw.Stats.Takeovers != 1 || nw.Stats.Recovered != 1 {
		t.Errorf("new writer's stats %+v, want one takeover and one recovered record", nw.Stats)
	}
	if err := tab.Read(0, dst); err != nil {
		t.Fatal(err)
	}
	if c, ok := decode(dst); !ok || c != 777 {
		t.Errorf("after the takeover: read %v, want counter 777", dst)
	}

	// Kill a writer again; this time Recover, then rewrite.
	kg := startGroup(t, ctx, harness.Spec{Workload: "writer", N: 1,
		Args:       writerArgs{segArgs: a, Mode: modeOnce, Record: 0, Start: 778},
		Failpoints: map[int]string{0: seqlock.FailWriteMid + "=kill"}})
	if _, err := kg.Wait(); err == nil {
		t.Fatal("the writer survived its kill failpoint")
	}
	if ok, err := tab.Recover(0); !ok || err != nil {
		t.Fatalf("Recover = %v, %v; want true", ok, err)
	}
	if err := tab.Read(0, dst); !errors.Is(err, seqlock.ErrTorn) {
		t.Fatalf("read after Recover: %v, want ErrTorn", err)
	}
	encode(src, 779)
	if err := tab.Write(0, src); err != nil {
		t.Fatal(err)
	}
	if err := tab.Read(0, dst); err != nil {
		t.Fatal(err)
	}
	if c, ok := decode(dst); !ok || c != 779 {
		t.Errorf("after Recover and Write: read %v", dst)
	}
}

// TestProcessesWriterStopped: a live writer stopped (SIGSTOP from the
// failpoint) mid-write is reported as not progressing after StallTimeout,
// is not taken over, and completes after SIGCONT.
func TestProcessesWriterStopped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	a, _ := newSysV(t, 1, 8)
	const stall = 200 * time.Millisecond
	seg, tab, _, err := a.attach(ctx, seqlock.Options{StallTimeout: stall})
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	wg := startGroup(t, ctx, harness.Spec{Workload: "writer", N: 1,
		Args:       writerArgs{segArgs: a, Mode: modeOnce, Record: 0, Start: 555},
		Failpoints: map[int]string{0: seqlock.FailWriteMid + "=stop"}})
	if err := wg.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if name, err := wg.WaitFailpoint(ctx, 0); err != nil || name != seqlock.FailWriteMid {
		t.Fatalf("WaitFailpoint = %q, %v", name, err)
	}
	if err := wg.WaitStopped(ctx, 0); err != nil {
		t.Fatal(err)
	}
	dst := make([]uint64, a.Words)
	start := time.Now()
	st := asStalled(t, tab.Read(0, dst))
	t.Logf("read while the writer is stopped: %v", st)
	if st.Dead || st.PID != uint32(wg.Pid(0)) || time.Since(start) < stall || !strings.Contains(st.Error(), "not progressing") {
		t.Errorf("stall %+v, want writer %d alive but not progressing after %v", st, wg.Pid(0), stall)
	}
	if st := asStalled(t, tab.Write(0, dst)); st.Dead {
		t.Errorf("a writer took over a stopped writer: %+v", st)
	}
	if err := wg.Cont(0); err != nil {
		t.Fatal(err)
	}
	// The writer completes; the reader (default stall timeout) succeeds.
	reader, err := seqlock.New(seg, mustSection(t, seg, "table"), a.Records, a.Words, seqlock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.Read(0, dst); err != nil {
		t.Fatal(err)
	}
	if c, ok := decode(dst); !ok || c != 555 {
		t.Errorf("after SIGCONT: read %v, want counter 555", dst)
	}
	if _, err := wg.Wait(); err != nil {
		t.Fatal(err)
	}
}

func mustSection(t *testing.T, seg *arena.Segment, name string) arena.Offset {
	t.Helper()
	off, _, err := seg.Section(name)
	if err != nil {
		t.Fatal(err)
	}
	return off
}
