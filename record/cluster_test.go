package record_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// newSim starts a simulated cluster of n nodes with namespace test at RF 2.
func newSim(t testing.TB, n int) *tendtest.Cluster {
	t.Helper()
	sim, err := tendtest.New(tendtest.Options{Nodes: n, Namespaces: []tendtest.NamespaceSpec{{Name: "test", ReplicationFactor: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func newClient(t testing.TB, cl *tend.Cluster) *record.Client {
	t.Helper()
	c, err := record.NewClient(cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		for _, n := range c.Stats().Nodes {
			if n.Open != 0 {
				t.Errorf("node %s: %d connections open after Close", n.Name, n.Open)
			}
		}
	})
	return c
}

func mustKey(t testing.TB, v any) record.Key {
	t.Helper()
	k, err := record.NewKey("test", "demo", v)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRoundTrip writes and reads every particle type and runs every
// command and write policy against a simulated cluster.
func TestRoundTrip(t *testing.T) {
	checkGoroutines(t)
	sim := newSim(t, 3)
	c := newClient(t, openView(t, sim.Seeds(), "test"))
	ctx := context.Background()
	values := map[string]any{
		"int": int64(math.MinInt64), "float": -2.5, "str": "héllo", "empty": "", "bytes": []byte{0, 255, 7},
		"true": true, "false": false,
		"list": []any{int64(1), "a", []byte("b"), 1.5, false, []any{}, map[any]any{int64(3): "c"}},
		"map":  map[any]any{"k": int64(1), int64(-2): []any{"x", int64(9)}, "m": map[any]any{}, "b": []byte{1}},
	}
	for name, v := range values {
		k := mustKey(t, "rt-"+name)
		if err := c.Put(ctx, nil, k, record.BinMap{"v": v}); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
		rec, err := c.Get(ctx, nil, k)
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		got := rec.Bins["v"]
		if b, ok := v.([]byte); ok {
			if gb, _ := got.([]byte); !bytes.Equal(b, gb) {
				t.Errorf("%s: got %#v, want %#v", name, got, v)
			}
		} else if !reflect.DeepEqual(got, v) {
			t.Errorf("%s: got %#v, want %#v", name, got, v)
		}
	}
	// Go integer types and map[string]any are accepted and read back as
	// int64 and map[any]any.
	k := mustKey(t, 42)
	if err := c.Put(ctx, nil, k, record.BinMap{"i8": int8(-8), "u32": uint32(32), "i": 7, "m": map[string]any{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	rec, err := c.Get(ctx, nil, k)
	if err != nil || rec.Bins["i8"] != int64(-8) || rec.Bins["u32"] != int64(32) || rec.Bins["i"] != int64(7) ||
		!reflect.DeepEqual(rec.Bins["m"], map[any]any{"a": int64(1)}) || rec.Generation != 1 {
		t.Fatalf("integers: %+v %v", rec, err)
	}
	// Named bins.
	rec, err = c.Get(ctx, nil, k, "i", "nope")
	if err != nil || len(rec.Bins) != 1 || rec.Bins["i"] != int64(7) {
		t.Fatalf("named bins: %+v %v", rec, err)
	}
	// Add, Touch, Exists, Delete.
	if err := c.Add(ctx, nil, k, record.BinMap{"i": 5, "new": -1}); err != nil {
		t.Fatal(err)
	}
	if rec, err = c.Get(ctx, nil, k, "i", "new"); err != nil || rec.Bins["i"] != int64(12) || rec.Bins["new"] != int64(-1) || rec.Generation != 2 {
		t.Fatalf("after add: %+v %v", rec, err)
	}
	if err := c.Add(ctx, nil, k, record.BinMap{"i": "x"}); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("add of a string: %v", err)
	}
	if err := c.Add(ctx, nil, mustKey(t, "rt-str"), record.BinMap{"v": 1}); !errors.Is(err, record.ErrBinTypeMismatch) {
		t.Fatalf("add to a string bin: %v", err)
	}
	wp := record.NewWritePolicy(0, 1000)
	if err := c.Touch(ctx, wp, k); err != nil {
		t.Fatal(err)
	}
	if rec, err = c.Get(ctx, nil, k); err != nil || rec.Generation != 3 || rec.Expiration < 990 || rec.Expiration > 1000 {
		t.Fatalf("after touch: gen %d ttl %d %v", rec.Generation, rec.Expiration, err)
	}
	if err := c.Touch(ctx, nil, mustKey(t, "missing")); !errors.Is(err, record.ErrKeyNotFound) {
		t.Fatalf("touch of a missing record: %v", err)
	}
	if ok, err := c.Exists(ctx, nil, k); !ok || err != nil {
		t.Fatalf("exists: %v %v", ok, err)
	}
	if ok, err := c.Delete(ctx, nil, k); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, err := c.Exists(ctx, nil, k); ok || err != nil {
		t.Fatalf("exists after delete: %v %v", ok, err)
	}
	if _, err := c.Get(ctx, nil, k); !errors.Is(err, record.ErrKeyNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if ok, err := c.Delete(ctx, nil, k); ok || err != nil {
		t.Fatalf("second delete: %v %v", ok, err)
	}

	// Record exists actions and generation checks.
	k = mustKey(t, "policies")
	put := func(a record.RecordExistsAction, g record.GenerationPolicy, gen uint32, bins record.BinMap) error {
		wp := record.NewWritePolicy(gen, 0)
		wp.RecordExistsAction, wp.GenerationPolicy = a, g
		return c.Put(ctx, wp, k, bins)
	}
	for _, s := range []struct {
		a    record.RecordExistsAction
		g    record.GenerationPolicy
		gen  uint32
		bins record.BinMap
		want error
	}{
		{record.UPDATE_ONLY, record.NONE, 0, record.BinMap{"a": 1}, record.ErrKeyNotFound},
		{record.REPLACE_ONLY, record.NONE, 0, record.BinMap{"a": 1}, record.ErrKeyNotFound},
		{record.CREATE_ONLY, record.NONE, 0, record.BinMap{"a": 1, "b": 2}, nil},         // gen 1
		{record.CREATE_ONLY, record.NONE, 0, record.BinMap{"a": 1}, record.ErrKeyExists}, //
		{record.UPDATE_ONLY, record.NONE, 0, record.BinMap{"c": 3}, nil},                 // gen 2: a b c
		{record.UPDATE, record.EXPECT_GEN_EQUAL, 1, record.BinMap{"d": 4}, record.ErrGenerationMismatch},
		{record.UPDATE, record.EXPECT_GEN_EQUAL, 2, record.BinMap{"d": 4}, nil}, // gen 3: a b c d
		{record.UPDATE, record.EXPECT_GEN_GT, 3, record.BinMap{"e": 5}, record.ErrGenerationMismatch},
		{record.UPDATE, record.EXPECT_GEN_GT, 4, record.BinMap{"e": 5}, nil}, // gen 4: a b c d e
		{record.REPLACE, record.NONE, 0, record.BinMap{"z": 26}, nil},        // gen 5: z
		{record.REPLACE_ONLY, record.NONE, 0, record.BinMap{"y": 25}, nil},   // gen 6: y
	} {
		if err := put(s.a, s.g, s.gen, s.bins); !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("%v %v gen %d: %v, want %v", s.a, s.g, s.gen, err, s.want)
		}
	}
	rec, err = c.Get(ctx, nil, k)
	if err != nil || !reflect.DeepEqual(rec.Bins, record.BinMap{"y": int64(25)}) || rec.Generation != 6 {
		t.Fatalf("after the policies: %+v %v", rec, err)
	}
}

// forEachPartition runs f with a key of every partition.
func forEachPartition(t *testing.T, f func(pid uint32, k record.Key)) {
	for pid := range uint32(partmap.Partitions) {
		d, _ := partmap.DigestForPartition(pid)
		k, err := record.NewKeyWithDigest("test", "demo", d)
		if err != nil {
			t.Fatal(err)
		}
		f(pid, k)
	}
}

// TestRoutingConverged writes and reads a record of every partition of a
// 3-node RF 2 cluster with the map converged: no request reaches a node
// that does not hold the partition (Proxied stays 0), with either replica
// policy. The negative control routes by a view that is not kept up to
// date (its tender polls once an hour) after partitions moved: the
// simulator counts the misrouted requests.
func TestRoutingConverged(t *testing.T) {
	checkGoroutines(t)
	sim := newSim(t, 3)
	c := newClient(t, openView(t, sim.Seeds(), "test"))
	ctx := context.Background()
	master := record.NewPolicy()
	master.ReplicaPolicy = record.MASTER
	forEachPartition(t, func(pid uint32, k record.Key) {
		if err := c.Put(ctx, nil, k, record.BinMap{"p": int64(pid)}); err != nil {
			t.Fatalf("put partition %d: %v", pid, err)
		}
		for _, p := range []*record.Policy{nil, master} {
			rec, err := c.Get(ctx, p, k)
			if err != nil || rec.Bins["p"] != int64(pid) {
				t.Fatalf("get partition %d: %+v %v", pid, rec, err)
			}
		}
	})
	var msgs uint64
	for i := range 3 {
		msgs += sim.RecordMessages(i)
	}
	if p := sim.TotalProxied(); p != 0 || msgs != 3*partmap.Partitions {
		t.Fatalf("%d of %d requests reached a node without the partition, want 0 of %d", p, msgs, 3*partmap.Partitions)
	}
	if s := c.Stats(); s.Retries != 0 {
		t.Errorf("%d retries with the map converged", s.Retries)
	}
	t.Logf("%d requests over %d partitions, none misrouted; per node: %+v", msgs, partmap.Partitions, c.Stats().Nodes)

	// Negative control: a view that stopped following the cluster.
	stale, err := tend.Open(ctx, tend.Config{Seeds: sim.Seeds(), TendInterval: time.Hour, TakeoverThreshold: 2 * time.Hour, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	waitUntil(t, "the stale view's first tend", func() bool {
		d, _ := partmap.DigestForPartition(0)
		_, err := stale.Master("test", d)
		return err == nil
	})
	sc := newClient(t, stale)
	for pid := range uint32(64) {
		m, _ := sim.Master("test", pid)
		for i, n := range sim.Nodes() {
			if n.Name != m {
				if err := sim.MovePartition("test", pid, 0, i); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
	}
	forEachPartition(t, func(pid uint32, k record.Key) {
		if pid < 64 {
			if err := sc.Put(ctx, nil, k, record.BinMap{"p": int64(pid)}); err != nil {
				t.Fatalf("stale put partition %d: %v", pid, err)
			}
		}
	})
	if p := sim.TotalProxied(); p < 64 {
		t.Fatalf("negative control: %d requests counted as misrouted after 64 stale puts, want 64", p)
	}
}

// TestMigration runs commands while partitions migrate (a node joins, a
// node is removed, masters move): every command succeeds, through
// retries where a node went away, and the counts say where they went.
func TestMigration(t *testing.T) {
	checkGoroutines(t)
	sim := newSim(t, 3)
	cl := openView(t, sim.Seeds(), "test")
	c := newClient(t, cl)
	ctx := context.Background()
	const keys = 512
	for i := range keys {
		if err := c.Put(ctx, nil, mustKey(t, i), record.BinMap{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	// Retries enough to outlast a step: writes to a stopped master time
	// out until the cluster rebalances.
	wp := record.NewWritePolicy(0, 0)
	wp.MaxRetries, wp.SleepBetweenRetries, wp.TotalTimeout = 50, 10*time.Millisecond, 3*time.Second
	rp := record.NewPolicy()
	rp.MaxRetries, rp.SleepBetweenRetries, rp.TotalTimeout = 50, 10*time.Millisecond, 3*time.Second

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	var ops [4]int
	for g := range 4 {
		wg.Go(func() {
			for n := 0; ; n++ {
				ops[g] = n
				select {
				case <-stop:
					return
				default:
				}
				i := (n*4 + g) % keys
				k := mustKey(t, i)
				if g%2 == 0 {
					if err := c.Add(ctx, wp, k, record.BinMap{"n": 1}); err != nil {
						errs <- err
						return
					}
				} else if rec, err := c.Get(ctx, rp, k); err != nil || rec.Bins["i"] != int64(i) {
					errs <- errors.Join(err, errors.New("wrong record"))
					return
				}
			}
		})
	}
	step := func(what string, f func() error) {
		time.Sleep(150 * time.Millisecond)
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: proxied %d, client retries %d", what, sim.TotalProxied(), c.Stats().Retries)
	}
	step("add a node", func() error { _, err := sim.AddNode(); return err })
	step("move 32 masters", func() error {
		for pid := range uint32(32) {
			if err := sim.MovePartition("test", pid, 0, int(pid)%4); err != nil {
				return err
			}
		}
		return nil
	})
	step("remove node 1", func() error { return sim.RemoveNode(1) })
	step("stop node 2 (its partitions stay assigned until the rebalance)", func() error { return sim.StopNode(2) })
	step("rebalance without node 2", func() error { return sim.Rebalance() })
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("command during migration: %v", err)
	}
	s := c.Stats()
	t.Logf("ops per goroutine %v; retries %d, timeouts %d; proxied %d", ops, s.Retries, s.Timeouts, sim.TotalProxied())
	for _, n := range s.Nodes {
		t.Logf("node %s: %d requests, %d dials, %d open", n.Name, n.Requests, n.Dials, n.Open)
	}
	// Every record is where the cluster says, with the adds counted.
	var sum int64
	for i := range keys {
		rec, err := c.Get(ctx, rp, mustKey(t, i))
		if err != nil {
			t.Fatalf("record %d after the migration: %v", i, err)
		}
		n, _ := rec.Bins["n"].(int64)
		sum += n
	}
	// An add whose reply was lost (its node stopped mid-command) may have
	// been applied and is applied again by the retry: at most one extra
	// per retry.
	if acked := int64(ops[0] + ops[2]); sum < acked || sum > acked+int64(s.Retries) {
		t.Errorf("adds stored %d, %d acknowledged, %d retries", sum, acked, s.Retries)
	}
	if s.Retries == 0 {
		t.Errorf("no retries although nodes went away")
	}
}

// TestNodeKilledMidCommand stops the master of a record while it holds a
// command (the node delays its answers): a read fails over to the next
// replica within its policy; a write with MaxRetries 0 (the default)
// fails with a typed network error; with ReplicaPolicy MASTER the read
// keeps asking the dead master and ends with a typed error within its
// TotalTimeout. No goroutine or connection is left behind.
func TestNodeKilledMidCommand(t *testing.T) {
	checkGoroutines(t)
	sim := newSim(t, 3)
	cl := openView(t, sim.Seeds(), "test")
	c := newClient(t, cl)
	ctx := context.Background()
	k := mustKey(t, "victim")
	if err := c.Put(ctx, nil, k, record.BinMap{"v": "x"}); err != nil {
		t.Fatal(err)
	}
	masterName, _ := sim.Master("test", k.Digest.PartitionID())
	mi := -1
	for _, n := range sim.Nodes() {
		if n.Name == masterName {
			mi = n.Index
		}
	}
	kill := func(run func() error) (error, time.Duration) {
		if err := sim.SetDelay(mi, 500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		before := sim.RecordMessages(mi)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- run() }()
		waitUntil(t, "the master to hold the command", func() bool { return sim.RecordMessages(mi) > before })
		if err := sim.StopNode(mi); err != nil {
			t.Fatal(err)
		}
		err := <-done
		took := time.Since(start)
		if err := sim.RestartNode(mi); err != nil {
			t.Fatal(err)
		}
		sim.ClearFaults(mi)
		waitUntil(t, "the master to be active again", func() bool {
			n, err := cl.Master("test", k.Digest)
			return err == nil && n.Name == masterName && n.Active
		})
		return err, took
	}

	rp := record.NewPolicy()
	rp.SocketTimeout, rp.TotalTimeout = 2*time.Second, 3*time.Second
	var rec *record.Record
	err, took := kill(func() (err error) { rec, err = c.Get(ctx, rp, k); return err })
	if err != nil || rec.Bins["v"] != "x" || took > rp.TotalTimeout {
		t.Fatalf("read with the master killed: %+v %v after %v", rec, err, took)
	}
	t.Logf("read failed over in %v; retries %d", took.Round(time.Millisecond), c.Stats().Retries)

	err, took = kill(func() error { return c.Put(ctx, nil, k, record.BinMap{"v": "y"}) })
	if !errors.Is(err, record.ErrNetwork) {
		t.Fatalf("write with the master killed: %v after %v", err, took)
	}
	t.Logf("write: %v after %v", err, took.Round(time.Millisecond))

	// MASTER: every attempt goes to the master the view names, until the
	// view marks it inactive (its tender failed to reach it FailLimit
	// times); then the next replica is asked. Either the read succeeds
	// that way or it ends with ErrTimeout; within TotalTimeout both.
	mp := record.NewPolicy()
	mp.ReplicaPolicy, mp.SocketTimeout, mp.TotalTimeout, mp.MaxRetries = record.MASTER, 2*time.Second, 800*time.Millisecond, 1000
	err, took = kill(func() (err error) { rec, err = c.Get(ctx, mp, k); return err })
	if (err == nil && rec.Bins["v"] == nil) || (err != nil && !errors.Is(err, record.ErrTimeout)) || took > mp.TotalTimeout+500*time.Millisecond {
		t.Fatalf("MASTER read with the master killed: %v %v after %v", rec, err, took)
	}
	t.Logf("MASTER read: %v after %v", err, took.Round(time.Millisecond))

	// With no retries and a view that keeps the master active (TotalTimeout
	// shorter than the tender's FailLimit tends), a MASTER read ends in a
	// typed network error.
	mp.MaxRetries = 0
	err, took = kill(func() error { _, err := c.Get(ctx, mp, k); return err })
	if !errors.Is(err, record.ErrNetwork) {
		t.Fatalf("MASTER read without retries, master killed: %v after %v", err, took)
	}
}

// TestDepartedNodePoolsRetired removes a node the client holds an idle
// connection to: once the view has dropped the node, the connection stays
// open (the control) until the next sweep, after at most 1024 commands,
// closes it and forgets the pool.
func TestDepartedNodePoolsRetired(t *testing.T) {
	checkGoroutines(t)
	sim := newSim(t, 3)
	cl := openView(t, sim.Seeds(), "test")
	c := newClient(t, cl)
	ctx := context.Background()
	forEachPartition(t, func(pid uint32, k record.Key) {
		if pid < 64 {
			if err := c.Put(ctx, nil, k, record.BinMap{"p": int64(pid)}); err != nil {
				t.Fatal(err)
			}
		}
	})
	gone := sim.Nodes()[2].Name
	pool := func() (record.NodeStats, bool) {
		for _, n := range c.Stats().Nodes {
			if n.Name == gone {
				return n, true
			}
		}
		return record.NodeStats{}, false
	}
	if n, ok := pool(); !ok || n.Open != 1 || n.Idle != 1 {
		t.Fatalf("before the removal: pool of %s %+v %v, want one idle connection", gone, n, ok)
	}
	if err := sim.RemoveNode(2); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the view to drop the node", func() bool {
		for _, n := range cl.Nodes() {
			if n.Name == gone {
				return false
			}
		}
		return true
	})
	if n, ok := pool(); !ok || n.Open != 1 {
		t.Fatalf("control: before a sweep the pool of %s is %+v %v, want its idle connection still open", gone, n, ok)
	}
	k := mustKey(t, "sweep")
	if err := c.Put(ctx, nil, k, record.BinMap{"a": 1}); err != nil {
		t.Fatal(err)
	}
	for range 1024 {
		if _, err := c.Get(ctx, nil, k); err != nil {
			t.Fatal(err)
		}
	}
	if n, ok := pool(); ok {
		t.Fatalf("after 1024 commands the pool of %s is still there: %+v", gone, n)
	}
}

// TestSpinWaitPolicy: commands work with polling off (every reply read
// after parking), and a negative SpinWait is refused.
func TestSpinWaitPolicy(t *testing.T) {
	sim := newSim(t, 2)
	cl := openView(t, sim.Seeds(), "test")
	cp := record.NewClientPolicy()
	cp.SpinWait = -time.Microsecond
	if _, err := record.NewClient(cl, cp); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("SpinWait %v: %v, want ErrInvalid", cp.SpinWait, err)
	}
	cp.SpinWait = 0
	c, err := record.NewClient(cl, cp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := range 50 {
		k := mustKey(t, i)
		if err := c.Put(ctx, nil, k, record.BinMap{"v": i}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		rec, err := c.Get(ctx, nil, k)
		if err != nil || rec.Bins["v"] != int64(i) {
			t.Fatalf("get %d: %v, %v", i, rec, err)
		}
	}
}
