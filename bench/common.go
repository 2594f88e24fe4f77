package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

// createBenchSegment creates a fresh SysV segment of the test key class for
// one benchmark run, skipping keys that are taken.
func createBenchSegment(ctx context.Context, name string, spec layout.Spec) (*arena.Segment, arena.Key, error) {
	return createBenchSegmentWith(ctx, name, arena.Options{Spec: spec})
}

// createBenchSegmentWith is createBenchSegment with the segment's options
// (mode, allowed uids) in full.
func createBenchSegmentWith(ctx context.Context, name string, opts arena.Options) (*arena.Segment, arena.Key, error) {
	var lastErr error
	for attempt := range uint16(64) {
		key := benchKey(name, attempt)
		seg, err := arena.Create(ctx, arena.SysV(key), opts)
		if errors.Is(err, arena.ErrExists) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		return seg, key, nil
	}
	return nil, 0, fmt.Errorf("bench: no free SysV test key: %w", lastErr)
}

// benchKey is the attempt-th candidate test-class key for the benchmark
// called name in this process.
func benchKey(name string, attempt uint16) arena.Key {
	h := fnv.New32a()
	fmt.Fprintf(h, "bench.%s/%d", name, os.Getpid())
	return arena.MakeKey(arena.ClassTest, (uint16(h.Sum32())+attempt*97)&0xfff)
}

// monoNanos reads CLOCK_MONOTONIC, which every process of a boot shares, so
// that one process can time an event another process observed.
func monoNanos() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// quantile returns the q-quantile (0 ≤ q ≤ 1) of xs by the nearest-rank
// method; xs is sorted in place.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// waitUntil polls cond every 50 µs until it holds or ctx ends (used only
// outside measured intervals).
func waitUntil(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bench: waiting for %s: %w", what, err)
		}
		time.Sleep(50 * time.Microsecond)
	}
	return nil
}

// freeTestKey returns a SysV key of the test class with no segment, for a
// benchmark whose segment is created by another package (partmap, tend).
// The caller removes the segment when done.
func freeTestKey(name string) (arena.Key, error) {
	for attempt := range uint16(64) {
		key := benchKey(name, attempt)
		if _, err := arena.StatOf(arena.SysV(key)); errors.Is(err, arena.ErrNotFound) {
			return key, nil
		}
	}
	return 0, fmt.Errorf("bench: no free SysV test key for %s: %w", name, arena.ErrExists)
}

// removeSegment removes the SysV segment at key, if any (cleanup of a
// benchmark; a segment that is already gone is fine).
func removeSegment(key arena.Key) error {
	err := arena.Remove(arena.SysV(key), arena.RemoveOptions{Force: true})
	if err != nil && !errors.Is(err, arena.ErrNotFound) {
		return fmt.Errorf("bench: remove segment %s: %w", arena.SysV(key), err)
	}
	return nil
}

// ctlSpec is the layout of a benchmark's control segment: one section
// "ctl" of the given number of 64-bit words, shared by the parent and its
// worker processes.
func ctlSpec(words int) layout.Spec {
	return layout.Spec{Kind: layout.KindTest,
		Fields:   []layout.Field{{Name: "bench.ctl.words", Value: uint64(words)}},
		Sections: []layout.SectionSpec{{Name: "ctl", Size: uint64(8 * words)}}}
}

// ctlWords is a view of a control segment's words.
type ctlWords struct {
	seg *arena.Segment
	w   arena.Words
}

// openCtl attaches the control segment of words words at key (in a
// worker process).
func openCtl(ctx context.Context, key arena.Key, words int) (ctlWords, error) {
	seg, err := arena.Open(ctx, arena.SysV(key), arena.Options{Spec: ctlSpec(words)})
	if err != nil {
		return ctlWords{}, err
	}
	return ctlOf(seg)
}

// createCtl creates a fresh control segment of words words for the
// benchmark called name (in the parent); remove detaches and removes it.
func createCtl(ctx context.Context, name string, words int) (c ctlWords, key arena.Key, remove func() error, err error) {
	seg, key, err := createBenchSegment(ctx, name, ctlSpec(words))
	if err != nil {
		return ctlWords{}, 0, nil, err
	}
	remove = func() error {
		seg.Close()
		return removeSegment(key)
	}
	if c, err = ctlOf(seg); err != nil {
		return ctlWords{}, 0, nil, errors.Join(err, remove())
	}
	return c, key, remove, nil
}

// ctlOf returns the control words of seg, a segment made with ctlSpec.
func ctlOf(seg *arena.Segment) (ctlWords, error) {
	off, size, err := seg.Section("ctl")
	if err != nil {
		return ctlWords{}, err
	}
	w, err := seg.Words(off, size/8)
	if err != nil {
		return ctlWords{}, err
	}
	return ctlWords{seg: seg, w: w}, nil
}

func (c ctlWords) load(i int) uint64     { return c.w.Load(uint64(i)) }
func (c ctlWords) store(i int, v uint64) { c.w.Store(uint64(i), v) }

// pollUntil checks cond every period until it holds or ctx ends (for
// waits whose end is timestamped elsewhere, so the polling period does
// not count).
func pollUntil(ctx context.Context, what string, period time.Duration, cond func() bool) error {
	for !cond() {
		if err := sleepCtx(ctx, period); err != nil {
			return fmt.Errorf("bench: waiting for %s: %w", what, err)
		}
	}
	return nil
}

// sleepCtx sleeps for d or until ctx ends, and returns ctx's error then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("bench: sleep: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

// exampleBinary returns bin if set, otherwise builds examples/<name> into
// a temporary directory (removed by cleanup). A failed build is an error
// wrapping kind that says how to get out (run from the source tree, or set
// the config field named by field).
func exampleBinary(ctx context.Context, bin, name string, kind error, field string) (string, func(), error) {
	if bin != "" {
		return bin, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "shmbench-"+name+"-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(tmp, name)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/shmkit/shmkit/examples/"+name)
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("%w: go build examples/%s (run shmbench from the shmkit source tree, or give %s): %v: %s", kind, name, field, err, out)
	}
	return bin, func() { os.RemoveAll(tmp) }, nil
}
