package seqlock_test

import (
	"errors"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/seqlock"
)

// TestCheck plants one kind of damage per case in a table of 3 records of
// 5 words (stride 64 bytes: seq, 5 payload words, claim, 1 pad word) and
// wants Check to name it; an undamaged table, one with a dead writer's
// busy record and a torn one pass.
func TestCheck(t *testing.T) {
	const records, words = 3, 5
	const hdr, stride, pad = 64, 64, 8 + 8*words + 8
	for _, c := range []struct {
		name   string
		damage func(seg *arena.Segment, off arena.Offset, tab *seqlock.Table)
		want   string // "" : no problem
	}{
		{"clean", func(*arena.Segment, arena.Offset, *seqlock.Table) {}, ""},
		{"dead writer left it busy", func(_ *arena.Segment, _ arena.Offset, tab *seqlock.Table) {
			s, _ := tab.RawState(1)
			tab.SetRawState(1, s|seqlock.SeqBusy, seqlock.ClaimWord(3, 4242))
		}, ""},
		{"torn", func(_ *arena.Segment, _ arena.Offset, tab *seqlock.Table) {
			s, _ := tab.RawState(1)
			tab.SetRawState(1, s+4|seqlock.SeqTorn, 0)
		}, ""},
		{"busy without claim", func(_ *arena.Segment, _ arena.Offset, tab *seqlock.Table) {
			s, _ := tab.RawState(2)
			tab.SetRawState(2, s|seqlock.SeqBusy, 0)
		}, "record 2: busy"},
		{"claim bits", func(_ *arena.Segment, _ arena.Offset, tab *seqlock.Table) {
			s, _ := tab.RawState(0)
			tab.SetRawState(0, s, 1<<40|77)
		}, "record 0: claim word"},
		{"pad", func(seg *arena.Segment, off arena.Offset, _ *seqlock.Table) {
			seg.Store64(off+hdr+stride+pad, 9)
		}, "record 1: pad word"},
		{"geometry", func(seg *arena.Segment, off arena.Offset, _ *seqlock.Table) {
			seg.Store64(off, seg.Load64(off)+1<<16)
		}, "geometry word"},
		{"reserved header", func(seg *arena.Segment, off arena.Offset, _ *seqlock.Table) {
			seg.Store64(off+40, 1)
		}, "reserved word at 40"},
		{"mixed flag", func(seg *arena.Segment, off arena.Offset, _ *seqlock.Table) {
			seg.Store64(off+16, 2)
		}, "mixed-namespace flag 2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, seg, off := newHeapTable(t, records, words, seqlock.Options{})
			for i := range records {
				if err := tab.Write(i, []uint64{1, 2, 3, 4, uint64(i)}); err != nil {
					t.Fatal(err)
				}
			}
			c.damage(seg, off, tab)
			err := tab.Check()
			var probs arena.Problems
			seqlock.CheckRegion(seg, off, records, words, &probs)
			if (err == nil) != (probs.Len() == 0) {
				t.Errorf("Check = %v but CheckRegion found %d problems", err, probs.Len())
			}
			arenatest.WantProblem(t, err, c.want)
		})
	}
}

// TestCheckRegionEmptyAndOutside: an all-zero region is an empty table; a
// zero geometry word over non-zero words, and a region past the segment,
// are problems.
func TestCheckRegionEmptyAndOutside(t *testing.T) {
	seg, off := newHeap(t, 2, 3)
	var p arena.Problems
	seqlock.CheckRegion(seg, off, 2, 3, &p)
	if p.Len() != 0 {
		t.Errorf("empty region: %d problems", p.Len())
	}
	seg.Store64(off+64+8, 5)
	seqlock.CheckRegion(seg, off, 2, 3, &p)
	if p.Len() != 1 {
		t.Errorf("zero geometry over data: %d problems", p.Len())
	}
	var q arena.Problems
	seqlock.CheckRegion(seg, arena.Offset(seg.Len()-8), 2, 3, &q)
	if q.Len() != 1 {
		t.Errorf("region past the end: %d problems", q.Len())
	}
}

func TestReadRegion(t *testing.T) {
	tab, seg, off := newHeapTable(t, 2, 3, seqlock.Options{})
	if err := tab.Write(1, []uint64{7, 8, 9}); err != nil {
		t.Fatal(err)
	}
	dst := make([]uint64, 3)
	if err := seqlock.ReadRegion(seg, off, 2, 3, 1, dst); err != nil || dst[0] != 7 || dst[2] != 9 {
		t.Errorf("ReadRegion = %v, %v", dst, err)
	}
	s, _ := tab.RawState(1)
	tab.SetRawState(1, s|seqlock.SeqBusy, seqlock.ClaimWord(1, 1))
	if err := seqlock.ReadRegion(seg, off, 2, 3, 1, dst); !errors.Is(err, seqlock.ErrBusy) {
		t.Errorf("busy record: %v", err)
	}
	tab.SetRawState(1, s+4|seqlock.SeqTorn, 0)
	if err := seqlock.ReadRegion(seg, off, 2, 3, 1, dst); !errors.Is(err, seqlock.ErrTorn) {
		t.Errorf("torn record: %v", err)
	}
	if err := seqlock.ReadRegion(seg, off, 2, 3, 2, dst); !errors.Is(err, seqlock.ErrRegion) {
		t.Errorf("record 2 of 2: %v", err)
	}
}
