package tend_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/procid"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

const (
	interval  = 50 * time.Millisecond
	threshold = 300 * time.Millisecond
	waitLimit = 20 * time.Second
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{"member": member, "churner": churner})
	os.Exit(m.Run())
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// memberArgs configures one worker process.
type memberArgs struct {
	Key        uint32
	Seeds      []string
	Namespaces []string
	Dir, Tag   string
	FlipPIDNS  bool
	NoScrub    bool // tend.Config.NoScrub: the negative control of repairs
}

// status is what a worker reports, in a file, every few milliseconds.
type status struct {
	Pid          int
	Role         tend.Role
	OwnerPID     int
	Takeovers    []tend.Takeover
	Generation   uint64
	Hash         map[string]string
	Lookups      int
	LookupErrors int
	Closed       bool
	// Counters from tend.Stats, and the log records the process emitted
	// (Info and above).
	TakeoverCount, StepDownCount, Repairs, Moves uint64
	LogRecords                                   int64
	// SegID is the SysV id of the segment the view is on now.
	SegID int
}

// countingHandler counts the records a handler emits.
type countingHandler struct {
	slog.Handler
	n *atomic.Int64
}

// Handle implements slog.Handler.
func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.n}
}

// WithGroup implements slog.Handler.
func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.n}
}

// masterHash summarizes the master of every partition of a namespace.
func masterHash(master func(pid uint32) string) string {
	h := sha256.New()
	for pid := range uint32(partmap.Partitions) {
		fmt.Fprintf(h, "%s;", master(pid))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func viewHash(c *tend.Cluster, ns string) string {
	s, err := c.Snapshot(ns)
	if err != nil {
		return ""
	}
	return masterHash(func(pid uint32) string {
		if n := s.Node(pid, 0); n != nil {
			return n.Name
		}
		return ""
	})
}

func simHash(t testing.TB, sim *tendtest.Cluster, ns string) string {
	t.Helper()
	return masterHash(func(pid uint32) string { return mustMaster(t, sim, ns, pid) })
}

func member(ctx context.Context, w *harness.Worker) (any, error) {
	var a memberArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	logs := new(atomic.Int64)
	cfg := tend.Config{
		Seeds: a.Seeds, UseShm: true, ShmKey: arena.Key(a.Key),
		TendInterval: interval, TakeoverThreshold: threshold,
		Logger: slog.New(countingHandler{w.Log.Handler(), logs}), Failpoints: w.Failpoints,
		NoScrub: a.NoScrub,
	}
	if a.FlipPIDNS {
		self, err := procid.Self()
		if err != nil {
			return nil, err
		}
		self.PIDNS ^= 1 // a PID namespace nobody else can see into
		cfg.Self = self
	}
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	if err := w.Barrier(ctx); err != nil {
		c.Close()
		return nil, err
	}
	st := status{Pid: os.Getpid()}
	path := filepath.Join(a.Dir, fmt.Sprintf("%s-%d.json", a.Tag, w.Index))
	d := partmap.StringKeyDigest("demo", "myTestKey")
	ready := false
	for {
		s := c.Stats()
		st.Role, st.OwnerPID, st.Takeovers, st.Generation = s.Role, s.OwnerPID, s.Takeovers, s.MapGeneration
		st.TakeoverCount, st.StepDownCount, st.Repairs, st.Moves = s.TakeoverCount, s.StepDownCount, s.Repairs, s.Moves
		st.LogRecords = logs.Load()
		if ss, err := c.Map().Segment().Stat(); err == nil {
			st.SegID = ss.ID
		}
		st.Hash = map[string]string{}
		for _, ns := range a.Namespaces {
			st.Hash[ns] = viewHash(c, ns)
		}
		_, err := c.Master(a.Namespaces[0], d)
		if err == nil {
			ready = true
		}
		if ready {
			st.Lookups++
			if err != nil {
				st.LookupErrors++
				w.Log.Error("lookup failed", "err", err)
			}
		}
		if ctx.Err() != nil {
			err := c.Close()
			st.Closed = err == nil
			writeStatus(path, st)
			return st, err
		}
		writeStatus(path, st)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func writeStatus(path string, st status) {
	b, _ := json.Marshal(st)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, path)
	}
}

func readStatus(dir, tag string, i int) (status, bool) {
	var st status
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s-%d.json", tag, i)))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, true
}

// testKey returns an unused SysV test key; the segment is removed at cleanup.
func testKey(t testing.TB) arena.Key { return arenatest.SysVKey(t) }

func newSim(t testing.TB, opts tendtest.Options) *tendtest.Cluster {
	t.Helper()
	sim, err := tendtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startGroup(t testing.TB, n int, a memberArgs) *harness.Group {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	var stderr io.Writer
	if testing.Verbose() {
		stderr = os.Stderr
	}
	g, err := harness.Start(ctx, harness.Spec{Workload: "member", N: n, Args: a, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

// record is one captured log record: its message and its attributes
// (those added with Logger.With included), formatted with fmt.Sprint.
type record struct {
	Msg   string
	Attrs map[string]string
}

// matches reports whether rec has message msg and every key=value of match
// among its attributes.
func (rec record) matches(msg string, match map[string]string) bool {
	if rec.Msg != msg {
		return false
	}
	for k, v := range match {
		if rec.Attrs[k] != v {
			return false
		}
	}
	return true
}

// recorder is a slog.Handler that keeps every record, for tests that
// assert what was logged and in which order.
type recorder struct {
	mu    *sync.Mutex
	recs  *[]record
	from  *int // find and index skip the records before (see reset)
	attrs []slog.Attr
}

func newRecorder() *recorder {
	return &recorder{mu: new(sync.Mutex), recs: new([]record), from: new(int)}
}

// dumpOnFailure logs every record r kept if the test failed.
func (r *recorder) dumpOnFailure(t testing.TB, name string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, rec := range *r.recs {
			t.Logf("%s: %s %v", name, rec.Msg, rec.Attrs)
		}
	})
}

func (r *recorder) logger() *slog.Logger { return slog.New(r) }

// Enabled implements slog.Handler: every level is kept.
func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	out := record{Msg: rec.Message, Attrs: map[string]string{}}
	for _, a := range r.attrs {
		out.Attrs[a.Key] = fmt.Sprint(a.Value.Any())
	}
	rec.Attrs(func(a slog.Attr) bool {
		out.Attrs[a.Key] = fmt.Sprint(a.Value.Any())
		return true
	})
	r.mu.Lock()
	*r.recs = append(*r.recs, out)
	r.mu.Unlock()
	return nil
}

// WithAttrs implements slog.Handler.
func (r *recorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), attrs...)
	return &c
}

// WithGroup implements slog.Handler (groups are flattened).
func (r *recorder) WithGroup(string) slog.Handler { return r }

// find returns the records with message msg whose attributes include
// every key=value of match, in logging order.
func (r *recorder) find(msg string, match map[string]string) []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
	for _, rec := range (*r.recs)[*r.from:] {
		if rec.matches(msg, match) {
			out = append(out, rec)
		}
	}
	return out
}

// reset makes find and index ignore the records kept so far.
func (r *recorder) reset() {
	r.mu.Lock()
	*r.from = len(*r.recs)
	r.mu.Unlock()
}

// index returns the position in the log of the first record with message
// msg matching match, or -1.
func (r *recorder) index(msg string, match map[string]string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, rec := range (*r.recs)[*r.from:] {
		if rec.matches(msg, match) {
			return *r.from + i
		}
	}
	return -1
}

// heapLocation returns a heap segment location for in-process instances
// sharing one view (the race detector sees through it); it is removed at
// cleanup.
func heapLocation(t testing.TB) arena.Location {
	t.Helper()
	store := arena.NewHeapStore()
	loc := store.At("cluster")
	t.Cleanup(func() {
		arena.Remove(loc, arena.RemoveOptions{Force: true})
		if store.Len() != 0 {
			t.Errorf("%d heap segments left", store.Len())
		}
	})
	return loc
}

// readerStats counts the lookups of a reader goroutine.
type readerStats struct {
	Lookups, Errors, Wrong int
	First                  string // first failure
}

// startReaders looks up, in one goroutine per cluster, the master of
// every partition of ns over and over and compares it with want (the
// master names, by partition), until the returned stop is called; stop
// returns each reader's counts.
func startReaders(cs []*tend.Cluster, ns string, want []string) (stop func() []readerStats) {
	var digests [partmap.Partitions]partmap.Digest
	for pid := range uint32(partmap.Partitions) {
		digests[pid], _ = partmap.DigestForPartition(pid) // pid is in range
	}
	done := make(chan struct{})
	out := make([]readerStats, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			st := &out[i]
			for {
				for pid, d := range digests {
					n, err := c.Master(ns, d)
					st.Lookups++
					switch {
					case err != nil:
						st.Errors++
						if st.First == "" {
							st.First = err.Error()
						}
					case n.Name != want[pid]:
						st.Wrong++
						if st.First == "" {
							st.First = fmt.Sprintf("partition %d: %s, want %s", pid, n.Name, want[pid])
						}
					}
				}
				// A pause between passes: spinning readers on every core
				// would starve the tender (an owner starved of CPU steps
				// down, by design).
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
			}
		})
	}
	return func() []readerStats {
		close(done)
		wg.Wait()
		return out
	}
}

// simMasters returns the sim's expected master of every partition of ns.
func simMasters(t testing.TB, sim *tendtest.Cluster, ns string) []string {
	t.Helper()
	out := make([]string, partmap.Partitions)
	for pid := range uint32(partmap.Partitions) {
		out[pid] = mustMaster(t, sim, ns, pid)
	}
	return out
}

// checkSegment attaches the cluster view at loc and runs partmap's deep
// check on it (what shmctl check does).
func checkSegment(t testing.TB, loc arena.Location) {
	t.Helper()
	m, err := partmap.Open(context.Background(), loc, partmap.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Check(); err != nil {
		t.Errorf("deep check of the segment: %v", err)
	}
}
