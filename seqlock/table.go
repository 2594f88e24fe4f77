// Package seqlock keeps fixed-size records in shared memory under
// sequence locks: readers never block writers, never write shared memory,
// and never return torn data, even when writers in other processes are
// descheduled, stopped or killed in the middle of a write.
//
// # Protocol
//
// Each record has a sequence word, its payload words and a claim word (the
// layout is drawn in layout.go). A writer
//
//  1. claims the record: CAS claim 0 → its identity (liveness slot and
//     pid), which makes writers of one record exclusive and names the
//     writer atomically with the claim;
//  2. CAS seq s → s|busy ("odd");
//  3. stores the payload, word by word, with atomic stores;
//  4. CAS seq → the next version (even);
//  5. CAS claim → 0.
//
// A reader loads seq (s1), copies the payload with atomic loads, and loads
// seq again (s2); it accepts the copy only if s1 == s2 and s1 is neither
// busy nor torn, and retries otherwise. Sequence values never repeat (the
// version only grows), so any write that overlapped the copy changes s2.
//
// # Waiting
//
// A reader that finds a record busy, and a writer that finds it claimed,
// spin briefly, then yield (runtime.Gosched), then sleep with growing
// pauses. They never give up after a count of attempts: on a small machine
// a live writer is routinely descheduled for tens of milliseconds in the
// middle of a write. They give up with a *StalledError only when the
// claiming process is dead (by procid's one judgement: its liveness slot's
// lock is free, or its pid is gone from our PID namespace; checked first
// after a millisecond of waiting and then every 20 ms), or when the record has
// not changed for Options.StallTimeout (default 1 s). Each operation is
// also bounded by Options.MaxWait (default 10 s) even while writers make
// progress, failing with ErrStarved.
//
// # Recovery
//
// A writer that died while holding a record leaves it claimed (and busy if
// it died after step 2). Recovery takes the claim over with a CAS from the
// dead writer's identity, and, if the record is busy, moves seq to a new
// version, so a reader that began before or during the dead write can never
// accept the mix of old and new words it may have copied:
//
//   - Write recovers automatically: it takes over, writes its complete
//     payload and publishes it; readers never see the torn state.
//   - Recover(i) marks a record left busy by a dead writer as torn (a new
//     even version with the torn bit). Its payload is whatever the dead
//     writer left, partly old and partly new, so readers get ErrTorn until
//     the next Write. Recover reports whether it found such a record.
//
// A live writer is never taken over, however long it stalls: it could
// resume and store into a record someone else is writing. A writer whose
// death cannot be proven (no liveness slot, and a pid of another PID
// namespace or hidden by hidepid) is never taken over either: it is only
// reported as not progressing.
//
// # Snapshots
//
// Snapshot copies all records as of one instant: it loads each record's
// sequence word and copies its payload, record after record, and then
// loads every sequence word again. If none changed (and none was busy),
// every record was unchanged from its first load to its second, an
// interval that contains the instant between the two passes, so the copy
// is exactly the table's content at that instant. Writers are not slowed
// down; under continuous writes a large snapshot may retry until MaxWait.
// A snapshot is not a transaction: a writer that updates several records
// one after another is seen between two of its updates if the instant
// falls there.
package seqlock

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/procid"
)

// FailWriteMid is the failpoint hit by Write between the first and the
// second half of its payload stores, while the record is busy.
const FailWriteMid = "seqlock.write.mid"

// Defaults of Options.
const (
	// DefaultStallTimeout is the default Options.StallTimeout.
	DefaultStallTimeout = time.Second
	// DefaultMaxWait is the default Options.MaxWait.
	DefaultMaxWait = 10 * time.Second
)

// Options configure a Table handle. The zero value is the default.
type Options struct {
	// StallTimeout is how long a record may stay unchanged while busy (or
	// claimed) by a live writer before a reader or writer gives up with a
	// *StalledError. Default DefaultStallTimeout (1 s). Values below 1 s
	// risk reporting writers that were merely descheduled; tests use them.
	StallTimeout time.Duration
	// MaxWait bounds one Read, Write, Recover or Snapshot call even while
	// writers keep making progress (ErrStarved). Default DefaultMaxWait;
	// raised to StallTimeout if smaller.
	MaxWait time.Duration
	// Failpoints, when not nil, arms the package's failpoints (FailWriteMid).
	Failpoints *failpoint.Set
}

func (o *Options) defaults() {
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultMaxWait
	}
	o.MaxWait = max(o.MaxWait, o.StallTimeout)
}

// Table is a handle on a table of sequence-locked records in a segment.
// Handles are cheap; each process (or goroutine) may open its own over the
// same region. A Table is safe for concurrent use by many goroutines.
type Table struct {
	seg      *arena.Segment
	hdr      arena.Offset // table header
	base     arena.Offset // record 0
	stride   arena.Offset // bytes per record
	recs     arena.Words  // every record, for the read fast path
	strideW  uint64       // words per record
	claimOff arena.Offset // claim word, relative to a record
	records  int
	words    int
	opts     Options
	self     procid.Identity
	reg      *procid.Registry // the segment's liveness registry; nil: none
	me       uint64           // this process's claim word
	_        [64]byte         // keep the counters off the read-mostly fields' cache line
	st       counters
}

// New returns a handle on the table of records records of words payload
// words each, in the region of seg that starts at off (8-byte aligned) and
// is SizeOf(records, words) bytes long. The region must be all zero (as a
// new segment section is), which New initializes as an empty table, or
// hold a table of the same geometry.
//
// Errors wrap ErrGeometry, ErrRegion (and arena.ErrRange), ErrNotTable or
// ErrMismatch.
func New(seg *arena.Segment, off arena.Offset, records, words int, opts Options) (*Table, error) {
	size := SizeOf(records, words)
	if size == 0 {
		return nil, fmt.Errorf("seqlock: %d records of %d words (want 1..%d records of 1..%d words): %w",
			records, words, MaxRecords, MaxWords, ErrGeometry)
	}
	if seg == nil {
		return nil, fmt.Errorf("seqlock: nil segment: %w", ErrRegion)
	}
	if off%8 != 0 {
		return nil, fmt.Errorf("seqlock: table offset %d is not 8-byte aligned: %w", off, ErrRegion)
	}
	if err := seg.CheckRange(off, size); err != nil {
		return nil, fmt.Errorf("seqlock: table of %d bytes at %d: %w: %w", size, off, ErrRegion, err)
	}
	self, err := procid.Self()
	if err != nil {
		return nil, fmt.Errorf("seqlock: %w", err)
	}
	opts.defaults()
	t := &Table{
		seg:      seg,
		hdr:      off,
		base:     off + headerSize,
		stride:   arena.Offset(stride(words)),
		claimOff: arena.Offset(offPayload + 8*words),
		records:  records,
		words:    words,
		opts:     opts,
		self:     self,
	}
	// The writer's slot is locked before any claim names it. Without a
	// registry, writers are judged by pid evidence alone.
	var slot procid.Slot
	if reg, err := seg.Liveness(); err == nil {
		if slot, err = reg.Register(); err == nil {
			t.reg = reg
		}
	}
	t.me = claimWord(slot, self.PID)
	t.strideW = uint64(t.stride) / 8
	if t.recs, err = seg.Words(t.base, uint64(records)*t.strideW); err != nil {
		return nil, fmt.Errorf("seqlock: records at %d: %w: %w", t.base, ErrRegion, err)
	}
	want := geomWord(records, words)
	g := seg.Load64(off + offGeom)
	if g == 0 && !seg.CAS64(off+offGeom, 0, want) {
		g = seg.Load64(off + offGeom)
	} else if g == 0 {
		g = want
	}
	tag, format, r, w := splitGeom(g)
	switch {
	case tag != geomTag:
		return nil, fmt.Errorf("seqlock: region at %d starts with %#016x: %w", off, g, ErrNotTable)
	case format != geomFormat:
		return nil, fmt.Errorf("seqlock: region at %d holds a table of format %d, this code reads %d: %w", off, format, geomFormat, ErrNotTable)
	case g != want:
		return nil, fmt.Errorf("seqlock: region at %d holds %d records of %d words, want %d of %d: %w", off, r, w, records, words, ErrMismatch)
	}
	if ns := self.PIDNS; ns != 0 {
		if !seg.CAS64(off+offPIDNS, 0, ns) && seg.Load64(off+offPIDNS) != ns {
			seg.Store64(off+offMixed, 1)
		}
	}
	return t, nil
}

// claimWord returns the claim word naming a writer by liveness slot and pid.
func claimWord(slot procid.Slot, pid uint32) uint64 { return uint64(slot)<<48 | uint64(pid) }

// splitClaim splits a claim word.
func splitClaim(c uint64) (procid.Slot, uint32) { return procid.Slot(c >> 48), uint32(c) }

// Records returns the number of records.
func (t *Table) Records() int { return t.records }

// Words returns the payload size of a record in 64-bit words.
func (t *Table) Words() int { return t.words }

// Read copies the payload of record i into dst (len(dst) == Words()). The
// copy is consistent: it is the complete payload of one write (or all zero
// if the record was never written). Read never writes shared memory.
//
// It fails with ErrIndex or ErrLength on bad arguments, ErrTorn if the
// record was recovered from a dead writer and not rewritten, a
// *StalledError (ErrWriterStalled) if the record's writer is dead or does
// not progress for StallTimeout, and ErrStarved after MaxWait of retries.
func (t *Table) Read(i int, dst []uint64) error {
	if uint(i) >= uint(t.records) || len(dst) != t.words {
		return t.readArgErr(i, dst)
	}
	r := uint64(i) * t.strideW
	s := t.recs.Load(r + offSeq/8)
	if s&(seqBusy|seqTorn) == 0 {
		t.recs.LoadN(r+offPayload/8, dst)
		if t.recs.Load(r+offSeq/8) == s {
			return nil
		}
	}
	return t.readSlow(i, t.record(i), dst, s)
}

// readArgErr describes Read's bad argument (kept out of Read's fast path).
func (t *Table) readArgErr(i int, dst []uint64) error {
	if uint(i) >= uint(t.records) {
		return indexErr("read", i, t.records)
	}
	return lengthErr("read", "dst", len(dst), t.words)
}

// readSlow finishes a Read whose first attempt (which loaded s first)
// failed: the record was busy or torn, or changed during the copy.
func (t *Table) readSlow(i int, rec arena.Offset, dst []uint64, s uint64) error {
	w := waiter{t: t, op: "read", rec: i}
	err := t.readRetry(&w, rec, dst, s)
	if w.retries > 0 {
		t.st.overlappedReads.Add(1)
		t.st.readRetries.Add(w.retries)
	}
	return t.countErr(err)
}

// readRetry is readSlow's loop: it waits out busy states and retries the
// copy until one is consistent, counting the discarded attempts in
// w.retries.
func (t *Table) readRetry(w *waiter, rec arena.Offset, dst []uint64, s uint64) error {
	if s&(seqBusy|seqTorn) == 0 { // the first copy overlapped a write
		w.retries++
		s = t.seg.Load64(rec)
	}
	for {
		switch {
		case s&seqBusy != 0:
			w.retries++
			if err := w.awaitRead(rec, s); err != nil {
				return err
			}
			if err := w.backoff(); err != nil {
				return err
			}
		case s&seqTorn != 0:
			t.st.torn.Add(1)
			return tornErr("read", w.rec)
		default:
			t.seg.LoadWords(rec+offPayload, dst)
			if t.seg.Load64(rec) == s {
				return nil
			}
			w.retries++
			if err := w.backoff(); err != nil {
				return err
			}
		}
		s = t.seg.Load64(rec)
	}
}

// Write stores src (len(src) == Words()) as the payload of record i,
// atomically for readers. Writers of one record exclude each other; a
// writer that finds the record claimed waits like a reader, and takes the
// record over if the claiming process is dead (the record is then rewritten
// whole, so no reader sees what the dead writer left).
//
// It fails with ErrIndex or ErrLength, a *StalledError if the record's
// current writer is alive but does not progress for StallTimeout,
// ErrStarved after MaxWait, and ErrPreempted if another process took the
// record over while this call was writing (it judged this process dead).
func (t *Table) Write(i int, src []uint64) error {
	return t.WriteIf(i, src, nil)
}

// WriteIf is Write with a precondition: once it holds record i's claim,
// and before it changes anything else, it calls ok (if not nil), and if
// ok returns an error it releases the claim and returns that error,
// leaving the record as it was. Writers of the record exclude each other
// by the claim, so what ok checks cannot be changed meanwhile by a
// protocol in which every change needs that record written first: a
// caller that publishes a record only after writing it can refuse to
// write a copy that someone else may have published since it last looked.
// ok must be quick and must not block: other writers of the record wait
// while it runs. A record found busy under a dead writer's claim is
// marked torn (as by Recover) when ok refuses.
func (t *Table) WriteIf(i int, src []uint64, ok func() error) error {
	if uint(i) >= uint(t.records) {
		return indexErr("write", i, t.records)
	}
	if len(src) != t.words {
		return lengthErr("write", "src", len(src), t.words)
	}
	rec := t.record(i)
	claim := rec + t.claimOff
	if !t.seg.CAS64(claim, 0, t.me) {
		w := waiter{t: t, op: "write", rec: i}
		if err := w.acquire(rec); err != nil {
			return t.countErr(err)
		}
	}
	s := t.seg.Load64(rec)
	if ok != nil {
		if err := ok(); err != nil {
			t.refuse(rec, claim, s)
			return err
		}
	}
	held := s | seqBusy
	recovering := s&seqBusy != 0
	if recovering {
		// Left busy by a dead writer whose claim we took over (or by
		// garbage): a new version, so that no reader accepts its copy.
		held = nextVersion(s) | seqBusy
	}
	if !t.seg.CAS64(rec, s, held) {
		return t.preempted("write", i, claim)
	}
	if recovering {
		t.st.recovered.Add(1)
	}
	half := t.words / 2
	t.seg.StoreWords(rec+offPayload, src[:half])
	t.opts.Failpoints.Hit(FailWriteMid)
	t.seg.StoreWords(rec+offPayload+arena.Offset(8*half), src[half:])
	if !t.seg.CAS64(rec, held, nextVersion(held)) {
		return t.preempted("write", i, claim)
	}
	if !t.seg.CAS64(claim, t.me, 0) {
		// Taken over after the write was published: the write is
		// complete; the new claimant found the record stable.
		t.st.preempted.Add(1)
	}
	return nil
}

// refuse gives up the claim of record rec, taken by a WriteIf whose
// precondition failed, with sequence word s found under the claim. A
// record left busy by a dead writer whose claim was taken over is marked
// torn first, as Recover does, so that it is not left busy unclaimed.
func (t *Table) refuse(rec, claim arena.Offset, s uint64) {
	if s&seqBusy != 0 && t.seg.CAS64(rec, s, nextVersion(s)|seqTorn) {
		t.st.recovered.Add(1)
	}
	if !t.seg.CAS64(claim, t.me, 0) {
		t.st.preempted.Add(1)
	}
}

// preempted handles a sequence word that changed while this process held
// the claim: someone judged it dead and took the record over.
func (t *Table) preempted(op string, i int, claim arena.Offset) error {
	t.st.preempted.Add(1)
	t.seg.CAS64(claim, t.me, 0) // still ours only if the seq word was garbage
	return fmt.Errorf("seqlock: %s record %d: %w", op, i, ErrPreempted)
}

// Recover repairs record i if a dead writer left it busy: the record gets
// a new version marked torn, so readers get ErrTorn (instead of a
// *StalledError) until the next Write, and writers no longer wait. The
// payload is left as the dead writer left it (partly old, partly new): the
// caller must rewrite it. Recover reports whether it marked the record.
//
// A record whose writer is alive is not touched: Recover waits for that
// writer like Write does (a *StalledError if it does not progress) and
// then reports false. A claim left by a writer that died while the record
// was not busy is released without marking the record.
func (t *Table) Recover(i int) (bool, error) {
	if uint(i) >= uint(t.records) {
		return false, indexErr("recover", i, t.records)
	}
	rec := t.record(i)
	claim := rec + t.claimOff
	if !t.seg.CAS64(claim, 0, t.me) {
		w := waiter{t: t, op: "recover", rec: i}
		if err := w.acquire(rec); err != nil {
			return false, t.countErr(err)
		}
	}
	s := t.seg.Load64(rec)
	marked := false
	if s&seqBusy != 0 {
		if !t.seg.CAS64(rec, s, nextVersion(s)|seqTorn) {
			return false, t.preempted("recover", i, claim)
		}
		t.st.recovered.Add(1)
		marked = true
	}
	if !t.seg.CAS64(claim, t.me, 0) {
		t.st.preempted.Add(1)
	}
	return marked, nil
}

// Stats counts the slow paths taken through one Table handle. The fast
// path (a read that did not overlap any write) counts nothing, so that
// readers share no written memory.
type Stats struct {
	// OverlappedReads counts Read calls that found the record busy or
	// changed under their copy at least once (they overlapped a write).
	OverlappedReads uint64
	// ReadRetries counts the attempts those reads discarded.
	ReadRetries uint64
	// OverlappedSnapshots and SnapshotRetries are the same for Snapshot.
	OverlappedSnapshots uint64
	SnapshotRetries     uint64
	// WriteWaits counts Write and Recover calls that found the record
	// claimed by another writer.
	WriteWaits uint64
	// Takeovers counts claims taken over from dead writers.
	Takeovers uint64
	// Recovered counts records found busy under a dead writer's claim and
	// repaired (rewritten by Write or marked torn by Recover).
	Recovered uint64
	// Stalls, Starved and Torn count the errors of those kinds returned.
	Stalls, Starved, Torn uint64
	// Preempted counts writes during which another process took the
	// record over.
	Preempted uint64
}

type counters struct {
	overlappedReads, readRetries         atomic.Uint64
	overlappedSnapshots, snapshotRetries atomic.Uint64
	writeWaits, takeovers, recovered     atomic.Uint64
	stalls, starved, torn, preempted     atomic.Uint64
}

// Stats returns the counters of this handle.
func (t *Table) Stats() Stats {
	c := &t.st
	return Stats{
		OverlappedReads: c.overlappedReads.Load(), ReadRetries: c.readRetries.Load(),
		OverlappedSnapshots: c.overlappedSnapshots.Load(), SnapshotRetries: c.snapshotRetries.Load(),
		WriteWaits: c.writeWaits.Load(), Takeovers: c.takeovers.Load(), Recovered: c.recovered.Load(),
		Stalls: c.stalls.Load(), Starved: c.starved.Load(), Torn: c.torn.Load(), Preempted: c.preempted.Load(),
	}
}
