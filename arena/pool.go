package arena

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/procid"
)

// Handle names a pool element: stage in the top 8 bits, index+1 in the low
// 24 bits, so the zero Handle is null. Handles, not pointers, are what
// shared structures store.
type Handle uint32

// MaxStageElems is the most elements one stage can hold (24-bit index).
const MaxStageElems = 1<<24 - 1

func makeHandle(stage, index int) Handle { return Handle(uint32(stage)<<24 | uint32(index+1)) }

// Stage returns the stage the element lives in.
func (h Handle) Stage() int { return int(h >> 24) }

// Index returns the element's index within its stage.
func (h Handle) Index() int { return int(h&0xffffff) - 1 }

// IsNull reports whether h is the null handle.
func (h Handle) IsNull() bool { return h&0xffffff == 0 }

func (h Handle) String() string {
	if h.IsNull() {
		return "null"
	}
	return fmt.Sprintf("%d:%d", h.Stage(), h.Index())
}

// Pool errors.
var (
	ErrPoolFull   = errors.New("pool is full")
	ErrBadHandle  = errors.New("invalid pool handle")
	ErrDoubleFree = errors.New("element freed twice")
	ErrNotClaimed = errors.New("element is not claimed")
	ErrPoolState  = errors.New("pool control data is corrupt")
	ErrPoolConfig = errors.New("invalid pool configuration")
)

// Element header word, the first word of each element (its payload
// follows):
//
//	 63 62 61         48 47          32 31                        0
//	+-----+-------------+--------------+---------------------------+
//	|state| zero        | free: zero   | free: next free handle    |
//	|     |             | claimed:     | claimed: owner pid        |
//	|     |             | owner's slot |                           |
//	+-----+-------------+--------------+---------------------------+
//
// An element is never-used (0) until first allocated, then claimed by the
// process that allocated it, linked once that process has published it
// somewhere (Commit), and free again after Free. A claim names its owner's
// liveness slot (procid.Slot in the main segment's registry), which the
// owner locked before allocating: Reclaim frees a claim only when that
// lock is free, the one proof of death that holds across PID namespaces,
// uids and a hidepid /proc. The pid is for diagnostics.
const (
	elemUnused  = 0
	elemFree    = 1
	elemClaimed = 2
	elemLinked  = 3

	elemStateShift = 62
	elemSlotShift  = 32
)

func elemState(w uint64) uint64 { return w >> elemStateShift }

// freeElem is the header of a free element whose successor is next.
func freeElem(next Handle) uint64 { return elemFree<<elemStateShift | uint64(next) }

// claimedElem is the header of an element claimed by slot and pid.
func claimedElem(slot procid.Slot, pid uint32) uint64 {
	return elemClaimed<<elemStateShift | uint64(slot)<<elemSlotShift | uint64(pid)
}

// linkedElem is the header of a committed element.
const linkedElem = elemLinked << elemStateShift

// splitClaimed returns the owner's slot and pid of a claimed header.
func splitClaimed(w uint64) (procid.Slot, uint32) {
	return procid.Slot(w >> elemSlotShift), uint32(w)
}

// Pool control block (section "pool" of the main segment), offsets in
// bytes from the section start:
//
//	0       8        16       24       32                       32+16*MaxStages
//	+-------+--------+--------+--------+--------------------------+
//	| head  | stages | elem   | stage0 | stage table: per stage   |
//	|       | in use | stride | cap    | used, cap (2 words)      |
//	+-------+--------+--------+--------+--------------------------+
//
// head is the free-list head: a 32-bit ABA tag (incremented by every
// successful CAS) above the 32-bit handle of the first free element. A 32-bit
// tag takes years to wrap at pool speed, unlike a 24-bit one, which wraps in
// about a second, and a process stopped mid-CAS for that long would make ABA
// reachable.
const (
	poolOffHead   = 0
	poolOffStages = 8
	poolOffElem   = 16
	poolOffCap0   = 24
	poolOffTable  = 32

	// One stage-table entry.
	stageOffUsed = 0  // elements of the stage handed out so far
	stageOffCap  = 8  // the stage's capacity
	stageEntry   = 16 // bytes per entry

	poolCtlSize = poolOffTable + stageEntry*MaxStages
)

// Compile-time layout checks: the entry holds its two words, and the
// table ends the control block.
var (
	_ [stageEntry - stageOffCap - 8]struct{}
	_ [poolCtlSize - poolOffTable - stageEntry*MaxStages]struct{}
	_ [poolOffTable - poolOffCap0 - 8]struct{}
)

// stageUsedOff and stageCapOff are the offsets of stage n's entry words,
// from the control block.
func stageUsedOff(n int) Offset { return poolOffTable + Offset(stageEntry*n) + stageOffUsed }
func stageCapOff(n int) Offset  { return poolOffTable + Offset(stageEntry*n) + stageOffCap }

// headWord packs the free-list head; splitHead splits it.
func headWord(tag uint32, h Handle) uint64 { return uint64(tag)<<32 | uint64(h) }
func splitHead(w uint64) (uint32, Handle)  { return uint32(w >> 32), Handle(uint32(w)) }
func nextHead(old uint64, h Handle) uint64 { t, _ := splitHead(old); return headWord(t+1, h) }

// FailPoolClaimed is the failpoint between taking an element off the free
// list and returning it to the caller (who would link it somewhere).
const FailPoolClaimed = "arena.pool.claimed"

// PoolConfig configures OpenPool.
type PoolConfig struct {
	// ElemSize is the payload size in bytes (rounded up to 8).
	ElemSize int
	// StageElems is the capacity of stage 0; each further stage doubles it
	// (up to MaxStageElems).
	StageElems int
	// Segment supplies Mode, Timeout, Failpoints and Logger for the pool's
	// segments (its Spec and Init are set by the pool).
	Segment Options
}

// Pool is a fixed-size element allocator in shared memory, usable by many
// processes at once. Alloc and Free are lock-free: a tagged free-list head
// kept in the segment (so the pool survives a restart of its users), and a
// per-stage bump counter for elements never used. When all stages are full
// the pool grows by a stage: a new segment at Location.Stage(n).
//
// Policy for elements allocated by a process that dies before linking them
// anywhere: every claimed element records its owner (liveness slot and
// pid). They stay allocated (leaked) until someone calls Reclaim, which
// returns to the free list every element still claimed by an owner proven
// dead (its slot's lock is free). An owner whose death cannot be proven
// keeps its elements. Elements passed to Commit are linked and are never
// reclaimed. A typical owner runs Reclaim when it takes over (lease) or at
// warm restart.
type Pool struct {
	main   *Segment
	ctl    Offset // control block offset in main
	stride uint64 // 8-byte header + payload
	loc    Location
	opts   Options
	self   procid.Identity
	reg    *procid.Registry // the main segment's liveness registry; nil: none
	owner  uint64           // header word of elements claimed by this process

	mu     sync.Mutex // guards attaching stages
	stages [MaxStages]atomic.Pointer[stageMap]
}

type stageMap struct {
	seg  *Segment
	base Offset // offset of element 0
	cap  int
}

// OpenPool opens (or creates) the pool whose main segment is at loc.
func OpenPool(ctx context.Context, loc Location, cfg PoolConfig) (*Pool, error) {
	if cfg.ElemSize <= 0 || cfg.ElemSize > 1<<20 {
		return nil, fmt.Errorf("arena: pool element size %d outside 1..1MiB: %w", cfg.ElemSize, ErrPoolConfig)
	}
	if cfg.StageElems <= 0 || cfg.StageElems > MaxStageElems {
		return nil, fmt.Errorf("arena: pool stage size %d outside 1..%d: %w", cfg.StageElems, MaxStageElems, ErrPoolConfig)
	}
	self, err := procid.Self()
	if err != nil {
		return nil, err
	}
	stride := 8 + uint64(cfg.ElemSize+7)&^7
	p := &Pool{stride: stride, loc: loc, self: self, opts: cfg.Segment}
	opts := p.opts
	opts.Spec = layout.Spec{Kind: layout.KindPool,
		Fields:   []layout.Field{{Name: "elem_size", Value: uint64(cfg.ElemSize)}, {Name: "stage0_elems", Value: uint64(cfg.StageElems)}},
		Sections: []layout.SectionSpec{{Name: "pool", Size: poolCtlSize}, {Name: "elems", Size: stride * uint64(cfg.StageElems)}}}
	opts.Init = func(s *Segment) error {
		off, _, err := s.Section("pool")
		if err != nil {
			return err
		}
		s.Store64(off+poolOffElem, stride)
		s.Store64(off+poolOffCap0, uint64(cfg.StageElems))
		s.Store64(off+stageCapOff(0), uint64(cfg.StageElems))
		s.Store64(off+poolOffStages, 1)
		return nil
	}
	seg, err := OpenOrCreate(ctx, loc, opts)
	if err != nil {
		return nil, err
	}
	p.main = seg
	// Claims name this handle's slot, locked before the first Alloc.
	// Without one, claims of dead processes are never reclaimed.
	var slot procid.Slot
	if reg, err := seg.Liveness(); err == nil {
		if slot, err = reg.Register(); err == nil {
			p.reg = reg
		}
	}
	p.owner = claimedElem(slot, self.PID)
	p.ctl, _, _ = seg.Section("pool")
	eoff, _, _ := seg.Section("elems")
	if seg.Load64(p.ctl+poolOffElem) != stride {
		seg.Close()
		return nil, fmt.Errorf("arena: pool %s: element stride %d in the segment, %d expected: %w", loc, seg.Load64(p.ctl+poolOffElem), stride, ErrPoolState)
	}
	p.stages[0].Store(&stageMap{seg: seg, base: eoff, cap: cfg.StageElems})
	return p, nil
}

func stageCap(cap0, n int) int {
	c := cap0
	for i := 0; i < n && c < MaxStageElems; i++ {
		c *= 2
	}
	return min(c, MaxStageElems)
}

// stage returns stage n, attaching its segment on first use.
func (p *Pool) stage(ctx context.Context, n int, create bool) (*stageMap, error) {
	if sm := p.stages[n].Load(); sm != nil {
		return sm, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sm := p.stages[n].Load(); sm != nil {
		return sm, nil
	}
	loc, err := p.loc.Stage(n)
	if err != nil {
		return nil, err
	}
	c := stageCap(int(p.main.Load64(p.ctl+poolOffCap0)), n)
	opts := p.opts
	opts.Init = nil // stages start zeroed; the caller's Init is not the pool's
	opts.Spec = layout.Spec{Kind: layout.KindPoolStage,
		Fields:   []layout.Field{{Name: "stage", Value: uint64(n)}, {Name: "elem_stride", Value: p.stride}, {Name: "elems", Value: uint64(c)}},
		Sections: []layout.SectionSpec{{Name: "elems", Size: p.stride * uint64(c)}}}
	var seg *Segment
	if create {
		seg, err = OpenOrCreate(ctx, loc, opts)
	} else {
		seg, err = Open(ctx, loc, opts)
	}
	if err != nil {
		return nil, err
	}
	base, _, _ := seg.Section("elems")
	sm := &stageMap{seg: seg, base: base, cap: c}
	p.stages[n].Store(sm)
	return sm, nil
}

// elem resolves a handle to its stage and the offset of its header word,
// bounds-checking it against the pool's control data.
func (p *Pool) elem(h Handle) (*Segment, Offset, error) {
	st, idx := h.Stage(), h.Index()
	if h.IsNull() || st >= MaxStages {
		return nil, 0, fmt.Errorf("arena: pool %s: handle %#x: %w", p.loc, uint32(h), ErrBadHandle)
	}
	// A stage this process has attached is in use: skip re-reading the
	// stage count on the hot path.
	if p.stages[st].Load() == nil && uint64(st) >= p.main.Load64(p.ctl+poolOffStages) {
		return nil, 0, fmt.Errorf("arena: pool %s: handle %s: stage %d not in use: %w", p.loc, h, st, ErrBadHandle)
	}
	used := p.main.Load64(p.ctl + stageUsedOff(st))
	if uint64(idx) >= used {
		return nil, 0, fmt.Errorf("arena: pool %s: handle %s: index beyond the %d elements handed out: %w", p.loc, h, used, ErrBadHandle)
	}
	sm, err := p.stage(context.Background(), st, false)
	if err != nil {
		return nil, 0, err
	}
	if idx >= sm.cap {
		return nil, 0, fmt.Errorf("arena: pool %s: handle %s beyond stage capacity %d: %w", p.loc, h, sm.cap, ErrBadHandle)
	}
	return sm.seg, sm.base + Offset(uint64(idx)*p.stride), nil
}

// Alloc takes an element, claimed by this process. Its payload holds
// whatever the previous user left. Publish it, then call Commit; until then
// Reclaim may return it to the free list if this process dies.
func (p *Pool) Alloc(ctx context.Context) (Handle, error) {
	m := p.main
	head := p.ctl + poolOffHead
	for {
		hw := m.Load64(head)
		_, top := splitHead(hw)
		if top.IsNull() {
			h, err := p.bump(ctx)
			if err != nil {
				return 0, err
			}
			if h.IsNull() {
				continue // the free list got elements, or a stage was added
			}
			p.opts.Failpoints.Hit(FailPoolClaimed)
			return h, nil
		}
		seg, off, err := p.elem(top)
		if err != nil {
			return 0, fmt.Errorf("arena: pool %s: free-list head: %w: %w", p.loc, ErrPoolState, err)
		}
		w := seg.Load64(off)
		next := Handle(uint32(w))
		if m.CAS64(head, hw, nextHead(hw, next)) {
			if elemState(w) != elemFree {
				return 0, fmt.Errorf("arena: pool %s: element %s on the free list is in state %d: %w", p.loc, top, elemState(w), ErrPoolState)
			}
			seg.Store64(off, p.owner)
			p.opts.Failpoints.Hit(FailPoolClaimed)
			return top, nil
		}
	}
}

// bump hands out a never-used element from the last stage, growing the pool
// when it is full. A null handle means: try the free list again.
func (p *Pool) bump(ctx context.Context) (Handle, error) {
	m := p.main
	n := int(m.Load64(p.ctl + poolOffStages))
	if n < 1 || n > MaxStages {
		return 0, fmt.Errorf("arena: pool %s: %d stages: %w", p.loc, n, ErrPoolState)
	}
	last := n - 1
	usedOff := p.ctl + stageUsedOff(last)
	sm, err := p.stage(ctx, last, false)
	if err != nil {
		return 0, err
	}
	for {
		u := m.Load64(usedOff)
		if u >= uint64(sm.cap) {
			break
		}
		if m.CAS64(usedOff, u, u+1) {
			h := makeHandle(last, int(u))
			sm.seg.Store64(sm.base+Offset(u*p.stride), p.owner)
			return h, nil
		}
	}
	if _, top := splitHead(m.Load64(p.ctl + poolOffHead)); !top.IsNull() {
		return 0, nil
	}
	if n == MaxStages {
		return 0, fmt.Errorf("arena: pool %s: %d stages of up to %d elements in use: %w", p.loc, n, MaxStageElems, ErrPoolFull)
	}
	// Grow: create (or join the creation of) stage n, then publish it. Many
	// processes may race here; OpenOrCreate lets exactly one initialize the
	// stage and the CAS lets exactly one bump the count.
	nsm, err := p.stage(ctx, n, true)
	if err != nil {
		return 0, fmt.Errorf("arena: pool %s: growing to stage %d: %w", p.loc, n, err)
	}
	m.CAS64(p.ctl+stageCapOff(n), 0, uint64(nsm.cap))
	m.CAS64(p.ctl+poolOffStages, uint64(n), uint64(n+1))
	return 0, nil
}

// Commit marks a claimed element as linked: published somewhere, so
// Reclaim never takes it back.
func (p *Pool) Commit(h Handle) error {
	seg, off, err := p.elem(h)
	if err != nil {
		return err
	}
	w := seg.Load64(off)
	if w != p.owner || !seg.CAS64(off, w, linkedElem) {
		return fmt.Errorf("arena: pool %s: commit %s: header %#x: %w", p.loc, h, w, ErrNotClaimed)
	}
	return nil
}

// Free returns a claimed or linked element to the free list. Freeing an
// element that is already free is detected and reported (ErrDoubleFree).
func (p *Pool) Free(h Handle) error {
	seg, off, err := p.elem(h)
	if err != nil {
		return err
	}
	return p.push(h, seg, off, 0)
}

// push frees the element at off if its header is in a used state (or equals
// expect, when expect is non-zero) and links it on the free list.
func (p *Pool) push(h Handle, seg *Segment, off Offset, expect uint64) error {
	for {
		w := seg.Load64(off)
		if expect != 0 && w != expect {
			return fmt.Errorf("arena: pool %s: %s changed owner: %w", p.loc, h, ErrNotClaimed)
		}
		if st := elemState(w); st == elemFree || st == elemUnused {
			return fmt.Errorf("arena: pool %s: free %s: %w", p.loc, h, ErrDoubleFree)
		}
		if seg.CAS64(off, w, freeElem(0)) {
			break
		}
	}
	head := p.ctl + poolOffHead
	for {
		hw := p.main.Load64(head)
		_, top := splitHead(hw)
		seg.Store64(off, freeElem(top))
		if p.main.CAS64(head, hw, nextHead(hw, h)) {
			return nil
		}
	}
}

// Payload returns the segment and offset of the element's payload, for the
// segment's word accessors. The payload is ElemSize bytes, 8-byte aligned.
func (p *Pool) Payload(h Handle) (*Segment, Offset, error) {
	seg, off, err := p.elem(h)
	if err != nil {
		return nil, 0, err
	}
	return seg, off + 8, nil
}

// PoolStats counts the pool's elements by state (a scan: not for hot paths).
type PoolStats struct {
	Stages   int
	Capacity int // elements in all stages in use
	Unused   int // never handed out
	Free     int // on the free list
	Claimed  int // allocated, not committed
	Linked   int // committed
	Dead     int // claimed by processes proven gone (Reclaim frees them)
}

// Stats scans every element header.
func (p *Pool) Stats() (PoolStats, error) {
	var st PoolStats
	err := p.scan(func(h Handle, seg *Segment, off Offset, w uint64) {
		switch elemState(w) {
		case elemFree:
			st.Free++
		case elemClaimed:
			st.Claimed++
			if p.ownerDead(w) {
				st.Dead++
			}
		case elemLinked:
			st.Linked++
		}
	}, &st)
	return st, err
}

func (p *Pool) scan(fn func(Handle, *Segment, Offset, uint64), st *PoolStats) error {
	n := int(p.main.Load64(p.ctl + poolOffStages))
	if n < 1 || n > MaxStages {
		return fmt.Errorf("arena: pool %s: %d stages: %w", p.loc, n, ErrPoolState)
	}
	st.Stages = n
	for s := 0; s < n; s++ {
		sm, err := p.stage(context.Background(), s, false)
		if err != nil {
			return err
		}
		used := int(min(p.main.Load64(p.ctl+stageUsedOff(s)), uint64(sm.cap)))
		st.Capacity += sm.cap
		st.Unused += sm.cap - used
		for i := 0; i < used; i++ {
			off := sm.base + Offset(uint64(i)*p.stride)
			fn(makeHandle(s, i), sm.seg, off, sm.seg.Load64(off))
		}
	}
	return nil
}

// ownerDead reports whether the owner of claimed header w is proven dead
// by procid's one judgement. The pid alone is never proof here: the pool
// does not know in which PID namespace a claimer ran.
func (p *Pool) ownerDead(w uint64) bool {
	if w == p.owner {
		return false
	}
	slot, pid := splitClaimed(w)
	lv, _ := p.reg.Judge(procid.Claimant{Slot: slot, ID: procid.Identity{PID: pid}}, p.self)
	return lv == procid.Dead
}

// Reclaim returns to the free list every element still claimed by a process
// proven dead (see Pool), and reports how many it freed. It is safe to run while
// other processes use the pool: it touches only elements whose owner is
// dead, and frees each with a CAS on the exact claimed header.
func (p *Pool) Reclaim() (int, error) {
	var dead []struct {
		h   Handle
		seg *Segment
		off Offset
		w   uint64
	}
	var st PoolStats
	err := p.scan(func(h Handle, seg *Segment, off Offset, w uint64) {
		if elemState(w) == elemClaimed && p.ownerDead(w) {
			dead = append(dead, struct {
				h   Handle
				seg *Segment
				off Offset
				w   uint64
			}{h, seg, off, w})
		}
	}, &st)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range dead {
		if p.push(d.h, d.seg, d.off, d.w) == nil {
			n++
		}
	}
	return n, nil
}

// Close detaches the pool's segments.
func (p *Pool) Close() error {
	var errs []error
	for i := range p.stages {
		if sm := p.stages[i].Swap(nil); sm != nil {
			errs = append(errs, sm.seg.Close())
		}
	}
	return errors.Join(errs...)
}

// RemovePool removes the pool's main segment and every stage segment. The
// main segment goes first: every process that uses a stage has the main
// segment attached, so without Force a pool in use is refused (ErrInUse)
// before any stage is touched, rather than left half removed. Stage
// segments left by an earlier, interrupted removal are removed even when
// the main segment is already gone.
func RemovePool(loc Location, opts RemoveOptions) error {
	mainErr := Remove(loc, opts)
	if mainErr != nil && !errors.Is(mainErr, ErrNotFound) {
		return mainErr
	}
	var errs []error
	removed := 0
	for n := 1; n < MaxStages; n++ {
		sl, err := loc.Stage(n)
		if err != nil {
			return err
		}
		switch err := Remove(sl, opts); {
		case err == nil:
			removed++
		case !errors.Is(err, ErrNotFound):
			errs = append(errs, err)
		}
	}
	if mainErr != nil && removed == 0 {
		errs = append(errs, mainErr) // nothing was there
	}
	return errors.Join(errs...)
}
