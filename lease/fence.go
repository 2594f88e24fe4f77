package lease

import (
	"fmt"

	"github.com/shmkit/shmkit/arena"
)

// Fenced words carry the epoch of their last writer in the top EpochBits
// bits and a payload in the rest:
//
//	 63                         24 23            0
//	+-----------------------------+---------------+
//	| epoch (40 bits)             | payload (24)  |
//	+-----------------------------+---------------+
//
// A new owner first stamps every fenced word it will write with its epoch
// (Stamp); from then on only writers of that exact epoch can change them
// (FencedCAS). An old owner that wakes up after a takeover finds the newer
// epoch and fails with ErrFenced: a check of the lease followed by a plain
// store would fence nothing, since the owner can lose the lease between the
// two.
const (
	EpochBits   = 40
	PayloadBits = 64 - EpochBits
	PayloadMask = 1<<PayloadBits - 1
	epochMask   = 1<<EpochBits - 1
)

// PackFenced builds a fenced word.
func PackFenced(epoch, payload uint64) uint64 {
	return (epoch&epochMask)<<PayloadBits | payload&PayloadMask
}

// SplitFenced splits a fenced word.
func SplitFenced(w uint64) (epoch, payload uint64) { return w >> PayloadBits, w & PayloadMask }

// Stamp sets this owner's epoch on the fenced word at off, keeping its
// payload. It fails with ErrFenced if the word already carries a newer
// epoch, and ErrNotOwner if this process holds no lease.
func (l *Lease) Stamp(seg *arena.Segment, off arena.Offset) error {
	e := l.Epoch() & epochMask
	if e == 0 {
		return ErrNotOwner
	}
	for {
		w := seg.Load64(off)
		we, p := SplitFenced(w)
		switch {
		case we == e:
			return nil
		case we > e:
			return fmt.Errorf("lease: stamp with epoch %d: word has epoch %d: %w", e, we, ErrFenced)
		}
		if seg.CAS64(off, w, PackFenced(e, p)) {
			return nil
		}
	}
}

// FencedCAS replaces the payload of the fenced word at off from old to new
// if the word carries exactly this owner's epoch. It returns (false, nil)
// when the payload is not old, and ErrFenced when the epoch differs: newer
// means another owner took over; older means the word was not stamped.
func (l *Lease) FencedCAS(seg *arena.Segment, off arena.Offset, old, new uint64) (bool, error) {
	e := l.Epoch() & epochMask
	if e == 0 {
		return false, ErrNotOwner
	}
	w := seg.Load64(off)
	we, p := SplitFenced(w)
	if we != e {
		return false, fmt.Errorf("lease: fenced write with epoch %d: word has epoch %d: %w", e, we, ErrFenced)
	}
	if p != old&PayloadMask {
		return false, nil
	}
	l.cfg.Failpoints.Hit(FailBeforeFencedCAS)
	if seg.CAS64(off, w, PackFenced(e, new)) {
		return true, nil
	}
	// The word changed under us: if its epoch moved we are fenced,
	// otherwise the payload changed and the caller retries.
	if we2, _ := SplitFenced(seg.Load64(off)); we2 != e {
		return false, fmt.Errorf("lease: fenced write with epoch %d: word has epoch %d: %w", e, we2, ErrFenced)
	}
	return false, nil
}
