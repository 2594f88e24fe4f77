package arena

import (
	"fmt"
	"sync/atomic"
)

// Words is a bounds-checked view of a run of 8-byte words in a segment,
// indexed by word number. It exists for hot paths: a load through a view
// checks one index against the view's length, where a Segment accessor
// checks alignment and the segment bounds. Take a view once (Segment.Words
// validates it), keep it as long as the segment stays attached, and index
// it with values that are bounded by the caller's own checks.
type Words struct {
	w []uint64 // the words, in shared memory: indexing is bounds-checked
}

// Words returns a view of n words starting at off (8-byte aligned).
func (s *Segment) Words(off Offset, n uint64) (Words, error) {
	if off&7 != 0 {
		return Words{}, fmt.Errorf("arena: %s: word view at %d not 8-byte aligned: %w", s.loc, off, ErrRange)
	}
	if n > uint64(len(s.data))/8 {
		return Words{}, fmt.Errorf("arena: %s: word view of %d words larger than the segment: %w", s.loc, n, ErrRange)
	}
	if err := s.CheckRange(off, 8*n); err != nil {
		return Words{}, err
	}
	if n == 0 {
		return Words{}, nil
	}
	return Words{w: wordsAt(s.data, off, n)}, nil
}

// Len returns the number of words in the view.
func (w Words) Len() uint64 { return uint64(len(w.w)) }

// at panics with Go's index-out-of-range error for i ≥ Len: a programming
// error, as for the Segment accessors.
func (w Words) at(i uint64) *uint64 { return &w.w[i] }

// Load atomically loads word i.
func (w Words) Load(i uint64) uint64 { return atomic.LoadUint64(w.at(i)) }

// Store atomically stores v in word i.
func (w Words) Store(i uint64, v uint64) { atomic.StoreUint64(w.at(i), v) }

// CAS atomically replaces old with new in word i and reports whether it did.
func (w Words) CAS(i uint64, old, new uint64) bool {
	return atomic.CompareAndSwapUint64(w.at(i), old, new)
}

// LoadN copies len(dst) words starting at word i, one atomic load each,
// with one bounds check for the whole run.
func (w Words) LoadN(i uint64, dst []uint64) {
	src := w.w[i : i+uint64(len(dst))]
	for k := range dst {
		dst[k] = atomic.LoadUint64(&src[k])
	}
}

// Add atomically adds d to word i and returns the new value.
func (w Words) Add(i uint64, d uint64) uint64 { return atomic.AddUint64(w.at(i), d) }
