package seqlock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/bench"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/seqlock"
)

// hangGuard bounds every test's waiting; it is not a speed assertion.
const hangGuard = 60 * time.Second

func TestMain(m *testing.M) {
	reg := harness.Registry{
		"writer": writerWorkload,
		"reader": readerWorkload,
	}
	for name, fn := range bench.SeqlockWorkloads() {
		reg[name] = fn
	}
	harness.Dispatch(reg)
	code := m.Run()
	// No test may leave a segment behind.
	if segs, err := arena.List(os.TempDir()); err == nil {
		for _, s := range segs {
			if s.CreatorPID == os.Getpid() && !s.Removed {
				fmt.Fprintf(os.Stderr, "test segment left behind: %+v\n", s)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// segArgs names a test segment holding one table and a control section.
type segArgs struct {
	Key     uint32
	Records int
	Words   int
}

// Control words (the "ctl" section).
const (
	ctlStop   = 0  // set to 1 to stop looping writers
	ctlWrites = 8  // writes done by the looping writer
	ctlSize   = 64 // section size
)

func (a segArgs) spec() layout.Spec {
	return layout.Spec{
		Kind:   layout.KindTest,
		Fields: []layout.Field{{Name: "seqlock.records", Value: uint64(a.Records)}, {Name: "seqlock.words", Value: uint64(a.Words)}},
		Sections: []layout.SectionSpec{
			{Name: "table", Size: seqlock.SizeOf(a.Records, a.Words)},
			{Name: "ctl", Size: ctlSize},
		},
	}
}

// attach opens the segment and the table (in a worker or the test).
func (a segArgs) attach(ctx context.Context, opts seqlock.Options) (*arena.Segment, *seqlock.Table, arena.Offset, error) {
	seg, err := arena.Open(ctx, arena.SysV(arena.Key(a.Key)), arena.Options{Spec: a.spec()})
	if err != nil {
		return nil, nil, 0, err
	}
	tab, ctl, err := a.table(seg, opts)
	if err != nil {
		seg.Close()
		return nil, nil, 0, err
	}
	return seg, tab, ctl, nil
}

func (a segArgs) table(seg *arena.Segment, opts seqlock.Options) (*seqlock.Table, arena.Offset, error) {
	off, _, err := seg.Section("table")
	if err != nil {
		return nil, 0, err
	}
	ctl, _, err := seg.Section("ctl")
	if err != nil {
		return nil, 0, err
	}
	tab, err := seqlock.New(seg, off, a.Records, a.Words, opts)
	return tab, ctl, err
}

// newSysV creates a SysV test segment at an unused test key and removes
// it when the test ends (failing the test if a process still has it
// attached).
func newSysV(t testing.TB, records, words int) (segArgs, *arena.Segment) {
	t.Helper()
	key := arenatest.SysVKey(t) // its cleanup force-removes what ours leaves
	a := segArgs{Key: uint32(key), Records: records, Words: words}
	seg, err := arena.Create(context.Background(), arena.SysV(key), arena.Options{Spec: a.spec()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		seg.Close()
		if err := arena.Remove(arena.SysV(key), arena.RemoveOptions{}); err != nil {
			t.Errorf("remove test segment: %v", err)
		}
	})
	return a, seg
}

// Payloads: word k of the value written with counter c is c XOR a
// per-word constant, so every word names the counter and a copy mixing two
// writes is detected.
func encode(dst []uint64, c uint64) {
	for k := range dst {
		dst[k] = c ^ (uint64(k+1) * 0x9E3779B97F4A7C15)
	}
}

// decode returns the counter of a consistent payload.
func decode(p []uint64) (uint64, bool) {
	c := p[0] ^ 0x9E3779B97F4A7C15
	for k := range p {
		if p[k] != c^(uint64(k+1)*0x9E3779B97F4A7C15) {
			return 0, false
		}
	}
	return c, true
}

func startGroup(t *testing.T, ctx context.Context, spec harness.Spec) *harness.Group {
	t.Helper()
	g, err := harness.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// Writer modes.
const (
	modeLoop = "loop" // write records round robin until the stop word is set
	modeOnce = "once" // write Start to Record once and return
	modeSnap = "snap" // write every record with the same counter, in order, pausing between rounds
)

type writerArgs struct {
	segArgs
	Mode   string
	Record int
	Start  uint64
	// Pause between rounds in modeSnap.
	Pause time.Duration
	// Hot is the number of records (0..Hot-1) modeLoop writes; 0: all.
	Hot int
}

type writerResult struct {
	Writes uint64
	Last   uint64
	Stats  seqlock.Stats
}

func writerWorkload(ctx context.Context, w *harness.Worker) (any, error) {
	var a writerArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	seg, tab, ctl, err := a.attach(ctx, seqlock.Options{Failpoints: w.Failpoints})
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	buf := make([]uint64, a.Words)
	res := writerResult{}
	write := func(i int, c uint64) error {
		encode(buf, c)
		if err := tab.Write(i, buf); err != nil {
			return err
		}
		res.Writes++
		res.Last = c
		return nil
	}
	c := a.Start
	if a.Mode != modeOnce {
		for i := range a.Records { // every record consistent before readers start
			if err := write(i, c); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	switch a.Mode {
	case modeOnce:
		if err := write(a.Record, c); err != nil {
			return nil, err
		}
	case modeLoop:
		hot := a.Records
		if a.Hot > 0 {
			hot = min(a.Hot, a.Records)
		}
		for n := 0; ; n++ {
			c++
			if err := write(n%hot, c); err != nil {
				return nil, err
			}
			if n%256 == 0 && seg.Load64(ctl+ctlStop) != 0 {
				break
			}
		}
	case modeSnap:
		for n := 0; ; n++ {
			c++
			for i := range a.Records {
				if err := write(i, c); err != nil {
					return nil, err
				}
			}
			if seg.Load64(ctl+ctlStop) != 0 {
				break
			}
			pause(a.Pause)
		}
	default:
		return nil, fmt.Errorf("unknown writer mode %q", a.Mode)
	}
	seg.Store64(ctl+ctlWrites, res.Writes)
	res.Stats = tab.Stats()
	return res, nil
}

// pause busy-waits for d (sleeping would take far longer than a few µs).
func pause(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}

// Reader modes.
const (
	readCheck     = "check"     // Read, verify every copy
	readNoRecheck = "norecheck" // the negative control: no second seq check
	readSnapshot  = "snapshot"  // Snapshot, verify the one-instant property
	readUntilErr  = "untilerr"  // Read record 0 until an error
)

// readerArgs: a reader runs until it has done Reads reads, seen
// MinOverlaps of them overlap a write (snapshot mode: caught the writer
// mid-round) and, in the control mode, MinTorn torn copies; or until
// Duration has passed, whichever comes first.
type readerArgs struct {
	segArgs
	Mode         string
	Reads        int64
	MinOverlaps  uint64
	MinTorn      uint64
	Duration     time.Duration
	StallTimeout time.Duration
}

type readerResult struct {
	Reads, Torn uint64
	Stats       seqlock.Stats
	Elapsed     time.Duration
	// Snapshot mode: snapshots that caught the writer between two records.
	Mixed uint64
	// The error that ended an untilerr reader, if any.
	Err     string
	Stalled *seqlock.StalledError
}

func readerWorkload(ctx context.Context, w *harness.Worker) (any, error) {
	var a readerArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	seg, tab, _, err := a.attach(ctx, seqlock.Options{StallTimeout: a.StallTimeout})
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	res := readerResult{}
	buf := make([]uint64, a.Words)
	rows := make([][]uint64, a.Records)
	for i := range rows {
		rows[i] = make([]uint64, a.Words)
	}
	start := time.Now()
	deadline := start.Add(a.Duration)
	done := func(n int64) bool {
		st := tab.Stats()
		raced := st.OverlappedReads >= a.MinOverlaps
		if a.Mode == readSnapshot {
			raced = res.Mixed >= a.MinOverlaps && st.OverlappedSnapshots > 0
		}
		return n >= a.Reads && raced && res.Torn >= a.MinTorn
	}
	rng := uint64(w.Index)*0x9E3779B97F4A7C15 + 1
	for n := int64(0); ; n++ {
		if n%1024 == 0 && (done(n) || time.Now().After(deadline) || ctx.Err() != nil) {
			break
		}
		i := int(n) % a.Records
		switch a.Mode {
		case readCheck, readUntilErr:
			if a.Mode == readUntilErr {
				i = 0
			}
			if err := tab.Read(i, buf); err != nil {
				if a.Mode == readCheck {
					return nil, err
				}
				res.Err = err.Error()
				errors.As(err, &res.Stalled)
				res.Elapsed = time.Since(start)
				res.Stats = tab.Stats()
				return res, nil
			}
			if _, ok := decode(buf); !ok {
				res.Torn++
			}
		case readNoRecheck:
			for tries := 1; !tab.ReadNoRecheck(i, buf); tries++ {
				if tries%4096 == 0 && time.Now().After(deadline) {
					return nil, fmt.Errorf("record %d stayed busy", i)
				}
				// Busy: retry after a pseudo-random pause, so that the
				// copy starts anywhere in the writer's gap between two
				// writes, not right at its start as a spinning reader's.
				rng ^= rng << 13
				rng ^= rng >> 7
				rng ^= rng << 17
				for range rng % 64 {
					benchSink++
				}
			}
			if _, ok := decode(buf); !ok {
				res.Torn++
			}
		case readSnapshot:
			if err := tab.Snapshot(rows); err != nil {
				return nil, err
			}
			ok, mixed := checkSnapshot(rows)
			if !ok {
				res.Torn++
			}
			if mixed {
				res.Mixed++
			}
		default:
			return nil, fmt.Errorf("unknown reader mode %q", a.Mode)
		}
		res.Reads++
	}
	res.Elapsed = time.Since(start)
	res.Stats = tab.Stats()
	return res, nil
}

// checkSnapshot verifies a snapshot of a table written by a modeSnap
// writer, which writes counter c to records 0, 1, ..., n-1 in order: at
// any instant the counters are c for a prefix of the records and c-1 for
// the rest. ok is false if the snapshot is not such a state (a torn
// record, or records from different instants); mixed is true if the
// snapshot caught the writer between two records of one round.
func checkSnapshot(rows [][]uint64) (ok, mixed bool) {
	first, ok := decode(rows[0])
	if !ok {
		return false, false
	}
	prev := first
	for _, row := range rows[1:] {
		c, ok := decode(row)
		if !ok || (c != prev && c+1 != prev) || c+1 < first {
			return false, false
		}
		prev = c
	}
	return true, prev != first
}
