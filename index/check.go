package index

import (
	"fmt"
)

// maxProblems bounds the problems Check collects.
const maxProblems = 1000

// Check walks every structure of the index and reports every problem it
// finds in a *CheckError (wrapping ErrCorrupt): links out of range, sprigs
// out of digest order, misplaced digests (wrong partition or sprig),
// cycles and shared entries, sprig, partition and meta counts that
// disagree with the entries, a free list that is broken, overlaps a sprig,
// or leaves entries neither live nor free. It never panics or loops on
// damaged memory. Run it on a quiescent index (no concurrent writes), e.g.
// at start-up (Config.CheckOnWarm) or from tests.
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
		inOdd = diff <= uint64(len(oddParts))
		add(format, args...)
		inOdd = false
	}
	var mw [metaWords]uint64
	v.meta.LoadN(0, mw[:])
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
		add("meta: %d entries handed out, capacity of %d stages is %d", next, stages, capacity)
		next = capacity
	}
	// seen[linear] marks entries found in a sprig (1) or on the free list (2).
	seen := make([]uint8, next)
	mark := func(h Handle, what uint8, where string) bool {
		if h.IsNull() || h > MaxHandle || h.Elem() >= v.stageElems {
			add("%s: handle %d out of range", where, uint64(h))
			return false
		}
		l := h.linear(v.stageElems)
		if l >= next {
			add("%s: handle %s beyond the %d entries handed out", where, h, next)
			return false
		}
		if seen[l] != 0 {
			kind := map[uint8]string{1: "a sprig", 2: "the free list"}[seen[l]]
			add("%s: entry %s already reached through %s (a cycle or a shared entry)", where, h, kind)
			return false
		}
		seen[l] = what
		return true
	}
	var live uint64
	partCount := make([]uint64, Partitions)
	partBytes := make([]uint64, Partitions)
	partTomb := make([]uint64, Partitions)
	sprigs := uint64(v.cfg.Sprigs)
	type frame struct {
		h      Handle
		lo, hi *[3]uint64 // exclusive digest bounds, nil: none
	}
	heights := map[Handle]uint64{}
	var visited []Handle
	for sp := range Partitions * sprigs {
		where := fmt.Sprintf("partition %d sprig %d", sp/sprigs, sp%sprigs)
		word := v.sprigs.Load(sp)
		inOdd = !sprigStable(word)
		if inOdd {
			oddParts[sp/sprigs] = struct{}{}
			add("%s: version %d is odd (a writer stopped mid-update)", where, word>>sprigRootBits)
		}
		root := sprigRoot(word)
		var n uint64
		clear(heights)
		visited = visited[:0]
		stack := []frame{{h: root}}
		for len(stack) > 0 && len(probs) < maxProblems {
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if f.h.IsNull() {
				continue
			}
			if len(stack) > 2*maxDepth {
				add("%s: deeper than %d", where, maxDepth)
				break
			}
			if !mark(f.h, 1, where) {
				continue
			}
			ws, i, err := v.entries(f.h)
			if err != nil {
				add("%s: entry %s: %v", where, f.h, err)
				continue
			}
			var e entry
			ws.LoadN(i, e[:])
			n++
			heights[f.h] = (e[wRight] & heightMask) >> heightShift
			visited = append(visited, f.h)
			k := [3]uint64{e[wDigest0], e[wDigest1], e[wDigest2] &^ 0xffffffff}
			d := digestFromWords(k[0], k[1], k[2])
			if got := uint64(d.Partition())*sprigs + uint64(d.sprigBits()>>v.shift); got != sp {
				add("%s: entry %s digest %x belongs to partition %d sprig %d", where, f.h, d[:6], got/sprigs, got%sprigs)
			}
			if f.lo != nil && !less(f.lo[0], f.lo[1], f.lo[2], k[0], k[1], k[2]) {
				add("%s: entry %s out of digest order (not above its left bound)", where, f.h)
			}
			if f.hi != nil && !less(k[0], k[1], k[2], f.hi[0], f.hi[1], f.hi[2]) {
				add("%s: entry %s out of digest order (not below its right bound)", where, f.h)
			}
			fl := e.flags()
			if fl&flagLive == 0 || fl&^knownFlags != 0 {
				add("%s: entry %s has flags %#x", where, f.h, fl)
			}
			if (fl&flagInline != 0) != v.cfg.DataInIndex {
				add("%s: entry %s inline flag %v, namespace data-in-index %v", where, f.h, fl&flagInline != 0, v.cfg.DataInIndex)
			}
			if e[wLeft]>>(flagShift+8) != 0 || e[wRight]>>(heightShift+8) != 0 {
				add("%s: entry %s has reserved link bits set", where, f.h)
			}
			p := d.Partition()
			partCount[p]++
			partBytes[p] += uint64(uint32(e[wVoidSize]))
			if fl&flagTombstone != 0 {
				partTomb[p]++
			}
			kk := k
			stack = append(stack, frame{h: e.left(), lo: f.lo, hi: &kk}, frame{h: e.right(), lo: &kk, hi: f.hi})
		}
		// AVL: each stored height is one more than its taller child's, and
		// the children's differ by at most one.
		for _, h := range visited {
			ws, i, err := v.entries(h)
			if err != nil {
				continue
			}
			hl, hr := heights[Handle(ws.Load(i+wLeft)&linkMask)], heights[Handle(ws.Load(i+wRight)&linkMask)]
			if heights[h] != 1+max(hl, hr) || hl > hr+1 || hr > hl+1 {
				if !add("%s: entry %s height %d, children's %d and %d: not an AVL tree", where, h, heights[h], hl, hr) {
					break
				}
			}
		}
		live += n
		inOdd = false
	}
	odd := uint64(len(oddParts))
	for p := range Partitions {
		b := uint64(p) * partWords
		_, inOdd = oddParts[uint64(p)]
		if c := v.parts.Load(b + pCount); c != partCount[p] {
			add("partition %d: count %d, entries %d", p, c, partCount[p])
		}
		if c := v.parts.Load(b + pBytes); c != partBytes[p] {
			add("partition %d: bytes %d, entries sum to %d", p, c, partBytes[p])
		}
		if c := v.parts.Load(b + pTombstones); c != partTomb[p] {
			add("partition %d: tombstones %d, entries %d", p, c, partTomb[p])
		}
	}
	inOdd = false
	if mw[mLive] != live {
		explained(absDiff(mw[mLive], live), "meta: %d live entries, sprigs hold %d", mw[mLive], live)
	}
	// The free list: at most next entries, each in range, free, unseen.
	var free uint64
	h := Handle(mw[mFreeHead] & linkMask)
	for !h.IsNull() && len(probs) < maxProblems {
		if free > next {
			add("free list: longer than the %d entries handed out (a cycle)", next)
			break
		}
		if !mark(h, 2, "free list") {
			break
		}
		free++
		ws, i, err := v.entries(h)
		if err != nil {
			add("free list: entry %s: %v", h, err)
			break
		}
		if ws.Load(i+wLeft)&flagMask != 0 {
			add("free list: entry %s is marked live", h)
		}
		h = Handle(ws.Load(i+wRight) & linkMask)
	}
	if mw[mFreeCount] != free {
		explained(absDiff(mw[mFreeCount], free), "meta: free count %d, free list holds %d", mw[mFreeCount], free)
	}
	if live+free != next && len(probs) < maxProblems {
		var lost uint64
		for _, s := range seen {
			if s == 0 {
				lost++
			}
		}
		explained(absDiff(live+free, next), "allocator: %d entries handed out, %d live + %d free: %d lost", next, live, free, lost)
	}
	if len(probs) > 0 {
		return &CheckError{Problems: probs, Interrupted: notes}
	}
	if odd > 0 {
		return &InterruptedError{Partitions: odd, Notes: notes}
	}
	return nil
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
