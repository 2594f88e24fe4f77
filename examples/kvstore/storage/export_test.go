package storage

// UnsafeDropTombstones makes s's Defrag drop every tombstone, shadowing or
// not: the negative control of the tombstone rule.
func UnsafeDropTombstones(s *Storage) { s.unsafeDropTombstones = true }
