package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
)

// PoolConfig configures PoolBench. The zero value is the default.
type PoolConfig struct {
	// Iterations of the single-process alloc+free measurement (default
	// 2·10^6), best of Rounds (default 5).
	Iterations, Rounds int
	// Procs is the number of processes hammering one pool (default 2).
	Procs int
	// Duration of the multi-process phase (default 2 s).
	Duration time.Duration
	// Stderr receives the worker processes' stderr (nil: discarded).
	Stderr io.Writer
}

const wlPoolHammer = "bench.pool.hammer"

// ErrPoolDuplicate means two holders had the same pool element at once, or
// elements were lost: the pool is broken.
var ErrPoolDuplicate = errors.New("bench: pool handed an element out twice or lost one")

type poolArgs struct {
	Key      uint32
	Duration time.Duration
	Keep     int
}

type poolHammerResult struct {
	Ops, Twice uint64
	Held       int
}

func poolConfig() arena.PoolConfig {
	return arena.PoolConfig{ElemSize: 56, StageElems: 1 << 14}
}

// PoolWorkloads returns the worker workloads of PoolBench.
func PoolWorkloads() harness.Registry { return harness.Registry{wlPoolHammer: poolHammer} }

// poolHammer allocates and frees as fast as it can; it marks each element it
// holds with a CAS on the element's first payload word (0 → its tag) and
// unmarks it before freeing, so an element handed to two holders at once
// shows up as a failed CAS. It keeps Keep elements to the end.
func poolHammer(ctx context.Context, w *harness.Worker) (any, error) {
	var a poolArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	p, err := arena.OpenPool(ctx, arena.SysV(arena.Key(a.Key)), poolConfig())
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	var r poolHammerResult
	tag := uint64(w.Index+1) << 40
	hold := func(h arena.Handle) error {
		seg, off, err := p.Payload(h)
		if err != nil {
			return err
		}
		if !seg.CAS64(off, 0, tag|r.Ops&(1<<40-1)) {
			r.Twice++
		}
		return nil
	}
	drop := func(h arena.Handle) error {
		seg, off, err := p.Payload(h)
		if err != nil {
			return err
		}
		if v := seg.Load64(off); v&^(1<<40-1) != tag || !seg.CAS64(off, v, 0) {
			r.Twice++
		}
		return p.Free(h)
	}
	var batch [16]arena.Handle
	end := time.Now().Add(a.Duration)
	for time.Now().Before(end) {
		for i := range batch {
			h, err := p.Alloc(ctx)
			if err != nil {
				return nil, err
			}
			if err := hold(h); err != nil {
				return nil, err
			}
			batch[i] = h
		}
		for _, h := range batch {
			if err := drop(h); err != nil {
				return nil, err
			}
		}
		r.Ops += uint64(len(batch))
	}
	for range a.Keep {
		h, err := p.Alloc(ctx)
		if err != nil {
			return nil, err
		}
		if err := hold(h); err != nil {
			return nil, err
		}
		if err := p.Commit(h); err != nil {
			return nil, err
		}
		r.Held++
	}
	return r, nil
}

// PoolBench measures the element pool: an alloc+free pair in one process
// on a SysV segment against a mutex-guarded free list, and cfg.Procs
// processes hammering one pool, counting elements handed out twice and
// elements lost.
func PoolBench(ctx context.Context, cfg PoolConfig) ([]Result, error) {
	if cfg.Iterations <= 0 {
		cfg.Iterations = 2_000_000
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	if cfg.Procs <= 0 {
		cfg.Procs = 2
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 2 * time.Second
	}
	key, err := freeTestKey("pool")
	if err != nil {
		return nil, err
	}
	loc := arena.SysV(key)
	p, err := arena.OpenPool(ctx, loc, poolConfig())
	if err != nil {
		return nil, err
	}
	defer arena.RemovePool(loc, arena.RemoveOptions{Force: true})
	defer p.Close()
	best, err := bestOf(cfg.Rounds, func() (time.Duration, error) {
		start := time.Now()
		for range cfg.Iterations {
			h, err := p.Alloc(ctx)
			if err != nil {
				return 0, err
			}
			if err := p.Free(h); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	})
	if err != nil {
		return nil, err
	}
	base, _ := bestOf(cfg.Rounds, func() (time.Duration, error) { return mutexFreeList(cfg.Iterations), nil })
	per := func(d time.Duration) float64 { return float64(d) / float64(cfg.Iterations) }
	out := []Result{Result{Bench: "pool", Metric: "alloc+free", Value: per(best), Unit: "ns/op"}.
		WithBaseline("mutex-guarded free list", per(base))}

	g, err := harness.Start(ctx, harness.Spec{Workload: wlPoolHammer, N: cfg.Procs, Stderr: cfg.Stderr,
		Args: poolArgs{Key: uint32(key), Duration: cfg.Duration, Keep: 100}})
	if err != nil {
		return nil, err
	}
	defer g.Close()
	if err := g.Release(ctx); err != nil {
		return nil, err
	}
	res, err := g.Wait()
	if err != nil {
		return nil, err
	}
	var ops, twice uint64
	held := 0
	for _, r := range res {
		var hr poolHammerResult
		if err := r.Decode(&hr); err != nil {
			return nil, err
		}
		ops, twice, held = ops+hr.Ops, twice+hr.Twice, held+hr.Held
	}
	st, err := p.Stats()
	if err != nil {
		return nil, err
	}
	lost := st.Capacity - st.Unused - st.Free - st.Linked - st.Claimed
	if held != st.Linked {
		lost += held - st.Linked
	}
	out = append(out,
		Result{Bench: "pool", Metric: fmt.Sprintf("%d procs alloc+free", cfg.Procs), Value: float64(ops) / cfg.Duration.Seconds() / 1e6, Unit: "Mops/s"},
		Result{Bench: "pool", Metric: fmt.Sprintf("%d procs handed out twice", cfg.Procs), Value: float64(twice), Unit: "count"},
		Result{Bench: "pool", Metric: fmt.Sprintf("%d procs lost", cfg.Procs), Value: float64(lost), Unit: "count"},
	)
	if twice != 0 || lost != 0 {
		return out, fmt.Errorf("%w: %d twice, %d lost", ErrPoolDuplicate, twice, lost)
	}
	return out, nil
}

// mutexFreeList is the baseline: a free list of indexes in a slice under a
// mutex, as a process-local allocator would keep it.
func mutexFreeList(n int) time.Duration {
	var mu sync.Mutex
	free := make([]uint32, 1024)
	for i := range free {
		free[i] = uint32(i)
	}
	start := time.Now()
	for range n {
		mu.Lock()
		h := free[len(free)-1]
		free = free[:len(free)-1]
		mu.Unlock()
		mu.Lock()
		free = append(free, h)
		mu.Unlock()
	}
	return time.Since(start)
}
