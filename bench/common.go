package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

// createBenchSegment creates a fresh SysV segment of the test key class for
// one benchmark run, skipping keys that are taken.
func createBenchSegment(ctx context.Context, name string, spec layout.Spec) (*arena.Segment, arena.Key, error) {
	var lastErr error
	for attempt := range uint16(64) {
		key := benchKey(name, attempt)
		seg, err := arena.Create(ctx, arena.SysV(key), arena.Options{Spec: spec})
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
