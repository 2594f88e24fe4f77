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
	// and the entry is in the sprig's table, the counts not yet updated.
	FailInsertMid = "index.insert.mid"
	// FailDeleteMid: inside Delete, the sprig's version is odd and the
	// entry is removed from the sprig's table.
	FailDeleteMid = "index.delete.mid"
	// FailMarkedDirty: the first mutation after attaching has just
	// invalidated the clean-shutdown marker.
	FailMarkedDirty = "index.marked-dirty"
	// FailGate: the first mutation after attaching has checked the lease
	// and is about to pass the writer gate (the window of a paused writer
	// in the unfenced design). lease.FailBeforeFencedCAS follows, inside
	// the gate's fenced CAS.
	FailGate = "index.gate"
	// FailInsertAlloc: inside Put of a new key that fits the sprig's
	// table, the sprig not yet changed.
	FailInsertAlloc = "index.insert.alloc"
	// FailInsertDone: inside Put of a new key, the sprig's version is even
	// again, the statistics not yet updated.
	FailInsertDone = "index.insert.done"
	// FailDeleteDone: inside Delete, the sprig's version is even again and
	// the statistics updated, a table left sparse not yet shrunk.
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
	if r.LastUpdate > MaxLastUpdate {
		return fmt.Errorf("index: put %x: last update %d ms is past the largest an entry holds (%d, in 2109): %w", r.Digest[:4], r.LastUpdate, uint64(MaxLastUpdate), ErrRecord)
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

// Delete removes the record of d and reports whether there was one. A
// table it leaves empty goes to the free list after the sprig's word has
// changed, so a reader that was reading it rejects what it read.
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
	t, err := ix.table(sp)
	if err != nil {
		return false, err
	}
	x := ix.v.homeKey(w0)
	pos, found := t.find(x, w0, w1, w2)
	var cur entry
	var curRec Record
	if found {
		t.ws.LoadN(t.line(pos), cur[:])
		curRec = cur.record()
	}
	next, act := fn(curRec, found)
	if act == Write || act == Remove {
		// Counted in flight from before the first change to after the
		// last (allocator, sprig, counts), for Check after a kill.
		ix.v.meta.Add(mBusy, 1)
		defer ix.v.meta.Add(mBusy, ^uint64(0))
	}
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
			ix.replace(sp, &t, pos, &cur, &next)
			return true, nil
		}
		return false, ix.insertNew(sp, &t, pos, &next)
	case Remove:
		if !found {
			return false, nil
		}
		return true, ix.remove(sp, &t, pos, &cur)
	}
	return found, fmt.Errorf("index: update %x: unknown action %d: %w", d[:4], act, ErrRecord)
}

// wtable is the writer's view of a sprig's table (the sprig is locked).
type wtable struct {
	word  uint64 // the sprig word it was read from
	ws    arena.Words
	base  uint64 // word number of line 0
	n     uint64 // lines (0: the sprig is empty)
	count uint64 // entries (the sprig's count word)
	x     func(w0 uint64) uint64
}

func (t *wtable) line(j uint64) uint64 { return t.base + j*entryWords }

func (t *wtable) live(j uint64) bool { return t.ws.Load(t.line(j)+wFlags)&(flagLive<<flagShift) != 0 }

// home returns the home line of the entry in line j.
func (t *wtable) home(j uint64) uint64 { return homeOf(t.x(t.ws.Load(t.line(j)+wDigest0)), t.n) }

// table reads sprig sp's table (writer side: the sprig is locked, so no
// validation is needed, but the table's handle, class and count are
// still checked).
func (ix *Index) table(sp uint64) (wtable, error) {
	word := ix.v.sprigs.Load(sp)
	t := wtable{word: word, x: ix.v.homeKey}
	if !sprigStable(word) {
		return t, corrupt("sprig record %d: version odd (a writer stopped mid-change)", sp)
	}
	if sprigTable(word).IsNull() {
		return t, nil
	}
	ws, i, n, err := ix.v.table(word)
	if err != nil {
		return t, err
	}
	t.ws, t.base, t.n = ws, i, n
	t.count = ix.v.counts.Load(sp)
	if t.count == 0 || t.count > n {
		return t, corrupt("sprig table %s of %d lines says it holds %d entries", sprigTable(word), n, t.count)
	}
	return t, nil
}

// find returns the line of digest w0..w2 (home key x) in t, or the line
// where it belongs (an empty line, the line of the first larger digest,
// or t.n past the end) and false.
func (t *wtable) find(x, w0, w1, w2 uint64) (uint64, bool) {
	if t.n == 0 {
		return 0, false
	}
	for j := homeOf(x, t.n); j < t.n; j++ {
		i := t.line(j)
		if t.ws.Load(i+wFlags)&(flagLive<<flagShift) == 0 {
			return j, false
		}
		k0, k1, k2 := t.ws.Load(i+wDigest0), t.ws.Load(i+wDigest1), t.ws.Load(i+wDigest2)&^0xffffffff
		switch {
		case w0 == k0 && w1 == k1 && w2 == k2:
			return j, true
		case less(w0, w1, w2, k0, k1, k2):
			return j, false
		}
	}
	return t.n, false
}

// moveLine copies the entry of line from to line to.
func (t *wtable) moveLine(from, to uint64) {
	a, b := t.line(from), t.line(to)
	for k := uint64(0); k <= wFlags; k++ {
		t.ws.Store(b+k, t.ws.Load(a+k))
	}
}

// clearLine empties line j.
func (t *wtable) clearLine(j uint64) {
	a := t.line(j)
	for k := uint64(0); k <= wFlags; k++ {
		t.ws.Store(a+k, 0)
	}
}

// replace overwrites the entry in line pos of t (whose current words are
// prev) with r, under an odd version.
func (ix *Index) replace(sp uint64, t *wtable, pos uint64, prev *entry, r *Record) {
	payload, fw := encodeRecord(r, ix.v.cfg.DataInIndex)
	flags := fw >> flagShift
	i := t.line(pos)
	ix.bump(sp)
	for k := range payload {
		t.ws.Store(i+uint64(k), payload[k])
	}
	t.ws.Store(i+wFlags, fw)
	ix.bump(sp)
	pb := uint64(r.Digest.Partition()) * partWords
	ix.v.parts.Add(pb+pBytes, uint64(r.Size)-uint64(uint32(prev[wVoidSize])))
	ix.v.parts.Add(pb+pTombstones, tomb(flags)-tomb(prev.flags()))
}

// insertNew puts r, absent from t, into line pos of sprig sp's table: in
// place, shifting the entries from pos to the next empty line one line
// right, under an odd version; or, when the table is full (maxEntries) or
// no empty line follows pos, into a new, larger table (grow).
func (ix *Index) insertNew(sp uint64, t *wtable, pos uint64, r *Record) error {
	payload, fw := encodeRecord(r, ix.v.cfg.DataInIndex)
	flags := fw >> flagShift
	var ne entry
	copy(ne[:], payload[:])
	ne[wFlags] = fw
	empty := t.n
	if t.n > 0 && t.count < maxEntries(t.n) {
		for j := pos; j < t.n; j++ {
			if !t.live(j) {
				empty = j
				break
			}
		}
	}
	ix.v.cfg.Failpoints.Hit(FailInsertAlloc)
	if empty == t.n {
		if err := ix.grow(sp, t, pos, &ne); err != nil {
			return err
		}
	} else {
		ix.bump(sp)
		for j := empty; j > pos; j-- {
			t.moveLine(j-1, j)
		}
		i := t.line(pos)
		for k := range payload {
			t.ws.Store(i+uint64(k), payload[k])
		}
		t.ws.Store(i+wFlags, ne[wFlags])
		ix.v.counts.Store(sp, t.count+1)
		ix.v.cfg.Failpoints.Hit(FailInsertMid)
		ix.bump(sp)
	}
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

// entriesOf copies t's entries in line order (digest order), with ne
// inserted before line pos if ne is not nil, or line pos left out if
// skip.
func (t *wtable) entriesOf(pos uint64, ne *entry, skip bool) []entry {
	out := make([]entry, 0, t.count+1)
	for j := range t.n {
		if j == pos && ne != nil {
			out = append(out, *ne)
		}
		if !t.live(j) || (skip && j == pos) {
			continue
		}
		var e entry
		t.ws.LoadN(t.line(j), e[:])
		out = append(out, e)
	}
	if pos >= t.n && ne != nil {
		out = append(out, *ne)
	}
	return out
}

// grow moves sprig sp's entries and ne (to go before line pos) into a new
// table sized for relayLoad (see relay).
func (ix *Index) grow(sp uint64, t *wtable, pos uint64, ne *entry) error {
	es := t.entriesOf(pos, ne, false)
	if uint64(len(es)) != t.count+1 {
		return corrupt("sprig record %d: table %s says %d entries, holds %d", sp, sprigTable(t.word), t.count, len(es)-1)
	}
	c := classFor(uint64(len(es)) * 100 / relayLoad)
	if t.n > 0 {
		c = max(c, sprigClass(t.word)+1)
	}
	return ix.relay(sp, t, es, c, FailInsertMid)
}

// placeEntries places sorted entries es in a table of n lines, each at its
// home or the line after the previous one, calling put (if not nil) with
// each entry's line. It reports false if the last would lie past the
// end.
func placeEntries(es []entry, n uint64, x func(uint64) uint64, put func(j uint64, e *entry)) bool {
	next := uint64(0)
	for k := range es {
		j := max(homeOf(x(es[k][wDigest0]), n), next)
		if j >= n {
			return false
		}
		if put != nil {
			put(j, &es[k])
		}
		next = j + 1
	}
	return true
}

// relay lays the sorted entries es out in a new table of size class c or
// the next one they fit, publishes it as sprig sp's table (the sprig word
// changes under an odd version, so a reader sees the old table or the new
// one; failpoint mid, if any, is hit while it is odd) and frees t's run.
// With no entries the sprig becomes empty.
func (ix *Index) relay(sp uint64, t *wtable, es []entry, c uint64, mid string) error {
	var h Handle
	if len(es) > 0 {
		for c < numClasses && classLines(c) <= ix.v.stageElems && !placeEntries(es, classLines(c), ix.v.homeKey, nil) {
			c++
		}
		if c >= numClasses || classLines(c) > ix.v.stageElems {
			return fmt.Errorf("index: sprig record %d: a table for %d entries needs more than a stage of %d lines: %w (use more Config.Sprigs or larger Config.StageEntries)",
				sp, len(es), ix.v.stageElems, ErrFull)
		}
		var err error
		if h, err = ix.alloc(c); err != nil {
			return err
		}
		ws, i, _ := ix.v.entries(h) // alloc checked it
		n := classLines(c)
		placed := make([]int64, n) // entry of each line + 1, 0 empty
		k := int64(0)
		placeEntries(es, n, ix.v.homeKey, func(j uint64, e *entry) { k++; placed[j] = k })
		for j := range n {
			a := i + j*entryWords
			if placed[j] == 0 {
				for w := uint64(0); w < entryWords; w++ {
					ws.Store(a+w, 0)
				}
				continue
			}
			e := &es[placed[j]-1]
			for w := uint64(0); w <= wFlags; w++ {
				ws.Store(a+w, e[w])
			}
		}
	}
	ix.bump(sp)
	ix.setTable(sp, h, c)
	ix.v.counts.Store(sp, uint64(len(es)))
	if mid != "" {
		ix.v.cfg.Failpoints.Hit(mid)
	}
	ix.bump(sp)
	if t.n > 0 {
		ix.free(sprigTable(t.word), classLines(sprigClass(t.word)))
	}
	ix.v.meta.Add(mTableLines, lines(h, c)-t.n)
	return nil
}

// lines returns the lines of a table of class c at h (0 for none).
func lines(h Handle, c uint64) uint64 {
	if h.IsNull() {
		return 0
	}
	return classLines(c)
}

// remove deletes the entry in line pos of t (words e): the entries after
// it that are displaced from their homes move one line back, under an odd
// version; one left less than shrinkLoad full is laid out anew in a
// smaller one. Deleting a table's last entry empties the sprig instead
// (its word, then the run freed), so no reader ever finds a published
// table without entries.
func (ix *Index) remove(sp uint64, t *wtable, pos uint64, e *entry) error {
	if t.count == 1 {
		// The last entry: the sprig becomes empty in one change of its
		// word (a published table always holds an entry), then the run is
		// freed.
		if err := ix.relay(sp, t, nil, 0, FailDeleteMid); err != nil {
			return err
		}
		t.count = 0
	} else {
		ix.bump(sp)
		q := pos + 1
		for ; q < t.n && t.live(q) && t.home(q) < q; q++ {
			t.moveLine(q, q-1)
		}
		t.clearLine(q - 1)
		t.count--
		ix.v.counts.Store(sp, t.count)
		ix.v.cfg.Failpoints.Hit(FailDeleteMid)
		ix.bump(sp)
	}
	d := digestFromWords(e[wDigest0], e[wDigest1], e[wDigest2])
	pb := uint64(d.Partition()) * partWords
	ix.v.parts.Add(pb+pCount, ^uint64(0))
	ix.v.parts.Add(pb+pBytes, -uint64(uint32(e[wVoidSize])))
	ix.v.parts.Add(pb+pTombstones, -tomb(e.flags()))
	ix.v.meta.Add(mLive, ^uint64(0))
	ix.v.cfg.Failpoints.Hit(FailDeleteDone)
	if c := sprigClass(t.word); t.count > 0 && c > 0 && t.count*100 < t.n*shrinkLoad {
		nc := classFor(t.count * 100 / relayLoad)
		if nc >= c {
			return nil
		}
		es := t.entriesOf(t.n, nil, false)
		if uint64(len(es)) != t.count {
			return corrupt("sprig record %d: table %s says %d entries, holds %d", sp, sprigTable(t.word), t.count, len(es))
		}
		// A table that cannot shrink (no room for a smaller run) stays.
		if err := ix.relay(sp, t, es, nc, ""); err != nil && !errors.Is(err, ErrFull) {
			return err
		}
	}
	return nil
}

// bump changes sprig sp's version by one (even → odd before a change, odd
// → even after it), keeping its table. The version wraps mod 2^19: before
// it stores a wrapped version it counts the wrap in the meta, so a reader
// whose read spans 2^18 changes still sees a change (shared.go). Only the
// holder of the sprig's lock calls it.
func (ix *Index) bump(sp uint64) {
	w := ix.v.sprigs.Load(sp) + sprigVersionOne // a carry out of bit 63 is the wrap
	if w>>sprigRootBits == 0 {
		ix.v.meta.Add(mWraps, 1)
	}
	ix.v.sprigs.Store(sp, w)
}

// setTable makes the run at h (class c) sprig sp's table, keeping its
// (odd) version; h null makes the sprig empty.
func (ix *Index) setTable(sp uint64, h Handle, c uint64) {
	if h.IsNull() {
		c = 0
	}
	ix.v.sprigs.Store(sp, ix.v.sprigs.Load(sp)&^(sprigTableMask|sprigClassMask)|c<<sprigClassShift|uint64(h))
}

// alloc hands out a run of size class c: the first lines of a free run
// from the list of class c or the next non-empty larger one (the rest
// goes back as a free run), or else the next never-used lines.
func (ix *Index) alloc(c uint64) (Handle, error) {
	ix.allocMu.Lock()
	defer ix.allocMu.Unlock()
	need := classLines(c)
	for l := c; l < numClasses; l++ {
		h := Handle(ix.v.alloc.Load(l))
		if h.IsNull() {
			continue
		}
		a, n, err := ix.freeRun(h)
		if err != nil {
			return 0, fmt.Errorf("index: free list of class %d: %w", l, err)
		}
		if n < classLines(l) || (l+1 < numClasses && n >= classLines(l+1)) {
			return 0, corrupt("free run %s of %d lines on the list of class %d (%d lines)", h, n, l, classLines(l))
		}
		if err := ix.unlinkFree(h, l); err != nil {
			return 0, err
		}
		if n > need {
			ix.pushFree(a+need, n-need)
		}
		return h, nil
	}
	return ix.bumpRun(c)
}

// bumpRun hands out the next never-used run of class c (allocMu held).
func (ix *Index) bumpRun(c uint64) (Handle, error) {
	m := ix.v.meta
	n := classLines(c)
	se := ix.v.stageElems
	next, stages := m.Load(mNext), m.Load(mStages)
	if stages < 1 || stages > MaxStages || next > stages*se {
		return 0, corrupt("allocator: %d lines handed out in %d stages of %d", next, stages, se)
	}
	if n > se {
		return 0, fmt.Errorf("index: a run of %d lines is larger than a stage (%d lines): %w", n, se, ErrFull)
	}
	if rest := se - next%se; rest < n && rest < se {
		// The rest of this stage becomes a free run.
		m.Store(mNext, next+rest)
		ix.pushFree(next, rest)
		next += rest
	}
	if next+n > stages*se {
		if stages == MaxStages {
			return 0, fmt.Errorf("index: all %d stages of %d lines are full: %w (use larger stages: Config.StageEntries)", MaxStages, se, ErrFull)
		}
		if err := ix.addStage(int(stages)); err != nil {
			return 0, err
		}
	}
	m.Store(mNext, next+n)
	return handleAt(next, se), nil
}

// free gives the run at h (n lines) back: merged with the free runs right
// before and after it in its stage, and put on the free list of its size.
// (The bump pointer never moves back: lines never handed out are zero,
// which a bulk build relies on.)
// The caller has already made its sprig point elsewhere (and changed the
// sprig's version), so a reader still reading the run rejects what it
// read. Damage found in a neighbour leaves the run unmerged.
func (ix *Index) free(h Handle, n uint64) {
	ix.allocMu.Lock()
	defer ix.allocMu.Unlock()
	se := ix.v.stageElems
	a := h.linear(se)
	next := ix.v.meta.Load(mNext)
	if b := a + n; b%se != 0 && b < next {
		if nh := handleAt(b, se); ix.isFreeRun(nh) {
			if _, m, err := ix.freeRun(nh); err == nil && ix.unlinkFree(nh, sizeClass(m)) == nil {
				n += m
			}
		}
	}
	if a%se != 0 {
		if last := handleAt(a-1, se); ix.isFreeRun(last) {
			ws, i, _ := ix.v.entries(last)
			m := ws.Load(i+wFlags) & linkMask
			if m > 0 && m <= a%se {
				ph := handleAt(a-m, se)
				if _, pm, err := ix.freeRun(ph); err == nil && pm == m && ix.unlinkFree(ph, sizeClass(m)) == nil {
					a -= m
					n += m
				}
			}
		}
	}
	ix.pushFree(a, n)
}

// freeTag marks the first and the last line of a free run (word 5, wFlags: this
// flag byte and the run's lines): never an entry's flags.
const freeTag = flagFreeRun << flagShift

// isFreeRun reports whether line h is marked as the first or last line of
// a free run.
func (ix *Index) isFreeRun(h Handle) bool {
	ws, i, err := ix.v.entries(h)
	return err == nil && ws.Load(i+wFlags)&flagMask == freeTag
}

// freeRun returns the linear position and lines of the free run whose
// first line is h, checking its marks (first and last line) and range.
func (ix *Index) freeRun(h Handle) (uint64, uint64, error) {
	ws, i, err := ix.v.entries(h)
	if err != nil {
		return 0, 0, err
	}
	w := ws.Load(i + wFlags)
	n := w & linkMask
	se := ix.v.stageElems
	a := h.linear(se)
	switch {
	case w&flagMask != freeTag:
		return 0, 0, corrupt("free run %s is not marked free (word 5 %#x)", h, w)
	case n == 0 || h.Elem()+n > se || a+n > ix.v.meta.Load(mNext):
		return 0, 0, corrupt("free run %s of %d lines out of range (stage of %d lines, %d handed out)", h, n, se, ix.v.meta.Load(mNext))
	}
	if lw := ws.Load(i + (n-1)*entryWords + wFlags); lw != w {
		return 0, 0, corrupt("free run %s of %d lines: its last line says %#x", h, n, lw)
	}
	return a, n, nil
}

// sizeClass returns the free list of a run of n ≥ 1 lines: the largest
// class of at most n lines.
func sizeClass(n uint64) uint64 {
	c := classFor(n)
	if c >= numClasses || classLines(c) > n {
		c--
	}
	return c
}

// pushFree makes lines a…a+n-1 (linear, one stage) a free run on its
// size's list: marks in its first and last line, links in the first
// (wPrevFree the previous run, wNextFree the next). allocMu held.
func (ix *Index) pushFree(a, n uint64) {
	h := handleAt(a, ix.v.stageElems)
	ws, i, err := ix.v.entries(h)
	if err != nil {
		return // the lines were handed out in a published stage
	}
	c := sizeClass(n)
	head := ix.v.alloc.Load(c)
	ws.Store(i+(n-1)*entryWords+wFlags, freeTag|n)
	ws.Store(i+wFlags, freeTag|n)
	ws.Store(i+wPrevFree, 0)
	ws.Store(i+wNextFree, head&linkMask)
	if hh := Handle(head & linkMask); !hh.IsNull() {
		if hw, hi, err := ix.v.entries(hh); err == nil {
			hw.Store(hi+wPrevFree, uint64(h))
		}
	}
	ix.v.alloc.Store(c, uint64(h))
	ix.v.meta.Add(mFreeCount, n)
}

// unlinkFree takes the free run at h off the list of class c. allocMu
// held.
func (ix *Index) unlinkFree(h Handle, c uint64) error {
	_, n, err := ix.freeRun(h)
	if err != nil {
		return err
	}
	ws, i, _ := ix.v.entries(h)
	prev, next := Handle(ws.Load(i+wPrevFree)&linkMask), Handle(ws.Load(i+wNextFree)&linkMask)
	if prev.IsNull() {
		if Handle(ix.v.alloc.Load(c)) != h {
			return corrupt("free run %s has no previous run but is not the head of the list of class %d", h, c)
		}
		ix.v.alloc.Store(c, uint64(next))
	} else {
		pw, pi, err := ix.v.entries(prev)
		if err != nil {
			return err
		}
		if Handle(pw.Load(pi+wNextFree)&linkMask) != h {
			return corrupt("free run %s: its previous run %s links elsewhere", h, prev)
		}
		pw.Store(pi+wNextFree, uint64(next))
	}
	if !next.IsNull() {
		nw, ni, err := ix.v.entries(next)
		if err != nil {
			return err
		}
		nw.Store(ni+wPrevFree, uint64(prev))
	}
	// Not a free run any more (the caller rewrites the lines it uses).
	ws.Store(i+wFlags, 0)
	ws.Store(i+(n-1)*entryWords+wFlags, 0)
	fc := ix.v.meta.Load(mFreeCount)
	if fc < n {
		return corrupt("free run of %d lines, meta counts %d free", n, fc)
	}
	ix.v.meta.Store(mFreeCount, fc-n)
	return nil
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
