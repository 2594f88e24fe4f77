package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/failpoint"
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{
		"reader":      readerWorkload,
		"writer":      writerWorkload,
		"load-reader": loadReaderWorkload,
	})
	os.Exit(m.Run())
}

// wArgs configure the workers.
type wArgs struct {
	Base         uint32 // SysV base key (0: Dir)
	Dir          string
	Sprigs       int
	StageEntries int
	Stable       uint64 // keys [0, Stable) are present for the whole run
	Churn        uint64 // keys [Stable, Stable+Churn) are written and deleted
	Growth       uint64 // keys [Stable+Churn, +Growth) are added during the run
	Hot          uint64 // the first Hot churn keys get half of all operations
	Duration     time.Duration
	NoValidate   bool // the negative control: readers skip validation
	StopOnBad    bool // readers stop at their first violation
	Mode         string
	Storage      StorageID
	Seed         uint64
	Threshold    time.Duration // writer lease threshold
	NoFence      bool          // the negative control: the writer gate is off
	Op           string        // zombie mode: the one write (insert, delete, update, close)
	Key          uint64        // zombie mode: the key it writes
}

func (a *wArgs) config(fp *failpoint.Set) Config {
	cfg := Config{Sprigs: a.Sprigs, StageEntries: a.StageEntries, Logger: quiet(), Instance: 3, Namespace: 5,
		Failpoints: fp, Storage: a.Storage, noValidate: a.NoValidate, noFence: a.NoFence, LeaseThreshold: a.Threshold}
	if a.Base != 0 {
		cfg.Store = SysVAt(arena.Key(a.Base))
	} else {
		cfg.Store = Dir(a.Dir)
	}
	return cfg
}

// readStats is what a reader saw.
type readStats struct {
	Gets, Found, Scans, Scanned uint64
	Torn                        uint64 // records whose fields disagree with their digest and generation
	Foreign                     uint64 // a Get that returned another key's record
	StableMissing               uint64 // a stable key not found by Get
	ScanBad                     uint64 // scan: order, duplicate, wrong partition, stable key missing or repeated
	Corrupt, Contended          uint64 // typed errors
	First                       string // the first violation, for the log
}

func (s *readStats) violation(counter *uint64, format string, args ...any) {
	*counter++
	if s.First == "" {
		s.First = fmt.Sprintf(format, args...)
	}
}

func (s *readStats) bad() uint64 { return s.Torn + s.Foreign + s.StableMissing + s.ScanBad }

// stableByPartition maps a partition to its stable keys' digests.
func stableByPartition(n uint64) map[int]map[Digest]bool {
	out := map[int]map[Digest]bool{}
	for k := range n {
		d := digestOf(k)
		if out[d.Partition()] == nil {
			out[d.Partition()] = map[Digest]bool{}
		}
		out[d.Partition()][d] = true
	}
	return out
}

// readLoop gets and scans until ctx is done or d passed.
func readLoop(ctx context.Context, r interface {
	Get(Digest) (Record, bool, error)
	Scan(int, func(Record) bool) error
}, a *wArgs, seed uint64, d time.Duration) readStats {
	var s readStats
	rng := rand.New(rand.NewPCG(seed, 99))
	stable := stableByPartition(a.Stable)
	total := a.Stable + a.Churn + a.Growth
	errKind := func(err error) {
		switch {
		case errors.Is(err, ErrCorrupt):
			s.Corrupt++
		case errors.Is(err, ErrContended):
			s.Contended++
		default:
			s.violation(&s.ScanBad, "unexpected error %v", err)
		}
		if s.First == "" {
			s.First = err.Error()
		}
	}
	end := time.Now().Add(d)
	for i := 0; ctx.Err() == nil && (i&63 != 0 || time.Now().Before(end)); i++ {
		if a.StopOnBad && s.bad()+s.Corrupt > 0 {
			break
		}
		if i%64 == 63 {
			// A scan of a partition that holds stable keys.
			p := int(digestOf(rng.Uint64N(a.Stable)).Partition())
			seen := map[Digest]int{}
			var prev *Digest
			err := r.Scan(p, func(rec Record) bool {
				s.Scanned++
				if why := consistent(rec, false); why != "" {
					s.violation(&s.Torn, "scan: %s", why)
				}
				if rec.Digest.Partition() != p {
					s.violation(&s.ScanBad, "scan %d: record of partition %d", p, rec.Digest.Partition())
				}
				if prev != nil && string(prev[:]) >= string(rec.Digest[:]) {
					s.violation(&s.ScanBad, "scan %d: %x after %x", p, rec.Digest[:6], prev[:6])
				}
				dd := rec.Digest
				prev = &dd
				seen[rec.Digest]++
				return true
			})
			s.Scans++
			if err != nil {
				errKind(err)
				continue
			}
			for d := range stable[p] {
				if seen[d] != 1 {
					s.violation(&s.ScanBad, "scan %d: stable key %x seen %d times", p, d[:6], seen[d])
				}
			}
			continue
		}
		k := rng.Uint64N(total)
		if rng.IntN(2) == 0 {
			k = a.Stable + rng.Uint64N(a.Hot) // hot keys: most contention
		}
		want := digestOf(k)
		rec, ok, err := r.Get(want)
		s.Gets++
		if err != nil {
			errKind(err)
			continue
		}
		if !ok {
			if k < a.Stable {
				s.violation(&s.StableMissing, "stable key %d not found", k)
			}
			continue
		}
		s.Found++
		if rec.Digest != want {
			s.violation(&s.Foreign, "Get(key %d) returned the record of %x", k, rec.Digest[:6])
			continue
		}
		if why := consistent(rec, false); why != "" {
			s.violation(&s.Torn, "Get(key %d): %s", k, why)
		}
	}
	return s
}

func readerWorkload(ctx context.Context, w *harness.Worker) (any, error) {
	var a wArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	r, err := OpenReader(ctx, a.config(nil))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	return readLoop(ctx, r, &a, a.Seed+uint64(w.Index), a.Duration), nil
}

// churn runs the writer's mutation mix until stop: in-place updates of
// the churn keys (new generations), deletes and reinserts (entries freed
// and reused in other sprigs), and the growth keys (new stages).
func churn(ix *Index, a *wArgs, seed uint64, stop func(i int) bool) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	gen := map[uint64]uint16{}
	grown := uint64(0)
	for i := 0; !stop(i); i++ {
		var k uint64
		if rng.IntN(2) == 0 {
			k = a.Stable + rng.Uint64N(a.Hot)
		} else {
			k = a.Stable + rng.Uint64N(a.Churn)
		}
		switch {
		case i%97 == 0 && grown < a.Growth:
			k = a.Stable + a.Churn + grown
			grown++
			if err := ix.Put(recordOf(k, 1, false)); err != nil {
				return err
			}
		case rng.IntN(3) == 0:
			if _, err := ix.Delete(digestOf(k)); err != nil {
				return err
			}
			delete(gen, k)
		default:
			gen[k]++
			if err := ix.Put(recordOf(k, gen[k], false)); err != nil {
				return err
			}
		}
	}
	return nil
}

// writerWorkload is the writer in its own process. Modes:
//
//	churn:        open, put the stable keys, churn until killed
//	fill-clean:   open, put the stable keys, CloseClean(Storage)
//	attach-exit:  open (the mode is the result) and exit without writing
//	build:        open cold, bulk-build the stable keys, CloseClean(Storage)
func writerWorkload(ctx context.Context, w *harness.Worker) (any, error) {
	var a wArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	var rebuild RebuildFunc
	if a.Mode == "build" {
		// A cold start that fills the index with the stable keys in one
		// bulk build, then closes cleanly.
		rebuild = func(ctx context.Context, ix *Index) error {
			b, err := ix.NewBuilder(BuildOptions{SizeHint: int(a.Stable)})
			if err != nil {
				return err
			}
			for k := range a.Stable {
				if err := b.Add(0, recordOf(k, 1, false)); err != nil {
					return err
				}
			}
			_, err = b.Finish(ctx)
			return err
		}
	}
	ix, info, err := Open(ctx, a.config(w.Failpoints), rebuild)
	if err != nil {
		return nil, err
	}
	if a.Mode == "build" {
		return info.Mode.String(), ix.CloseClean(a.Storage)
	}
	if a.Mode == "attach-exit" {
		// A start that fails before its first write: no Close at all.
		return info.Mode.String(), nil
	}
	if a.Mode == "zombie" {
		if err := w.Barrier(ctx); err != nil {
			return nil, err
		}
		return zombie(ix, info, &a)
	}
	for k := range a.Stable {
		if err := ix.Put(recordOf(k, 1, false)); err != nil {
			return nil, err
		}
	}
	if a.Mode == "fill-clean" {
		return info.Mode.String(), ix.CloseClean(a.Storage)
	}
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	err = churn(ix, &a, a.Seed, func(int) bool { return ctx.Err() != nil })
	if errors.Is(err, ErrLeaseLost) {
		return "lease-lost", nil
	}
	return nil, err
}

func short() bool { return testing.Short() || raceEnabled }

// readersWhileWriting runs readers in other processes against a writer in
// this one and returns their stats.
func readersWhileWriting(t *testing.T, b backend, noValidate bool) []readStats {
	a := wArgs{Sprigs: 1, StageEntries: 1024, Stable: 3000, Churn: 1500, Growth: 1500, Hot: 8,
		Duration: 1500 * time.Millisecond, NoValidate: noValidate, Seed: 42}
	if b == bSysV {
		a.Base = uint32(sysvBase(t))
	} else {
		a.Dir = t.TempDir()
	}
	if short() {
		a.Duration = 500 * time.Millisecond
	}
	if noValidate {
		// Run until each reader is caught (bounded): how soon is chance.
		a.Duration, a.StopOnBad = 10*time.Second, true
	}
	cfg := a.config(nil)
	ix, _ := mustOpen(t, cfg, nil)
	defer ix.Close()
	for k := range a.Stable + a.Churn {
		if err := ix.Put(recordOf(k, 1, false)); err != nil {
			t.Fatal(err)
		}
	}
	stagesBefore := ix.v.meta.Load(mStages)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := harness.Start(ctx, harness.Spec{Workload: "reader", N: 2, Args: a, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var done sync.WaitGroup
	done.Add(1)
	var werr error
	var ops int
	var readersDone atomic.Bool
	go func() {
		defer done.Done()
		werr = churn(ix, &a, 1, func(i int) bool { ops = i; return readersDone.Load() })
	}()
	res, err := g.Wait()
	readersDone.Store(true)
	done.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	if !noValidate && ix.v.meta.Load(mStages) <= stagesBefore {
		t.Fatalf("no stage was added while the readers ran (%d stages)", stagesBefore)
	}
	var out []readStats
	for i, r := range res {
		var s readStats
		if err := r.Decode(&s); err != nil {
			t.Fatal(err)
		}
		t.Logf("reader %d: %+v", i, s)
		out = append(out, s)
	}
	t.Logf("writer: %d operations, %d stages (%d before), %d free entries", ops, ix.v.meta.Load(mStages), stagesBefore, ix.v.meta.Load(mFreeCount))
	if !noValidate {
		if err := ix.Check(); err != nil {
			t.Errorf("Check after the run: %v", err)
		}
	}
	return out
}

func TestReadersInOtherProcesses(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector cannot see SysV memory: TestReadersRaceHeap runs the protocol on heap segments")
	}
	for _, b := range []backend{bSysV, bDir} {
		t.Run(string(b), func(t *testing.T) {
			for i, s := range readersWhileWriting(t, b, false) {
				if s.bad() != 0 || s.Corrupt != 0 {
					t.Errorf("reader %d: %d torn, %d foreign, %d stable missing, %d scan violations, %d corrupt: first: %s",
						i, s.Torn, s.Foreign, s.StableMissing, s.ScanBad, s.Corrupt, s.First)
				}
				if s.Found == 0 || s.Scanned == 0 {
					t.Errorf("reader %d read nothing: %+v", i, s)
				}
			}
		})
	}
}

// TestReadersWithoutValidation is the negative control: the same readers
// with the version re-check turned off (in their own processes) must be
// caught by the same checks.
func TestReadersWithoutValidation(t *testing.T) {
	if raceEnabled {
		t.Skip("a reader without validation races by design; the race detector would flag the heap variant")
	}
	var bad uint64
	var first string
	for _, s := range readersWhileWriting(t, bSysV, true) {
		bad += s.bad() + s.Corrupt
		if s.bad()+s.Corrupt == 0 {
			t.Errorf("a reader without validation ran %d gets and %d scans and was never caught", s.Gets, s.Scans)
		}
		if first == "" {
			first = s.First
		}
	}
	if bad == 0 {
		t.Fatal("readers without validation saw no torn or foreign record: the check cannot tell")
	}
	t.Logf("without validation: %d violations, first: %s", bad, first)
}

// TestReadersRaceHeap runs the reader protocol on heap segments with
// goroutines, so the race detector checks it.
func TestReadersRaceHeap(t *testing.T) {
	cfg := testConfig(t, bHeap)
	a := wArgs{Sprigs: 1, StageEntries: 256, Stable: 2000, Churn: 1000, Growth: 1000, Hot: 8, Seed: 5}
	d := 400 * time.Millisecond
	if raceEnabled {
		a.Stable, a.Churn, a.Growth = 800, 400, 600
	}
	ix, _ := mustOpen(t, cfg, nil)
	defer ix.Close()
	for k := range a.Stable + a.Churn {
		if err := ix.Put(recordOf(k, 1, false)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := OpenReader(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	stats := make([]readStats, 2)
	for i := range stats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[i] = readLoop(context.Background(), r, &a, uint64(i), d)
		}()
	}
	stop := time.Now().Add(d)
	if err := churn(ix, &a, 3, func(i int) bool { return i&255 == 0 && time.Now().After(stop) }); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, s := range stats {
		t.Logf("reader %d: %+v", i, s)
		if s.bad() != 0 || s.Corrupt != 0 {
			t.Errorf("reader %d: first violation: %s", i, s.First)
		}
	}
	if err := ix.Check(); err != nil {
		t.Error(err)
	}
}

// stableModel is the model of keys [0, n) at generation 1.
func stableModel(n uint64) model {
	m := model{}
	for k := range n {
		m[k] = 1
	}
	return m
}

// TestWriterKilled kills a writer process mid-insert, mid-delete (named
// failpoints) and at a random point; the next start must be cold with
// reason unclean shutdown, take the dead writer's lease over, and leave an
// index that passes Check.
func TestWriterKilled(t *testing.T) {
	if raceEnabled {
		t.Skip("SysV memory: the race detector cannot see it; the heap tests cover the protocol")
	}
	cases := []struct{ name, failpoint string }{
		{"mid-insert", FailInsertMid + "=kill@40"},
		{"mid-delete", FailDeleteMid + "=kill@25"},
		{"random-1", ""},
		{"random-2", ""},
		{"random-3", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := sysvBase(t)
			a := wArgs{Base: uint32(base), Sprigs: 1, StageEntries: 1024, Stable: 2000, Churn: 500, Hot: 8, Mode: "churn", Seed: 11}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			spec := harness.Spec{Workload: "writer", N: 1, Args: a, Stderr: os.Stderr}
			if c.failpoint != "" {
				spec.Failpoints = map[int]string{0: c.failpoint}
			}
			g, err := harness.Start(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { g.Close() })
			if err := g.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if c.failpoint != "" {
				name, err := g.WaitFailpoint(ctx, 0)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("writer reached %s", name)
			} else {
				d, _, err := g.KillRandom(0, 200*time.Millisecond, rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)))
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("writer killed after %v", d)
			}
			if _, err := g.Wait(); err == nil {
				t.Fatal("the writer exited normally; it should have been killed")
			}
			cfg := a.config(nil)
			// What the dead writer left: a sprig still odd when killed at a
			// failpoint (Check on a reader sees it), and never a panic.
			r, err := OpenReader(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			cerr := r.Check()
			r.Close()
			// Damage never; a failpoint inside an update leaves it
			// interrupted (an odd sprig).
			var ie *InterruptedError
			if errors.Is(cerr, ErrCorrupt) || (cerr != nil && !errors.As(cerr, &ie)) {
				t.Errorf("Check of the killed writer's index: %v, want nothing or an interrupted update", cerr)
			}
			if c.failpoint != "" && (ie == nil || !containsAny(ie.Notes, "is odd")) {
				t.Errorf("Check of the index killed at %s: %v, want an odd sprig version", c.failpoint, cerr)
			}
			m := stableModel(a.Stable)
			ix := expectStart(t, cfg, m, Cold, ReasonUnclean, "not clean-shutdown")
			if err := ix.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func containsAny(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestCleanCloseAcrossProcesses: a writer process fills the index and
// closes it cleanly; this process starts warm with the same contents; a
// third process attaches and exits before writing (a failed start); the
// next start is still warm.
func TestCleanCloseAcrossProcesses(t *testing.T) {
	if raceEnabled {
		t.Skip("SysV memory: the race detector cannot see it; the heap tests cover the protocol")
	}
	for _, b := range []backend{bSysV, bDir} {
		t.Run(string(b), func(t *testing.T) {
			a := wArgs{Sprigs: 1, StageEntries: 1024, Stable: 3000, Storage: storageA}
			if b == bSysV {
				a.Base = uint32(sysvBase(t))
			} else {
				a.Dir = t.TempDir()
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			run := func(mode string) string {
				t.Helper()
				a.Mode = mode
				g, err := harness.Start(ctx, harness.Spec{Workload: "writer", N: 1, Args: a, Stderr: os.Stderr})
				if err != nil {
					t.Fatal(err)
				}
				defer g.Close()
				if err := g.Release(ctx); err != nil {
					t.Fatal(err)
				}
				res, err := g.Wait()
				if err != nil {
					t.Fatal(err)
				}
				var got string
				if err := res[0].Decode(&got); err != nil {
					t.Fatal(err)
				}
				return got
			}
			if got := run("fill-clean"); got != "cold" {
				t.Fatalf("first writer started %s, want cold", got)
			}
			cfg := a.config(nil)
			m := stableModel(a.Stable)
			ix := expectStart(t, cfg, m, Warm, ReasonNone, "")
			if err := ix.CloseClean(storageA); err != nil {
				t.Fatal(err)
			}
			if got := run("attach-exit"); got != "warm" {
				t.Fatalf("the attach-and-exit writer started %s, want warm", got)
			}
			ix = expectStart(t, cfg, m, Warm, ReasonNone, "")
			if err := ix.CloseClean(storageA); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPausedWriterReplaced stops a writer process (SIGSTOP) mid-churn;
// once its heartbeat is older than the threshold another writer takes the
// index over (cold: the stopped one had written); the stopped writer, when
// continued, gets ErrLeaseLost at its next write and the new index is
// untouched.
func TestPausedWriterReplaced(t *testing.T) {
	if raceEnabled {
		t.Skip("SysV memory: the race detector cannot see it")
	}
	base := sysvBase(t)
	a := wArgs{Base: uint32(base), Sprigs: 1, StageEntries: 1024, Stable: 500, Churn: 200, Hot: 8, Mode: "churn",
		Threshold: 100 * time.Millisecond, Seed: 3}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := harness.Start(ctx, harness.Spec{Workload: "writer", N: 1, Args: a, Stderr: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(0); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitStopped(ctx, 0); err != nil {
		t.Fatal(err)
	}
	cfg := a.config(nil)
	m := stableModel(a.Stable)
	// Refused while the heartbeat is fresh, taken over once it is stale.
	var ix *Index
	var info RestartInfo
	refused := 0
	for ix == nil {
		ix, info, err = Open(ctx, cfg, rebuildFrom(m, false))
		switch {
		case errors.Is(err, ErrWriterRunning):
			refused++
			time.Sleep(10 * time.Millisecond)
		case err != nil:
			t.Fatal(err)
		}
	}
	defer ix.Close()
	t.Logf("taken over after %d refusals: %v %v", refused, info.Mode, info.Reason)
	if info.Mode != Cold || info.Reason.Kind != ReasonUnclean {
		t.Fatalf("takeover start: %v %v, want cold, unclean", info.Mode, info.Reason)
	}
	if err := g.Cont(0); err != nil {
		t.Fatal(err)
	}
	res, err := g.Wait()
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := res[0].Decode(&got); err != nil || got != "lease-lost" {
		t.Fatalf("the continued writer reported %q (%v), want lease-lost", got, err)
	}
	verify(t, ix, m, false)
}

// TestKilledAtFirstWrite: a writer that started warm and is killed right
// after its first mutation invalidated the clean marker leaves the next
// start cold (unclean), where one killed before writing would leave it
// warm (TestCleanCloseAcrossProcesses).
func TestKilledAtFirstWrite(t *testing.T) {
	if raceEnabled {
		t.Skip("SysV memory: the race detector cannot see it")
	}
	a := wArgs{Base: uint32(sysvBase(t)), Sprigs: 1, StageEntries: 1024, Stable: 300, Churn: 10, Hot: 4, Mode: "churn"}
	cfg := a.config(nil)
	m := populated(t, cfg, a.Stable, StorageID{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := harness.Start(ctx, harness.Spec{Workload: "writer", N: 1, Args: a, Stderr: os.Stderr,
		Failpoints: map[int]string{0: FailMarkedDirty + "=kill"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	name, err := g.WaitFailpoint(ctx, 0)
	if err != nil || name != FailMarkedDirty {
		t.Fatalf("WaitFailpoint: %q %v", name, err)
	}
	if _, err := g.Wait(); err == nil {
		t.Fatal("the writer exited normally; it should have been killed")
	}
	for k := range a.Stable {
		m[k] = 1 // the killed writer's stable keys: what its storage would hold
	}
	expectStart(t, cfg, m, Cold, ReasonUnclean, "not clean-shutdown")
}
