package index

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shmkit/shmkit/arena"
)

// Failpoints of the writer (see package failpoint).
const (
	// FailInsertMid: inside Put of a new key, the sprig's version is odd
	// and the entry is linked into the tree, the counts not yet updated.
	FailInsertMid = "index.insert.mid"
	// FailDeleteMid: inside Delete, the sprig's version is odd and the
	// entry is unlinked, not yet on the free list.
	FailDeleteMid = "index.delete.mid"
	// FailMarkedDirty: the first mutation after attaching has just
	// invalidated the clean-shutdown marker.
	FailMarkedDirty = "index.marked-dirty"
	// FailGate: the first mutation after attaching has checked the lease
	// and is about to pass the writer gate (the window of a paused writer
	// in the unfenced design). lease.FailBeforeFencedCAS follows, inside
	// the gate's fenced CAS.
	FailGate = "index.gate"
	// FailInsertAlloc: inside Put of a new key, the entry is allocated and
	// filled, the sprig not yet changed.
	FailInsertAlloc = "index.insert.alloc"
	// FailInsertDone: inside Put of a new key, the sprig's version is even
	// again, the statistics not yet updated.
	FailInsertDone = "index.insert.done"
	// FailDeleteDone: inside Delete, the sprig's version is even again and
	// the statistics updated, the entry not yet on the free list.
	FailDeleteDone = "index.delete.done"
	// FailStageCreate: the allocator found the last stage full and is
	// about to create the next stage's segment.
	FailStageCreate = "index.stage.create"
	// FailStageCreated: the next stage's segment exists, not yet published
	// in the meta.
	FailStageCreated = "index.stage.created"
	// FailCloseClosing: CloseClean has moved the writer gate to closing
	// and not yet recorded the storage identity.
	FailCloseClosing = "index.close.closing"
)

// writable checks that the index may be written: open, still holding its
// lease. On the first mutation after a warm attach it passes the writer
// gate (a fenced CAS: ErrLeaseLost if another writer has attached since)
// and then invalidates the clean marker.
func (ix *Index) writable() error {
	if ix.v.closed.Load() {
		return fmt.Errorf("index: write: %w", ErrClosed)
	}
	if ix.lost.Load() || !ix.lease.Holds() {
		ix.lost.Store(true)
		return fmt.Errorf("index: write: %w: another process took over the index (this one was paused past Config.LeaseThreshold); stop this one", ErrLeaseLost)
	}
	if !ix.dirty.Load() {
		ix.allocMu.Lock()
		defer ix.allocMu.Unlock()
		if !ix.dirty.Load() {
			// The writer gate first: a fenced CAS that fails once another
			// writer has attached (and stamped it), so a writer paused
			// since its lease check writes nothing at all.
			ix.v.cfg.Failpoints.Hit(FailGate)
			if err := ix.passGate(gateClean, gateDirty); err != nil {
				return err
			}
			// Clean → ready: from now on a crash leaves an unclean index.
			ix.v.main.SetState(stateClean, stateReady)
			ix.dirty.Store(true)
			ix.v.cfg.Failpoints.Hit(FailMarkedDirty)
		}
	}
	return nil
}

func (ix *Index) checkRecord(r *Record) error {
	if ix.v.cfg.DataInIndex && (r.Offset != 0 || r.FileID != 0) {
		return fmt.Errorf("index: put %x: a data-in-index namespace keeps a value, not a storage location (file %d offset %d): %w",
			r.Digest[:4], r.FileID, r.Offset, ErrRecord)
	}
	if !ix.v.cfg.DataInIndex && r.Value != 0 {
		return fmt.Errorf("index: put %x: inline value %d but the namespace is not data-in-index: %w", r.Digest[:4], r.Value, ErrRecord)
	}
	return nil
}

// Put inserts r or replaces the record with the same digest. Readers see
// either the old record or the new one, never a mix.
func (ix *Index) Put(r Record) error {
	if err := ix.checkRecord(&r); err != nil {
		return err
	}
	_, err := ix.update(r.Digest, func(Record, bool) (Record, Action) { return r, Write })
	return err
}

// Delete removes the record of d and reports whether there was one. The
// entry goes to the free list after the sprig's version has changed, so a
// reader that walked into it before rejects what it read.
func (ix *Index) Delete(d Digest) (bool, error) {
	return ix.update(d, func(Record, bool) (Record, Action) { return Record{}, Remove })
}

// Action is what an Update function decides.
type Action uint8

// Actions.
const (
	// Keep leaves the record as it is (or absent).
	Keep Action = iota
	// Write stores the returned record (its digest must be the one
	// updated).
	Write
	// Remove deletes the record.
	Remove
)

// Update calls fn with the current record of d (found false if there is
// none) while d's sprig is locked against other writers, and applies what
// fn decides: a compare-and-set, e.g. a defragmenter that moves a record
// only if the index still points at the old copy. fn must be quick and
// must not call the index. Update reports whether d was found.
func (ix *Index) Update(d Digest, fn func(cur Record, found bool) (Record, Action)) (bool, error) {
	return ix.update(d, func(cur Record, found bool) (Record, Action) {
		next, act := fn(cur, found)
		if act == Write && next.Digest != d {
			return next, actionBadDigest
		}
		return next, act
	})
}

// actionBadDigest: an Update function returned a record of another digest.
const actionBadDigest Action = 0xff

func (ix *Index) update(d Digest, fn func(Record, bool) (Record, Action)) (bool, error) {
	ix.gate.RLock()
	defer ix.gate.RUnlock()
	if err := ix.writable(); err != nil {
		return false, err
	}
	sp := ix.v.sprig(&d)
	mu := &ix.locks[sp%uint64(len(ix.locks))]
	mu.Lock()
	defer mu.Unlock()
	w0, w1, w2 := d.words()
	h, found, err := ix.find(sp, w0, w1, w2)
	if err != nil {
		return false, err
	}
	var cur entry
	var curRec Record
	if found {
		ws, i, err := ix.v.entries(h)
		if err != nil {
			return false, err
		}
		ws.LoadN(i, cur[:])
		curRec = cur.record()
	}
	next, act := fn(curRec, found)
	switch act {
	case Keep:
		return found, nil
	case actionBadDigest:
		return found, fmt.Errorf("index: update %x: the function returned a record of digest %x: %w", d[:4], next.Digest[:4], ErrRecord)
	case Write:
		if err := ix.checkRecord(&next); err != nil {
			return found, err
		}
		if found {
			ix.replace(sp, h, &cur, &next)
			return true, nil
		}
		return false, ix.insertNew(sp, &next, w0, w1, w2)
	case Remove:
		if !found {
			return false, nil
		}
		return true, ix.unlink(sp, h, &cur, w0, w1, w2)
	}
	return found, fmt.Errorf("index: update %x: unknown action %d: %w", d[:4], act, ErrRecord)
}

// replace overwrites entry h (whose current words are prev) with r, under
// an odd version.
func (ix *Index) replace(sp uint64, h Handle, prev *entry, r *Record) {
	payload, flags := encodeRecord(r, ix.v.cfg.DataInIndex)
	ws, i, _ := ix.v.entries(h) // h was just found through entries
	ix.bump(sp)
	for k := range payload {
		ws.Store(i+uint64(k), payload[k])
	}
	ws.Store(i+wLeft, prev[wLeft]&^flagMask|flags<<flagShift)
	ix.bump(sp)
	pb := uint64(r.Digest.Partition()) * partWords
	ix.v.parts.Add(pb+pBytes, uint64(r.Size)-uint64(uint32(prev[wVoidSize])))
	ix.v.parts.Add(pb+pTombstones, tomb(flags)-tomb(prev.flags()))
}

// insertNew allocates an entry for r and links it into its sprig.
func (ix *Index) insertNew(sp uint64, r *Record, w0, w1, w2 uint64) error {
	payload, flags := encodeRecord(r, ix.v.cfg.DataInIndex)
	h, err := ix.alloc()
	if err != nil {
		return err
	}
	ws, i, err := ix.v.entries(h)
	if err != nil {
		return err
	}
	for k := range payload {
		ws.Store(i+uint64(k), payload[k])
	}
	ws.Store(i+wLeft, flags<<flagShift)
	ws.Store(i+wRight, 1<<heightShift)
	ix.v.cfg.Failpoints.Hit(FailInsertAlloc)
	ix.bump(sp)
	root, err := ix.insert(sprigRoot(ix.v.sprigs.Load(sp)), h, w0, w1, w2, 0)
	if err != nil {
		ix.bump(sp)
		ix.free(h)
		return err
	}
	ix.setRoot(sp, root)
	ix.v.cfg.Failpoints.Hit(FailInsertMid)
	ix.bump(sp)
	ix.v.cfg.Failpoints.Hit(FailInsertDone)
	pb := uint64(r.Digest.Partition()) * partWords
	ix.v.parts.Add(pb+pCount, 1)
	ix.v.parts.Add(pb+pBytes, uint64(r.Size))
	ix.v.parts.Add(pb+pTombstones, tomb(flags))
	ix.v.meta.Add(mLive, 1)
	return nil
}

func tomb(flags uint64) uint64 {
	if flags&flagTombstone != 0 {
		return 1
	}
	return 0
}

// unlink removes entry h (words e, digest w0..w2) from its sprig and puts
// it on the free list once the sprig's version is even again.
func (ix *Index) unlink(sp uint64, h Handle, e *entry, w0, w1, w2 uint64) error {
	ix.bump(sp)
	root, err := ix.remove(sprigRoot(ix.v.sprigs.Load(sp)), w0, w1, w2, 0)
	if err != nil {
		ix.bump(sp)
		return err
	}
	ix.setRoot(sp, root)
	ix.v.cfg.Failpoints.Hit(FailDeleteMid)
	ix.bump(sp)
	d := digestFromWords(w0, w1, w2)
	pb := uint64(d.Partition()) * partWords
	ix.v.parts.Add(pb+pCount, ^uint64(0))
	ix.v.parts.Add(pb+pBytes, -uint64(uint32(e[wVoidSize])))
	ix.v.parts.Add(pb+pTombstones, -tomb(e.flags()))
	ix.v.meta.Add(mLive, ^uint64(0))
	ix.v.cfg.Failpoints.Hit(FailDeleteDone)
	ix.free(h)
	return nil
}

// bump changes sprig sp's version by one (even → odd before a change, odd
// → even after it), keeping its root. The version wraps mod 2^27: before
// it stores a wrapped version it counts the wrap in the meta, so a reader
// whose walk spans 2^26 changes still sees a change (shared.go). Only the
// holder of the sprig's lock calls it.
func (ix *Index) bump(sp uint64) {
	w := ix.v.sprigs.Load(sp) + sprigVersionOne // a carry out of bit 63 is the wrap
	if w>>sprigRootBits == 0 {
		ix.v.meta.Add(mWraps, 1)
	}
	ix.v.sprigs.Store(sp, w)
}

// setRoot makes root the root of sprig sp, keeping its (odd) version.
func (ix *Index) setRoot(sp uint64, root Handle) {
	ix.v.sprigs.Store(sp, ix.v.sprigs.Load(sp)&^sprigRootMask|uint64(root))
}

// find returns the entry of a digest in a sprig (writer side: the sprig is
// locked, so no validation is needed, but every link is still checked).
func (ix *Index) find(sp, w0, w1, w2 uint64) (Handle, bool, error) {
	h := sprigRoot(ix.v.sprigs.Load(sp))
	for depth := 0; !h.IsNull(); depth++ {
		if depth >= maxDepth {
			return 0, false, corrupt("sprig walk deeper than %d (a cycle?)", maxDepth)
		}
		ws, i, err := ix.v.entries(h)
		if err != nil {
			return 0, false, err
		}
		k0, k1, k2 := ws.Load(i+wDigest0), ws.Load(i+wDigest1), ws.Load(i+wDigest2)&^0xffffffff
		switch {
		case w0 == k0 && w1 == k1 && w2 == k2:
			return h, true, nil
		case less(w0, w1, w2, k0, k1, k2):
			h = Handle(ws.Load(i+wLeft) & linkMask)
		default:
			h = Handle(ws.Load(i+wRight) & linkMask)
		}
	}
	return 0, false, nil
}

// node is the writer's view of one entry during a tree operation.
type node struct {
	ws         arena.Words
	i          uint64
	k0, k1, k2 uint64
}

func (ix *Index) node(h Handle) (node, error) {
	ws, i, err := ix.v.entries(h)
	if err != nil {
		return node{}, err
	}
	return node{ws: ws, i: i, k0: ws.Load(i + wDigest0), k1: ws.Load(i + wDigest1), k2: ws.Load(i+wDigest2) &^ 0xffffffff}, nil
}

func (n node) left() Handle  { return Handle(n.ws.Load(n.i+wLeft) & linkMask) }
func (n node) right() Handle { return Handle(n.ws.Load(n.i+wRight) & linkMask) }
func (n node) height() uint64 {
	return (n.ws.Load(n.i+wRight) & heightMask) >> heightShift
}
func (n node) setLeft(h Handle) {
	n.ws.Store(n.i+wLeft, n.ws.Load(n.i+wLeft)&^linkMask|uint64(h))
}
func (n node) setRight(h Handle) {
	n.ws.Store(n.i+wRight, n.ws.Load(n.i+wRight)&^linkMask|uint64(h))
}
func (n node) setHeight(v uint64) {
	n.ws.Store(n.i+wRight, n.ws.Load(n.i+wRight)&^heightMask|v<<heightShift&heightMask)
}

// height returns the stored height of h's subtree (0 for null).
func (ix *Index) height(h Handle) (uint64, error) {
	if h.IsNull() {
		return 0, nil
	}
	n, err := ix.node(h)
	if err != nil {
		return 0, err
	}
	return n.height(), nil
}

// fix recomputes n's height from its children's.
func (ix *Index) fix(n node) (hl, hr uint64, err error) {
	if hl, err = ix.height(n.left()); err != nil {
		return 0, 0, err
	}
	if hr, err = ix.height(n.right()); err != nil {
		return 0, 0, err
	}
	if max(hl, hr) >= maxDepth {
		return 0, 0, corrupt("sprig subtree height %d beyond %d", max(hl, hr), maxDepth)
	}
	n.setHeight(1 + max(hl, hr))
	return hl, hr, nil
}

// rotate turns the subtree at x: right (x's left child rises) or left.
func (ix *Index) rotate(x Handle, right bool) (Handle, error) {
	xn, err := ix.node(x)
	if err != nil {
		return 0, err
	}
	c := xn.right()
	if right {
		c = xn.left()
	}
	cn, err := ix.node(c)
	if err != nil {
		return 0, err
	}
	if right {
		xn.setLeft(cn.right())
		cn.setRight(x)
	} else {
		xn.setRight(cn.left())
		cn.setLeft(x)
	}
	if _, _, err := ix.fix(xn); err != nil {
		return 0, err
	}
	if _, _, err := ix.fix(cn); err != nil {
		return 0, err
	}
	return c, nil
}

// child and setChild read and write a node's left link (right false) or
// right link (right true).
func (n node) child(right bool) Handle {
	if right {
		return n.right()
	}
	return n.left()
}

func (n node) setChild(right bool, h Handle) {
	if right {
		n.setRight(h)
	} else {
		n.setLeft(h)
	}
}

// rotateHeavy rebalances x, whose subtree on the heavy side (right, or
// left) is two levels higher than the other: a single rotation, preceded
// by one on the heavy child when its inner subtree is the higher (the
// double-rotation cases). It returns the subtree's new root.
func (ix *Index) rotateHeavy(x Handle, xn node, heavyRight bool) (Handle, error) {
	cn, err := ix.node(xn.child(heavyRight))
	if err != nil {
		return 0, err
	}
	hOuter, err := ix.height(cn.child(heavyRight))
	if err != nil {
		return 0, err
	}
	hInner, err := ix.height(cn.child(!heavyRight))
	if err != nil {
		return 0, err
	}
	if hOuter < hInner {
		c, err := ix.rotate(xn.child(heavyRight), heavyRight)
		if err != nil {
			return 0, err
		}
		xn.setChild(heavyRight, c)
	}
	return ix.rotate(x, !heavyRight)
}

// rebalance restores the AVL condition at x (its children's subtrees are
// AVL trees whose heights differ by at most 2) and returns the subtree's
// new root.
func (ix *Index) rebalance(x Handle) (Handle, error) {
	xn, err := ix.node(x)
	if err != nil {
		return 0, err
	}
	hl, hr, err := ix.fix(xn)
	if err != nil {
		return 0, err
	}
	switch {
	case hl > hr+1:
		return ix.rotateHeavy(x, xn, false)
	case hr > hl+1:
		return ix.rotateHeavy(x, xn, true)
	}
	return x, nil
}

// insert links h (digest w0..w2, height 1, no children) into the AVL
// tree at root and returns the new root.
func (ix *Index) insert(root, h Handle, w0, w1, w2 uint64, depth int) (Handle, error) {
	if root.IsNull() {
		return h, nil
	}
	if depth >= maxDepth {
		return 0, corrupt("sprig deeper than %d (a cycle?)", maxDepth)
	}
	n, err := ix.node(root)
	if err != nil {
		return 0, err
	}
	switch {
	case less(w0, w1, w2, n.k0, n.k1, n.k2):
		c, err := ix.insert(n.left(), h, w0, w1, w2, depth+1)
		if err != nil {
			return 0, err
		}
		n.setLeft(c)
	case less(n.k0, n.k1, n.k2, w0, w1, w2):
		c, err := ix.insert(n.right(), h, w0, w1, w2, depth+1)
		if err != nil {
			return 0, err
		}
		n.setRight(c)
	default:
		return 0, corrupt("digest already in the sprig at entry %s", root)
	}
	return ix.rebalance(root)
}

// remove unlinks the entry with digest w0..w2 from the AVL tree at root
// and returns the new root.
func (ix *Index) remove(root Handle, w0, w1, w2 uint64, depth int) (Handle, error) {
	if root.IsNull() {
		return 0, corrupt("entry to delete vanished from its sprig")
	}
	if depth >= maxDepth {
		return 0, corrupt("sprig deeper than %d (a cycle?)", maxDepth)
	}
	n, err := ix.node(root)
	if err != nil {
		return 0, err
	}
	switch {
	case less(w0, w1, w2, n.k0, n.k1, n.k2):
		c, err := ix.remove(n.left(), w0, w1, w2, depth+1)
		if err != nil {
			return 0, err
		}
		n.setLeft(c)
		return ix.rebalance(root)
	case less(n.k0, n.k1, n.k2, w0, w1, w2):
		c, err := ix.remove(n.right(), w0, w1, w2, depth+1)
		if err != nil {
			return 0, err
		}
		n.setRight(c)
		return ix.rebalance(root)
	}
	l, r := n.left(), n.right()
	if l.IsNull() {
		return r, nil
	}
	if r.IsNull() {
		return l, nil
	}
	// Two children: the smallest entry of the right subtree takes root's
	// place.
	m, rest, err := ix.removeMin(r, depth+1)
	if err != nil {
		return 0, err
	}
	mn, err := ix.node(m)
	if err != nil {
		return 0, err
	}
	mn.setLeft(l)
	mn.setRight(rest)
	return ix.rebalance(m)
}

// removeMin unlinks the smallest entry of the tree at root and returns it
// and the tree's new root.
func (ix *Index) removeMin(root Handle, depth int) (Handle, Handle, error) {
	if depth >= maxDepth {
		return 0, 0, corrupt("sprig deeper than %d (a cycle?)", maxDepth)
	}
	n, err := ix.node(root)
	if err != nil {
		return 0, 0, err
	}
	if n.left().IsNull() {
		return root, n.right(), nil
	}
	m, c, err := ix.removeMin(n.left(), depth+1)
	if err != nil {
		return 0, 0, err
	}
	n.setLeft(c)
	nr, err := ix.rebalance(root)
	return m, nr, err
}

// alloc hands out a free entry: the head of the free list, or the next
// never-used one (adding a stage when the last is full).
func (ix *Index) alloc() (Handle, error) {
	ix.allocMu.Lock()
	defer ix.allocMu.Unlock()
	m := ix.v.meta
	if h := Handle(m.Load(mFreeHead) & linkMask); !h.IsNull() {
		ws, i, err := ix.v.entries(h)
		if err != nil {
			return 0, fmt.Errorf("index: free list head: %w", err)
		}
		if ws.Load(i+wLeft)&flagMask != 0 {
			return 0, corrupt("free list entry %s is marked live", h)
		}
		m.Store(mFreeHead, ws.Load(i+wRight)&linkMask)
		m.Store(mFreeCount, m.Load(mFreeCount)-1)
		return h, nil
	}
	next, stages := m.Load(mNext), m.Load(mStages)
	if stages < 1 || stages > MaxStages || next > stages*ix.v.stageElems {
		return 0, corrupt("allocator: %d entries handed out in %d stages of %d", next, stages, ix.v.stageElems)
	}
	if next == stages*ix.v.stageElems {
		if stages == MaxStages {
			return 0, fmt.Errorf("index: all %d stages of %d entries are full: %w (use larger stages: Config.StageEntries)", MaxStages, ix.v.stageElems, ErrFull)
		}
		if err := ix.addStage(int(stages)); err != nil {
			return 0, err
		}
	}
	m.Store(mNext, next+1)
	return handleAt(next, ix.v.stageElems), nil
}

// free puts h on the free list. The caller has already unlinked it from its
// sprig (and changed the sprig's version).
func (ix *Index) free(h Handle) {
	ix.allocMu.Lock()
	defer ix.allocMu.Unlock()
	ws, i, err := ix.v.entries(h)
	if err != nil {
		return // h came from entries() before: cannot fail
	}
	m := ix.v.meta
	ws.Store(i+wLeft, 0)
	ws.Store(i+wRight, m.Load(mFreeHead)&linkMask)
	m.Store(mFreeHead, uint64(h))
	m.Store(mFreeCount, m.Load(mFreeCount)+1)
}

// addStage creates stage k's segment and then publishes it in the meta,
// so readers that find a handle in it can attach it.
func (ix *Index) addStage(k int) error {
	cfg := &ix.v.cfg
	loc := cfg.Store.block(cfg, k)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg.Failpoints.Hit(FailStageCreate)
	seg, err := arena.Create(ctx, loc, cfg.segOptions(cfg.stageSpec(k)))
	cfg.Failpoints.Hit(FailStageCreated)
	if errors.Is(err, arena.ErrExists) && isIndexSegment(loc) {
		// Left over from an index discarded without it (or a failed
		// addStage): nothing refers to it, unless this writer was
		// replaced and the segment is the new index's stage k.
		if rerr := ix.replaced(); rerr != nil {
			return fmt.Errorf("index: add stage %d: %s exists: %w", k, loc, rerr)
		}
		// Remove the segment checked to be an index's, not one a newer
		// writer may have created at loc since (RemoveIf removes by
		// identity); one gone meanwhile needs no removal.
		_, rerr := arena.RemoveIf(loc, arena.RemoveOptions{Force: true}, func(seg *arena.Segment, hdrErr error) bool {
			return hdrErr == nil && seg.Header().Kind == cfg.stageSpec(k).Kind
		})
		if rerr != nil && !errors.Is(rerr, arena.ErrNotFound) {
			return fmt.Errorf("index: add stage %d: remove the stale segment: %w", k, rerr)
		}
		seg, err = arena.Create(ctx, loc, cfg.segOptions(cfg.stageSpec(k)))
	}
	if err != nil {
		return fmt.Errorf("index: add stage %d: %w", k, err)
	}
	w, err := stageWords(seg, ix.v.stageElems)
	if err != nil {
		seg.Close()
		return err
	}
	ix.v.stageMu.Lock()
	ix.v.segs[k] = seg
	ix.v.stages[k].Store(&w)
	ix.v.stageMu.Unlock()
	ix.v.meta.Store(mStages, uint64(k+1))
	return nil
}

// replaced reports (ErrLeaseLost) whether another writer has replaced this
// one: its main segment was discarded by a cold takeover, or the lease
// names another owner. addStage asks it before it removes a segment by
// name, the one shared change the writer gate cannot fence (see "Fencing"
// in the package documentation).
func (ix *Index) replaced() error {
	if ix.v.cfg.noFence {
		return nil
	}
	gone, err := ix.v.main.Removed()
	if err != nil {
		ix.lost.Store(true)
		return fmt.Errorf("index: %w: cannot tell whether another writer discarded the index: %w", ErrLeaseLost, err)
	}
	if gone {
		ix.lost.Store(true)
		return fmt.Errorf("index: %w: the index was discarded by another writer's cold start (this one was paused past Config.LeaseThreshold); stop this one", ErrLeaseLost)
	}
	if !ix.lease.Holds() {
		ix.lost.Store(true)
		return fmt.Errorf("index: %w: another process took over the index (this one was paused past Config.LeaseThreshold); stop this one", ErrLeaseLost)
	}
	return nil
}
