package arena

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Every conversion between pointers, addresses and slices in package arena
// (pool.go included) is in this file, so that the rules that make them
// sound can be checked in one place:
//
//   - Segment memory is either outside the Go heap (a SysV attachment or a
//     file mapping, which the collector neither scans nor moves) or, for a
//     heap segment, the backing array of a []uint64 that the heapSeg keeps
//     reachable for as long as any handle may use it.
//   - The caller has checked bounds and alignment; each function says what
//     it trusts. Nothing here checks again, so that the word accessors stay
//     small enough to inline.
//   - No Go pointer is ever stored in a segment: shared structures link by
//     offset.

// word64 returns the 8-byte word at byte off of data. The caller has
// checked that off is 8-byte aligned and that off+8 ≤ len(data).
func word64(data []byte, off Offset) *uint64 {
	return (*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(data)), off))
}

// word32 returns the 4-byte word at byte off of data. The caller has
// checked that off is 4-byte aligned and that off+4 ≤ len(data).
func word32(data []byte, off Offset) *uint32 {
	return (*uint32)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(data)), off))
}

// wordsAt returns the n words starting at byte off of data as a slice. The
// caller has checked that off is 8-byte aligned, that off+8n ≤ len(data),
// and that n > 0 (so that the pointer stays inside the memory).
func wordsAt(data []byte, off Offset, n uint64) []uint64 {
	return unsafe.Slice(word64(data, off), n)
}

// wordBytes returns the first size bytes of words. The caller has checked
// that 0 < size ≤ 8·len(words).
func wordBytes(words []uint64, size uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), size)
}

// futex calls futex(2) with op on the 32-bit word at addr, with val and an
// optional timeout. addr is a word of segment memory (from word32), which
// the kernel reads and may compare; the conversions to uintptr happen in
// the call expression, as package unsafe requires for system calls.
func futex(addr *uint32, op, val uintptr, timeout *unix.Timespec) (uintptr, unix.Errno) {
	r, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), op, val, uintptr(unsafe.Pointer(timeout)), 0, 0)
	return r, e
}

// addrOf returns the address of data's first byte, to find its mapping in
// /proc/self/smaps (hugepage.go). The caller has checked len(data) > 0.
func addrOf(data []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(data))))
}
