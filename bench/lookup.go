package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
)

// LookupConfig configures LookupBench. The zero value is the default.
type LookupConfig struct {
	// Iterations of each single-process measurement (default 10^7); each
	// is repeated Rounds times (default 5) and the fastest round counts.
	Iterations, Rounds int
	// Procs lists the numbers of reader processes looking up at once in
	// the multi-process phase (default 1, 2, 4, 8).
	Procs []int
	// Duration is how long each reader process looks up, per process
	// count, alternating the two tables (default 1 s).
	Duration time.Duration
	// SkipProcs skips the multi-process phase.
	SkipProcs bool
	// Stderr receives the worker processes' stderr (nil: discarded).
	Stderr io.Writer
}

func (c *LookupConfig) defaults() {
	if c.Iterations <= 0 {
		c.Iterations = 10_000_000
	}
	if c.Rounds <= 0 {
		c.Rounds = 5
	}
	if len(c.Procs) == 0 {
		c.Procs = []int{1, 2, 4, 8}
	}
	if c.Duration <= 0 {
		c.Duration = time.Second
	}
}

// Bench names and table kinds of LookupBench's results.
const (
	// BenchLookup is the Bench of the single-process lookup figures.
	BenchLookup = "lookup"
	// BenchLookupProcs is the Bench of the per-process lookup cost with P
	// reader processes; its Metric is ProcsMetric(P, KindShm),
	// ProcsMetric(P, KindAtomicMapResolved) or ProcsMetric(P,
	// KindAtomicMap).
	BenchLookupProcs = "lookup.procs"
	// KindShm marks a figure of the shared-memory tables (in lookup.procs:
	// by namespace handle, partmap.Map.Master).
	KindShm = "shared memory"
	// KindAtomicMap marks a figure of the in-process atomic-pointer map,
	// namespace by name (the official Go client's shape).
	KindAtomicMap = "atomic-pointer map by name"
	// KindAtomicMapResolved marks a figure of the in-process
	// atomic-pointer map with the namespace resolved to an index
	// beforehand: the like-for-like baseline of a lookup by handle.
	KindAtomicMapResolved = "atomic-pointer map, ns resolved"
)

// The namespace looked up, and a second one so that the baseline's map by
// name is not a one-entry map.
const (
	lookupNS      = "test"
	lookupOtherNS = "bar"
	lookupNodes   = 8
	// lookupDigests is the number of distinct digests cycled through (a
	// power of two).
	lookupDigests = 1024
)

const wlLookupReader = "bench.lookup.reader"

// LookupWorkloads returns the worker workloads of LookupBench; add them to
// the registry given to harness.Dispatch.
func LookupWorkloads() harness.Registry {
	return harness.Registry{wlLookupReader: lookupReader}
}

// clientPartitions is one namespace's table in the official Go client's
// shape: node pointers per replica index and partition.
type clientPartitions struct {
	replicas [partmap.StoredReplicas][partmap.Partitions]*partmap.Node
}

// clientMap is the baseline: the official Go client's partition map, an
// in-process map from namespace name to table, replaced as a whole on
// every change and published through an atomic pointer. list holds the
// same tables by namespace index, for the variant whose caller resolved
// the namespace beforehand.
type clientMap struct {
	names map[string]*clientPartitions
	list  []*clientPartitions
}

// masterByName is the official client's master lookup (PartitionForWrite
// and getMasterNode): load the map, find the namespace by name, index
// the partition of the digest, check the node is active.
func masterByName(p *atomic.Pointer[clientMap], ns string, d *partmap.Digest) (*partmap.Node, bool) {
	t := p.Load().names[ns]
	if t == nil {
		return nil, false
	}
	n := t.replicas[0][d.PartitionID()]
	return n, n != nil && n.Active
}

// masterByIndex is masterByName with the namespace resolved to an index
// beforehand.
func masterByIndex(p *atomic.Pointer[clientMap], ns int, d *partmap.Digest) (*partmap.Node, bool) {
	l := p.Load().list
	if uint(ns) >= uint(len(l)) {
		return nil, false
	}
	n := l[ns].replicas[0][d.PartitionID()]
	return n, n != nil && n.Active
}

// newClientMap copies the master and proles of every partition of the
// given namespaces out of m: the baseline holds the very *Node values the
// shared-memory lookups return.
func newClientMap(m *partmap.Map, names ...string) (*atomic.Pointer[clientMap], error) {
	cm := &clientMap{names: map[string]*clientPartitions{}}
	for _, name := range names {
		ns, ok := m.Namespace(name)
		if !ok {
			return nil, fmt.Errorf("bench: namespace %q: %w", name, partmap.ErrNotFound)
		}
		t := &clientPartitions{}
		for pid := range uint32(partmap.Partitions) {
			for r := range partmap.StoredReplicas {
				t.replicas[r][pid], _ = m.Replica(ns, pid, r)
			}
		}
		cm.names[name] = t
		cm.list = append(cm.list, t)
	}
	p := &atomic.Pointer[clientMap]{}
	p.Store(cm)
	return p, nil
}

// lookupDigestSet returns the digests the lookups cycle through: string
// keys of one set, as an application would address records.
func lookupDigestSet() *[lookupDigests]partmap.Digest {
	var ds [lookupDigests]partmap.Digest
	for i := range ds {
		ds[i] = partmap.StringKeyDigest("bench", fmt.Sprintf("key-%d", i))
	}
	return &ds
}

// lookupFixture is the shared-memory cluster table of the lookup
// benchmark: lookupNodes nodes and two namespaces with every partition
// assigned, published by this process, which holds the tend lease so that
// nobody else writes.
type lookupFixture struct {
	key arena.Key
	m   *partmap.Map
	l   *lease.Lease
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newLookupFixture(ctx context.Context) (_ *lookupFixture, err error) {
	key, err := freeTestKey("lookup")
	if err != nil {
		return nil, err
	}
	f := &lookupFixture{key: key}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.close())
		}
	}()
	if f.m, err = partmap.Open(ctx, arena.SysV(key), partmap.Config{Logger: quietLogger()}); err != nil {
		return nil, err
	}
	if f.l, err = lease.New(f.m.Segment(), f.m.LeaseOffset(), lease.Config{Threshold: time.Hour, Logger: quietLogger()}); err != nil {
		return nil, err
	}
	if _, err := f.l.TryAcquire(); err != nil {
		return nil, err
	}
	w := f.m.Writer(f.l)
	if err := w.StampAll(); err != nil {
		return nil, err
	}
	var slots []int
	for k := range lookupNodes {
		s, err := w.AddOrUpdateNode(partmap.NodeInfo{
			Name:      fmt.Sprintf("BB9%04X0011AC42", k+1),
			Addresses: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(k + 1)}), 3000)},
			Build:     tendtestBuild,
			Active:    true,
		})
		if err != nil {
			return nil, err
		}
		slots = append(slots, s)
	}
	for j, name := range []string{lookupNS, lookupOtherNS} {
		ns, err := w.EnsureNamespace(name, 2, false)
		if err != nil {
			return nil, err
		}
		for pid := range uint32(partmap.Partitions) {
			k := int(pid) + j
			if err := w.SetPartition(ns, pid, slots[k%lookupNodes], slots[(k+1)%lookupNodes], 0); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Publish(); err != nil {
		return nil, err
	}
	return f, nil
}

// tendtestBuild is the build string of the fixture's nodes (that of the
// simulated cluster's nodes).
const tendtestBuild = "8.1.0.0"

func (f *lookupFixture) close() error {
	var errs []error
	if f.l != nil && f.l.Epoch() != 0 {
		if err := f.l.Release(); err != nil {
			errs = append(errs, err)
		}
	}
	if f.m != nil {
		errs = append(errs, f.m.Close())
	}
	errs = append(errs, removeSegment(f.key))
	return errors.Join(errs...)
}

// lookupSink keeps measured loops from being optimized away.
type lookupSink struct {
	n *partmap.Node
}

// ErrLookupMismatch means a shared-memory lookup and the baseline returned
// different nodes, or a lookup found none: the comparison is void.
var ErrLookupMismatch = errors.New("bench: lookup returned no node or a different node than the baseline")

// checkSameNodes checks that every lookup variant returns the same node
// for every digest: the same *Node from m and the baseline, and the same
// slot, slot generation and name from c.
func checkSameNodes(m *partmap.Map, c *tend.Cluster, p *atomic.Pointer[clientMap], ds *[lookupDigests]partmap.Digest) error {
	ns, ok := m.Namespace(lookupNS)
	if !ok {
		return fmt.Errorf("%w: namespace %q not found", ErrLookupMismatch, lookupNS)
	}
	for i := range ds {
		d := &ds[i]
		a, ok1 := m.Master(ns, d.PartitionID())
		b, ok2 := masterByName(p, lookupNS, d)
		e, ok3 := masterByIndex(p, 0, d)
		var cn *partmap.Node
		ok4 := true
		if c != nil {
			var err error
			cn, err = c.Master(lookupNS, *d)
			ok4 = err == nil
		} else {
			cn = a
		}
		// The baseline holds m's *Node values; c has a cache of its own.
		if !ok1 || !ok2 || !ok3 || !ok4 || a != b || a != e || cn.Slot != a.Slot || cn.Gen != a.Gen || cn.Name != a.Name {
			return fmt.Errorf("%w: digest %v (partition %d)", ErrLookupMismatch, d, d.PartitionID())
		}
	}
	return nil
}

// The timed loops, one per variant, written out so that no indirect call
// is measured. Each returns the thread CPU time of n lookups.

func timeShmHandle(m *partmap.Map, ns partmap.NS, ds *[lookupDigests]partmap.Digest, n int, s *lookupSink) (time.Duration, error) {
	start := threadCPU()
	for i := range n {
		node, ok := m.Master(ns, ds[i&(lookupDigests-1)].PartitionID())
		if !ok {
			return 0, ErrLookupMismatch
		}
		s.n = node
	}
	return threadCPU() - start, nil
}

func timeShmName(m *partmap.Map, ds *[lookupDigests]partmap.Digest, n int, s *lookupSink) (time.Duration, error) {
	start := threadCPU()
	for i := range n {
		ns, ok := m.Namespace(lookupNS)
		if !ok {
			return 0, ErrLookupMismatch
		}
		node, ok := m.Master(ns, ds[i&(lookupDigests-1)].PartitionID())
		if !ok {
			return 0, ErrLookupMismatch
		}
		s.n = node
	}
	return threadCPU() - start, nil
}

func timeTendCluster(c *tend.Cluster, ds *[lookupDigests]partmap.Digest, n int, s *lookupSink) (time.Duration, error) {
	start := threadCPU()
	for i := range n {
		node, err := c.Master(lookupNS, ds[i&(lookupDigests-1)])
		if err != nil {
			return 0, err
		}
		s.n = node
	}
	return threadCPU() - start, nil
}

func timeClientByName(p *atomic.Pointer[clientMap], ds *[lookupDigests]partmap.Digest, n int, s *lookupSink) (time.Duration, error) {
	start := threadCPU()
	for i := range n {
		node, ok := masterByName(p, lookupNS, &ds[i&(lookupDigests-1)])
		if !ok {
			return 0, ErrLookupMismatch
		}
		s.n = node
	}
	return threadCPU() - start, nil
}

func timeClientByIndex(p *atomic.Pointer[clientMap], ds *[lookupDigests]partmap.Digest, n int, s *lookupSink) (time.Duration, error) {
	start := threadCPU()
	for i := range n {
		node, ok := masterByIndex(p, 0, &ds[i&(lookupDigests-1)])
		if !ok {
			return 0, ErrLookupMismatch
		}
		s.n = node
	}
	return threadCPU() - start, nil
}

// Names of LookupBench's variants, as they appear in Metric and
// BaselineName, and what each does (Detail, BaselineDetail).
const (
	lookupShmHandle   = "by handle: partmap.Map.Master"
	lookupShmName     = "by name: Map.Namespace + Map.Master"
	lookupTendCluster = "by name: tend.Cluster.Master"
	lookupClientName  = KindAtomicMap
	lookupClientIndex = KindAtomicMapResolved

	lookupShmHandleDetail   = "master by digest from the shared tables (SysV), namespace handle resolved beforehand: one load of the publish word, then this process's resolved table"
	lookupShmNameDetail     = "master by digest from the shared tables (SysV), namespace looked up by name on every call (Map.Namespace, then Map.Master)"
	lookupTendClusterDetail = "master by digest through the public API, namespace by name on every call (tend.Cluster.Master, a follower of the SysV segment)"
	lookupClientNameDetail  = "in-process map in the official Go client's shape: atomic pointer load, namespace name looked up in a Go map, partition index, active check"
	lookupClientIndexDetail = "the same in-process map with the namespace resolved to an index beforehand: atomic pointer load, slice index, partition index, active check"
	lookupCrossLevelDetail  = "not like for like: the lookup resolved its namespace beforehand, the baseline looks it up by name (as the official client's API does on every call)"
)

// LookupBench measures the master lookup of a record's digest:
//
//   - in this process, timed in thread CPU time (best of cfg.Rounds rounds
//     of cfg.Iterations lookups, the variants interleaved round by round,
//     cycling over 1024 digests of string keys), from the shared tables on
//     a SysV segment (8 nodes, 2 namespaces, every partition assigned):
//     with a namespace handle (partmap.Map.Master), with the namespace by
//     name (Map.Namespace + Map.Master), and through tend.Cluster.Master
//     (a follower on the same segment); against an in-process
//     atomic-pointer map of the same tables holding the same
//     *partmap.Node values, by namespace name (the official Go client's
//     shape: atomic load, map lookup, array index, active check) and with
//     the namespace resolved to an index beforehand. Each lookup is
//     compared like for like (by handle against the map with the
//     namespace resolved, by name against the map by name); one more
//     result compares the lookup by handle with the map by name, the
//     saving of an application that resolves its namespace once over the
//     official client's per-call lookup. Every variant is checked to
//     return the same node for every digest.
//   - per process, with P reader processes (cfg.Procs) looking up at
//     once for cfg.Duration, in each process's thread CPU time (so that
//     time-sharing of more processes than cores does not count): each
//     process alternates chunks of 65536 lookups from the shared tables
//     (Map.Master with a handle) and from a private atomic-pointer map
//     (namespace resolved, then by name), and reports the median ns per
//     lookup of each; the figure is the mean over the processes. Results
//     have Bench BenchLookupProcs and Metric ProcsMetric(P, KindShm,
//     KindAtomicMapResolved or KindAtomicMap); the shared-memory figure
//     comes twice, against each map.
//
// The caller's binary must dispatch LookupWorkloads.
func LookupBench(ctx context.Context, cfg LookupConfig) ([]Result, error) {
	cfg.defaults()
	f, err := newLookupFixture(ctx)
	if err != nil {
		return nil, err
	}
	out, err := lookupSingle(ctx, f, cfg)
	if err == nil && !cfg.SkipProcs {
		var more []Result
		more, err = lookupProcs(ctx, f, cfg)
		out = append(out, more...)
	}
	return out, errors.Join(err, f.close())
}

func lookupSingle(ctx context.Context, f *lookupFixture, cfg LookupConfig) ([]Result, error) {
	// A follower of the fixture's tend lease, for the public API.
	c, err := tend.Open(ctx, tend.Config{UseShm: true, Location: arena.SysV(f.key),
		TakeoverThreshold: time.Hour, TendInterval: time.Minute, Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if st := c.Stats(); st.Role != tend.RoleFollower {
		return nil, fmt.Errorf("bench: lookup: tend.Cluster became %s of the fixture: %w", st.Role, ErrLookupMismatch)
	}
	p, err := newClientMap(f.m, lookupNS, lookupOtherNS)
	if err != nil {
		return nil, err
	}
	ds := lookupDigestSet()
	if err := checkSameNodes(f.m, c, p, ds); err != nil {
		return nil, err
	}
	ns, _ := f.m.Namespace(lookupNS)
	var s lookupSink
	n := cfg.Iterations
	variants := []func() (time.Duration, error){
		func() (time.Duration, error) { return timeShmHandle(f.m, ns, ds, n, &s) },
		func() (time.Duration, error) { return timeShmName(f.m, ds, n, &s) },
		func() (time.Duration, error) { return timeTendCluster(c, ds, n, &s) },
		func() (time.Duration, error) { return timeClientByName(p, ds, n, &s) },
		func() (time.Duration, error) { return timeClientByIndex(p, ds, n, &s) },
	}
	// Rounds interleave the variants, so that a change of load on the
	// machine affects them alike; the best round of each counts.
	best := make([]time.Duration, len(variants))
	for r := range cfg.Rounds {
		for i, v := range variants {
			d, err := bestOf(1, v)
			if err != nil {
				return nil, err
			}
			if r == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	per := func(i int) float64 { return float64(best[i].Nanoseconds()) / float64(n) }
	handle, byName, cluster, clientName, clientIndex := per(0), per(1), per(2), per(3), per(4)
	runtime.KeepAlive(s.n)
	r := func(metric, detail string, v float64) Result {
		return Result{Bench: BenchLookup, Metric: metric, Detail: detail, Value: v, Unit: "ns/op"}
	}
	// Like for like first: by handle against the map with the namespace
	// resolved, by name against the map by name.
	return []Result{
		r(lookupShmHandle, lookupShmHandleDetail, handle).WithBaseline(lookupClientIndex, clientIndex).WithBaselineDetail(lookupClientIndexDetail),
		r(lookupShmName, lookupShmNameDetail, byName).WithBaseline(lookupClientName, clientName).WithBaselineDetail(lookupClientNameDetail),
		r(lookupTendCluster, lookupTendClusterDetail, cluster).WithBaseline(lookupClientName, clientName).WithBaselineDetail(lookupClientNameDetail),
		r(lookupShmHandle, lookupShmHandleDetail, handle).WithBaseline(lookupClientName, clientName).WithBaselineDetail(lookupCrossLevelDetail),
	}, nil
}

// lookupArgs are the reader processes' arguments.
type lookupArgs struct {
	Key      uint32
	Duration time.Duration
}

// lookupReaderResult is what a reader process reports: per variant, the
// median over chunks of lookupChunk lookups of the thread CPU time per
// lookup (shared tables by handle, the map with the namespace resolved,
// the map by name).
type lookupReaderResult struct {
	ShmNs, MapIndexNs, MapNs float64
}

// lookupChunk is the number of lookups timed together by a reader process.
const lookupChunk = 1 << 16

// lookupReader looks up masters for a.Duration, alternating chunks of
// lookupChunk lookups from the shared tables (Map.Master, namespace
// handle) and from a private atomic-pointer map copied from them (with
// the namespace resolved beforehand, and by namespace name), so that all
// three see the same conditions, and reports the median thread CPU time
// per lookup of each.
func lookupReader(ctx context.Context, w *harness.Worker) (any, error) {
	var a lookupArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	m, err := partmap.Open(ctx, arena.SysV(arena.Key(a.Key)), partmap.Config{Logger: w.Log})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	p, err := newClientMap(m, lookupNS, lookupOtherNS)
	if err != nil {
		return nil, err
	}
	ds := lookupDigestSet()
	if err := checkSameNodes(m, nil, p, ds); err != nil {
		return nil, err
	}
	ns, _ := m.Namespace(lookupNS)
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var s lookupSink
	var shm, byIndex, byName []float64
	end := time.Now().Add(a.Duration)
	for len(shm) == 0 || time.Now().Before(end) {
		d, err := timeShmHandle(m, ns, ds, lookupChunk, &s)
		if err != nil {
			return nil, err
		}
		shm = append(shm, float64(d.Nanoseconds())/lookupChunk)
		if d, err = timeClientByIndex(p, ds, lookupChunk, &s); err != nil {
			return nil, err
		}
		byIndex = append(byIndex, float64(d.Nanoseconds())/lookupChunk)
		if d, err = timeClientByName(p, ds, lookupChunk, &s); err != nil {
			return nil, err
		}
		byName = append(byName, float64(d.Nanoseconds())/lookupChunk)
	}
	runtime.KeepAlive(s.n)
	return lookupReaderResult{ShmNs: quantile(shm, 0.5), MapIndexNs: quantile(byIndex, 0.5), MapNs: quantile(byName, 0.5)}, nil
}

func lookupProcs(ctx context.Context, f *lookupFixture, cfg LookupConfig) ([]Result, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(len(cfg.Procs))*(cfg.Duration+time.Minute))
	defer cancel()
	var shm, base []Result
	procs := slices.Clone(cfg.Procs)
	slices.Sort(procs)
	for _, n := range procs {
		rr, err := lookupProcsRun(ctx, f, cfg, n)
		if err != nil {
			return append(shm, base...), err
		}
		r := func(kind, detail string, v float64) Result {
			return Result{Bench: BenchLookupProcs, Metric: ProcsMetric(n, kind), Detail: detail, Value: v, Unit: "ns/op"}
		}
		idx, name := r(KindAtomicMapResolved, lookupClientIndexDetail, rr.MapIndexNs), r(KindAtomicMap, lookupClientNameDetail, rr.MapNs)
		sh := r(KindShm, lookupShmHandleDetail, rr.ShmNs)
		shm = append(shm,
			sh.WithBaseline(idx.Metric, idx.Value).WithBaselineDetail(lookupClientIndexDetail),
			sh.WithBaseline(name.Metric, name.Value).WithBaselineDetail(lookupCrossLevelDetail))
		base = append(base, idx, name)
	}
	return append(shm, base...), nil
}

// lookupProcsRun runs n reader processes at once and returns their mean
// ns per lookup of each variant.
func lookupProcsRun(ctx context.Context, f *lookupFixture, cfg LookupConfig, n int) (lookupReaderResult, error) {
	var mean lookupReaderResult
	g, err := harness.Start(ctx, harness.Spec{Workload: wlLookupReader, N: n, Stderr: cfg.Stderr,
		Args: lookupArgs{Key: uint32(f.key), Duration: cfg.Duration}})
	if err != nil {
		return mean, err
	}
	defer g.Close()
	if err := g.Release(ctx); err != nil {
		return mean, err
	}
	res, err := g.Wait()
	if err != nil {
		return mean, err
	}
	for _, r := range res {
		var rr lookupReaderResult
		if err := r.Decode(&rr); err != nil {
			return mean, err
		}
		mean.ShmNs += rr.ShmNs
		mean.MapIndexNs += rr.MapIndexNs
		mean.MapNs += rr.MapNs
	}
	k := float64(len(res))
	mean.ShmNs, mean.MapIndexNs, mean.MapNs = mean.ShmNs/k, mean.MapIndexNs/k, mean.MapNs/k
	return mean, nil
}
