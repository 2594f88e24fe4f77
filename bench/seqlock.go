package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/seqlock"
)

// Workload names of the seqlock benchmark's worker processes.
const (
	SeqlockWriterWorkload = "bench.seqlock.writer"
	SeqlockReaderWorkload = "bench.seqlock.reader"
)

// ErrSeqlockTorn means a reader of the seqlock benchmark saw a torn
// record: the seqlock protocol is broken.
var ErrSeqlockTorn = errors.New("bench: seqlock reader saw torn records")

// SeqlockConfig configures SeqlockRead. The zero value is the default.
type SeqlockConfig struct {
	// Words is the record payload in 64-bit words (default 8: 64 bytes).
	Words int
	// Records is the number of records in the table (default 16).
	Records int
	// Hot is how many records (0..Hot-1) the contended phase's writer and
	// readers cycle over (default 1: they all use record 0).
	Hot int
	// Iterations is the number of operations of each uncontended
	// measurement (default 10^7); each is repeated Rounds times and the
	// fastest round counts.
	Iterations int
	// Rounds is the number of rounds of each uncontended measurement
	// (default 5).
	Rounds int
	// Duration is the length of the contended phase (default 2 s); 0
	// with SkipContended set skips it.
	Duration time.Duration
	// SkipContended skips the multi-process phase.
	SkipContended bool
	// Readers is the number of reader processes in the contended phase
	// (default 1).
	Readers int
	// Stderr receives the worker processes' stderr (nil: discarded).
	Stderr io.Writer
}

func (c *SeqlockConfig) defaults() {
	if c.Words <= 0 {
		c.Words = 8
	}
	if c.Records <= 0 {
		c.Records = 16
	}
	if c.Hot <= 0 {
		c.Hot = 1
	}
	c.Hot = min(c.Hot, c.Records)
	if c.Iterations <= 0 {
		c.Iterations = 10_000_000
	}
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Second
	}
	if c.Readers <= 0 {
		c.Readers = 1
	}
}

// seqlockArgs are the workers' arguments.
type seqlockArgs struct {
	Key      uint32
	Records  int
	Words    int
	Hot      int
	Duration time.Duration
}

func (a seqlockArgs) spec() layout.Spec {
	return layout.Spec{
		Kind:   layout.KindTest,
		Fields: []layout.Field{{Name: "bench.records", Value: uint64(a.Records)}, {Name: "bench.words", Value: uint64(a.Words)}},
		Sections: []layout.SectionSpec{
			{Name: "table", Size: seqlock.SizeOf(a.Records, a.Words)},
			{Name: "ctl", Size: 64},
		},
	}
}

// ctl section: word 0 stops the writer.
const seqlockCtlStop = 0

func (a seqlockArgs) open(ctx context.Context) (*arena.Segment, *seqlock.Table, arena.Offset, error) {
	seg, err := arena.Open(ctx, arena.SysV(arena.Key(a.Key)), arena.Options{Spec: a.spec()})
	if err != nil {
		return nil, nil, 0, err
	}
	tab, ctl, err := a.table(seg)
	if err != nil {
		seg.Close()
		return nil, nil, 0, err
	}
	return seg, tab, ctl, nil
}

func (a seqlockArgs) table(seg *arena.Segment) (*seqlock.Table, arena.Offset, error) {
	off, _, err := seg.Section("table")
	if err != nil {
		return nil, 0, err
	}
	ctl, _, err := seg.Section("ctl")
	if err != nil {
		return nil, 0, err
	}
	tab, err := seqlock.New(seg, off, a.Records, a.Words, seqlock.Options{})
	return tab, ctl, err
}

// SeqlockPayload fills dst with the payload of counter c: word k is c XOR
// a per-word constant, so every word names the counter and a copy that
// mixes two writes is detected by SeqlockCounter.
func SeqlockPayload(dst []uint64, c uint64) {
	for k := range dst {
		dst[k] = c ^ (uint64(k+1) * 0x9E3779B97F4A7C15)
	}
}

// SeqlockCounter returns the counter of a payload made by SeqlockPayload,
// and false if the payload is torn.
func SeqlockCounter(p []uint64) (uint64, bool) {
	if len(p) == 0 {
		return 0, false
	}
	c := p[0] ^ 0x9E3779B97F4A7C15
	for k := range p {
		if p[k] != c^(uint64(k+1)*0x9E3779B97F4A7C15) {
			return 0, false
		}
	}
	return c, true
}

// seqlockWriterResult is what the writer process reports.
type seqlockWriterResult struct {
	Writes  uint64
	Elapsed time.Duration
}

// seqlockReaderResult is what a reader process reports.
type seqlockReaderResult struct {
	Reads, Torn uint64
	Elapsed     time.Duration
	Stats       seqlock.Stats
}

// SeqlockWorkloads returns the worker workloads of SeqlockRead; add them to
// the registry given to harness.Dispatch.
func SeqlockWorkloads() harness.Registry {
	return harness.Registry{
		SeqlockWriterWorkload: seqlockWriter,
		SeqlockReaderWorkload: seqlockReader,
	}
}

func seqlockWriter(ctx context.Context, w *harness.Worker) (any, error) {
	var a seqlockArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	seg, tab, ctl, err := a.open(ctx)
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	buf := make([]uint64, a.Words)
	for i := range a.Records {
		SeqlockPayload(buf, 1)
		if err := tab.Write(i, buf); err != nil {
			return nil, err
		}
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	res := seqlockWriterResult{}
	for c := uint64(2); ; c++ {
		SeqlockPayload(buf, c)
		if err := tab.Write(int(c)%a.Hot, buf); err != nil {
			return nil, err
		}
		res.Writes++
		if c%1024 == 0 && (seg.Load64(ctl+seqlockCtlStop) != 0 || time.Since(start) > a.Duration+time.Minute) {
			break
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func seqlockReader(ctx context.Context, w *harness.Worker) (any, error) {
	var a seqlockArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	seg, tab, _, err := a.open(ctx)
	if err != nil {
		return nil, err
	}
	defer seg.Close()
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	buf := make([]uint64, a.Words)
	res := seqlockReaderResult{}
	start := time.Now()
	for n := 0; ; n++ {
		if n%4096 == 0 && time.Since(start) >= a.Duration {
			break
		}
		if err := tab.Read(n%a.Hot, buf); err != nil {
			return nil, err
		}
		if _, ok := SeqlockCounter(buf); !ok {
			res.Torn++
		}
		res.Reads++
	}
	res.Elapsed = time.Since(start)
	res.Stats = tab.Stats()
	return res, nil
}

// SeqlockRead measures seqlock reads of one record on a SysV segment:
//
//   - uncontended, in this process, against two baselines measured the
//     same way: a plain copy of the same size and a copy guarded by
//     sync.RWMutex (read lock); timed in thread CPU time, best of
//     cfg.Rounds;
//   - the uncontended write, for reference;
//   - with a writer process writing the record continuously and
//     cfg.Readers reader processes: reads per second and ns per read of
//     each reader, how many reads overlapped a write, and how many copies
//     were torn (always 0, or the result is ErrSeqlockTorn).
//
// The caller's binary must dispatch SeqlockWorkloads (see package
// harness) for the contended phase.
func SeqlockRead(ctx context.Context, cfg SeqlockConfig) ([]Result, error) {
	cfg.defaults()
	a := seqlockArgs{Records: cfg.Records, Words: cfg.Words, Hot: cfg.Hot, Duration: cfg.Duration}
	seg, key, err := createBenchSegment(ctx, "seqlock", a.spec())
	if err != nil {
		return nil, err
	}
	a.Key = uint32(key)
	defer func() {
		seg.Close()
		_ = removeSegment(key)
	}()
	tab, ctl, err := a.table(seg)
	if err != nil {
		return nil, err
	}
	bytes := 8 * cfg.Words
	var out []Result

	// Uncontended.
	src := make([]uint64, cfg.Words)
	SeqlockPayload(src, 1)
	for i := range cfg.Records {
		if err := tab.Write(i, src); err != nil {
			return nil, err
		}
	}
	read, err := bestOf(cfg.Rounds, func() (time.Duration, error) { return timeReads(tab, cfg.Iterations) })
	if err != nil {
		return nil, err
	}
	plain, _ := bestOf(cfg.Rounds, func() (time.Duration, error) { return timeCopies(src, cfg.Iterations, nil), nil })
	var mu sync.RWMutex
	locked, _ := bestOf(cfg.Rounds, func() (time.Duration, error) { return timeCopies(src, cfg.Iterations, &mu), nil })
	write, err := bestOf(cfg.Rounds, func() (time.Duration, error) { return timeWrites(tab, max(cfg.Iterations/10, 1)) })
	if err != nil {
		return nil, err
	}
	perOp := func(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }
	readNs := perOp(read, cfg.Iterations)
	plainNs := perOp(plain, cfg.Iterations)
	lockedNs := perOp(locked, cfg.Iterations)
	copyName := fmt.Sprintf("plain %d-byte copy", bytes)
	lockName := fmt.Sprintf("sync.RWMutex-guarded %d-byte copy", bytes)
	readMetric := fmt.Sprintf("uncontended read of %d bytes", bytes)
	out = append(out,
		Result{Bench: "seqlock.read", Metric: readMetric, Value: readNs, Unit: "ns/op"}.WithBaseline(copyName, plainNs),
		Result{Bench: "seqlock.read", Metric: readMetric, Value: readNs, Unit: "ns/op"}.WithBaseline(lockName, lockedNs),
		Result{Bench: "baseline.copy", Metric: copyName, Value: plainNs, Unit: "ns/op"},
		Result{Bench: "baseline.rwmutex", Metric: lockName, Value: lockedNs, Unit: "ns/op"},
		Result{Bench: "seqlock.write", Metric: fmt.Sprintf("uncontended write of %d bytes", bytes),
			Value: perOp(write, max(cfg.Iterations/10, 1)), Unit: "ns/op"},
	)
	if cfg.SkipContended {
		return out, nil
	}

	// Contended: a writer process and reader processes.
	contended, err := seqlockContended(ctx, seg, ctl, a, cfg)
	return append(out, contended...), err
}

// seqlockContended runs the contended phase on seg, whose ctl section is
// at ctl.
func seqlockContended(ctx context.Context, seg *arena.Segment, ctl arena.Offset, a seqlockArgs, cfg SeqlockConfig) ([]Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration+2*time.Minute)
	defer cancel()
	wg, err := harness.Start(ctx, harness.Spec{Workload: SeqlockWriterWorkload, N: 1, Args: a, Stderr: cfg.Stderr})
	if err != nil {
		return nil, err
	}
	defer wg.Close()
	rg, err := harness.Start(ctx, harness.Spec{Workload: SeqlockReaderWorkload, N: cfg.Readers, Args: a, Stderr: cfg.Stderr})
	if err != nil {
		return nil, err
	}
	defer rg.Close()
	if err := wg.Release(ctx); err != nil {
		return nil, err
	}
	if err := rg.Release(ctx); err != nil {
		return nil, err
	}
	rres, rerr := rg.Wait()
	seg.Store64(ctl+seqlockCtlStop, 1)
	wres, werr := wg.Wait()
	if err := errors.Join(rerr, werr); err != nil {
		return nil, err
	}
	var wr seqlockWriterResult
	if err := wres[0].Decode(&wr); err != nil {
		return nil, err
	}
	var reads, torn, overlapped, retries uint64
	var nsSum, rateSum float64
	for _, r := range rres {
		var rr seqlockReaderResult
		if err := r.Decode(&rr); err != nil {
			return nil, err
		}
		reads += rr.Reads
		torn += rr.Torn
		overlapped += rr.Stats.OverlappedReads
		retries += rr.Stats.ReadRetries
		if rr.Reads > 0 && rr.Elapsed > 0 {
			nsSum += float64(rr.Elapsed.Nanoseconds()) / float64(rr.Reads)
			rateSum += float64(rr.Reads) / rr.Elapsed.Seconds()
		}
	}
	n := float64(len(rres))
	detail := fmt.Sprintf("%d reader process(es), a writer process writing continuously", len(rres))
	out := []Result{
		{Bench: "seqlock.read.contended", Metric: "read latency", Value: nsSum / n, Unit: "ns/op"},
		{Bench: "seqlock.read.contended", Metric: "reads per reader", Value: rateSum / n, Unit: "ops/s"},
		{Bench: "seqlock.read.contended", Metric: "reads", Value: float64(reads), Unit: "count"},
		{Bench: "seqlock.read.contended", Metric: "reads that overlapped a write", Value: float64(overlapped), Unit: "count"},
		{Bench: "seqlock.read.contended", Metric: "overlapped share", Value: 100 * float64(overlapped) / max(float64(reads), 1), Unit: "%"},
		{Bench: "seqlock.read.contended", Metric: "discarded attempts", Value: float64(retries), Unit: "count"},
		{Bench: "seqlock.read.contended", Metric: "torn records", Value: float64(torn), Unit: "count"},
	}
	for i := range out {
		out[i].Detail = detail
	}
	out = append(out, Result{Bench: "seqlock.write.contended", Metric: "writes", Detail: "the writer process, under the readers",
		Value: float64(wr.Writes) / max(wr.Elapsed.Seconds(), 1e-9), Unit: "ops/s"})
	if torn > 0 {
		return out, fmt.Errorf("%w: %d of %d reads", ErrSeqlockTorn, torn, reads)
	}
	return out, nil
}

// sink keeps measured loops from being optimized away.
type sink struct{ v uint64 }

// threadCPU returns the CPU time of the calling thread. The uncontended
// measurements run locked to one thread and are timed with it rather than
// the wall clock, so that other processes competing for the CPUs (on a
// small machine) do not inflate them; the baselines are timed the same way.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return time.Duration(monoNanos())
	}
	return time.Duration(ts.Nano())
}

func bestOf(rounds int, f func() (time.Duration, error)) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	best := time.Duration(-1)
	for range rounds {
		d, err := f()
		if err != nil {
			return 0, err
		}
		if best < 0 || d < best {
			best = d
		}
	}
	return best, nil
}

func timeReads(tab *seqlock.Table, n int) (time.Duration, error) {
	dst := make([]uint64, tab.Words())
	var s sink
	start := threadCPU()
	for range n {
		if err := tab.Read(0, dst); err != nil {
			return 0, err
		}
		s.v += dst[0]
	}
	d := threadCPU() - start
	if s.v == 1 {
		fmt.Fprint(io.Discard, s.v)
	}
	return d, nil
}

func timeWrites(tab *seqlock.Table, n int) (time.Duration, error) {
	src := make([]uint64, tab.Words())
	start := threadCPU()
	for c := range n {
		src[0] = uint64(c)
		if err := tab.Write(1%tab.Records(), src); err != nil {
			return 0, err
		}
	}
	return threadCPU() - start, nil
}

// timeCopies copies src n times, under mu's read lock if mu is not nil.
func timeCopies(src []uint64, n int, mu *sync.RWMutex) time.Duration {
	dst := make([]uint64, len(src))
	var s sink
	start := threadCPU()
	if mu == nil {
		for range n {
			copy(dst, src)
			s.v += dst[0]
		}
	} else {
		for range n {
			mu.RLock()
			copy(dst, src)
			mu.RUnlock()
			s.v += dst[0]
		}
	}
	d := threadCPU() - start
	if s.v == 1 {
		fmt.Fprint(io.Discard, s.v)
	}
	return d
}
