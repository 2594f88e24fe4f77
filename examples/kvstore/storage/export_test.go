package storage

// UnsafeDropTombstones makes s's Defrag drop every tombstone, shadowing or
// not: the negative control of the tombstone rule.
func UnsafeDropTombstones(s *Storage) { s.unsafeDropTombstones = true }

// LimitFileIDs makes s use file ids 1..n only, to test their reuse.
func LimitFileIDs(s *Storage, n uint32) { s.maxID = n }

// Unplaced returns s's count of unplaced dead bytes.
func Unplaced(s *Storage) uint64 { return s.unplaced.Load() }
