package arena

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/shmkit/shmkit/layout"
)

// ErrDamaged is wrapped by every *CheckError: a structural check found a
// structure in shared memory that its protocol cannot produce, even with
// processes killed at any point.
var ErrDamaged = errors.New("structure in shared memory is damaged")

// MaxProblems bounds the problems one check collects (the rest are
// counted in CheckError.Dropped), so that a check of hostile memory stays
// bounded in memory and output.
const MaxProblems = 1000

// CheckError lists every problem a structural check found (the Check
// methods of Pool, and of packages lease, seqlock and partmap). It wraps
// ErrDamaged.
type CheckError struct {
	Structure string   // what was checked, e.g. "pool SysV key 0x537e0010"
	Problems  []string // each problem, saying where and what
	Dropped   int      // problems found beyond MaxProblems
}

// Error lists the first problems and how many there are.
func (e *CheckError) Error() string {
	const show = 10
	p := e.Problems
	more := ""
	if n := len(p) + e.Dropped; n > show {
		more = fmt.Sprintf("; and %d more", n-show)
		p = p[:show]
	}
	return fmt.Sprintf("%s: %d problems: %s%s: %v", e.Structure, len(e.Problems)+e.Dropped, strings.Join(p, "; "), more, ErrDamaged)
}

// Unwrap returns ErrDamaged.
func (e *CheckError) Unwrap() error { return ErrDamaged }

// Problems collects the problems of one check, up to MaxProblems. The zero
// value is ready to use.
type Problems struct {
	list    []string
	dropped int
}

// Addf records a problem.
func (p *Problems) Addf(format string, args ...any) {
	if len(p.list) >= MaxProblems {
		p.dropped++
		return
	}
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

// Len returns how many problems were recorded (dropped ones included).
func (p *Problems) Len() int { return len(p.list) + p.dropped }

// List returns the problems recorded and how many more were dropped.
func (p *Problems) List() ([]string, int) { return p.list, p.dropped }

// Merge records the problems of err: each problem of a *CheckError, or
// err itself prefixed with where; nil adds nothing.
func (p *Problems) Merge(where string, err error) {
	if err == nil {
		return
	}
	var ce *CheckError
	if errors.As(err, &ce) {
		for _, s := range ce.Problems {
			p.Addf("%s: %s", where, s)
		}
		p.dropped += ce.Dropped
		return
	}
	p.Addf("%s: %v", where, err)
}

// Err returns nil if no problem was recorded, else a *CheckError for
// structure.
func (p *Problems) Err(structure string) error {
	if p.Len() == 0 {
		return nil
	}
	return &CheckError{Structure: structure, Problems: p.list, Dropped: p.dropped}
}

// Check walks the pool's control block, every element header of every
// stage in use and the free list, and reports every problem in a
// *CheckError: a stage count, stride or capacity the pool cannot have
// written, element headers in no valid state (or with bits set that no
// state uses), a free list that names an element outside the elements
// handed out, one that is not free (a live element on the free list), or
// the same element twice (a cycle). The free-list walk is bounded by the
// pool's capacity, so damaged memory cannot make it loop.
//
// Elements a killed process leaves behind are not problems: a claimed
// element of a dead owner (Reclaim frees it), an element handed out by the
// bump counter whose header was never written, and a free element not on
// the list (its freer died between the two steps of Free) are leaks the
// protocol allows. Run Check on a quiescent pool: concurrent Alloc and
// Free show up as problems.
func (p *Pool) Check() error {
	var probs Problems
	checkPool(p.main, p.ctl, p.stride, func(n int) (*Segment, Offset, int, error) {
		sm, err := p.stage(context.Background(), n, false)
		if err != nil {
			return nil, 0, 0, err
		}
		return sm.seg, sm.base, sm.cap, nil
	}, &probs, &PoolStats{})
	return probs.Err("pool " + p.loc.String())
}

// CheckPool runs Pool.Check's walk on the pool whose main segment is at
// loc, attaching it and its stages read-only in the manner of Inspect
// (any owner, no initialization, no liveness registration). The pool's
// geometry comes from the headers, so no PoolConfig is needed. It returns
// an *Error if loc is not a pool's main segment or cannot be attached, and
// a *CheckError listing the problems found.
func CheckPool(loc Location) error {
	_, err := ExaminePool(loc)
	return err
}

// ExaminePool is CheckPool that also counts the elements by state (Dead
// stays zero: judging owners needs the pool's liveness registry, which
// only an opened Pool has). The counts describe what the walk could read
// when it also returns problems.
func ExaminePool(loc Location) (PoolStats, error) {
	var pst PoolStats
	seg, err := Inspect(loc)
	if err != nil {
		return pst, err
	}
	defer seg.Close()
	h := seg.Header()
	if h.Kind != layout.KindPool {
		return pst, &Error{Op: "check pool", Seg: loc.String(), Err: fmt.Errorf("%w: a %s segment, not a pool's main segment", ErrPoolState, h.Kind)}
	}
	var probs Problems
	esize, ok1 := h.Field("elem_size")
	cap0, ok2 := h.Field("stage0_elems")
	ctl, csize, err1 := seg.Section("pool")
	base, esz, err2 := seg.Section("elems")
	switch {
	case !ok1 || !ok2 || err1 != nil || err2 != nil:
		probs.Addf("header lacks the pool's fields or sections (elem_size, stage0_elems; pool, elems)")
	case esize == 0 || esize > 1<<20 || cap0 == 0 || cap0 > MaxStageElems:
		probs.Addf("header: elem_size %d, stage0_elems %d: outside what OpenPool accepts", esize, cap0)
	case csize < poolCtlSize || esz < (8+(esize+7)&^7)*cap0:
		probs.Addf("sections: pool %d bytes (want %d), elems %d bytes (want %d)", csize, poolCtlSize, esz, (8+(esize+7)&^7)*cap0)
	}
	if probs.Len() > 0 {
		return pst, probs.Err("pool " + loc.String())
	}
	stride := 8 + (esize+7)&^7
	stages := []*Segment{seg}
	defer func() {
		for _, s := range stages[1:] {
			s.Close()
		}
	}()
	checkPool(seg, ctl, stride, func(n int) (*Segment, Offset, int, error) {
		if n == 0 {
			return seg, base, int(cap0), nil
		}
		sl, err := loc.Stage(n)
		if err != nil {
			return nil, 0, 0, err
		}
		ss, err := Inspect(sl)
		if err != nil {
			return nil, 0, 0, err
		}
		stages = append(stages, ss)
		sh := ss.Header()
		c := stageCap(int(cap0), n)
		spec := layout.Spec{Kind: layout.KindPoolStage,
			Fields:   []layout.Field{{Name: "stage", Value: uint64(n)}, {Name: "elem_stride", Value: stride}, {Name: "elems", Value: uint64(c)}},
			Sections: []layout.SectionSpec{{Name: "elems", Size: stride * uint64(c)}}}
		if err := sh.Match(spec); err != nil {
			return nil, 0, 0, fmt.Errorf("stage segment %s: %w", sl, err)
		}
		b, _, err := ss.Section("elems")
		return ss, b, c, err
	}, &probs, &pst)
	return pst, probs.Err("pool " + loc.String())
}

// checkPool is the walk of Pool.Check; stage(n) resolves stage n's
// segment, the offset of its element 0 and its capacity. It counts the
// elements of the stages it could read into st.
func checkPool(main *Segment, ctl Offset, stride uint64, stage func(n int) (*Segment, Offset, int, error), probs *Problems, st *PoolStats) {
	n := main.Load64(ctl + poolOffStages)
	if got := main.Load64(ctl + poolOffElem); got != stride {
		probs.Addf("control block: element stride %d, the header implies %d", got, stride)
		return
	}
	cap0 := main.Load64(ctl + poolOffCap0)
	if cap0 == 0 || cap0 > MaxStageElems {
		probs.Addf("control block: stage 0 capacity %d outside 1..%d", cap0, MaxStageElems)
		return
	}
	if n < 1 || n > MaxStages {
		probs.Addf("control block: %d stages in use, want 1..%d", n, MaxStages)
		return
	}
	type stageInfo struct {
		seg  *Segment
		base Offset
		used uint64
	}
	var stg []stageInfo
	for s := 0; s < int(n); s++ {
		seg, base, c, err := stage(s)
		if err != nil {
			probs.Addf("stage %d of %d: %v", s, n, err)
			break
		}
		want := uint64(stageCap(int(cap0), s))
		if got := main.Load64(ctl + stageCapOff(s)); got != want || uint64(c) != want {
			probs.Addf("stage %d: capacity %d in the control block, %d in its segment, want %d", s, got, c, want)
		}
		used := main.Load64(ctl + stageUsedOff(s))
		if used > uint64(c) {
			probs.Addf("stage %d: %d elements handed out, capacity %d", s, used, c)
			used = uint64(c)
		}
		if err := seg.CheckRange(base, used*stride); err != nil {
			probs.Addf("stage %d: elements: %v", s, err)
			break
		}
		stg = append(stg, stageInfo{seg: seg, base: base, used: used})
		st.Stages++
		st.Capacity += c
		st.Unused += c - int(used)
	}
	for s := len(stg); s < MaxStages; s++ {
		if s >= int(n) && (main.Load64(ctl+stageUsedOff(s)) != 0 || (s > int(n) && main.Load64(ctl+stageCapOff(s)) != 0)) {
			// Stage n's capacity may be set by a grower killed before
			// it bumped the stage count; nothing else is.
			probs.Addf("stage %d (not in use): used %d, capacity %d", s, main.Load64(ctl+stageUsedOff(s)), main.Load64(ctl+stageCapOff(s)))
		}
	}
	header := func(h Handle) (uint64, bool) {
		s, i := h.Stage(), h.Index()
		if h.IsNull() || s >= len(stg) || i < 0 || uint64(i) >= stg[s].used {
			return 0, false
		}
		return stg[s].seg.Load64(stg[s].base + Offset(uint64(i)*stride)), true
	}
	free := 0
	for s, si := range stg {
		for i := uint64(0); i < si.used; i++ {
			h := makeHandle(s, int(i))
			w, _ := header(h)
			switch elemState(w) {
			case elemUnused:
				st.Unused++ // handed out by the bump counter, header never written
				if w != 0 {
					probs.Addf("element %s: never-used header %#x has bits set", h, w)
				}
			case elemFree:
				free++
				st.Free++
				if w>>32&(1<<30-1) != 0 || Handle(uint32(w))>>24 >= MaxStages {
					probs.Addf("element %s: free header %#x has bits set outside the next handle", h, w)
				}
			case elemClaimed:
				st.Claimed++
				if w>>48&(1<<14-1) != 0 {
					probs.Addf("element %s: claimed header %#x has bits set outside slot and pid", h, w)
				}
			case elemLinked:
				st.Linked++
				if w != linkedElem {
					probs.Addf("element %s: linked header %#x has bits set", h, w)
				}
			}
		}
	}
	// The free list: every element on it handed out, free, and once.
	seen := map[Handle]bool{}
	_, top := splitHead(main.Load64(ctl + poolOffHead))
	for steps := 0; !top.IsNull(); steps++ {
		if steps > free {
			probs.Addf("free list: longer than the %d free elements (a cycle or a live element on it)", free)
			break
		}
		w, ok := header(top)
		if !ok {
			probs.Addf("free list: element %s (%#x) is not among the elements handed out", top, uint32(top))
			break
		}
		if seen[top] {
			probs.Addf("free list: element %s appears twice (a cycle)", top)
			break
		}
		seen[top] = true
		if elemState(w) != elemFree {
			probs.Addf("free list: element %s is %s, not free: a live element would be handed out twice", top, elemStateName(w))
			break
		}
		top = Handle(uint32(w))
	}
}

func elemStateName(w uint64) string {
	return [...]string{"never used", "free", "claimed", "linked"}[elemState(w)]
}
