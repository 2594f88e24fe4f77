package arena

import (
	"fmt"
	"sync/atomic"

	"github.com/shmkit/shmkit/layout"
)

// Offset is a byte offset from the start of a segment. Segments are mapped
// at different addresses in different processes, so shared data structures
// link by offset (or by handle), never by pointer; no Go pointer is ever
// stored in a segment.
type Offset uint64

// Segment is an attached shared-memory segment: a SysV segment, a mapped
// file, or heap memory (for tests under the race detector). All methods
// are safe for concurrent use; the memory itself is shared with other
// processes and must be accessed through the word accessors for anything
// another process may change concurrently.
//
// The word accessors (Load64, Store64, CAS64, Add64, Swap64 and the 32-bit
// forms) are Go's sync/atomic operations, which are sequentially
// consistent. They panic on a misaligned or out-of-range offset: that is a
// programming error, since every offset used with them comes either from a
// constant layout or from a value that was bounds-checked with CheckRange
// (or a higher-level check) after being read from shared memory.
type Segment struct {
	loc    Location
	m      mapping
	data   []byte
	hdr    *layout.Header
	closed atomic.Bool
	live   liveState // this handle's liveness slot (liveness.go)
}

// Location returns where the segment lives.
func (s *Segment) Location() Location { return s.loc }

// Header returns the validated header read when the segment was attached.
func (s *Segment) Header() *layout.Header { return s.hdr }

// Len returns the mapped size in bytes.
func (s *Segment) Len() uint64 { return uint64(len(s.data)) }

// Section returns the offset and size of a named section from the header.
func (s *Segment) Section(name string) (Offset, uint64, error) {
	if s.hdr == nil {
		return 0, 0, fmt.Errorf("arena: %s: no header: %w", s.loc, ErrRange)
	}
	sec, ok := s.hdr.Section(name)
	if !ok {
		return 0, 0, fmt.Errorf("arena: %s has no section %q: %w", s.loc, name, ErrRange)
	}
	return Offset(sec.Offset), sec.Size, nil
}

// CheckRange reports whether [off, off+n) lies within the segment; use it on
// every offset or length that was read from shared memory or a file.
func (s *Segment) CheckRange(off Offset, n uint64) error {
	if uint64(off) > uint64(len(s.data)) || n > uint64(len(s.data))-uint64(off) {
		return fmt.Errorf("arena: %s: range [%d,+%d) outside %d bytes: %w", s.loc, off, n, len(s.data), ErrRange)
	}
	return nil
}

// CheckWord reports whether off is a valid, 8-byte-aligned word offset.
func (s *Segment) CheckWord(off Offset) error {
	if off&7 != 0 {
		return fmt.Errorf("arena: %s: offset %d not 8-byte aligned: %w", s.loc, off, ErrRange)
	}
	return s.CheckRange(off, 8)
}

func (s *Segment) w64(off Offset) *uint64 {
	if off&7 != 0 || len(s.data) < 8 || uint64(off) > uint64(len(s.data))-8 {
		panic(wordPanic{loc: s.loc, off: off, size: len(s.data)})
	}
	return word64(s.data, off)
}

func (s *Segment) w32(off Offset) *uint32 {
	if off&3 != 0 || len(s.data) < 4 || uint64(off) > uint64(len(s.data))-4 {
		panic(wordPanic{loc: s.loc, off: off, size: len(s.data)})
	}
	return word32(s.data, off)
}

// Load64 atomically loads the 8-byte word at off.
func (s *Segment) Load64(off Offset) uint64 { return atomic.LoadUint64(s.w64(off)) }

// Store64 atomically stores v at off.
func (s *Segment) Store64(off Offset, v uint64) { atomic.StoreUint64(s.w64(off), v) }

// CAS64 atomically replaces old with new at off and reports whether it did.
func (s *Segment) CAS64(off Offset, old, new uint64) bool {
	return atomic.CompareAndSwapUint64(s.w64(off), old, new)
}

// Add64 atomically adds d at off and returns the new value.
func (s *Segment) Add64(off Offset, d uint64) uint64 { return atomic.AddUint64(s.w64(off), d) }

// Swap64 atomically stores v at off and returns the previous value.
func (s *Segment) Swap64(off Offset, v uint64) uint64 { return atomic.SwapUint64(s.w64(off), v) }

// Load32 atomically loads the 4-byte word at off (4-byte aligned).
func (s *Segment) Load32(off Offset) uint32 { return atomic.LoadUint32(s.w32(off)) }

// Store32 atomically stores v at off.
func (s *Segment) Store32(off Offset, v uint32) { atomic.StoreUint32(s.w32(off), v) }

// CAS32 atomically replaces old with new at off and reports whether it did.
func (s *Segment) CAS32(off Offset, old, new uint32) bool {
	return atomic.CompareAndSwapUint32(s.w32(off), old, new)
}

// Add32 atomically adds d at off and returns the new value.
func (s *Segment) Add32(off Offset, d uint32) uint32 { return atomic.AddUint32(s.w32(off), d) }

// LoadWords copies len(dst) words starting at off with one atomic load each.
func (s *Segment) LoadWords(off Offset, dst []uint64) {
	if uint64(off) > uint64(len(s.data)) || uint64(len(dst)) > (uint64(len(s.data))-uint64(off))/8 || off&7 != 0 {
		panic(wordPanic{loc: s.loc, off: off, size: len(s.data)})
	}
	if len(dst) == 0 {
		return
	}
	src := wordsAt(s.data, off, uint64(len(dst)))
	for i := range dst {
		dst[i] = atomic.LoadUint64(&src[i])
	}
}

// StoreWords stores src word by word, each with one atomic store.
func (s *Segment) StoreWords(off Offset, src []uint64) {
	if uint64(off) > uint64(len(s.data)) || uint64(len(src)) > (uint64(len(s.data))-uint64(off))/8 || off&7 != 0 {
		panic(wordPanic{loc: s.loc, off: off, size: len(s.data)})
	}
	if len(src) == 0 {
		return
	}
	dst := wordsAt(s.data, off, uint64(len(src)))
	for i, v := range src {
		atomic.StoreUint64(&dst[i], v)
	}
}

// Close detaches the segment from this process. The segment itself stays
// (use Remove to delete it). Using the segment after Close is a bug; Close
// is idempotent.
func (s *Segment) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.closeLiveness()
	return s.m.close()
}

// Removed reports whether the segment was removed while this process is
// attached (SysV: IPC_RMID marks it SHM_DEST and frees the key, so the next
// shmget would silently create a second segment; file: the file was
// unlinked or replaced; any backend: the header state is retired). A
// process that sees true should close the segment and open it again.
func (s *Segment) Removed() (bool, error) {
	if s.closed.Load() {
		return false, &Error{Op: "check", Seg: s.loc.String(), Err: ErrClosed}
	}
	if st, _ := layout.SplitStateWord(s.Load64(layout.OffState)); st == layout.StateRetired {
		return true, nil
	}
	return s.m.removed()
}

// State returns the header state.
func (s *Segment) State() layout.State {
	st, _ := layout.SplitStateWord(s.Load64(layout.OffState))
	return st
}

// SetState changes the header state from ready to clean shutdown or back
// (a process that shuts down cleanly marks the segment so the next start
// knows its contents are consistent). It fails if the state is not from.
func (s *Segment) SetState(from, to layout.State) bool {
	allowed := (from == layout.StateReady && to == layout.StateClean) || (from == layout.StateClean && to == layout.StateReady)
	if !allowed {
		return false
	}
	for {
		w := s.Load64(layout.OffState)
		st, pid := layout.SplitStateWord(w)
		if st != from {
			return false
		}
		if s.CAS64(layout.OffState, w, layout.StateWord(to, pid)) {
			return true
		}
	}
}

// Stat describes the segment now.
func (s *Segment) Stat() (Stat, error) { return s.m.stat() }

// wordPanic is the value a word accessor panics with; it is formatted only
// when printed, so the accessors stay small enough to inline.
type wordPanic struct {
	loc  Location
	off  Offset
	size int
}

func (p wordPanic) Error() string {
	return fmt.Sprintf("arena: %s: word offset %d misaligned or outside %d bytes", p.loc, p.off, p.size)
}

// Sync writes a file segment's pages back to its file and waits for it
// (msync with MS_SYNC), so that a marker written after Sync returns is
// never on disk before the data it vouches for. SysV and heap segments have
// no backing file: Sync does nothing for them.
func (s *Segment) Sync() error {
	if s.closed.Load() {
		return &Error{Op: "sync", Seg: s.loc.String(), Err: ErrClosed}
	}
	fm, ok := s.m.(*fileMap)
	if !ok {
		return nil
	}
	if err := fm.mm.Flush(); err != nil {
		return &Error{Op: "sync", Seg: s.loc.String(), Err: err, Hint: "the file system holding the segment failed to write it back; check it (df, dmesg)"}
	}
	return nil
}
