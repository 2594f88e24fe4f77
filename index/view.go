package index

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmkit/shmkit/arena"
)

// view is the read side shared by Index (the writer) and Reader: the
// attached main segment, word views of its sections, and the stages this
// process has attached so far.
type view struct {
	cfg        Config
	main       *arena.Segment
	meta       arena.Words
	sprigs     arena.Words
	counts     arena.Words // entries per sprig table (the writer's)
	alloc      arena.Words // free list heads per size class
	parts      arena.Words
	stageElems uint64
	shift      uint // sprig bits → sprig number: >> shift
	sb         uint // log2(Sprigs): the sprig bits dropped from a home key

	stages  [MaxStages]atomic.Pointer[arena.Words] // entries of each attached stage
	stageMu sync.Mutex                             // attaching a stage
	segs    [MaxStages]*arena.Segment              // stage segments (1…), under stageMu
	closed  atomic.Bool
	// life: reads hold it shared, detaching holds it exclusively, so no
	// read runs on unmapped memory.
	life sync.RWMutex

	retryBudget time.Duration
}

// readBudget bounds how long a read retries a sprig that keeps changing.
const readBudget = 250 * time.Millisecond

func (v *view) init(cfg Config, main *arena.Segment) error {
	v.cfg = cfg
	v.main = main
	v.stageElems = uint64(cfg.StageEntries)
	v.shift = cfg.sprigShift()
	v.sb = 28 - v.shift
	v.retryBudget = readBudget
	var err error
	sec := func(name string, words uint64) (arena.Words, error) {
		off, size, err := main.Section(name)
		if err != nil {
			return arena.Words{}, err
		}
		if size < words*8 {
			return arena.Words{}, corrupt("section %s of %s has %d bytes, want %d", name, main.Location(), size, words*8)
		}
		return main.Words(off, words)
	}
	if v.meta, err = sec(secMeta, metaWords); err != nil {
		return err
	}
	if v.sprigs, err = sec(secSprigs, uint64(Partitions*cfg.Sprigs)); err != nil {
		return err
	}
	if v.counts, err = sec(secCounts, uint64(Partitions*cfg.Sprigs)); err != nil {
		return err
	}
	if v.alloc, err = sec(secAlloc, allocWords); err != nil {
		return err
	}
	if v.parts, err = sec(secParts, Partitions*partWords); err != nil {
		return err
	}
	st0, err := sec(secStage0, v.stageElems*entryWords)
	if err != nil {
		return err
	}
	v.stages[0].Store(&st0)
	return nil
}

// sprig returns the sprig record number of d.
func (v *view) sprig(d *Digest) uint64 {
	return uint64(d.Partition())*uint64(v.cfg.Sprigs) + uint64(d.sprigBits()>>v.shift)
}

// sprigOf returns the sprig record number of a digest whose word 0 is k0
// (the partition and sprig bits are all in the first 5 bytes).
func (v *view) sprigOf(k0 uint64) uint64 {
	var d Digest
	binary.BigEndian.PutUint64(d[:8], k0)
	return v.sprig(&d)
}

// entries returns the word view holding h and the word number of its
// entry, attaching h's stage if this process has not yet. Every handle
// read from shared memory goes through here: it is checked against the
// published stage count and the stage capacity.
func (v *view) entries(h Handle) (arena.Words, uint64, error) {
	if h.IsNull() || h > MaxHandle {
		return arena.Words{}, 0, corrupt("handle %d out of range", uint64(h))
	}
	st, el := h.Stage(), h.Elem()
	if el >= v.stageElems {
		return arena.Words{}, 0, corrupt("handle %s: element beyond the stage's %d entries", h, v.stageElems)
	}
	if w := v.stages[st].Load(); w != nil {
		return *w, el * entryWords, nil
	}
	w, err := v.attachStage(st)
	if err != nil {
		return arena.Words{}, 0, err
	}
	return *w, el * entryWords, nil
}

// attachStage attaches stage st (≥ 1) if the meta says it exists.
func (v *view) attachStage(st uint64) (*arena.Words, error) {
	if n := v.meta.Load(mStages); st >= n || n > MaxStages {
		return nil, corrupt("handle in stage %d but the index has %d stages", st, n)
	}
	v.stageMu.Lock()
	defer v.stageMu.Unlock()
	if w := v.stages[st].Load(); w != nil {
		return w, nil
	}
	if v.closed.Load() {
		return nil, fmt.Errorf("index: attach stage %d: %w", st, ErrClosed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seg, err := arena.Open(ctx, v.cfg.Store.block(&v.cfg, int(st)), v.cfg.segOptions(v.cfg.stageSpec(int(st))))
	if err != nil {
		return nil, fmt.Errorf("index: stage %d is listed in the meta but cannot be attached (damage, or the index was discarded: see Reader.Stale): %w: %w", st, ErrCorrupt, err)
	}
	w, err := stageWords(seg, v.stageElems)
	if err != nil {
		seg.Close()
		return nil, err
	}
	v.segs[st] = seg
	v.stages[st].Store(&w)
	return &w, nil
}

func stageWords(seg *arena.Segment, elems uint64) (arena.Words, error) {
	off, size, err := seg.Section(secStage)
	if err != nil {
		return arena.Words{}, err
	}
	if size < elems*EntrySize {
		return arena.Words{}, corrupt("stage %s has %d bytes of entries, want %d", seg.Location(), size, elems*EntrySize)
	}
	return seg.Words(off, elems*entryWords)
}

// closeStages detaches every stage segment.
func (v *view) closeStages() {
	v.stageMu.Lock()
	defer v.stageMu.Unlock()
	for i := 1; i < MaxStages; i++ {
		if v.segs[i] != nil {
			v.segs[i].Close()
			v.segs[i] = nil
		}
		v.stages[i].Store(nil)
	}
}

// retrier paces the retries of a read: a few spins, then yields, bounded
// by the retry budget.
type retrier struct {
	n     int
	start time.Time
}

func (r *retrier) again(budget time.Duration) bool {
	r.n++
	if r.n < 4 {
		return true
	}
	if r.start.IsZero() {
		r.start = time.Now()
	}
	runtime.Gosched()
	return r.n&15 != 0 || time.Since(r.start) < budget
}

// stable loads sprig sp's word and the wrap count for a validated read.
func (v *view) stable(sp uint64) (word, wraps uint64) {
	wraps = v.meta.Load(mWraps)
	return v.sprigs.Load(sp), wraps
}

// unchanged reports whether sprig sp is as stable() found it: the same
// word (version, class and table) and no version wrapped meanwhile.
func (v *view) unchanged(sp, word, wraps uint64) bool {
	return v.cfg.noValidate || v.sprigs.Load(sp) == word && v.meta.Load(mWraps) == wraps
}

// homeKey returns the home key of a digest whose word 0 is w0: the bits
// after its partition and sprig bits, in digest byte order, as a uint64
// (the sprig bits, then digest bytes 5–7, shifted past the sprig's own
// bits). Within a sprig it is monotone in the digest, so homes (homeOf)
// are too.
func (v *view) homeKey(w0 uint64) uint64 {
	return (keySprigBits(w0)<<36 | (w0&0xffffff)<<12) << v.sb
}

// table returns the word view and first word of the table a sprig word
// names and its lines, checking the handle, the class and that the run
// lies inside one published stage. Every table handle read from shared
// memory goes through here.
func (v *view) table(word uint64) (arena.Words, uint64, uint64, error) {
	h, c := sprigTable(word), sprigClass(word)
	if c >= numClasses {
		return arena.Words{}, 0, 0, corrupt("sprig table %s of size class %d: classes are 0–%d", h, c, numClasses-1)
	}
	n := classLines(c)
	ws, i, err := v.entries(h)
	if err != nil {
		return arena.Words{}, 0, 0, err
	}
	if h.Elem()+n > v.stageElems {
		return arena.Words{}, 0, 0, corrupt("sprig table %s of %d lines runs past the end of its stage (%d lines)", h, n, v.stageElems)
	}
	return ws, i, n, nil
}

// get looks d up. The probe copies words with atomic loads and reads at
// most the table's lines, each in range; what it found counts only if
// the sprig's version was even before and unchanged after.
func (v *view) get(d Digest) (Record, bool, error) {
	v.life.RLock()
	defer v.life.RUnlock()
	if v.closed.Load() {
		return Record{}, false, ErrClosed
	}
	w0, w1, w2 := d.words()
	sp := v.sprig(&d)
	x := v.homeKey(w0)
	var r retrier
	for {
		word, wraps := v.stable(sp)
		if sprigStable(word) {
			e, found, err := v.probe(word, x, w0, w1, w2)
			if v.unchanged(sp, word, wraps) {
				if err != nil {
					return Record{}, false, err
				}
				if !found {
					return Record{}, false, nil
				}
				return e.recordOf(d), true, nil
			}
		}
		if !r.again(v.retryBudget) {
			return Record{}, false, fmt.Errorf("index: get: sprig %d of partition %d: version odd or changing for %v: %w",
				sp%uint64(v.cfg.Sprigs), d.Partition(), v.retryBudget, ErrContended)
		}
	}
}

// probe looks for digest w0..w2 (home key x) in the table of sprig word
// word: from its home line forward until the digest, a larger one, an
// empty line or the table's end.
func (v *view) probe(word, x, w0, w1, w2 uint64) (entry, bool, error) {
	var e entry
	if sprigTable(word).IsNull() {
		return e, false, nil
	}
	ws, i, n, err := v.table(word)
	if err != nil {
		return e, false, err
	}
	for j := homeOf(x, n); j < n; j++ {
		// Word 0 alone orders most lines: a table's empty lines are all
		// zero, so a nonzero word 0 other than the digest's is a live
		// entry before or after it (under a stable version; a torn read is
		// rejected by the caller's version check). Only a line whose word
		// 0 equals the digest's, or is zero, is read whole.
		if k0 := ws.Load(i + j*entryWords); k0 != w0 && k0 != 0 {
			if k0 > w0 {
				return e, false, nil
			}
			continue
		}
		ws.LoadN(i+j*entryWords, e[:])
		fl := e.flags()
		if fl&flagLive == 0 {
			return e, false, nil
		}
		k0, k1, k2 := e[wDigest0], e[wDigest1], e[wDigest2]&^0xffffffff
		switch {
		case w0 == k0 && w1 == k1 && w2 == k2:
			if fl&^knownFlags != 0 {
				return e, false, corrupt("entry of sprig table %s line %d has flags %#x", sprigTable(word), j, fl)
			}
			return e, true, nil
		case less(w0, w1, w2, k0, k1, k2):
			return e, false, nil
		}
	}
	return e, false, nil
}

// scanSprig copies the entries of sprig sp in digest order into buf
// (reused), validated against the sprig's version.
func (v *view) scanSprig(sp uint64, buf []Record) ([]Record, error) {
	var r retrier
	for {
		word, wraps := v.stable(sp)
		if sprigStable(word) {
			out, err := v.collect(sp, word, buf[:0])
			if v.unchanged(sp, word, wraps) {
				return out, err
			}
			buf = out
		}
		if !r.again(v.retryBudget) {
			return buf[:0], fmt.Errorf("index: scan: sprig record %d: version odd or changing for %v: %w", sp, v.retryBudget, ErrContended)
		}
	}
}

// collect copies the entries of sprig sp's table (sprig word word) line
// by line. Digests must come out strictly increasing and each must belong
// to sp; the walk is bounded by the table's lines.
func (v *view) collect(sp, word uint64, out []Record) ([]Record, error) {
	if sprigTable(word).IsNull() {
		return out, nil
	}
	ws, i, n, err := v.table(word)
	if err != nil {
		return out, err
	}
	var e entry
	var p0, p1, p2 uint64
	first := true
	for j := range n {
		ws.LoadN(i+j*entryWords, e[:])
		fl := e.flags()
		if fl&flagLive == 0 {
			if e != (entry{}) {
				return out, corrupt("sprig table %s line %d is empty but not zero (Get relies on it)", sprigTable(word), j)
			}
			continue
		}
		k0, k1, k2 := e[wDigest0], e[wDigest1], e[wDigest2]&^0xffffffff
		if !first && !less(p0, p1, p2, k0, k1, k2) {
			return out, corrupt("sprig table %s out of digest order at line %d", sprigTable(word), j)
		}
		if fl&^knownFlags != 0 {
			return out, corrupt("entry of sprig table %s line %d has flags %#x", sprigTable(word), j, fl)
		}
		if v.sprigOf(k0) != sp {
			return out, corrupt("entry of sprig table %s line %d in sprig record %d belongs to sprig record %d", sprigTable(word), j, sp, v.sprigOf(k0))
		}
		first = false
		p0, p1, p2 = k0, k1, k2
		out = append(out, e.record())
	}
	if first {
		return out, corrupt("sprig table %s holds no entry (a published table always holds one)", sprigTable(word))
	}
	return out, nil
}

// scan calls fn for every entry of partition p, in digest order: sprig by
// sprig, each sprig a validated snapshot. A key present for the whole scan
// is reported exactly once.
func (v *view) scan(p int, fn func(Record) bool) error {
	v.life.RLock()
	defer v.life.RUnlock()
	if v.closed.Load() {
		return ErrClosed
	}
	if p < 0 || p >= Partitions {
		return fmt.Errorf("index: scan: partition %d outside 0–%d: %w", p, Partitions-1, ErrConfig)
	}
	var buf []Record
	for s := range uint64(v.cfg.Sprigs) {
		var err error
		buf, err = v.scanSprig(uint64(p)*uint64(v.cfg.Sprigs)+s, buf)
		if err != nil {
			return fmt.Errorf("index: scan partition %d: %w", p, err)
		}
		for _, r := range buf {
			if !fn(r) {
				return nil
			}
		}
	}
	return nil
}

// PartitionStats are the statistics of one partition, kept in the arena.
type PartitionStats struct {
	Count      uint64 // entries
	Bytes      uint64 // sum of their sizes
	Tombstones uint64 // entries that are tombstones
}

func (v *view) partition(p int) PartitionStats {
	v.life.RLock()
	defer v.life.RUnlock()
	if v.closed.Load() {
		return PartitionStats{}
	}
	b := uint64(p) * partWords
	return PartitionStats{Count: v.parts.Load(b + pCount), Bytes: v.parts.Load(b + pBytes), Tombstones: v.parts.Load(b + pTombstones)}
}

// Reader reads an index another process writes. It never blocks the
// writer and never sees a torn entry. Methods are safe for concurrent use.
type Reader struct {
	v view
}

// OpenReader attaches the index described by cfg for reading. The index
// must exist (its writer opened it); stages are attached on first use.
// Fingerprint fields must match the writer's (a *layout.MismatchError
// otherwise).
func OpenReader(ctx context.Context, cfg Config) (*Reader, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	main, err := arena.Open(ctx, cfg.Store.block(&cfg, 0), cfg.segOptions(cfg.mainSpec()))
	if err != nil {
		return nil, fmt.Errorf("index: open reader: %w", err)
	}
	r := &Reader{}
	if err := r.v.init(cfg, main); err != nil {
		main.Close()
		return nil, err
	}
	return r, nil
}

// Get returns the record of d, and whether there is one.
func (r *Reader) Get(d Digest) (Record, bool, error) { return r.v.get(d) }

// Scan calls fn for every record of partition p in digest order until fn
// returns false. Every key present for the whole scan is reported exactly
// once; keys inserted or deleted during the scan may or may not be.
func (r *Reader) Scan(p int, fn func(Record) bool) error { return r.v.scan(p, fn) }

// Count returns the number of entries in the index (0 once closed).
func (r *Reader) Count() uint64 { return r.v.count() }

func (v *view) count() uint64 {
	v.life.RLock()
	defer v.life.RUnlock()
	if v.closed.Load() {
		return 0
	}
	return v.meta.Load(mLive)
}

// detach marks the view closed and detaches every segment, after the
// reads in progress.
func (v *view) detach() error {
	v.life.Lock()
	defer v.life.Unlock()
	if !v.closed.CompareAndSwap(false, true) {
		return nil
	}
	v.closeStages()
	return v.main.Close()
}

// Partition returns the statistics of partition p (0–4095).
func (r *Reader) Partition(p int) PartitionStats { return r.v.partition(p & (Partitions - 1)) }

// Stale reports whether the index was discarded since this reader attached
// (a cold start replaced it): the reader should be closed and opened again.
func (r *Reader) Stale() bool {
	r.v.life.RLock()
	defer r.v.life.RUnlock()
	if r.v.closed.Load() {
		return true
	}
	gone, err := r.v.main.Removed()
	return gone || err != nil
}

// Close detaches the reader.
func (r *Reader) Close() error { return r.v.detach() }
