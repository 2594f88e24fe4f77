package harness_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/procid"
)

// hangGuard bounds every wait in these tests; it is not a speed assertion.
const hangGuard = 10 * time.Second

const testPoint = "harness.test.point"

type ident struct {
	Index, N, Pid int
	ReleasedAt    int64 // UnixNano just after the barrier
}

type sleepArgs struct{ SkipBarrier bool }

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{
		"ident": func(ctx context.Context, w *harness.Worker) (any, error) {
			if err := w.Barrier(ctx); err != nil {
				return nil, err
			}
			return ident{w.Index, w.N, os.Getpid(), time.Now().UnixNano()}, nil
		},
		"sleep": func(ctx context.Context, w *harness.Worker) (any, error) {
			var args sleepArgs
			if err := w.DecodeArgs(&args); err != nil {
				return nil, err
			}
			if !args.SkipBarrier {
				if err := w.Barrier(ctx); err != nil {
					return nil, err
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Minute):
			}
			return nil, errors.New("sleep workload was not killed")
		},
		"failpoint": func(ctx context.Context, w *harness.Worker) (any, error) {
			if err := w.Barrier(ctx); err != nil {
				return nil, err
			}
			w.Failpoints.Hit(testPoint)
			return "survived", nil
		},
		"fail": func(ctx context.Context, w *harness.Worker) (any, error) {
			var msg string
			if err := w.DecodeArgs(&msg); err != nil {
				return nil, err
			}
			return nil, errors.New(msg)
		},
		// spawner starts a sleeping worker of its own, records its
		// identity in the file named by its args, and then reaches the
		// failpoint "spawned" (armed with kill by the test).
		"spawner": func(ctx context.Context, w *harness.Worker) (any, error) {
			var file string
			if err := w.DecodeArgs(&file); err != nil {
				return nil, err
			}
			g, err := harness.Start(ctx, harness.Spec{Workload: "sleep", N: 1, Args: sleepArgs{SkipBarrier: true}})
			if err != nil {
				return nil, err
			}
			defer g.Close()
			id, err := procid.Of(g.Pid(0))
			if err != nil {
				return nil, err
			}
			b, _ := json.Marshal(id)
			if err := os.WriteFile(file, b, 0o600); err != nil {
				return nil, err
			}
			w.Failpoints.Hit("spawned")
			return nil, errors.New("spawner survived its kill failpoint")
		},
		"silent-exit": func(ctx context.Context, w *harness.Worker) (any, error) {
			w.Log.Info("about to exit without a result")
			os.Exit(5)
			return nil, nil
		},
	})
	os.Exit(m.Run())
}

func start(t *testing.T, spec harness.Spec) (context.Context, *harness.Group) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	g, err := harness.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return ctx, g
}

func TestBarrierAndResults(t *testing.T) {
	const n = 4
	ctx, g := start(t, harness.Spec{Workload: "ident", N: n})
	releasedAt := time.Now().UnixNano()
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != n {
		t.Fatalf("%d results, want %d", len(res), n)
	}
	for i, r := range res {
		var got ident
		if err := r.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got.Index != i || got.N != n || got.Pid != g.Pid(i) || r.Pid != g.Pid(i) || r.Index != i {
			t.Errorf("worker %d: result %+v (%+v), want index %d pid %d", i, got, r, i, g.Pid(i))
		}
		if got.ReleasedAt < releasedAt {
			t.Errorf("worker %d passed the barrier before Release", i)
		}
	}
	if again, _ := g.Wait(); len(again) != n {
		t.Error("second Wait must return the same results")
	}
}

func TestFailpointKill(t *testing.T) {
	ctx, g := start(t, harness.Spec{Workload: "failpoint", N: 2, Failpoints: map[int]string{1: testPoint + "=kill"}})
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if name, err := g.WaitFailpoint(ctx, 1); err != nil || name != testPoint {
		t.Fatalf("WaitFailpoint = %q, %v; want %q", name, err, testPoint)
	}
	res, err := g.Wait()
	var we *harness.WorkerError
	if !errors.As(err, &we) || we.Result.Index != 1 {
		t.Fatalf("Wait error = %v, want a WorkerError for worker 1", err)
	}
	if r := res[1]; r.Signal != syscall.SIGKILL || r.ExitCode != -1 || r.Reported {
		t.Errorf("worker 1: %+v, want killed by SIGKILL without result", r)
	}
	var v string
	if err := res[0].Decode(&v); err != nil || v != "survived" || res[0].Failure() != nil {
		t.Errorf("worker 0: %q, %v, %v", v, err, res[0].Failure())
	}
	if _, err := g.WaitFailpoint(ctx, 0); !errors.Is(err, harness.ErrExited) {
		t.Errorf("WaitFailpoint(unarmed worker) error = %v, want ErrExited", err)
	}
}

func TestStopFailpointAndCont(t *testing.T) {
	ctx, g := start(t, harness.Spec{Workload: "failpoint", N: 1, Failpoints: map[int]string{0: testPoint + "=stop"}})
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if name, err := g.WaitFailpoint(ctx, 0); err != nil || name != testPoint {
		t.Fatalf("WaitFailpoint = %q, %v", name, err)
	}
	if err := g.WaitStopped(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := g.Cont(0); err != nil {
		t.Fatal(err)
	}
	res, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := res[0].Decode(&v); err != nil || v != "survived" {
		t.Fatalf("result %q, %v", v, err)
	}
	if err := g.Stop(0); !errors.Is(err, harness.ErrExited) {
		t.Errorf("Stop after exit = %v, want ErrExited", err)
	}
	if err := g.Kill(0); !errors.Is(err, harness.ErrExited) {
		t.Errorf("Kill after exit = %v, want ErrExited", err)
	}
	if err := g.WaitStopped(ctx, 0); !errors.Is(err, harness.ErrExited) {
		t.Errorf("WaitStopped after exit = %v, want ErrExited", err)
	}
}

func TestStopCont(t *testing.T) {
	ctx, g := start(t, harness.Spec{Workload: "ident", N: 1})
	if err := g.Stop(0); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitStopped(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := g.Cont(0); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Wait(); err != nil { // Wait releases the barrier itself
		t.Fatal(err)
	}
}

func TestCloseKillsWorkers(t *testing.T) {
	ctx, g := start(t, harness.Spec{Workload: "sleep", N: 2, Args: sleepArgs{}})
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []procid.Identity
	for i := range 2 {
		id, err := procid.Of(g.Pid(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	g.Close()
	g.Close() // idempotent
	for _, id := range ids {
		if l, r := id.Check(); l != procid.Dead {
			t.Errorf("%v after Close: %v (%s), want dead", id, l, r)
		}
	}
	res, _ := g.Wait()
	for _, r := range res {
		if r.Signal != syscall.SIGKILL {
			t.Errorf("worker %d: %+v, want SIGKILL", r.Index, r)
		}
	}
}

func TestContextEndKillsWorkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	g, err := harness.Start(ctx, harness.Spec{Workload: "sleep", N: 2, Args: sleepArgs{}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	done := make(chan struct{})
	var res []harness.Result
	go func() {
		defer close(done)
		res, err = g.Wait()
	}()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatal("Wait did not return after the context ended")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait error = %v, want DeadlineExceeded", err)
	}
	for _, r := range res {
		if r.Signal != syscall.SIGKILL {
			t.Errorf("worker %d: %+v, want SIGKILL", r.Index, r)
		}
	}
}

func TestKillRandom(t *testing.T) {
	ctx, g := start(t, harness.Spec{Workload: "sleep", N: 1, Args: sleepArgs{}})
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	d, _, err := g.KillRandom(0, 50*time.Millisecond, rand.New(rand.NewPCG(1, 2)))
	if err != nil || d < 0 || d >= 50*time.Millisecond {
		t.Fatalf("KillRandom = %v, %v", d, err)
	}
	res, _ := g.Wait()
	if res[0].Signal != syscall.SIGKILL {
		t.Fatalf("%+v, want SIGKILL", res[0])
	}
}

func TestWorkerErrors(t *testing.T) {
	_, g := start(t, harness.Spec{Workload: "fail", N: 1, Args: "boom 42"})
	res, err := g.Wait()
	var we *harness.WorkerError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), "boom 42") {
		t.Fatalf("Wait error = %v, want WorkerError with the workload's error", err)
	}
	if r := res[0]; r.ExitCode != 1 || r.Err != "boom 42" || !r.Reported || r.Signal != 0 {
		t.Errorf("result %+v", r)
	}

	_, g = start(t, harness.Spec{Workload: "no-such-workload", N: 1})
	if res, _ := g.Wait(); !strings.Contains(res[0].Err, "unknown workload") {
		t.Errorf("unknown workload: %+v", res[0])
	}

	_, g = start(t, harness.Spec{Workload: "silent-exit", N: 1})
	res, err = g.Wait()
	if r := res[0]; r.ExitCode != 5 || r.Reported || !strings.Contains(r.Stderr, "about to exit") {
		t.Errorf("silent exit: %+v", r)
	}
	if err == nil || !strings.Contains(err.Error(), "without reporting") || !strings.Contains(err.Error(), "about to exit") {
		t.Errorf("silent exit: Wait error = %v", err)
	}
}

func TestReleaseNotReady(t *testing.T) {
	_, g := start(t, harness.Spec{Workload: "sleep", N: 1, Args: sleepArgs{SkipBarrier: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := g.Release(ctx)
	if !errors.Is(err, harness.ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Release = %v, want ErrNotReady and DeadlineExceeded", err)
	}
}

func TestSpecErrors(t *testing.T) {
	for _, spec := range []harness.Spec{
		{N: 1},
		{Workload: "ident"},
		{Workload: "ident", N: 1, Failpoints: map[int]string{1: "a=kill"}},
		{Workload: "ident", N: 1, Failpoints: map[int]string{0: "a=explode"}},
		{Workload: "ident", N: 1, Args: func() {}},
	} {
		if _, err := harness.Start(context.Background(), spec); !errors.Is(err, harness.ErrSpec) {
			t.Errorf("Start(%+v) error = %v, want ErrSpec", spec, err)
		}
	}
	_, g := start(t, harness.Spec{Workload: "ident", N: 1})
	if err := g.Kill(3); !errors.Is(err, harness.ErrNoWorker) {
		t.Errorf("Kill(3) = %v, want ErrNoWorker", err)
	}
}

// A worker that cannot be started (here: its wrapper does not exist; in
// the benchmarks, a namespace the kernel refuses) is an error of Start,
// with the pipes of the attempt closed, not a panic.
func TestStartFailure(t *testing.T) {
	for range 2 {
		g, err := harness.Start(context.Background(), harness.Spec{Workload: "ident", N: 2, Wrap: []string{"/nonexistent/shmkit-wrapper"}})
		if err == nil {
			g.Close()
			t.Fatal("Start with a missing wrapper succeeded")
		}
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "start worker 0") {
			t.Errorf("Start with a missing wrapper: %v, want worker 0 and ErrNotExist", err)
		}
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for _, spec := range []harness.Spec{
		{Workload: "ident", N: 2, Stderr: io.Discard},
		{Workload: "sleep", N: 2, Args: sleepArgs{SkipBarrier: true}}, // killed by Close
	} {
		g, err := harness.Start(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Workload == "ident" {
			if _, err := g.Wait(); err != nil {
				t.Fatal(err)
			}
		}
		g.Close()
	}
	for deadline := time.Now().Add(hangGuard); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines leaked: %d, want <= %d", runtime.NumGoroutine(), before)
		}
	}
}

// TestParentDeathKillsChildren kills (SIGKILL, so no cleanup runs) a worker
// that has started a worker of its own: Pdeathsig must kill the grandchild.
func TestParentDeathKillsChildren(t *testing.T) {
	file := filepath.Join(t.TempDir(), "grandchild.json")
	_, g := start(t, harness.Spec{Workload: "spawner", N: 1, Args: file, Failpoints: map[int]string{0: "spawned=kill"}})
	res, _ := g.Wait()
	if res[0].Signal != syscall.SIGKILL {
		t.Fatalf("spawner: %+v, want killed by its failpoint", res[0])
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var id procid.Identity
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatal(err)
	}
	l, r := id.Check()
	for deadline := time.Now().Add(hangGuard); l != procid.Dead; l, r = id.Check() {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %v outlived its parent: %v (%s)", id, l, r)
		}
		time.Sleep(time.Millisecond)
	}
}
