package seqlock

import (
	"errors"
	"fmt"

	"github.com/shmkit/shmkit/arena"
)

// Check reports, in an *arena.CheckError, every problem of the table's
// region (see CheckRegion).
func (t *Table) Check() error {
	var probs arena.Problems
	CheckRegion(t.seg, t.hdr, t.records, t.words, &probs)
	return probs.Err(fmt.Sprintf("seqlock table at %d in %s", t.hdr, t.seg.Location()))
}

// CheckRegion checks the table of records records of words payload words
// at off in seg without attaching a Table (it writes nothing and takes no
// liveness slot), adding every problem to probs: a geometry word that is
// not this table's, reserved header words or record pads that are not
// zero, a mixed flag other than 0 or 1, a record busy without a claim (no
// writer sets the busy bit before its claim or keeps it after releasing
// the claim), and a claim word with bits outside its slot and pid. An
// all-zero region is an empty table nobody attached yet.
//
// A record left busy with a claim (its writer was killed mid-write) and a
// record marked torn are states the protocol recovers from (Recover,
// Write), not problems. Run it on a quiescent table: a write in progress
// looks like a busy record.
func CheckRegion(seg *arena.Segment, off arena.Offset, records, words int, probs *arena.Problems) {
	size := SizeOf(records, words)
	if size == 0 {
		probs.Addf("geometry of %d records of %d words is invalid", records, words)
		return
	}
	if off%8 != 0 || seg.CheckRange(off, size) != nil {
		probs.Addf("region of %d bytes at %d is outside the segment (%d bytes) or misaligned", size, off, seg.Len())
		return
	}
	g := seg.Load64(off + offGeom)
	if g == 0 {
		for w := arena.Offset(0); w < arena.Offset(size); w += 8 {
			if v := seg.Load64(off + w); v != 0 {
				probs.Addf("geometry word is zero (never attached) but byte %d of the region holds %#x", w, v)
				return
			}
		}
		return
	}
	if want := geomWord(records, words); g != want {
		tag, format, r, w := splitGeom(g)
		probs.Addf("geometry word %#016x (tag %#x, format %d, %d records of %d words), want %#016x", g, tag, format, r, w, want)
		return
	}
	if m := seg.Load64(off + offMixed); m > 1 {
		probs.Addf("header: mixed-namespace flag %d, want 0 or 1", m)
	}
	for w := arena.Offset(offMixed + 8); w < headerSize; w += 8 {
		if v := seg.Load64(off + w); v != 0 {
			probs.Addf("header: reserved word at %d is %#x, want 0", w, v)
		}
	}
	st := arena.Offset(stride(words))
	claimOff := arena.Offset(offPayload + 8*words)
	for i := range records {
		rec := off + headerSize + arena.Offset(i)*st
		s := seg.Load64(rec + offSeq)
		c := seg.Load64(rec + claimOff)
		if s&seqBusy != 0 && c == 0 {
			probs.Addf("record %d: busy (sequence %#x) without a writer's claim", i, s)
		}
		if c != 0 && c>>32&0xffff != 0 {
			probs.Addf("record %d: claim word %#x has bits set outside slot and pid", i, c)
		}
		for w := claimOff + 8; w < st; w += 8 {
			if v := seg.Load64(rec + w); v != 0 {
				probs.Addf("record %d: pad word at %d is %#x, want 0", i, w, v)
				break
			}
		}
	}
}

// ErrBusy: ReadRegion found the record busy (a write in progress, or left
// by a writer that died) or changing on every attempt.
var ErrBusy = errors.New("seqlock: record busy or changing")

// ReadRegion reads record i of the table of records records of words
// payload words at off in seg into dst (words long) without attaching a
// Table: it writes nothing, never waits and makes at most 4 attempts,
// failing with ErrBusy if the record is busy or changes during each, and
// with ErrTorn for a record marked torn. For tools that examine a segment
// they must not change (shmctl inspect, check); programs use Table.Read.
func ReadRegion(seg *arena.Segment, off arena.Offset, records, words, i int, dst []uint64) error {
	size := SizeOf(records, words)
	if size == 0 || uint(i) >= uint(records) || len(dst) != words || off%8 != 0 || seg.CheckRange(off, size) != nil {
		return fmt.Errorf("seqlock: read record %d of %d records of %d words at %d into %d words: %w", i, records, words, off, len(dst), ErrRegion)
	}
	rec := off + headerSize + arena.Offset(i)*arena.Offset(stride(words))
	for range 4 {
		s := seg.Load64(rec + offSeq)
		if s&seqBusy != 0 {
			continue
		}
		seg.LoadWords(rec+offPayload, dst)
		if seg.Load64(rec+offSeq) != s {
			continue
		}
		if s&seqTorn != 0 {
			return fmt.Errorf("seqlock: record %d: %w", i, ErrTorn)
		}
		return nil
	}
	return fmt.Errorf("seqlock: record %d: %w", i, ErrBusy)
}
