package index

import (
	"fmt"
)

// maxProblems bounds the problems Check collects.
const maxProblems = 1000

// Check walks every structure of the index and reports every problem it
// finds in a *CheckError (wrapping ErrCorrupt): table handles or size
// classes out of range, runs that leave their stage or overlap each other
// or a free run, entries out of digest order, displaced from their home
// with a gap before them or in the wrong partition or sprig, table,
// partition and meta counts that disagree with the entries, free lists
// that are broken (out of range, cyclic), or lines neither in a table nor
// free. It never panics or loops on damaged memory. Run it on a quiescent
// index (no concurrent writes), e.g. at start-up (Config.CheckOnWarm) or
// from tests.
func (ix *Index) Check() error {
	ix.gate.Lock()
	defer ix.gate.Unlock()
	if ix.v.closed.Load() {
		return ErrClosed
	}
	return ix.v.check()
}

// Check on a Reader runs the same walk; the writer must be quiescent or its
// changes show up as problems.
func (r *Reader) Check() error {
	r.v.life.RLock()
	defer r.v.life.RUnlock()
	if r.v.closed.Load() {
		return ErrClosed
	}
	return r.v.check()
}

func (v *view) check() error {
	var probs []string
	// A writer killed mid-update leaves its sprig's version odd and the
	// change half made: inside that sprig, in its partition's counts and
	// in the meta's totals (by at most one entry per such sprig). Those
	// findings are notes, not damage (the index is unclean and the next
	// Open rebuilds it cold); everything else must be whole.
	var notes []string
	var inOdd bool                    // the sprig being walked is odd
	var busy uint64                   // updates in flight (meta)
	oddParts := map[uint64]struct{}{} // partitions with an odd sprig
	add := func(format string, args ...any) bool {
		if inOdd {
			if len(notes) < maxProblems {
				notes = append(notes, fmt.Sprintf(format, args...))
			}
			return len(probs) < maxProblems
		}
		if len(probs) < maxProblems {
			probs = append(probs, fmt.Sprintf(format, args...))
		}
		return len(probs) < maxProblems
	}
	// explained adds a finding that one interrupted update per odd sprig
	// can account for (diff at most that many) as a note.
	explained := func(diff uint64, format string, args ...any) {
		inOdd = diff <= uint64(len(oddParts))+busy
		add(format, args...)
		inOdd = false
	}
	var mw [metaWords]uint64
	v.meta.LoadN(0, mw[:])
	// Updates the writer had begun and not finished (it was killed): their
	// traces outside odd sprigs are notes too.
	busy = mw[mBusy]
	// Each update in flight holds one of the writer's sprig locks.
	if maxBusy := min(uint64(Partitions*v.cfg.Sprigs), lockStripes); busy > maxBusy {
		add("meta: %d updates in flight, more than the writer's %d sprig locks allow", busy, maxBusy)
		busy = 0
	}
	stages := mw[mStages]
	if stages < 1 || stages > MaxStages {
		add("meta: %d stages, want 1–%d", stages, MaxStages)
		return &CheckError{Problems: probs}
	}
	// Only stages that can be attached count (a hostile stage count must
	// not size the walk's bookkeeping).
	for k := uint64(1); k < stages; k++ {
		if _, _, err := v.entries(MakeHandle(k, 0)); err != nil {
			add("stage %d of %d: %v", k, stages, err)
			stages = k
			break
		}
	}
	capacity := stages * v.stageElems
	next := mw[mNext]
	if next > capacity {
		add("meta: %d lines handed out, capacity of %d stages is %d", next, stages, capacity)
		next = capacity
	}
	// seen[linear] marks lines found in a table (1) or a free run (2).
	seen := make([]uint8, next)
	// claim marks the n lines of a run at h, which must lie in one stage
	// and among the lines handed out, and be unclaimed.
	claim := func(h Handle, n uint64, what uint8, where string) bool {
		if h.IsNull() || h > MaxHandle || h.Elem() >= v.stageElems {
			add("%s: handle %d out of range", where, uint64(h))
			return false
		}
		if h.Elem()+n > v.stageElems {
			add("%s: run %s of %d lines out of range (past the end of its stage of %d)", where, h, n, v.stageElems)
			return false
		}
		l := h.linear(v.stageElems)
		if l+n > next {
			add("%s: run %s of %d lines beyond the %d lines handed out", where, h, n, next)
			return false
		}
		for j := l; j < l+n; j++ {
			if seen[j] != 0 {
				kind := map[uint8]string{1: "a sprig table", 2: "a free run"}[seen[j]]
				add("%s: run %s overlaps %s at line %s (already reached: a cycle or a shared run)", where, h, kind, handleAt(j, v.stageElems))
				return false
			}
		}
		for j := l; j < l+n; j++ {
			seen[j] = what
		}
		return true
	}
	var live, tableLines uint64
	partCount := make([]uint64, Partitions)
	partBytes := make([]uint64, Partitions)
	partTomb := make([]uint64, Partitions)
	sprigs := uint64(v.cfg.Sprigs)
	for sp := range Partitions * sprigs {
		if len(probs) >= maxProblems {
			break
		}
		where := fmt.Sprintf("partition %d sprig %d", sp/sprigs, sp%sprigs)
		word := v.sprigs.Load(sp)
		inOdd = !sprigStable(word)
		if inOdd {
			oddParts[sp/sprigs] = struct{}{}
			add("%s: version %d is odd (a writer stopped mid-update)", where, word>>sprigRootBits)
		}
		h, c := sprigTable(word), sprigClass(word)
		if h.IsNull() {
			if c != 0 {
				add("%s: empty, but size class %d", where, c)
			}
			if tc := v.counts.Load(sp); tc != 0 {
				add("%s: empty, but its count is %d", where, tc)
			}
			continue
		}
		if c >= numClasses {
			add("%s: table %s of size class %d out of range (classes 0–%d)", where, h, c, numClasses-1)
			continue
		}
		n := classLines(c)
		if !claim(h, n, 1, where) {
			continue
		}
		tableLines += n
		ws, i, err := v.entries(h)
		if err != nil {
			add("%s: table %s: %v", where, h, err)
			continue
		}
		var count uint64
		var p [3]uint64
		for j := range n {
			var e entry
			ws.LoadN(i+j*entryWords, e[:])
			fl := e.flags()
			if fl&flagLive == 0 {
				// Readers rely on it: an empty line is all zero.
				for w, x := range e {
					if x != 0 {
						add("%s: table %s line %d is empty but its word %d is %#x", where, h, j, w, x)
						break
					}
				}
				continue
			}
			k := [3]uint64{e[wDigest0], e[wDigest1], e[wDigest2] &^ 0xffffffff}
			d := digestFromWords(k[0], k[1], k[2])
			if got := uint64(d.Partition())*sprigs + uint64(d.sprigBits()>>v.shift); got != sp {
				add("%s: table %s line %d digest %x belongs to partition %d sprig %d", where, h, j, d[:6], got/sprigs, got%sprigs)
			}
			if count > 0 && !less(p[0], p[1], p[2], k[0], k[1], k[2]) {
				add("%s: table %s line %d out of digest order", where, h, j)
			}
			if home := homeOf(v.homeKey(k[0]), n); home > j {
				add("%s: table %s line %d holds an entry whose home is line %d (displaced backwards)", where, h, j, home)
			} else if home < j {
				var prev entry
				ws.LoadN(i+(j-1)*entryWords, prev[:])
				if prev.flags()&flagLive == 0 {
					add("%s: table %s line %d holds an entry displaced from line %d past an empty line", where, h, j, home)
				}
			}
			if fl&^knownFlags != 0 {
				add("%s: table %s line %d has flags %#x", where, h, j, fl)
			}
			if (fl&flagInline != 0) != v.cfg.DataInIndex {
				add("%s: table %s line %d inline flag %v, namespace data-in-index %v", where, h, j, fl&flagInline != 0, v.cfg.DataInIndex)
			}
			if e[wFlags]&^(flagMask|lutMask) != 0 {
				add("%s: table %s line %d has reserved bits set", where, h, j)
			}
			pt := d.Partition()
			partCount[pt]++
			partBytes[pt] += uint64(uint32(e[wVoidSize]))
			if fl&flagTombstone != 0 {
				partTomb[pt]++
			}
			p = k
			count++
		}
		if tc := v.counts.Load(sp); tc != count {
			add("%s: table %s count %d, holds %d entries", where, h, tc, count)
		}
		if count == 0 {
			add("%s: table %s holds no entry", where, h)
		}
		live += count
		inOdd = false
	}
	odd := uint64(len(oddParts))
	for p := range Partitions {
		b := uint64(p) * partWords
		_, oddPart := oddParts[uint64(p)]
		if c := v.parts.Load(b + pCount); c != partCount[p] {
			inOdd = oddPart || absDiff(c, partCount[p]) <= busy
			add("partition %d: count %d, entries %d", p, c, partCount[p])
		}
		if c := v.parts.Load(b + pBytes); c != partBytes[p] {
			inOdd = oddPart || busy > 0
			add("partition %d: bytes %d, entries sum to %d", p, c, partBytes[p])
		}
		if c := v.parts.Load(b + pTombstones); c != partTomb[p] {
			inOdd = oddPart || absDiff(c, partTomb[p]) <= busy
			add("partition %d: tombstones %d, entries %d", p, c, partTomb[p])
		}
	}
	inOdd = false
	if mw[mLive] != live {
		explained(absDiff(mw[mLive], live), "meta: %d live entries, sprigs hold %d", mw[mLive], live)
	}
	// While an update is in flight, the allocator and the table lines may
	// be half changed (a run taken off a list but not yet published, or
	// unpublished but not yet freed).
	inOdd = busy > 0
	if mw[mTableLines] != tableLines {
		add("meta: %d table lines, sprig tables hold %d", mw[mTableLines], tableLines)
	}
	// The free lists: each run in range, marked free in its first and last
	// line with its size, of its list's size class, linked back to the
	// previous run, unclaimed; at most next lines in all (which also stops
	// a cycle).
	var free uint64
	for c := range uint64(allocWords) {
		head := v.alloc.Load(c)
		if c >= numClasses {
			if head != 0 {
				add("free list of class %d: there is no such class, head %#x", c, head)
			}
			continue
		}
		where := fmt.Sprintf("free list of class %d", c)
		if head&^linkMask != 0 {
			add("%s: head %#x out of range", where, head)
			continue
		}
		var prev Handle
		for h := Handle(head); !h.IsNull() && len(probs) < maxProblems; {
			if free > next {
				add("%s: longer than the %d lines handed out (a cycle)", where, next)
				break
			}
			ws, i, err := v.entries(h)
			if err != nil {
				add("%s: run %s: %v", where, h, err)
				break
			}
			w := ws.Load(i + wFlags)
			n := w & linkMask
			if w&flagMask != freeTag || n == 0 {
				add("%s: run %s is not marked free (word 5 %#x)", where, h, w)
				break
			}
			if n < classLines(c) || (c+1 < numClasses && n >= classLines(c+1)) {
				add("%s: run %s of %d lines does not belong to the class (%d lines)", where, h, n, classLines(c))
			}
			if !claim(h, n, 2, where) {
				break
			}
			if lw := ws.Load(i + (n-1)*entryWords + wFlags); lw != w {
				add("%s: run %s of %d lines: its last line says %#x", where, h, n, lw)
			}
			if p := Handle(ws.Load(i+wPrevFree) & linkMask); p != prev {
				add("%s: run %s links back to %s, not %s", where, h, p, prev)
			}
			free += n
			nx := ws.Load(i + wNextFree)
			if nx&^linkMask != 0 {
				add("%s: run %s links to %#x, out of range", where, h, nx)
				break
			}
			prev, h = h, Handle(nx)
		}
	}
	if mw[mFreeCount] != free {
		add("meta: free count %d, free lists hold %d lines", mw[mFreeCount], free)
	}
	if tableLines+free != next && len(probs) < maxProblems {
		var lost uint64
		for _, s := range seen {
			if s == 0 {
				lost++
			}
		}
		add("allocator: %d lines handed out, %d in tables + %d free: %d lost", next, tableLines, free, lost)
	}
	inOdd = false
	if len(probs) > 0 {
		return &CheckError{Problems: probs, Interrupted: notes}
	}
	if odd > 0 || busy > 0 || len(notes) > 0 {
		return &InterruptedError{Partitions: odd, InFlight: busy, Notes: notes}
	}
	return nil
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
