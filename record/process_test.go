package record_test

import (
	"bytes"
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
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/tendtest"
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
	// User and Password log every process in (each for itself); Keep
	// keeps the segment after the last close, for a scan of its bytes.
	User, Password string
	Keep           bool
	// RetrySleep, when not zero, is the recorders' SleepBetweenRetries
	// (long enough for retries to outlast a node's restart).
	RetrySleep time.Duration
}

// procResult is what a recorder reports.
type procResult struct {
	Ops, Failed int
	FirstErr    string
	Retries     uint64
	Role        tend.Role
	// Logins and TokenAuths are the process's Authenticator's counts.
	Logins, TokenAuths uint64
}

func openShared(ctx context.Context, a procArgs) (*tend.Cluster, error) {
	c, err := tend.Open(ctx, tend.Config{Seeds: a.Seeds, UseShm: true, ShmKey: arena.Key(a.Key),
		TendInterval: 20 * time.Millisecond, TakeoverThreshold: time.Second, Logger: quiet(),
		User: a.User, Password: a.Password, KeepSegment: a.Keep})
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
	if a.RetrySleep > 0 {
		wp.SleepBetweenRetries, rp.SleepBetweenRetries = a.RetrySleep, a.RetrySleep
	}
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
	if a := cl.Authenticator(); a != nil {
		r.Logins, r.TokenAuths = a.Logins(), a.TokenAuths()
	}
	return r, nil
}

// startProcesses starts a tender process, then (once it tends) three
// recorders with a, and releases them; both groups are closed at cleanup.
func startProcesses(t *testing.T, a procArgs) (tender, recorders *harness.Group) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	for _, spec := range []harness.Spec{{Workload: "tender", N: 1}, {Workload: "recorder", N: 3}} {
		spec.Args, spec.Stderr = a, os.Stderr
		g, err := harness.Start(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		if err := g.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if tender == nil {
			tender = g
		} else {
			recorders = g
		}
	}
	return tender, recorders
}

// recorderResults waits for the recorders and returns their results,
// failing t for every process whose commands did not all succeed.
func recorderResults(t *testing.T, g *harness.Group, a procArgs) []procResult {
	t.Helper()
	results, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]procResult, len(results))
	for _, res := range results {
		if res.Index < 0 || res.Index >= len(out) {
			t.Fatalf("result of process %d of %d", res.Index, len(out))
		}
		r := &out[res.Index]
		if err := res.Decode(r); err != nil {
			t.Fatal(err)
		}
		if r.Failed != 0 || r.Ops != a.Ops {
			t.Errorf("process %d: %d of %d commands failed, first: %s", res.Index, r.Failed, r.Ops, r.FirstErr)
		}
	}
	return out
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
	tg, g := startProcesses(t, a)
	sim.ResetCounters()
	start := time.Now()
	time.Sleep(200 * time.Millisecond)
	if err := tg.Kill(0); err != nil {
		t.Fatal(err)
	}
	results := recorderResults(t, g, a)
	infoRate := float64(sim.InfoRequests()) / time.Since(start).Seconds()
	owners := 0
	for i, r := range results {
		if r.Role == tend.RoleOwner {
			owners++
		}
		t.Logf("process %d: %d put+get pairs, %d retries, role %s", i, r.Ops, r.Retries, r.Role)
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

// TestProcessesAuthenticated runs record clients in three processes on
// one shared view of a cluster with security on, tended by a fourth that
// is SIGKILLed halfway, while a node restarts (forgetting its sessions):
// every command succeeds; each process logs in to each node for itself
// (the servers count a login per process and node, and the token
// refusals and new logins after the restart); and no byte of the shared
// segment holds the password, its hash or any session token the servers
// issued.
func TestProcessesAuthenticated(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	const user, password = "app", "Pa55-rec0rd-s3cret"
	sim := secureSim(t, 3, tendtest.Options{Users: map[string]string{user: password}})
	key := arenatest.SysVKey(t)
	a := procArgs{Key: uint32(key), Seeds: sim.Seeds(), Ops: 300, User: user, Password: password, Keep: true,
		RetrySleep: 25 * time.Millisecond}
	tg, g := startProcesses(t, a)
	time.Sleep(100 * time.Millisecond)
	if err := tg.Kill(0); err != nil {
		t.Fatal(err)
	}
	if err := sim.StopNode(2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	before := sim.AuthStats(2)
	if err := sim.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	for i, r := range recorderResults(t, g, a) {
		// A login per node, and one more to the restarted node.
		if r.Logins < 4 {
			t.Errorf("process %d: %d logins", i, r.Logins)
		}
		t.Logf("process %d: %d put+get pairs, %d retries, %d logins, %d token authentications, role %s",
			i, r.Ops, r.Retries, r.Logins, r.TokenAuths, r.Role)
	}
	after := sim.AuthStats(2)
	if after.Logins-before.Logins < 3 || after.Refused-before.Refused < 3 || after.Unauthenticated != 0 {
		t.Errorf("restarted node: %+v before its restart, %+v after: want a refused token and a login per process", before, after)
	}

	seg, err := arena.Inspect(arena.SysV(key))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	// Every process has exited: nothing changes the segment's memory.
	raw, err := seg.QuiescentBytes(0, seg.Len())
	if err != nil {
		t.Fatal(err)
	}
	hash, err := admin.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{"password": []byte(password), "password hash": []byte(hash), "hash without salt": []byte(hash[29:])}
	tokens := sim.SessionTokens()
	if len(tokens) < 12 {
		t.Errorf("%d session tokens issued", len(tokens))
	}
	for i, tok := range tokens {
		secrets[fmt.Sprintf("session token %d", i)] = tok
	}
	for what, b := range secrets {
		if bytes.Contains(raw, b) {
			t.Errorf("the segment holds the %s", what)
		}
	}
	// The control: the scan finds what the segment holds.
	if !bytes.Contains(raw, []byte(sim.Nodes()[0].Name)) {
		t.Error("the scan does not find a node name the segment holds: it cannot find anything")
	}
}
