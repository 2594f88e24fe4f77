package lease_test

import (
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/lease"
)

// Record offsets (lease.go's diagram), for planting damage.
const (
	recCtl       = 0
	recWake      = 16
	recIDEpoch   = 24
	recIdentity  = 32
	recTakeovers = 72
	recLast      = 80
)

// TestCheck plants one kind of damage per case in a record held at epoch 2
// and wants Check to name it; the undamaged record, a free one and one
// whose owner died right after its CAS pass.
func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(seg *arena.Segment, lo arena.Offset)
		want   string
	}{
		{"held", func(*arena.Segment, arena.Offset) {}, ""},
		{"killed after its CAS", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+recCtl, seg.Load64(lo+recCtl)+1<<24) // epoch 3, nothing else written yet
		}, ""},
		{"unknown state", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+recCtl, seg.Load64(lo+recCtl)|7)
		}, "state 7"},
		{"free with a slot", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+recCtl, 2<<24|5<<8)
		}, "free, yet names liveness slot 5"},
		{"held at epoch 0", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+recCtl, 1)
		}, "held at epoch 0"},
		{"identity ahead", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+recIDEpoch, 9)
		}, "identity written for epoch 9"},
		{"identity empty", func(seg *arena.Segment, lo arena.Offset) {
			seg.StoreWords(lo+recIdentity, make([]uint64, 5))
		}, "identity of epoch 2 is empty"},
		{"takeovers", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+recTakeovers, 40)
		}, "40 takeovers counted in 2 epochs"},
		{"reason", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+recLast, 2<<8|99)
		}, "reason 99 is unknown"},
		{"reason ahead", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+recLast, 8<<8|1)
		}, "recorded for epoch 8"},
		{"pad", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store32(lo+recWake+4, 1)
		}, "padding after the wake word"},
		{"reserved", func(seg *arena.Segment, lo arena.Offset) {
			seg.Store64(lo+120, 1)
		}, "reserved word at 120"},
	} {
		t.Run(c.name, func(t *testing.T) {
			seg, lo, _ := heapSeg(t)
			a := newLease(t, seg, lo, time.Hour)
			if _, err := a.TryAcquire(); err != nil {
				t.Fatal(err)
			}
			if err := a.Check(); err != nil {
				t.Fatalf("Check, epoch 1: %v", err)
			}
			if err := a.Release(); err != nil {
				t.Fatal(err)
			}
			if err := a.Check(); err != nil {
				t.Fatalf("Check, released: %v", err)
			}
			if _, err := a.TryAcquire(); err != nil {
				t.Fatal(err)
			}
			c.damage(seg, lo)
			arenatest.WantProblem(t, a.Check(), c.want)
		})
	}
	seg, _, _ := heapSeg(t)
	var p arena.Problems
	lease.CheckRecord(seg, arena.Offset(seg.Len()-64), &p)
	if p.Len() != 1 {
		t.Errorf("a record past the segment's end: %d problems", p.Len())
	}
}
