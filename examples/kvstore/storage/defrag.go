package storage

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Liveness is what the defragmenter asks the index, which alone knows
// which records are live. The server implements it. Both methods get the
// record itself (its slices alias a read buffer: valid during the call
// only), so an index that keeps no location (data in the index) can judge
// a record by what it holds: generation, last-update time, value.
type Liveness interface {
	// Live reports whether rec, found at loc, is the version of its
	// digest that the index holds. A false "live" only costs a copy (a
	// cold rebuild still goes by Seq); a false "dead" loses the record.
	Live(rec *Record, loc Location) bool
	// Moved is a compare-and-set on the index: if the entry of
	// rec.Digest still holds the record at from, make it hold the copy
	// at to and report true; otherwise change nothing and report false
	// (the record was rewritten or deleted meanwhile, and the copy at to
	// is dead).
	Moved(rec *Record, from, to Location) bool
}

// DefragStats counts what one Defrag pass did.
type DefragStats struct {
	Files             int   // files rewritten and removed
	Copied            int   // live records copied to the head
	Lost              int   // of those, copies whose Moved failed (rewritten meanwhile)
	Dead              int   // records dropped as not live
	TombstonesKept    int   // tombstones copied because an older record may still need them
	TombstonesDropped int   // tombstones dropped: nothing left for them to shadow
	FreedBytes        int64 // bytes of the removed files
	Surveyed          int   // files whose dead bytes were recounted (see ReleaseUnplaced)
}

// ReleaseUnplaced tells the storage that a record of size bytes is dead
// without saying where it is: for a server whose index keeps no log
// location (data in the index), so that an overwrite knows the old
// version's size but not its file. The bytes count towards a survey:
// once they reach a share of the log (see surveyDue), the next Defrag
// pass first reads every sealed file, asks Live about each record and
// recounts each file's dead bytes from the answers, then picks files as
// usual. The unplaced count is saved by Close (so restarts do not reset
// it), and a survey costs one read of the sealed files per
// (1-threshold)/2 of the log's bytes that died, whatever the log's size.
func (s *Storage) ReleaseUnplaced(size uint64) error {
	if err := s.mutating(); err != nil {
		return err
	}
	s.unplaced.Add(size)
	return nil
}

// surveyDue reports whether the unplaced dead bytes warrant a survey of
// the sealed files, which hold used bytes: at least one file's capacity
// and (1-threshold)/2 of the sealed bytes. So between surveys the log
// grows by at most that share; after one, every sealed file left is at
// least threshold live, as with placed releases.
func (s *Storage) surveyDue(used uint64) bool {
	u := s.unplaced.Load()
	return u > 0 && u >= max(s.opts.FileSize-HeaderSize, uint64(float64(used)*(1-s.opts.DefragThreshold)/2))
}

// survey recounts the dead bytes of every sealed file from live: a
// record is dead unless Live says the index holds it (tombstones are
// always dead, as at append). It then takes the unplaced bytes it
// started from off the count: deaths since then count towards the next.
func (s *Storage) survey(ctx context.Context, live Liveness, files []*logFile, st *DefragStats, buf *[]byte) error {
	u := s.unplaced.Load()
	stop := errors.New("stop")
	for _, lf := range files {
		var liveBytes uint64
		end := lf.end.Load()
		err := readFrames(lf.f, HeaderSize, end, buf, func(rec *Record, off uint64, n int) error {
			if s.closed.Load() || ctx.Err() != nil {
				return stop
			}
			if !rec.Tombstone && live.Live(rec, Location{File: lf.id, Offset: off, Size: uint32(n)}) {
				liveBytes += uint64(n)
			}
			return nil
		})
		switch {
		case errors.Is(err, stop):
			return s.stopErr(ctx)
		case err != nil:
			return fmt.Errorf("storage: survey %s: %w", fileName(lf.id), err)
		}
		used := end - HeaderSize
		lf.dead.Store(int64(used - min(used, liveBytes)))
		st.Surveyed++
	}
	s.unplaced.Add(-u)
	return nil
}

// filter is a Bloom filter of the digests in one file. Digests are
// uniformly random, so their bytes serve as the hash functions.
type filter struct {
	bits []uint64
	mask uint64
}

// newFilter sizes a filter at one bit per 16 bytes of capacity: with
// 100-byte records about 6 bits per record, a few percent of false
// positives, each of which only keeps a tombstone one pass longer.
func newFilter(capacity uint64) *filter {
	m := uint64(1) << bits.Len64(max(1024, capacity/16)-1)
	return &filter{bits: make([]uint64, m/64), mask: m - 1}
}

func (f *filter) probes(d *[20]byte) (uint64, uint64) {
	return binary.LittleEndian.Uint64(d[0:8]), binary.LittleEndian.Uint64(d[8:16]) | 1
}

func (f *filter) add(d *[20]byte) {
	h1, h2 := f.probes(d)
	for i := range uint64(3) {
		b := (h1 + i*h2) & f.mask
		f.bits[b/64] |= 1 << (b % 64)
	}
}

func (f *filter) mayContain(d *[20]byte) bool {
	h1, h2 := f.probes(d)
	for i := range uint64(3) {
		b := (h1 + i*h2) & f.mask
		if f.bits[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// ensureFilter builds lf's digest filter and smallest Seq by reading the
// file, unless they are known. Appends to lf (the head) made while it
// reads are caught up under the append lock.
func (s *Storage) ensureFilter(lf *logFile, buf *[]byte) error {
	s.mu.Lock()
	known := lf.filt != nil
	s.mu.Unlock()
	if known {
		return nil
	}
	f, minSeq := newFilter(lf.capacity), ^uint64(0)
	add := func(rec *Record, _ uint64, _ int) error {
		f.add(&rec.Digest)
		minSeq = min(minSeq, rec.Seq)
		return nil
	}
	end := lf.end.Load()
	if err := readFrames(lf.f, HeaderSize, end, buf, add); err != nil {
		return fmt.Errorf("storage: index digests of %s: %w", fileName(lf.id), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := lf.end.Load(); e > end {
		if err := readFrames(lf.f, end, e, buf, add); err != nil {
			return fmt.Errorf("storage: index digests of %s: %w", fileName(lf.id), err)
		}
	}
	lf.filt, lf.minSeq = f, minSeq
	return nil
}

// Defrag runs one defragmentation pass: every sealed file whose live
// share (bytes not released, over its capacity) is below the threshold
// is rewritten and removed. For each record in it, in order:
//
//   - a record Live says the index points at is appended again at the
//     head (flagged Copied, same Seq), and Moved repoints the index; if
//     Moved fails the copy is released at once;
//   - a record not live is dropped;
//   - a tombstone is dropped only when no other file may still hold an
//     older record (smaller Seq) of its digest, judged from each file's
//     Bloom filter of digests and smallest Seq (built by reading the file
//     once, the first time a tombstone asks). Otherwise it is copied
//     forward, and a later pass, once the older files are gone, drops it.
//     So a cold rebuild never resurrects a deleted record.
//
// The copies are fdatasync'ed before the source file is removed, whatever
// the sync policy, so a pass never makes older records less durable. A
// crash mid-pass leaves the source file whole (removal is one unlink) and
// some copies with the Seq of their originals: a rebuild keeps either.
//
// A reader that looked a location up before Moved and reads it after the
// removal gets [ErrNotFound] and should look the digest up again.
// Defrag returns early, with what it did, when ctx is done or the
// Storage closes.
func (s *Storage) Defrag(ctx context.Context, live Liveness) (DefragStats, error) {
	var st DefragStats
	s.defragMu.Lock()
	defer s.defragMu.Unlock()
	if s.closed.Load() {
		return st, ErrClosed
	}
	s.mu.Lock()
	head := s.head
	s.mu.Unlock()
	var buf, fbuf []byte
	var sealed []*logFile
	var sealedUsed uint64
	s.filesMu.RLock()
	for _, lf := range s.files {
		if lf != head {
			sealed = append(sealed, lf)
			sealedUsed += lf.end.Load() - HeaderSize
		}
	}
	s.filesMu.RUnlock()
	if s.surveyDue(sealedUsed) {
		if err := s.survey(ctx, live, sealed, &st, &buf); err != nil {
			return st, err
		}
	}
	type cand struct {
		lf    *logFile
		share float64
	}
	var cands []cand
	for _, lf := range sealed {
		used := lf.end.Load() - HeaderSize
		liveBytes := used - min(used, uint64(max(0, lf.dead.Load())))
		share := float64(liveBytes) / float64(lf.capacity-HeaderSize)
		if share < s.opts.DefragThreshold {
			cands = append(cands, cand{lf, share})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(cmp.Compare(a.share, b.share), cmp.Compare(a.lf.order, b.lf.order))
	})
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if err := s.defragFile(ctx, c.lf, live, &st, &buf, &fbuf); err != nil {
			return st, err
		}
	}
	if st.Files > 0 || st.Surveyed > 0 {
		s.log.Info("defragmented", "surveyed", st.Surveyed, "files", st.Files, "copied", st.Copied, "lost", st.Lost, "dead", st.Dead,
			"tombstones_kept", st.TombstonesKept, "tombstones_dropped", st.TombstonesDropped, "freed_bytes", st.FreedBytes)
	}
	return st, nil
}

// stopErr is why a pass stopped early: the Storage closed, or ctx is done.
func (s *Storage) stopErr(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// tomb is a tombstone met in a file being defragmented, copied out of the
// read buffer.
type tomb struct {
	rec  Record
	data []byte
}

func (s *Storage) defragFile(ctx context.Context, lf *logFile, live Liveness, st *DefragStats, buf, fbuf *[]byte) error {
	var tombs []tomb
	stop := errors.New("stop")
	var opErr error
	err := readFrames(lf.f, HeaderSize, lf.end.Load(), buf, func(rec *Record, off uint64, n int) error {
		if s.closed.Load() || ctx.Err() != nil {
			return stop
		}
		loc := Location{File: lf.id, Offset: off, Size: uint32(n)}
		if rec.Tombstone {
			t := tomb{rec: *rec}
			t.data = append(append(append(append([]byte(nil), rec.Namespace...), rec.Set...), rec.Key...), rec.Bins...)
			t.rec.Namespace, t.rec.Set, t.rec.Key, t.rec.Bins = splitFields(t.data, rec)
			tombs = append(tombs, t)
			return nil
		}
		if !live.Live(rec, loc) {
			st.Dead++
			return nil
		}
		cp := *rec
		cp.Copied = true
		to, err := s.append(&cp, true)
		if err != nil {
			opErr = err
			return stop
		}
		st.Copied++
		if !live.Moved(rec, loc, to) {
			st.Lost++
			if err := s.Release(to); err != nil {
				opErr = err
				return stop
			}
		}
		s.fp.Hit(FailDefragMid)
		return nil
	})
	switch {
	case opErr != nil:
		return opErr
	case errors.Is(err, stop):
		return s.stopErr(ctx)
	case err != nil:
		return fmt.Errorf("storage: defragment %s: %w (the file is left as it is)", fileName(lf.id), err)
	}
	if len(tombs) > 0 {
		// The copies above are in the other files' filters by now.
		s.filesMu.RLock()
		others := make([]*logFile, 0, len(s.files))
		for _, o := range s.files {
			if o != lf {
				others = append(others, o)
			}
		}
		s.filesMu.RUnlock()
		for _, o := range others {
			if err := s.ensureFilter(o, fbuf); err != nil {
				return err
			}
		}
		for i := range tombs {
			t := &tombs[i]
			if !s.shadows(t, lf) {
				st.TombstonesDropped++
				continue
			}
			cp := t.rec
			cp.Copied = true
			if _, err := s.append(&cp, true); err != nil {
				return err
			}
			st.TombstonesKept++
			s.fp.Hit(FailDefragMid)
		}
	}
	s.mu.Lock()
	head := s.head
	s.mu.Unlock()
	if err := s.syncTo(head, head.end.Load()); err != nil {
		return err
	}
	return s.removeFile(lf, st)
}

// shadows reports whether a file other than lf may hold a record of t's
// digest older than t. Files created after the filters were built hold
// only records appended since (newer) and copies, which are in their
// filters as they are made.
func (s *Storage) shadows(t *tomb, lf *logFile) bool {
	if s.unsafeDropTombstones {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filesMu.RLock()
	defer s.filesMu.RUnlock()
	for _, o := range s.files {
		if o == lf {
			continue
		}
		if o.filt == nil || (o.minSeq < t.rec.Seq && o.filt.mayContain(&t.rec.Digest)) {
			return true
		}
	}
	return false
}

// splitFields returns rec's variable fields as slices of data, which holds
// them concatenated.
func splitFields(data []byte, rec *Record) (ns, set, key, bins []byte) {
	p := 0
	cut := func(n int) []byte { b := data[p : p+n : p+n]; p += n; return b }
	return cut(len(rec.Namespace)), cut(len(rec.Set)), cut(len(rec.Key)), cut(len(rec.Bins))
}

// removeFile takes lf out of the log and deletes it.
func (s *Storage) removeFile(lf *logFile, st *DefragStats) error {
	if err := s.mutating(); err != nil {
		return err
	}
	s.filesMu.Lock()
	delete(s.files, lf.id)
	s.filesMu.Unlock()
	size := lf.end.Load()
	lf.f.Close()
	name := fileName(lf.id)
	if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
		return fmt.Errorf("storage: remove defragmented %s: %w", name, err)
	}
	if err := s.dirf.Sync(); err != nil {
		return fmt.Errorf("storage: sync directory after removing %s: %w", name, err)
	}
	st.Files++
	st.FreedBytes += int64(size)
	return nil
}

// RunDefrag runs a Defrag pass every interval until ctx is done, logging
// failed passes, and returns ctx's error (or ErrClosed once the Storage
// is closed). Run it in its own goroutine.
func (s *Storage) RunDefrag(ctx context.Context, live Liveness, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := s.Defrag(ctx, live); err != nil {
			if errors.Is(err, ErrClosed) {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Error("defragmentation pass failed; retrying next interval", "err", err)
		}
	}
}
