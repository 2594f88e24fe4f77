package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/layout"
)

// IndexConfig configures IndexBench. The zero value is the default (full
// mode).
type IndexConfig struct {
	// Records lists the index sizes measured, one after the other, each on
	// its own random keys (default 1M and 10M).
	Records []int
	// Probes is the number of Gets (and floor loads) per timed round
	// (default 2^20); Rounds the rounds (default 3), the variants
	// interleaved round by round, the fastest round of each counting.
	Probes, Rounds int
	// Duration is how long the reader in another process gets while this
	// process writes (default 2 s).
	Duration time.Duration
	// StageEntries is the index's stage size in entries (default 2^18,
	// 12 MiB stages, doubled for record counts that would need more than
	// 200 of them: memory per record counts whole stages, and a stage of
	// the index's default 2^24 entries, 768 MiB, would be mostly the last
	// stage's empty tail at 10M records; at 2^18 that tail is at most
	// 1.3 B a record at 10M).
	StageEntries int
	// Sprigs is the index's index.Config.Sprigs, sprigs per partition
	// (0: the index's default, index.DefaultSprigs).
	Sprigs int
	// HugePages is the policy of the huge-page variant (default
	// arena.HugePagesRequire: the variant is skipped, with the reason,
	// where 2 MiB pages cannot be had; HugePagesOff skips it outright).
	HugePages arena.HugePagePolicy
	// hugeSet: HugePages was given (its zero value is HugePagesOff).
	hugeSet bool
	// TempDir holds bbolt's file (default os.TempDir()).
	TempDir string
	// Stderr receives the worker processes' stderr (nil: discarded).
	Stderr io.Writer
}

// WithHugePages returns c with the huge-page variant's policy set (Off
// skips the variant).
func (c IndexConfig) WithHugePages(p arena.HugePagePolicy) IndexConfig {
	c.HugePages, c.hugeSet = p, true
	return c
}

func (c *IndexConfig) defaults() {
	if len(c.Records) == 0 {
		c.Records = []int{1_000_000, 10_000_000}
	}
	if c.Probes <= 0 {
		c.Probes = 1 << 20
	}
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Second
	}
	if c.StageEntries <= 0 {
		c.StageEntries = 1 << 18
	}
	if !c.hugeSet {
		c.HugePages = arena.HugePagesRequire
	}
	if c.TempDir == "" {
		c.TempDir = os.TempDir()
	}
}

// BenchIndex is the Bench of IndexBench's results.
const BenchIndex = "index"

// Page kinds of the index and floor variants.
const (
	pages4K = "4 KiB pages"
	pages2M = "2 MiB pages"
)

// Baseline names.
const (
	idxBaseMap   = "Go map"
	idxBaseBolt  = "bbolt"
	idxBaseEntry = "entry size"

	idxGetDetail   = "index.Index.Get of a random key (SysV segments, one process), record checked; thread CPU time, best of rounds"
	idxPutDetail   = "index.Index.Put of every key into an empty index, in random digest order (stages added as it grows); process CPU time (GC included)"
	idxCrossDetail = "index.Reader.Get of a random key in another process (OpenReader) while this process Puts updates of random keys as fast as it can; median of 65536-Get chunks, reader's thread CPU time"
	idxMemDetail   = "all the index's segments (main segment with its sprig words and counts, 16 B per sprig: 256 KiB at the default 4 sprigs per partition, and every stage) ÷ records"
	idxFloorDetail = "one dependent random 8-byte load (pointer chasing over a random cycle of 64-byte lines) in a SysV segment as large as the index's segments"
	idxMapDetail   = "Go map[index.Digest]index.Record, no persistence: lookup (Get), inserts into an empty map, not presized (Put, process CPU time, GC included); memory: heap growth after GC ÷ records"
	idxBoltDetail  = "go.etcd.io/bbolt on a file in a temp dir, NoSync: Gets inside one long read transaction (key 20 B, value 28 B, decoded); Puts in write transactions of 100k random keys each; memory: file size ÷ records"
)

const wlIndexReader = "bench.index.reader"

// IndexWorkloads returns the worker workloads of IndexBench; add them to
// the registry given to harness.Dispatch.
func IndexWorkloads() harness.Registry {
	return harness.Registry{wlIndexReader: indexReader}
}

// splitmix64 is the key generator: deterministic, so a reader process
// makes the same keys from the seed.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// indexKey returns the digest of key i of the run with seed: 20 random
// bytes (random partition, sprig and order).
func indexKey(seed uint64, i int) index.Digest {
	var d index.Digest
	x := seed ^ uint64(i)*0x2545f4914f6cdd1d
	binary.LittleEndian.PutUint64(d[0:], splitmix64(x))
	binary.LittleEndian.PutUint64(d[8:], splitmix64(x+1))
	binary.LittleEndian.PutUint32(d[16:], uint32(splitmix64(x+2)))
	return d
}

// indexRecord is the record of key i.
func indexRecord(d index.Digest, i int, gen uint16) index.Record {
	return index.Record{Digest: d, Generation: gen, LastUpdate: 1_700_000_000_000 + uint64(i),
		FileID: uint16(i), Offset: uint64(i), Size: 128}
}

// indexProbes returns n probes: key numbers drawn at random from the n
// records, and their digests laid out in order, so that a timed loop
// reads them sequentially (no cache miss besides the lookup's own).
func indexProbes(seed uint64, records, n int) ([]int32, []index.Digest) {
	rng := rand.New(rand.NewPCG(seed^0xabc, 0x5eed))
	ks := make([]int32, n)
	ds := make([]index.Digest, n)
	for j := range ks {
		ks[j] = int32(rng.IntN(records))
		ds[j] = indexKey(seed, int(ks[j]))
	}
	return ks, ds
}

// errIndexMismatch: a Get returned no record or another key's record.
var errIndexMismatch = errors.New("bench: index: a Get returned no record or the wrong one")

// procCPU returns the CPU time of the whole process (every thread, GC
// included).
func procCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return time.Duration(monoNanos())
	}
	return time.Duration(ts.Nano())
}

// indexStore is one index of the benchmark: its SysV base key and handle.
type indexStore struct {
	base  arena.Key
	ix    *index.Index
	cfg   index.Config
	pages string
}

// freeIndexBase returns a test-class SysV base key whose low 8 bits are
// zero (index.SysVAt) and whose first 64 blocks are free.
func freeIndexBase(name string) (arena.Key, error) {
	for attempt := range uint16(64) {
		base := benchKey(name, attempt) &^ 0xff
		free := true
		for b := range 64 {
			if _, err := arena.StatOf(arena.SysV(base | arena.Key(b))); !errors.Is(err, arena.ErrNotFound) {
				free = false
				break
			}
		}
		if free {
			return base, nil
		}
	}
	return 0, fmt.Errorf("bench: no free SysV test base key for %s: %w", name, arena.ErrExists)
}

// openIndexStore creates an empty index on fresh SysV keys.
func openIndexStore(ctx context.Context, name string, cfg IndexConfig, huge arena.HugePagePolicy, pages string) (*indexStore, error) {
	base, err := freeIndexBase(name)
	if err != nil {
		return nil, err
	}
	s := &indexStore{base: base, pages: pages, cfg: index.Config{Store: index.SysVAt(base), StageEntries: cfg.StageEntries,
		Sprigs: cfg.Sprigs, HugePages: huge, Logger: quietLogger()}}
	ix, _, err := index.Open(ctx, s.cfg, nil)
	if err != nil {
		return nil, errors.Join(err, s.remove())
	}
	s.ix = ix
	return s, nil
}

// bytes sums the sizes of the index's segments.
func (s *indexStore) bytes() uint64 {
	var n uint64
	for b := range 256 {
		if st, err := arena.StatOf(arena.SysV(s.base | arena.Key(b))); err == nil {
			n += st.Size
		}
	}
	return n
}

// remove closes the index and removes its segments.
func (s *indexStore) remove() error {
	var errs []error
	if s.ix != nil {
		errs = append(errs, s.ix.Close())
		s.ix = nil
	}
	for b := range 256 {
		errs = append(errs, removeSegment(s.base|arena.Key(b)))
	}
	return errors.Join(errs...)
}

// fill Puts records 0..n-1 and returns the process CPU time per Put.
func (s *indexStore) fill(ctx context.Context, seed uint64, n int) (float64, error) {
	start := procCPU()
	for i := range n {
		if i&0xffff == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err := s.ix.Put(indexRecord(indexKey(seed, i), i, 1)); err != nil {
			return 0, err
		}
	}
	d := procCPU() - start
	if c := s.ix.Count(); c != uint64(n) {
		return 0, fmt.Errorf("bench: index: %d records after %d Puts (duplicate keys?)", c, n)
	}
	return float64(d.Nanoseconds()) / float64(n), nil
}

// timeIndexGets times len(ds) Gets on the thread's CPU clock.
func timeIndexGets(get func(index.Digest) (index.Record, bool, error), ks []int32, ds []index.Digest) (time.Duration, error) {
	start := threadCPU()
	for j := range ds {
		r, ok, err := get(ds[j])
		if err != nil {
			return 0, err
		}
		if !ok || r.Offset != uint64(ks[j]) {
			return 0, fmt.Errorf("%w: key %d: found %v, offset %d", errIndexMismatch, ks[j], ok, r.Offset)
		}
	}
	return threadCPU() - start, nil
}

// floor is the pointer-chasing baseline: a SysV segment whose 64-byte
// lines form one random cycle (each line's first word holds the word index
// of the next line).
type floor struct {
	seg   *arena.Segment
	key   arena.Key
	w     arena.Words
	pages string
}

func floorSpec(size uint64) layout.Spec {
	return layout.Spec{Kind: layout.KindTest, Fields: []layout.Field{{Name: "bench.floor", Value: size}},
		Sections: []layout.SectionSpec{{Name: "lines", Size: size}}}
}

// newFloor creates the floor region of size bytes with the given page
// policy and links its lines into one random cycle (Sattolo's shuffle).
func newFloor(ctx context.Context, name string, size uint64, huge arena.HugePagePolicy, pages string) (*floor, error) {
	size = max(size/64, 2) * 64
	seg, key, err := createBenchSegmentWith(ctx, name, arena.Options{Spec: floorSpec(size), HugePages: huge, Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	f := &floor{seg: seg, key: key, pages: pages}
	off, sz, err := seg.Section("lines")
	if err == nil {
		f.w, err = seg.Words(off, sz/8)
	}
	if err != nil {
		return nil, errors.Join(err, f.remove())
	}
	lines := sz / 64
	perm := make([]uint32, lines)
	for i := range perm {
		perm[i] = uint32(i)
	}
	rng := rand.New(rand.NewPCG(uint64(lines), 1))
	for i := len(perm) - 1; i > 0; i-- {
		j := rng.IntN(i) // Sattolo: j < i, so the permutation is one cycle
		perm[i], perm[j] = perm[j], perm[i]
	}
	for i := range perm {
		f.w.Store(uint64(perm[i])*8, uint64(perm[(i+1)%len(perm)])*8)
	}
	return f, nil
}

func (f *floor) remove() error {
	f.seg.Close()
	return removeSegment(f.key)
}

// chase follows n links and returns the thread CPU time.
func (f *floor) chase(n int, sink *uint64) time.Duration {
	i := *sink
	start := threadCPU()
	for range n {
		i = f.w.Load(i)
	}
	d := threadCPU() - start
	*sink = i
	return d
}

// boltStore is the bbolt baseline.
type boltStore struct {
	db   *bolt.DB
	dir  string
	path string
	tx   *bolt.Tx
	b    *bolt.Bucket
}

var boltBucket = []byte("index")

func boltValue(r *index.Record, v *[28]byte) {
	binary.LittleEndian.PutUint16(v[0:], r.Generation)
	binary.LittleEndian.PutUint32(v[2:], r.VoidTime)
	binary.LittleEndian.PutUint64(v[6:], r.LastUpdate)
	binary.LittleEndian.PutUint16(v[14:], r.FileID)
	binary.LittleEndian.PutUint64(v[16:], r.Offset)
	binary.LittleEndian.PutUint32(v[24:], r.Size)
}

func boltRecord(d index.Digest, v []byte) (index.Record, bool) {
	if len(v) != 28 {
		return index.Record{}, false
	}
	return index.Record{Digest: d, Generation: binary.LittleEndian.Uint16(v[0:]), VoidTime: binary.LittleEndian.Uint32(v[2:]),
		LastUpdate: binary.LittleEndian.Uint64(v[6:]), FileID: binary.LittleEndian.Uint16(v[14:]),
		Offset: binary.LittleEndian.Uint64(v[16:]), Size: binary.LittleEndian.Uint32(v[24:])}, true
}

// boltBatch is the number of Puts per bbolt write transaction. bbolt
// splits nodes only at commit, so a transaction of very many random
// inserts into a small tree is quadratic (a 1M-key first transaction did
// not finish in 4 minutes here); 100k keys per transaction keeps that
// bounded.
const boltBatch = 100_000

// newBolt creates the database and Puts n records in write transactions
// of boltBatch, returning the process CPU time per Put.
func newBolt(ctx context.Context, dir string, seed uint64, n int) (*boltStore, float64, error) {
	tmp, err := os.MkdirTemp(dir, "shmbench-bbolt-")
	if err != nil {
		return nil, 0, err
	}
	s := &boltStore{dir: tmp, path: filepath.Join(tmp, "index.db")}
	s.db, err = bolt.Open(s.path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, 0, errors.Join(err, s.remove())
	}
	batch := boltBatch
	start := procCPU()
	for lo := 0; lo < n; lo += batch {
		if err := ctx.Err(); err != nil {
			return nil, 0, errors.Join(err, s.remove())
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(boltBucket)
			if err != nil {
				return err
			}
			for i := lo; i < min(n, lo+batch); i++ {
				// bbolt keeps the key and value slices until the commit.
				d := indexKey(seed, i)
				r := indexRecord(d, i, 1)
				v := new([28]byte)
				boltValue(&r, v)
				if err := b.Put(d[:], v[:]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, 0, errors.Join(err, s.remove())
		}
	}
	per := float64((procCPU() - start).Nanoseconds()) / float64(n)
	// One long read transaction for the Gets.
	if s.tx, err = s.db.Begin(false); err != nil {
		return nil, 0, errors.Join(err, s.remove())
	}
	s.b = s.tx.Bucket(boltBucket)
	if s.b == nil {
		return nil, 0, errors.Join(fmt.Errorf("bench: bbolt: bucket missing"), s.remove())
	}
	return s, per, nil
}

func (s *boltStore) get(d index.Digest) (index.Record, bool, error) {
	r, ok := boltRecord(d, s.b.Get(d[:]))
	return r, ok, nil
}

func (s *boltStore) size() uint64 {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return uint64(fi.Size())
}

func (s *boltStore) remove() error {
	var errs []error
	if s.tx != nil {
		errs = append(errs, s.tx.Rollback())
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	return errors.Join(append(errs, os.RemoveAll(s.dir))...)
}

// newGoMap builds the Go map baseline and returns it with the process CPU
// time per insert and its heap bytes.
func newGoMap(seed uint64, n int) (map[index.Digest]index.Record, float64, uint64) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := procCPU()
	m := map[index.Digest]index.Record{}
	for i := range n {
		d := indexKey(seed, i)
		m[d] = indexRecord(d, i, 1)
	}
	per := float64((procCPU() - start).Nanoseconds()) / float64(n)
	runtime.GC()
	runtime.ReadMemStats(&after)
	return m, per, after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc)
}

// indexReaderArgs are the reader process's arguments.
type indexReaderArgs struct {
	Base         uint32
	StageEntries int
	Sprigs       int
	Seed         uint64
	Records      int
	Probes       int
	Duration     time.Duration
}

// indexReaderResult is what the reader reports: the median thread CPU
// time per Get over chunks, and the number of Gets.
type indexReaderResult struct {
	GetNs float64
	Gets  int
}

// indexReaderChunk is the number of Gets the reader times together.
const indexReaderChunk = 1 << 16

// indexReader opens the index for reading and gets random keys for
// a.Duration, checking every record.
func indexReader(ctx context.Context, w *harness.Worker) (any, error) {
	var a indexReaderArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	r, err := index.OpenReader(ctx, index.Config{Store: index.SysVAt(arena.Key(a.Base)), StageEntries: a.StageEntries,
		Sprigs: a.Sprigs, Logger: w.Log})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	ks, ds := indexProbes(a.Seed, a.Records, a.Probes)
	if err := w.Barrier(ctx); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var per []float64
	gets := 0
	end := time.Now().Add(a.Duration)
	for j := 0; len(per) == 0 || time.Now().Before(end); j = (j + indexReaderChunk) % (len(ds) - indexReaderChunk + 1) {
		d, err := timeIndexGets(r.Get, ks[j:j+indexReaderChunk], ds[j:j+indexReaderChunk])
		if err != nil {
			return nil, fmt.Errorf("reader in another process: %w", err)
		}
		per = append(per, float64(d.Nanoseconds())/indexReaderChunk)
		gets += indexReaderChunk
	}
	return indexReaderResult{GetNs: quantile(per, 0.5), Gets: gets}, nil
}

// crossProcess runs the reader in another process while this process
// Puts updates of random keys into s, and returns the reader's result and
// this process's Puts per second.
func crossProcess(ctx context.Context, s *indexStore, cfg IndexConfig, seed uint64, n int) (indexReaderResult, float64, error) {
	var rr indexReaderResult
	probes := max(cfg.Probes, indexReaderChunk)
	g, err := harness.Start(ctx, harness.Spec{Workload: wlIndexReader, N: 1, Stderr: cfg.Stderr,
		Args: indexReaderArgs{Base: uint32(s.base), StageEntries: cfg.StageEntries, Sprigs: cfg.Sprigs, Seed: seed, Records: n, Probes: probes, Duration: cfg.Duration}})
	if err != nil {
		return rr, 0, err
	}
	defer g.Close()
	if err := g.Release(ctx); err != nil {
		return rr, 0, err
	}
	var done atomic.Bool
	type waited struct {
		res []harness.Result
		err error
	}
	ch := make(chan waited, 1)
	go func() {
		res, err := g.Wait()
		done.Store(true)
		ch <- waited{res, err}
	}()
	rng := rand.New(rand.NewPCG(seed, 7))
	puts := 0
	start := time.Now()
	var perr error
	for !done.Load() {
		for range 1024 {
			i := rng.IntN(n)
			if perr = s.ix.Put(indexRecord(indexKey(seed, i), i, uint16(puts))); perr != nil {
				break
			}
			puts++
		}
		if perr != nil {
			break
		}
	}
	rate := float64(puts) / time.Since(start).Seconds()
	w := <-ch
	if err := errors.Join(perr, w.err); err != nil {
		return rr, 0, err
	}
	if len(w.res) != 1 {
		return rr, 0, fmt.Errorf("bench: index: %d reader results", len(w.res))
	}
	return rr, rate, w.res[0].Decode(&rr)
}

// indexVariant is one of the two page sizes: the index and the floor.
type indexVariant struct {
	pages   string
	store   *indexStore
	floor   *floor
	skipped string // why this page size was not measured
	put     float64
	get     time.Duration
	floorNs time.Duration
	cross   indexReaderResult
	rate    float64
}

// IndexBench measures the index against its baselines, for each size in
// cfg.Records on the same random keys (20-byte random digests):
//
//   - Get: index.Index.Get of random keys in this process (thread CPU
//     time, best of cfg.Rounds rounds of cfg.Probes Gets, every record
//     checked), with 4 KiB pages and, where the machine has them, 2 MiB
//     pages (cfg.HugePages); against the floor, one dependent random
//     8-byte load over a region as large as the index's segments with the
//     same page size (the variants interleaved round by round), a Go map
//     and bbolt (Gets inside one long read transaction);
//   - Put: every key Put into an empty index (process CPU time, GC
//     included), against inserts into an empty Go map and bbolt Puts in
//     write transactions of 100k keys (NoSync: neither side syncs to
//     disk);
//   - Get from another process (index.OpenReader) while this process
//     Puts updates of random keys, against the floor and the in-process
//     Get;
//   - memory per record: all index segments ÷ records, against the Go
//     map's heap growth and bbolt's file size.
//
// The caller's binary must dispatch IndexWorkloads. Every segment, file
// and temp directory is removed before it returns.
func IndexBench(ctx context.Context, cfg IndexConfig) ([]Result, error) {
	cfg.defaults()
	var out []Result
	for k, n := range cfg.Records {
		rs, err := indexBenchSize(ctx, cfg, n, 0x1dec5eed+uint64(k))
		out = append(out, rs...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// countLabel formats a record count: 1M, 10M, 100k, 12345.
func countLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func indexBenchSize(ctx context.Context, cfg IndexConfig, n int, seed uint64) (_ []Result, err error) {
	// At most 200 stages at two lines a record (256 is the limit).
	for uint64(cfg.StageEntries)*200 < uint64(n)*2 && cfg.StageEntries < index.MaxElems {
		cfg.StageEntries *= 2
	}
	t0 := time.Now()
	phase := func(what string) {
		if cfg.Stderr != nil {
			fmt.Fprintf(cfg.Stderr, "shmbench: index %s: %s done at %v\n", countLabel(n), what, time.Since(t0).Round(time.Millisecond))
		}
	}
	vs := []*indexVariant{{pages: pages4K}, {pages: pages2M}}
	var bs *boltStore
	defer func() {
		for _, v := range vs {
			if v.store != nil {
				err = errors.Join(err, v.store.remove())
			}
			if v.floor != nil {
				err = errors.Join(err, v.floor.remove())
			}
		}
		if bs != nil {
			err = errors.Join(err, bs.remove())
		}
	}()
	for i, v := range vs {
		huge := arena.HugePagesOff
		if v.pages == pages2M {
			if cfg.HugePages == arena.HugePagesOff {
				v.skipped = "huge pages off (-hugepages off)"
				continue
			}
			huge = cfg.HugePages
		}
		name := fmt.Sprintf("index%d", i)
		if v.store, err = openIndexStore(ctx, name, cfg, huge, v.pages); err == nil {
			v.put, err = v.store.fill(ctx, seed, n)
		}
		phase("index Puts, " + v.pages)
		if err == nil {
			v.floor, err = newFloor(ctx, "floor"+name, v.store.bytes(), huge, v.pages)
		}
		phase("floor, " + v.pages)
		if err != nil {
			if huge != arena.HugePagesOff && errors.Is(err, arena.ErrNoHugePages) {
				// The index and the floor take as many pages each.
				total, free := arena.HugePagesReserved()
				need := 2 * (vs[0].store.bytes()/arena.HugePageSize + 1)
				v.skipped = fmt.Sprintf("needs about %d free 2 MiB pages for the index and the floor (%d reserved, %d free): %v", need, total, free, err)
				err = nil
				continue
			}
			return nil, err
		}
	}
	m, mapPut, mapBytes := newGoMap(seed, n)
	phase("Go map")
	bs, boltPut, err := newBolt(ctx, cfg.TempDir, seed, n)
	if err != nil {
		return nil, err
	}
	phase("bbolt")
	debug.FreeOSMemory()

	ks, ds := indexProbes(seed, n, cfg.Probes)
	var mapBest, boltBest time.Duration
	mapGet := func(d index.Digest) (index.Record, bool, error) {
		r, ok := m[d]
		return r, ok, nil
	}
	better := func(best *time.Duration, d time.Duration) {
		if *best == 0 || d < *best {
			*best = d
		}
	}
	var sink uint64
	for range cfg.Rounds {
		for _, v := range vs {
			if v.skipped != "" {
				continue
			}
			d, err := bestOf(1, func() (time.Duration, error) { return v.floor.chase(cfg.Probes, &sink), nil })
			if err != nil {
				return nil, err
			}
			better(&v.floorNs, d)
			if d, err = bestOf(1, func() (time.Duration, error) { return timeIndexGets(v.store.ix.Get, ks, ds) }); err != nil {
				return nil, fmt.Errorf("index Get, %s: %w", v.pages, err)
			}
			better(&v.get, d)
		}
		d, err := bestOf(1, func() (time.Duration, error) { return timeIndexGets(mapGet, ks, ds) })
		if err != nil {
			return nil, fmt.Errorf("Go map: %w", err)
		}
		better(&mapBest, d)
		if d, err = bestOf(1, func() (time.Duration, error) { return timeIndexGets(bs.get, ks, ds) }); err != nil {
			return nil, fmt.Errorf("bbolt: %w", err)
		}
		better(&boltBest, d)
	}
	runtime.KeepAlive(sink)
	phase("Get rounds")
	for _, v := range vs {
		if v.skipped != "" {
			continue
		}
		if v.cross, v.rate, err = crossProcess(ctx, v.store, cfg, seed, n); err != nil {
			return nil, err
		}
	}

	phase("other process")
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(cfg.Probes) }
	sprigs := cfg.Sprigs
	if sprigs == 0 {
		sprigs = index.DefaultSprigs
	}
	// The sprig count decides the depth of a Get's walk and the sprig
	// table's share of the memory: every metric names it.
	label := fmt.Sprintf("%s, %d sprigs (%.2g per sprig)", countLabel(n), sprigs, float64(n)/float64(index.Partitions*sprigs))
	boltBytes := float64(bs.size()) / float64(n)
	mapPerRec := float64(mapBytes) / float64(n)
	runtime.KeepAlive(m)
	var out []Result
	r := func(metric, detail string, v float64, unit string) Result {
		return Result{Bench: BenchIndex, Metric: metric, Detail: detail, Value: v, Unit: unit}
	}
	for _, v := range vs {
		tag := label + ", " + v.pages
		floorName := "floor, " + v.pages
		floorDetail := idxFloorDetail + " (" + v.pages + ")"
		get := r("Get, "+tag, idxGetDetail, per(v.get), "ns/op")
		put := r("Put, "+tag, idxPutDetail, v.put, "ns/op")
		cross := r("Get, other process, "+tag, fmt.Sprintf("%s (%.3g Puts/s meanwhile)", idxCrossDetail, v.rate), v.cross.GetNs, "ns/op")
		mem := Result{}
		if v.store != nil {
			mem = r("bytes per record, "+tag, idxMemDetail, float64(v.store.bytes())/float64(n), "B")
		} else {
			mem = r("bytes per record, "+tag, idxMemDetail, 0, "B")
		}
		rows := []Result{
			get.WithBaseline(floorName, per(v.floorNs)).WithBaselineDetail(floorDetail),
			get.WithBaseline(idxBaseMap, per(mapBest)).WithBaselineDetail(idxMapDetail),
			get.WithBaseline(idxBaseBolt, per(boltBest)).WithBaselineDetail(idxBoltDetail),
			put.WithBaseline(idxBaseMap, mapPut).WithBaselineDetail(idxMapDetail),
			put.WithBaseline(idxBaseBolt, boltPut).WithBaselineDetail(idxBoltDetail),
			cross.WithBaseline(floorName, per(v.floorNs)).WithBaselineDetail(floorDetail),
			cross.WithBaseline("Get, this process", per(v.get)).WithBaselineDetail(idxGetDetail),
			mem.WithBaseline(idxBaseEntry, index.EntrySize).WithBaselineDetail(fmt.Sprintf("one %d-byte entry per record, nothing else", index.EntrySize)),
			mem.WithBaseline(idxBaseMap, mapPerRec).WithBaselineDetail(idxMapDetail),
			mem.WithBaseline(idxBaseBolt, boltBytes).WithBaselineDetail(idxBoltDetail),
		}
		if v.pages == pages2M {
			fl := r(floorName+", "+label, floorDetail, per(v.floorNs), "ns/op")
			rows = append(rows, fl.WithBaseline("floor, "+pages4K, per(vs[0].floorNs)).WithBaselineDetail(idxFloorDetail+" ("+pages4K+")"))
		}
		if v.skipped != "" {
			// One row says why, not every figure of the page size.
			rows = []Result{r("Get, "+tag, idxGetDetail, 0, "ns/op").WithSkipped(v.skipped)}
		}
		out = append(out, rows...)
	}
	return out, nil
}
