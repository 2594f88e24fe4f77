package index

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
)

// FailBuildMid is the failpoint of a bulk build (Builder.Finish) after it
// has published about half of the sprigs, the partition statistics and
// the live count not yet written.
const FailBuildMid = "index.build.mid"

// maxBuildItems bounds the records one Builder collects: its sort keys
// hold 32-bit item numbers.
const maxBuildItems = 1<<32 - 1

// Words of a builder item (process memory, not shared): the entry's
// words 0–5 as an entry holds them (payload, then flags and last update),
// the caller's order key, and the kind (itemDelete or 0).
const (
	iPayload  = 0 // words 0–4: wDigest0 … wValue
	iFlags    = 5 // the entry's word 5
	iSeq      = 6
	iKind     = 7
	itemWords = 8

	// itemDelete marks a Builder.Delete item (it never becomes an entry).
	itemDelete = 1
)

var _ [itemWords - 8]struct{}
var _ [iFlags - wFlags]struct{} // an item starts with an entry's words
var _ [wFlags - iFlags]struct{}
var _ [iSeq - entryWords]struct{}

// item is one Add or Delete, in process memory.
type item [itemWords]uint64

// BuildOptions configure a Builder.
type BuildOptions struct {
	// SizeHint is the number of records expected (optional: the records
	// are kept in chunks, so an unknown count costs nothing).
	SizeHint int
	// Superseded, if set, is called during Finish for every record given
	// to Add that is not in the built index: a later record of its digest
	// (larger order key, or equal key and added later) replaced it, or a
	// Delete removed it. A storage that counts live bytes releases these
	// (kvstore: storage.Release). Calls are made one at a time from
	// Finish, in no particular order, before Finish writes anything to
	// shared memory (so also when Finish then fails, e.g. ErrNotEmpty or
	// ErrFull: the rebuild fails and the storage's accounting with it);
	// the function must not call the index.
	Superseded func(Record)
}

// BuildStats says what a bulk build did.
type BuildStats struct {
	Given      uint64 // Add and Delete calls
	Entries    uint64 // entries in the built index
	Tombstones uint64 // of those, tombstone entries
	Superseded uint64 // Add records not in the index (Superseded calls)
	Deleted    uint64 // digests whose winner was a Delete (no entry)
}

// Builder fills an empty index in one pass: the bulk path of a cold
// rebuild (see "Bulk build" in the package documentation). It collects
// records in process memory (Add, Delete), then Finish sorts them by
// partition, sprig and digest, keeps one winner per digest, sizes each
// sprig's table, lays its entries out in digest order at their homes, and
// publishes the sprigs. A Builder is used by one goroutine.
type Builder struct {
	ix   *Index
	opts BuildOptions
	// chunks hold the items in add order, chunkItems per chunk: growing
	// by chunks copies nothing (an append-grown slice of 64-byte items
	// copied and faulted in about 200 ns a record at 1M records).
	chunks [][]item
	n      int // items given
	done   bool
	// pause, if set, is called (tests) once about half of the sprigs of
	// the first publishing worker are published.
	pause func()
}

// NewBuilder returns a Builder for ix, which must be empty (no entry ever
// handed out: a fresh index, as in a cold rebuild): ErrNotEmpty otherwise.
// Nothing is written to shared memory before Finish.
func (ix *Index) NewBuilder(opts BuildOptions) (*Builder, error) {
	ix.gate.RLock() // Close waits: the meta stays mapped while it is read
	defer ix.gate.RUnlock()
	if ix.v.closed.Load() {
		return nil, fmt.Errorf("index: bulk build: %w", ErrClosed)
	}
	if err := ix.checkEmpty(); err != nil {
		return nil, err
	}
	b := &Builder{ix: ix, opts: opts}
	if opts.SizeHint > 0 {
		b.chunks = make([][]item, 0, (min(opts.SizeHint, maxBuildItems)+chunkItems-1)/chunkItems)
	}
	return b, nil
}

// checkEmpty fails with ErrNotEmpty unless no entry was ever handed out.
func (ix *Index) checkEmpty() error {
	m := ix.v.meta
	if next, live, free := m.Load(mNext), m.Load(mLive), m.Load(mFreeCount); next != 0 || live != 0 || free != 0 {
		return fmt.Errorf("index: bulk build: %d entries handed out (%d live, %d free): %w; a bulk build fills only a fresh index (a cold rebuild), use Put otherwise",
			next, live, free, ErrNotEmpty)
	}
	return nil
}

// Len returns the number of Add and Delete calls so far.
func (b *Builder) Len() int { return b.n }

// Item storage of a Builder.
const (
	chunkShift = 15
	chunkItems = 1 << chunkShift // 2 MiB of items per chunk
	chunkMask  = chunkItems - 1
)

// item returns item i.
func (b *Builder) item(i uint32) *item { return &b.chunks[i>>chunkShift][i&chunkMask] }

// push appends an item.
func (b *Builder) push(it item) {
	if b.n&chunkMask == 0 {
		b.chunks = append(b.chunks, make([]item, 0, chunkItems))
	}
	c := &b.chunks[len(b.chunks)-1]
	*c = append(*c, it)
	b.n++
}

// Add gives the builder record r with order key seq. Of all the records
// and deletes of one digest, the one with the largest seq wins; among
// equal keys, the one given last (so a caller that feeds records in log
// order can pass 0 throughout). r.Tombstone keeps a tombstone entry, as
// Put of a tombstone does. A record that does not fit the index's
// configuration is refused with ErrRecord (and not added).
func (b *Builder) Add(seq uint64, r Record) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := b.ix.checkRecord(&r); err != nil {
		return err
	}
	payload, fw := encodeRecord(&r, b.ix.v.cfg.DataInIndex)
	var it item
	copy(it[iPayload:iFlags], payload[:])
	it[iFlags], it[iSeq] = fw, seq
	b.push(it)
	return nil
}

// Delete gives the builder a delete of d with order key seq: if it wins
// (see Add), d has no entry, as after Delete(d).
func (b *Builder) Delete(seq uint64, d Digest) error {
	if err := b.usable(); err != nil {
		return err
	}
	w0, w1, w2 := d.words()
	var it item
	it[wDigest0], it[wDigest1], it[wDigest2] = w0, w1, w2
	it[iSeq], it[iKind] = seq, itemDelete
	b.push(it)
	return nil
}

func (b *Builder) usable() error {
	if b.done {
		return fmt.Errorf("index: bulk build: %w", ErrBuilderDone)
	}
	if b.n >= maxBuildItems {
		return fmt.Errorf("index: bulk build: more than %d records in one builder: %w", maxBuildItems, ErrFull)
	}
	return nil
}

// keyPartition returns the partition of a digest from its word 0 (byte 0
// and the low nibble of byte 1, as Digest.Partition).
func keyPartition(w0 uint64) uint64 { return w0>>56 | (w0>>48&0xf)<<8 }

// keySprigBits returns Digest.sprigBits from word 0.
func keySprigBits(w0 uint64) uint64 { return (w0>>52&0xf)<<24 | w0>>24&0xffffff }

// pair is an item's sort key (digest word 0), its number and whether it
// is a Delete, so that sorting and resolving touch the items themselves
// only to compare digests whose word 0 is equal.
type pair struct {
	key uint64
	i   uint32
	del bool
}

// sprigRun is a sprig's share of the winners: sprig record sp, n
// entries, and its table: size class c at h.
type sprigRun struct {
	sp, n, c uint32
	h        Handle
}

// Finish builds the index from the records given and publishes it. It
// fails with ErrNotEmpty if the index got entries since NewBuilder,
// ErrFull if the winners do not fit 256 stages, ErrBuilderDone on a
// second call, ErrLeaseLost or ErrClosed as Put does. The context is
// checked until the first write to shared memory; from then on Finish
// runs to the end (a build cut short would leave an index that is
// neither empty nor complete). The Builder's memory is released.
func (b *Builder) Finish(ctx context.Context) (BuildStats, error) {
	if b.done {
		return BuildStats{}, fmt.Errorf("index: bulk build: %w", ErrBuilderDone)
	}
	b.done = true
	defer func() { b.chunks = nil }()
	st := BuildStats{Given: uint64(b.n)}
	if err := ctx.Err(); err != nil {
		return st, fmt.Errorf("index: bulk build: %w", err)
	}
	pairs, parts := b.sortByPartition()
	if err := ctx.Err(); err != nil {
		return st, fmt.Errorf("index: bulk build: %w", err)
	}
	runs := b.resolve(pairs, parts, &st)
	pairs = pairs[:st.Entries]
	if err := ctx.Err(); err != nil {
		return st, fmt.Errorf("index: bulk build: %w", err)
	}
	if err := b.ix.publishBuild(b, pairs, runs, &st); err != nil {
		return st, err
	}
	return st, nil
}

// sortByPartition returns the items' pairs ordered by partition (a
// counting sort: stable, so add order is kept within a partition) and the
// end of each partition's run.
func (b *Builder) sortByPartition() ([]pair, *[Partitions]uint32) {
	var ends [Partitions]uint32
	for _, c := range b.chunks {
		for k := range c {
			ends[keyPartition(c[k][wDigest0])]++
		}
	}
	var sum uint32
	for p, c := range ends {
		ends[p] = sum
		sum += c
	}
	pairs := make([]pair, b.n)
	i := uint32(0)
	for _, c := range b.chunks {
		for k := range c {
			w0 := c[k][wDigest0]
			p := keyPartition(w0)
			pairs[ends[p]] = pair{key: w0, i: i, del: c[k][iKind]&itemDelete != 0}
			ends[p]++
			i++
		}
	}
	return pairs, &ends
}

// cmpPairs orders pairs by digest, then order key, then add order (the
// item number).
func (b *Builder) cmpPairs(x, y pair) int {
	if x.key != y.key {
		if x.key < y.key {
			return -1
		}
		return 1
	}
	a, c := b.item(x.i), b.item(y.i)
	switch {
	case a[wDigest1] != c[wDigest1]:
		return cmpU(a[wDigest1], c[wDigest1])
	case (a[wDigest2]^c[wDigest2])&^0xffffffff != 0:
		return cmpU(a[wDigest2]&^0xffffffff, c[wDigest2]&^0xffffffff)
	case a[iSeq] != c[iSeq]:
		return cmpU(a[iSeq], c[iSeq])
	}
	return cmpU(uint64(x.i), uint64(y.i))
}

func cmpU(a, b uint64) int {
	if a < b {
		return -1
	}
	return 1
}

func (b *Builder) sameDigest(x, y pair) bool {
	if x.key != y.key {
		return false
	}
	a, c := b.item(x.i), b.item(y.i)
	return a[wDigest1] == c[wDigest1] && (a[wDigest2]^c[wDigest2])&^0xffffffff == 0
}

// insertionMax is the run length up to which a sprig's run is sorted by
// insertion (most runs hold a handful of records).
const insertionMax = 24

// resolve orders each partition's run by sprig (a counting sort on the
// sprig bits) and each sprig's by digest, keeps the winner of each digest
// (the last in order key, then add order), drops Delete winners and packs
// the winners to the front of pairs, sprig after sprig, so that winner j
// becomes entry j. It returns the non-empty sprigs in that order.
func (b *Builder) resolve(pairs []pair, ends *[Partitions]uint32, st *BuildStats) []sprigRun {
	sprigs := uint32(b.ix.v.cfg.Sprigs)
	shift := b.ix.v.shift
	cnt := make([]uint32, sprigs+1)
	var tmp []pair
	var runs []sprigRun
	var out, start uint32
	for p, end := range ends {
		part := pairs[start:end]
		start = end
		if len(part) == 0 {
			continue
		}
		// Counting sort by sprig into tmp (stable).
		clear(cnt)
		for _, x := range part {
			cnt[keySprigBits(x.key)>>shift+1]++
		}
		for s := uint32(1); s <= sprigs; s++ {
			cnt[s] += cnt[s-1]
		}
		tmp = slices.Grow(tmp[:0], len(part))[:len(part)]
		for _, x := range part {
			s := keySprigBits(x.key) >> shift
			tmp[cnt[s]] = x
			cnt[s]++
		}
		// cnt[s] is now the end of sprig s in tmp.
		var s0 uint32
		for s := uint32(0); s < sprigs; s++ {
			run := tmp[s0:cnt[s]]
			s0 = cnt[s]
			if len(run) == 0 {
				continue
			}
			if len(run) <= insertionMax {
				for i := 1; i < len(run); i++ {
					for j := i; j > 0 && b.cmpPairs(run[j], run[j-1]) < 0; j-- {
						run[j], run[j-1] = run[j-1], run[j]
					}
				}
			} else {
				slices.SortFunc(run, b.cmpPairs)
			}
			first := out
			for i, x := range run {
				if i+1 < len(run) && b.sameDigest(x, run[i+1]) {
					b.lost(x.i, st)
					continue
				}
				if x.del {
					st.Deleted++
					continue
				}
				pairs[out] = x // out ≤ the start of this partition: already copied to tmp
				out++
			}
			if out > first {
				runs = append(runs, sprigRun{sp: uint32(p)*sprigs + s, n: out - first})
			}
		}
	}
	st.Entries = uint64(out)
	return runs
}

// lost accounts for an item that lost to a later one of its digest.
func (b *Builder) lost(x uint32, st *BuildStats) {
	it := b.item(x)
	if it[iKind]&itemDelete != 0 {
		return
	}
	st.Superseded++
	if b.opts.Superseded != nil {
		var e entry
		copy(e[:], it[:entryWords])
		b.opts.Superseded(e.record())
	}
}

// publishBuild writes the winners (pairs, packed sprig after sprig, runs
// their sprigs) as entries 0…len(pairs)-1 and publishes each sprig under
// its version, then the statistics. The sprigs are split between up to
// GOMAXPROCS workers by entries; each publishes its sprigs in order.
func (ix *Index) publishBuild(b *Builder, pairs []pair, runs []sprigRun, st *BuildStats) error {
	ix.gate.RLock()
	defer ix.gate.RUnlock()
	if err := ix.writable(); err != nil {
		return err
	}
	// Every sprig lock, then the allocator: no Put or Delete runs while
	// the index is built (the order of update: sprig lock, then allocMu).
	for i := range ix.locks {
		ix.locks[i].Lock()
	}
	defer func() {
		for i := range ix.locks {
			ix.locks[i].Unlock()
		}
	}()
	ix.allocMu.Lock()
	defer ix.allocMu.Unlock()
	if err := ix.checkEmpty(); err != nil {
		return err
	}
	total := uint64(len(pairs))
	if total > MaxCapacity {
		return fmt.Errorf("index: bulk build: %d entries, more than %d: %w", total, MaxCapacity, ErrFull)
	}
	// Size every sprig's table, then check that the tables fit the stages
	// (laid out one after another, none across a stage end) before
	// anything is written.
	se := ix.v.stageElems
	var pos, tableLines, end uint64
	for r := range runs {
		run := pairs[pos : pos+uint64(runs[r].n)]
		key := func(k int) uint64 { return ix.v.homeKey(run[k].key) }
		c := classFor((uint64(len(run))*100 + buildLoad - 1) / buildLoad)
		for c < numClasses && classLines(c) <= se && !placeKeys(classLines(c), len(run), key, nil) {
			c++
		}
		if c >= numClasses || classLines(c) > se {
			return fmt.Errorf("index: bulk build: a sprig of %d entries needs a table larger than a stage of %d lines: %w (use more Config.Sprigs or larger Config.StageEntries)",
				len(run), se, ErrFull)
		}
		runs[r].c = uint32(c)
		n := classLines(c)
		if end%se+n > se {
			end += se - end%se
		}
		end += n
		tableLines += n
		pos += uint64(runs[r].n)
	}
	need := max(1, (end+se-1)/se)
	if need > MaxStages {
		return fmt.Errorf("index: bulk build: %d entries in tables of %d lines need %d stages of %d, more than %d: %w (use larger stages: Config.StageEntries)",
			total, tableLines, need, se, MaxStages, ErrFull)
	}
	for k := ix.v.meta.Load(mStages); k < need; k++ {
		if err := ix.addStage(int(k)); err != nil {
			return fmt.Errorf("index: bulk build: %w", err)
		}
	}
	// Allocate the tables (nothing is written to their lines: the stages
	// are fresh, so empty lines are zero already). Every line handed out
	// from here on is in a table or a free run; none is reachable before
	// its sprig's word is published.
	for r := range runs {
		h, err := ix.bumpRun(uint64(runs[r].c))
		if err != nil {
			return fmt.Errorf("index: bulk build: %w", err)
		}
		runs[r].h = h
	}
	m := ix.v.meta
	m.Store(mTableLines, tableLines)

	workers := min(runtime.GOMAXPROCS(0), maxBuildWorkers)
	if total < minParallelBuild {
		workers = 1
	}
	ws := make([]buildWorker, workers)
	// Split runs at about total/workers entries each.
	pos = 0
	r0 := 0
	for w := range ws {
		goal := total * uint64(w+1) / uint64(workers)
		r1 := r0
		start := pos
		for r1 < len(runs) && (pos < goal || w == workers-1) {
			pos += uint64(runs[r1].n)
			r1++
		}
		ws[w] = buildWorker{b: b, ix: ix, pairs: pairs, runs: runs[r0:r1], base: start}
		r0 = r1
	}
	ws[0].pause = true
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(ws[w].publish)
	}
	ws[0].publish()
	wg.Wait()
	var parts [Partitions][partWords]uint64 // as the shared records
	for w := range ws {
		for p := range parts {
			for k := range partWords {
				parts[p][k] += ws[w].parts[p][k]
			}
		}
	}
	for p := range parts {
		if parts[p][pCount] == 0 {
			continue
		}
		pb := uint64(p) * partWords
		ix.v.parts.Store(pb+pCount, parts[p][pCount])
		ix.v.parts.Store(pb+pBytes, parts[p][pBytes])
		ix.v.parts.Store(pb+pTombstones, parts[p][pTombstones])
		st.Tombstones += parts[p][pTombstones]
	}
	m.Store(mLive, total)
	return nil
}

// Parallelism of publishBuild.
const (
	maxBuildWorkers  = 8
	minParallelBuild = 1 << 14 // entries below which one worker builds
)

// buildWorker publishes a run of sprigs.
type buildWorker struct {
	b      *Builder
	ix     *Index
	pairs  []pair
	runs   []sprigRun
	base   uint64                        // entry (linear position) of runs[0]'s first winner
	pause  bool                          // hit FailBuildMid and b.pause halfway
	parts  [Partitions][partWords]uint64 // statistics, as the shared records
	buf    []item                        // the items of entries bufPos…, in entry order
	bufPos uint64
	// the sprig being built: its first entry, bytes and tombstones
	first       uint64
	bytes, tomb uint64
}

func (w *buildWorker) publish() {
	ix := w.ix
	sprigs := uint64(ix.v.cfg.Sprigs)
	pos := w.base
	for r0 := 0; r0 < len(w.runs); {
		// Copy the items of the next runs (at least gatherBatch entries)
		// into buf first: independent loads that overlap their cache
		// misses, where loads between the entry stores (atomic, so
		// fenced) would wait for each miss in turn.
		r1, n := r0, uint64(0)
		for r1 < len(w.runs) && n < gatherBatch {
			n += uint64(w.runs[r1].n)
			r1++
		}
		w.buf = slices.Grow(w.buf[:0], int(n))[:n]
		for k, x := range w.pairs[pos : pos+n] {
			w.buf[k] = *w.b.item(x.i)
		}
		w.bufPos = pos
		for r := r0; r < r1; r++ {
			sr := w.runs[r]
			half := w.pause && r == len(w.runs)/2
			if half {
				ix.v.cfg.Failpoints.Hit(FailBuildMid)
			}
			w.first, w.bytes, w.tomb = pos, 0, 0
			sp := uint64(sr.sp)
			if ix.v.cfg.buildRootsFirst && r >= len(w.runs)/2 {
				// The negative control: the sprig is published before its
				// entries are written.
				ix.publishSprig(sp, sr.h, uint64(sr.c))
				if half && w.b.pause != nil {
					w.b.pause()
				}
				w.build(sr)
			} else {
				if half && w.b.pause != nil {
					w.b.pause()
				}
				w.build(sr)
				ix.publishSprig(sp, sr.h, uint64(sr.c))
			}
			p := uint64(sr.sp) / sprigs
			w.parts[p][pCount] += uint64(sr.n)
			w.parts[p][pBytes] += w.bytes
			w.parts[p][pTombstones] += w.tomb
			pos += uint64(sr.n)
		}
		r0 = r1
	}
}

// publishSprig makes the table at h (class c, its entries all written)
// the table of the empty sprig sp, under an odd version: a reader sees
// the sprig empty or complete.
func (ix *Index) publishSprig(sp uint64, h Handle, c uint64) {
	ix.bump(sp)
	ix.setTable(sp, h, c)
	ix.bump(sp)
}

// placeKeys places n sorted entries, whose home keys key returns, in a
// table of lines lines: each at its home or the line after the previous
// one. It calls put (if not nil) with each one's line and reports false
// if the last would lie past the end.
func placeKeys(lines uint64, n int, key func(k int) uint64, put func(j uint64, k int)) bool {
	next := uint64(0)
	for k := range n {
		j := max(homeOf(key(k), lines), next)
		if j >= lines {
			return false
		}
		if put != nil {
			put(j, k)
		}
		next = j + 1
	}
	return true
}

// gatherBatch is how many entries' items a build worker copies at once.
const gatherBatch = 256

// build writes the entries of sprig run sr (the items w.buf holds from
// entry w.first on) into its table, each at its home line or the line
// after the previous entry, and the table's entry count.
func (w *buildWorker) build(sr sprigRun) {
	ws, i, _ := w.ix.v.entries(sr.h) // bumpRun handed it out in a published stage
	items := w.buf[w.first-w.bufPos : w.first-w.bufPos+uint64(sr.n)]
	placeKeys(classLines(uint64(sr.c)), len(items), func(k int) uint64 { return w.ix.v.homeKey(items[k][wDigest0]) }, func(j uint64, k int) {
		it := &items[k]
		a := i + j*entryWords
		for q := uint64(0); q < entryWords; q++ {
			ws.Store(a+q, it[q])
		}
		w.bytes += uint64(uint32(it[wVoidSize]))
		if it[iFlags]&(flagTombstone<<flagShift) != 0 {
			w.tomb++
		}
	})
	w.ix.v.counts.Store(uint64(sr.sp), uint64(sr.n))
}

// Load fills the empty index ix with recs in one bulk build (see
// Builder): records of one digest given more than once leave the last
// one given. It fails with ErrNotEmpty unless ix is empty and with
// ErrRecord (naming the record) if a record does not fit the index's
// configuration, before anything is written.
func (ix *Index) Load(ctx context.Context, recs []Record) error {
	b, err := ix.NewBuilder(BuildOptions{SizeHint: len(recs)})
	if err != nil {
		return err
	}
	for i := range recs {
		if err := b.Add(0, recs[i]); err != nil {
			return fmt.Errorf("index: load record %d: %w", i, err)
		}
	}
	_, err = b.Finish(ctx)
	return err
}
