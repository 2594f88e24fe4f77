package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strconv"
	"time"

	as "github.com/aerospike/aerospike-client-go/v8"
	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// Bench names and kinds of RecordsBench's results.
const (
	// BenchRecordsGet and BenchRecordsPut are the Benches of the Get and
	// Put figures; Metric is ProcsMetric(P, KindRecordClient or
	// KindOfficialClient) followed by ", ops/s", ", p50", ", p99",
	// ", allocs/op" or ", client CPU/op".
	BenchRecordsGet = "records.get"
	BenchRecordsPut = "records.put"
	// BenchRecordsInfo is the Bench of the info requests per second the
	// simulated nodes received while the clients ran.
	BenchRecordsInfo = "records.info"
	// KindRecordClient marks figures of shmkit's record client on a
	// shared cluster view (one tender for all processes).
	KindRecordClient = "shmkit record client"
	// KindOfficialClient marks figures of the official Go client
	// (aerospike-client-go v8), every process tending for itself: the
	// baseline.
	KindOfficialClient = "official Go client"
)

// RecordsConfig configures RecordsBench. The zero value is the default.
type RecordsConfig struct {
	// Procs lists the process counts (default 1, 2, 4, 8).
	Procs []int
	// Nodes is the number of simulated nodes (default 3, RF 2).
	Nodes int
	// Keys is the number of distinct records (default 1000).
	Keys int
	// Duration is how long each process runs each of Put and Get per
	// configuration (default 2 s).
	Duration time.Duration
	// TendInterval is the tend interval of both clients (default 1 s,
	// both clients' default).
	TendInterval time.Duration
	// Rounds is the number of runs per client and process count, the
	// clients alternating (default 3); ops/s and info requests are the
	// medians over rounds, latencies and allocations over all of them.
	Rounds int
	// Stderr receives the worker processes' stderr (nil: discarded).
	Stderr io.Writer
}

func (c *RecordsConfig) defaults() {
	if len(c.Procs) == 0 {
		c.Procs = []int{1, 2, 4, 8}
	}
	if c.Nodes <= 0 {
		c.Nodes = 3
	}
	if c.Keys <= 0 {
		c.Keys = 1000
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Second
	}
	if c.TendInterval <= 0 {
		c.TendInterval = tend.DefaultTendInterval
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
}

const wlRecordsMember = "bench.records.member"

// RecordsWorkloads returns the worker workload of RecordsBench; add it to
// the registry given to harness.Dispatch.
func RecordsWorkloads() harness.Registry {
	return harness.Registry{wlRecordsMember: recordsMember}
}

// recordsArgs are the arguments of a RecordsBench worker.
type recordsArgs struct {
	Official bool
	Key      uint32 // the shared view's segment (shmkit)
	Seeds    []string
	Keys     int
	Duration time.Duration
	Interval time.Duration
}

// latHist is a latency histogram with buckets 5% wide (bucket i holds
// latencies in [1.05^i, 1.05^(i+1)) ns), small enough to send back in a
// result and merge.
type latHist struct {
	Counts []uint64
}

const histGrowth = 1.05

var logGrowth = math.Log(histGrowth)

func (h *latHist) add(d time.Duration) {
	i := 0
	if d > 1 {
		i = int(math.Log(float64(d)) / logGrowth)
	}
	for len(h.Counts) <= i {
		h.Counts = append(h.Counts, 0)
	}
	h.Counts[i]++
}

func (h *latHist) merge(o latHist) {
	for len(h.Counts) < len(o.Counts) {
		h.Counts = append(h.Counts, 0)
	}
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
}

// quantile returns the q-quantile in µs (the upper bound of its bucket).
func (h *latHist) quantile(q float64) float64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	if n == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= max(rank, 1) {
			return math.Pow(histGrowth, float64(i+1)) / 1e3
		}
	}
	return math.NaN()
}

// phaseResult is one worker's figures of one phase (Put or Get).
type phaseResult struct {
	Ops     uint64
	Errors  uint64
	Mallocs uint64
	Secs    float64
	CPUSecs float64 // the process's user+system CPU time over the phase
	Lat     latHist
}

// recordsResult is a RecordsBench worker's result.
type recordsResult struct {
	Put, Get phaseResult
}

// recordOps are the two operations of a phase, bound to one client.
type recordOps struct {
	put   func(i int) error
	get   func(i int) error
	close func()
}

// shmkitOps opens a shared view and a record client on it.
func shmkitOps(ctx context.Context, w *harness.Worker, a recordsArgs) (recordOps, error) {
	c, err := tend.Open(ctx, tend.Config{Seeds: a.Seeds, UseShm: true, ShmKey: arena.Key(a.Key), TendInterval: a.Interval, Logger: w.Log})
	if err != nil {
		return recordOps{}, err
	}
	err = waitUntil(ctx, "the shared view", func() bool {
		for pid := range uint32(partmap.Partitions) {
			d, _ := partmap.DigestForPartition(pid)
			if _, err := c.Master(tendtest.DefaultNamespace, d); err != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		c.Close()
		return recordOps{}, err
	}
	rc, err := record.NewClient(c, nil)
	if err != nil {
		c.Close()
		return recordOps{}, err
	}
	keys := make([]record.Key, a.Keys)
	for i := range keys {
		if keys[i], err = record.NewKey(tendtest.DefaultNamespace, "bench", i); err != nil {
			return recordOps{}, err
		}
	}
	bins := record.BinMap{"v": 0, "s": "abcdefgh"}
	return recordOps{
		put: func(i int) error {
			bins["v"] = i
			return rc.Put(context.Background(), nil, keys[i], bins)
		},
		get: func(i int) error {
			_, err := rc.Get(context.Background(), nil, keys[i])
			return err
		},
		close: func() { rc.Close(); c.Close() },
	}, nil
}

// officialOps connects the official client, tending for itself.
func officialOps(ctx context.Context, a recordsArgs) (recordOps, error) {
	host, port, err := net.SplitHostPort(a.Seeds[0])
	if err != nil {
		return recordOps{}, err
	}
	pn, err := strconv.Atoi(port)
	if err != nil {
		return recordOps{}, err
	}
	pol := as.NewClientPolicy()
	pol.TendInterval = a.Interval
	pol.Timeout = 10 * time.Second
	c, aerr := as.NewClientWithPolicyAndHost(pol, as.NewHost(host, pn))
	if aerr != nil {
		return recordOps{}, fmt.Errorf("bench: official client: %w", aerr)
	}
	keys := make([]*as.Key, a.Keys)
	for i := range keys {
		if keys[i], aerr = as.NewKey(tendtest.DefaultNamespace, "bench", i); aerr != nil {
			c.Close()
			return recordOps{}, aerr
		}
	}
	bins := as.BinMap{"v": 0, "s": "abcdefgh"}
	return recordOps{
		put: func(i int) error {
			bins["v"] = i
			if err := c.Put(nil, keys[i], bins); err != nil {
				return err
			}
			return nil
		},
		get: func(i int) error {
			if _, err := c.Get(nil, keys[i]); err != nil {
				return err
			}
			return nil
		},
		close: c.Close,
	}, nil
}

// runPhase runs op over the keys, round robin from a per-process offset,
// for d, and measures it.
func runPhase(d time.Duration, keys, offset int, op func(int) error) phaseResult {
	var r phaseResult
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0 := ms.Mallocs
	cpu0 := processCPU()
	start := time.Now()
	end := start.Add(d)
	for i := offset; ; i++ {
		t0 := time.Now()
		if !t0.Before(end) {
			break
		}
		if err := op(i % keys); err != nil {
			r.Errors++
		}
		r.Lat.add(time.Since(t0))
		r.Ops++
	}
	r.Secs = time.Since(start).Seconds()
	r.CPUSecs = processCPU() - cpu0
	runtime.ReadMemStats(&ms)
	r.Mallocs = ms.Mallocs - m0
	return r
}

// processCPU returns the user+system CPU time this process has used, in
// seconds: unlike wall time, it does not count the time other processes
// held the CPUs.
func processCPU() float64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// recordsMember opens its client, waits for the parent's release, runs
// the Put phase then the Get phase, and reports both.
func recordsMember(ctx context.Context, w *harness.Worker) (any, error) {
	var a recordsArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	var ops recordOps
	var err error
	if a.Official {
		ops, err = officialOps(ctx, a)
	} else {
		ops, err = shmkitOps(ctx, w, a)
	}
	if err != nil {
		return nil, err
	}
	defer ops.close()
	// One untimed pass so that every key exists and every connection is
	// open before the timed phases.
	for i := range a.Keys {
		if err := ops.put(i); err != nil {
			return nil, fmt.Errorf("bench: worker %d: warm-up put: %w", w.Index, err)
		}
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	off := w.Index * 7919
	var res recordsResult
	res.Put = runPhase(a.Duration, a.Keys, off, ops.put)
	res.Get = runPhase(a.Duration, a.Keys, off, ops.get)
	return res, nil
}

// recordsRun is one run's figures, merged over its processes.
type recordsRun struct {
	put, get phaseResult
	infoPerS float64
}

func mergePhase(dst *phaseResult, p phaseResult) {
	dst.CPUSecs += p.CPUSecs
	dst.Ops += p.Ops
	dst.Errors += p.Errors
	dst.Mallocs += p.Mallocs
	dst.Secs = max(dst.Secs, p.Secs)
	dst.Lat.merge(p.Lat)
}

// RecordsBench runs cfg.Procs processes doing Puts then Gets of small
// records (an integer and an 8-byte string bin, cfg.Keys keys) against a
// simulated cluster of cfg.Nodes nodes (RF 2) on loopback, one goroutine
// per process, with shmkit's record client on a shared view (one tender
// for all processes) and with the official Go client (each process
// tending for itself, the baseline), in the same run on the same cluster.
// Each configuration runs cfg.Rounds times per client, the clients
// alternating. Per configuration and operation it reports ops/s (all
// processes; the median over rounds), p50 and p99 latency in µs, and heap
// allocations per operation (runtime.MemStats.Mallocs over the phase,
// which includes the background work of the client: its tender or the
// shared view's), the client processes' CPU time per operation
// (getrusage: user+system, background work included; unlike wall time,
// not inflated by other load on the machine); and the info requests per
// second the nodes received.
// The caller's binary must dispatch RecordsWorkloads.
func RecordsBench(ctx context.Context, cfg RecordsConfig) ([]Result, error) {
	cfg.defaults()
	sim, err := tendtest.New(tendtest.Options{Nodes: cfg.Nodes, Namespaces: []tendtest.NamespaceSpec{{Name: tendtest.DefaultNamespace, ReplicationFactor: 2}}})
	if err != nil {
		return nil, err
	}
	defer sim.Close()
	procs := slices.Clone(cfg.Procs)
	slices.Sort(procs)
	var out []Result
	for _, p := range procs {
		// Per client (0 shmkit, 1 official): the rounds' figures. The
		// clients alternate which goes first, so that drift in the
		// machine's load falls on both.
		var rounds [2][]recordsRun
		for round := range cfg.Rounds {
			order := []int{0, 1}
			if round%2 == 1 {
				order = []int{1, 0}
			}
			for _, i := range order {
				r, err := recordsRunOne(ctx, sim, cfg, p, i == 1)
				if err != nil {
					return out, fmt.Errorf("bench: records with %d procs (official %v): %w", p, i == 1, err)
				}
				rounds[i] = append(rounds[i], r)
			}
		}
		mine, base := ProcsMetric(p, KindRecordClient), ProcsMetric(p, KindOfficialClient)
		detail := fmt.Sprintf("%d nodes RF 2, %d keys, %v per phase, 1 goroutine per process, median of %d rounds in alternating order", cfg.Nodes, cfg.Keys, cfg.Duration, cfg.Rounds)
		for _, bench := range []string{BenchRecordsPut, BenchRecordsGet} {
			var all [2]phaseResult // merged over rounds: latencies, allocations, errors
			var rate [2][]float64  // ops/s per round
			for i := range rounds {
				for _, r := range rounds[i] {
					ph := r.put
					if bench == BenchRecordsGet {
						ph = r.get
					}
					mergePhase(&all[i], ph)
					rate[i] = append(rate[i], float64(ph.Ops)/ph.Secs)
				}
			}
			allocs := func(r phaseResult) float64 { return float64(r.Mallocs) / float64(max(r.Ops, 1)) }
			cpu := func(r phaseResult) float64 { return r.CPUSecs * 1e6 / float64(max(r.Ops, 1)) }
			d := fmt.Sprintf("%s; errors %d (official %d)", detail, all[0].Errors, all[1].Errors)
			out = append(out,
				Result{Bench: bench, Metric: mine + ", ops/s", Detail: d, Value: quantile(rate[0], 0.5), Unit: "ops/s"}.WithBaseline(base+", ops/s", quantile(rate[1], 0.5)),
				Result{Bench: bench, Metric: mine + ", p50", Detail: d, Value: all[0].Lat.quantile(0.5), Unit: "µs"}.WithBaseline(base+", p50", all[1].Lat.quantile(0.5)),
				Result{Bench: bench, Metric: mine + ", p99", Detail: d, Value: all[0].Lat.quantile(0.99), Unit: "µs"}.WithBaseline(base+", p99", all[1].Lat.quantile(0.99)),
				Result{Bench: bench, Metric: mine + ", allocs/op", Detail: d, Value: allocs(all[0]), Unit: "allocs/op"}.WithBaseline(base+", allocs/op", allocs(all[1])),
				Result{Bench: bench, Metric: mine + ", client CPU/op", Detail: d + "; the client processes' user+system CPU time per operation, which the machine's other load does not inflate as it does wall time",
					Value: cpu(all[0]), Unit: "µs"}.WithBaseline(base+", client CPU/op", cpu(all[1])))
		}
		var info [2][]float64
		for i := range rounds {
			for _, r := range rounds[i] {
				info[i] = append(info[i], r.infoPerS)
			}
		}
		out = append(out, Result{Bench: BenchRecordsInfo, Metric: mine, Detail: fmt.Sprintf("tend interval %v, median of %d rounds", cfg.TendInterval, cfg.Rounds),
			Value: quantile(info[0], 0.5), Unit: "req/s"}.WithBaseline(base, quantile(info[1], 0.5)))
	}
	return out, nil
}

// recordsRunOne measures one configuration.
func recordsRunOne(ctx context.Context, sim *tendtest.Cluster, cfg RecordsConfig, p int, official bool) (_ recordsRun, err error) {
	var res recordsRun
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+4*cfg.Duration)
	defer cancel()
	a := recordsArgs{Official: official, Seeds: sim.Seeds(), Keys: cfg.Keys, Duration: cfg.Duration, Interval: cfg.TendInterval}
	if !official {
		key, err := freeTestKey("records")
		if err != nil {
			return res, err
		}
		a.Key = uint32(key)
		defer func() { err = errors.Join(err, removeSegment(key)) }()
	}
	g, err := harness.Start(ctx, harness.Spec{Workload: wlRecordsMember, N: p, Args: a, Stderr: cfg.Stderr})
	if err != nil {
		return res, err
	}
	defer g.Close()
	if err := g.Release(ctx); err != nil {
		return res, err
	}
	sim.ResetCounters()
	start := time.Now()
	results, err := g.Wait()
	if err != nil {
		return res, err
	}
	res.infoPerS = float64(sim.InfoRequests()) / time.Since(start).Seconds()
	for _, r := range results {
		var rr recordsResult
		if err := r.Decode(&rr); err != nil {
			return res, err
		}
		mergePhase(&res.put, rr.Put)
		mergePhase(&res.get, rr.Get)
	}
	return res, nil
}
