package record_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/tend"
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{"recorder": recorder, "tender": tender})
	os.Exit(m.Run())
}

// procArgs configure the worker processes.
type procArgs struct {
	Key   uint32
	Seeds []string
	Ops   int
}

// procResult is what a recorder reports.
type procResult struct {
	Ops, Failed int
	FirstErr    string
	Retries     uint64
	Role        tend.Role
}

func openShared(ctx context.Context, a procArgs) (*tend.Cluster, error) {
	c, err := tend.Open(ctx, tend.Config{Seeds: a.Seeds, UseShm: true, ShmKey: arena.Key(a.Key),
		TendInterval: 20 * time.Millisecond, TakeoverThreshold: time.Second, Logger: quiet()})
	if err != nil {
		return nil, err
	}
	d, _ := partmap.DigestForPartition(partmap.Partitions - 1)
	deadline := time.Now().Add(waitLimit)
	for {
		if _, err := c.Master("test", d); err == nil {
			return c, nil
		} else if time.Now().After(deadline) {
			c.Close()
			return nil, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tender opens the shared view first (so it tends) and waits to be killed.
func tender(ctx context.Context, w *harness.Worker) (any, error) {
	var a procArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	c, err := openShared(ctx, a)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	<-ctx.Done()
	return nil, nil
}

// recorder writes and reads back Ops records of its own through a record
// client on the shared view.
func recorder(ctx context.Context, w *harness.Worker) (any, error) {
	var a procArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	cl, err := openShared(ctx, a)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	c, err := record.NewClient(cl, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	var r procResult
	wp := record.NewWritePolicy(0, 0)
	wp.MaxRetries, wp.TotalTimeout = 5, 3*time.Second
	rp := record.NewPolicy()
	rp.TotalTimeout = 3 * time.Second
	for i := range a.Ops {
		k, err := record.NewKey("test", "procs", fmt.Sprintf("%d/%d", w.Index, i))
		if err != nil {
			return nil, err
		}
		err = c.Put(ctx, wp, k, record.BinMap{"w": w.Index, "i": i})
		if err == nil {
			var rec *record.Record
			rec, err = c.Get(ctx, rp, k)
			if err == nil && (rec.Bins["w"] != int64(w.Index) || rec.Bins["i"] != int64(i)) {
				err = fmt.Errorf("record %d/%d read back as %v", w.Index, i, rec.Bins)
			}
		}
		r.Ops++
		if err != nil {
			if r.Failed == 0 {
				r.FirstErr = err.Error()
			}
			r.Failed++
		}
		time.Sleep(time.Millisecond)
	}
	r.Retries, r.Role = c.Stats().Retries, cl.Stats().Role
	return r, nil
}

// TestProcessesShareView runs record clients in three processes on one
// shared view tended by a fourth, which is SIGKILLed halfway: every
// command of every process succeeds (routed by the map the processes
// share, which a survivor goes on tending), no request reaches a node
// without the partition, a survivor takes over tending, and the nodes see
// the info requests of one tender (logged).
func TestProcessesShareView(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	sim := newSim(t, 3)
	key := arenatest.SysVKey(t)
	a := procArgs{Key: uint32(key), Seeds: sim.Seeds(), Ops: 400}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tg, err := harness.Start(ctx, harness.Spec{Workload: "tender", N: 1, Args: a, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if err := tg.Release(ctx); err != nil {
		t.Fatal(err)
	}
	g, err := harness.Start(ctx, harness.Spec{Workload: "recorder", N: 3, Args: a, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	sim.ResetCounters()
	start := time.Now()
	time.Sleep(200 * time.Millisecond)
	if err := tg.Kill(0); err != nil {
		t.Fatal(err)
	}
	results, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	infoRate := float64(sim.InfoRequests()) / time.Since(start).Seconds()
	owners := 0
	for _, res := range results {
		var r procResult
		if err := res.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.Failed != 0 || r.Ops != a.Ops {
			t.Errorf("process %d: %d of %d commands failed, first: %s", res.Index, r.Failed, r.Ops, r.FirstErr)
		}
		if r.Role == tend.RoleOwner {
			owners++
		}
		t.Logf("process %d: %d put+get pairs, %d retries, role %s", res.Index, r.Ops, r.Retries, r.Role)
	}
	// Each process reports its role when it finishes, not all at the same
	// moment (an owner starved of CPU may step down and another take
	// over in between): at least one survivor took over.
	if owners == 0 {
		t.Errorf("no recorder tends after the tender's death")
	}
	// One tender polls 3 nodes every 20 ms (a few requests per node per
	// cycle); four processes tending each would send four times as many.
	t.Logf("info requests: %.0f/s; proxied %d", infoRate, sim.TotalProxied())
	if p := sim.TotalProxied(); p != 0 {
		t.Errorf("%d requests reached a node without the partition", p)
	}
}
