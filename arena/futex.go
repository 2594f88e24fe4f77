package arena

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Futex operations (linux/futex.h). x/sys/unix has SYS_FUTEX but neither a
// wrapper nor these constants. The private flag is deliberately not used:
// the word is shared between processes.
const (
	futexWait = 0
	futexWake = 1
)

// FutexWait blocks while the 32-bit word at off equals val, until a
// FutexWake on the same word (from any process), the timeout, or a spurious
// wake-up. It reports whether it returned because of a wake-up or a value
// change (true) rather than the timeout (false). Callers re-check their
// condition in a loop either way. A timeout ≤ 0 returns at once.
func (s *Segment) FutexWait(off Offset, val uint32, timeout time.Duration) bool {
	if timeout <= 0 {
		return false
	}
	ts := unix.NsecToTimespec(int64(timeout))
	_, e := futex(s.w32(off), futexWait, uintptr(val), &ts)
	return !errors.Is(e, unix.ETIMEDOUT)
}

// FutexWake wakes up to n waiters blocked in FutexWait on the word at off,
// in any process, and returns how many it woke.
func (s *Segment) FutexWake(off Offset, n int) int {
	r, e := futex(s.w32(off), futexWake, uintptr(n), nil)
	if e != 0 {
		return 0
	}
	return int(r)
}
