// Package lease is a single-owner lease in shared memory: one process owns
// it at a time, renews a heartbeat, and is replaced at once when it
// releases the lease or dies, or after a threshold when it stops renewing
// (hung, stopped, or in a PID namespace whose processes we cannot see).
// Every change of owner increments an epoch, the fencing token: writes to
// shared data are compare-and-swaps on words that carry the writer's epoch
// (FencedCAS), so an old owner that was paused past its lease and wakes up
// can never overwrite what the new owner wrote.
//
// An owner is judged by procid's one judgement (procid.Registry.Judge):
// before its CAS it locks a liveness slot in the segment's lock file, and
// the CAS itself names the slot, so an owner that dies at any point, even
// before it records its identity, is proven dead by the kernel's release
// of that lock, whatever its uid or PID namespace. An owner that cannot be
// proven dead (stopped, hung, or without a slot) is replaced only when its
// heartbeat is older than the threshold.
//
// Waiting is event driven where it can be: Release wakes waiters through a
// futex on a 32-bit word of the lease record (FUTEX_WAIT/FUTEX_WAKE without
// the private flag, since the word is shared between processes), and a
// waiter watches the owner's pidfd through the Go netpoller, so an owner's
// death is seen within a fraction of a millisecond. Where the owner's pid
// cannot be watched (another PID namespace, a hidepid /proc), the waiter
// tests the owner's slot lock every Config.SlotPoll (1 ms) between futex
// waits. No robust futexes or thread-id locks are used: Go moves goroutines
// between threads and registers no robust list.
package lease

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/procid"
)

// Record layout, in bytes from the record's base offset (the record is
// Size bytes, 8-byte aligned, and all zero is a valid free lease):
//
//	0        8        16       20     24       32                      72
//	+--------+--------+--------+------+--------+-----------------------+
//	| ctl    | beat   | wake   | pad  | id     | owner identity        |
//	|        |        | u32    |      | epoch  | (procid, 5 words)     |
//	+--------+--------+--------+------+--------+-----------------------+
//	72 takeovers u64 | 80 last reason u64 | 88..128 reserved
//
//	ctl:  epoch (high 40 bits) | owner's liveness slot (16) | state (low 8): 0 free, 1 held
//	      The slot (procid.Slot in the segment's liveness registry) is
//	      locked by the owner before its CAS and named by the CAS itself,
//	      so an owner that dies before writing its identity is provably
//	      dead at once; 0 means the owner had no slot.
//	beat: epoch tag (high 16 bits: epoch mod 2^16) | CLOCK_MONOTONIC µs (low 48 bits, ~8.9 years)
//	wake: futex word, incremented by Release (and by a waiter that sees the owner die)
//	id epoch: the epoch whose owner wrote the identity words (differs from
//	      ctl's while a new owner is still writing them)
//	last reason: takeover reason (low 8 bits) | epoch << 8
const (
	offCtl       = 0
	offBeat      = 8
	offWake      = 16
	offIDEpoch   = 24
	offIdentity  = 32
	offTakeovers = 72
	offLast      = 80

	// Size is the size of a lease record in bytes.
	Size = 128
)

var _ [offTakeovers - offIdentity - 8*procid.Words]struct{}

const (
	stateFree = 0
	stateHeld = 1
)

// ctlEpochMask bounds the epoch to the 40 bits a fenced word carries.
const ctlEpochMask = 1<<EpochBits - 1

func ctlWord(epoch uint64, slot procid.Slot, state uint8) uint64 {
	return (epoch&ctlEpochMask)<<24 | uint64(slot)<<8 | uint64(state)
}
func splitCtl(w uint64) (epoch uint64, slot procid.Slot, state uint8) {
	return w >> 24, procid.Slot(w >> 8), uint8(w)
}

const beatMask = 1<<48 - 1

func beatWord(epoch uint64, us uint64) uint64 { return (epoch&0xffff)<<48 | us&beatMask }
func splitBeat(w uint64) (tag uint64, us uint64) {
	return w >> 48, w & beatMask
}

// monoMicros reads CLOCK_MONOTONIC: one clock for every process of a boot
// (Go's own monotonic reading is private to a process), immune to wall
// clock jumps.
func monoMicros() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("lease: CLOCK_MONOTONIC unavailable: " + err.Error())
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}

// Reason says why a process became the owner.
type Reason uint8

// Takeover reasons.
const (
	ReasonNone             Reason = 0
	ReasonFirst            Reason = 1 // the lease had never been held
	ReasonReleased         Reason = 2 // the previous owner released it
	ReasonOwnerDead        Reason = 3 // the previous owner's process is gone
	ReasonHeartbeatExpired Reason = 4 // no heartbeat for the threshold: hung, stopped, or liveness unknowable
)

func (r Reason) String() string {
	switch r {
	case ReasonFirst:
		return "first owner"
	case ReasonReleased:
		return "released"
	case ReasonOwnerDead:
		return "owner dead"
	case ReasonHeartbeatExpired:
		return "heartbeat expired"
	}
	return "none"
}

// DefaultThreshold is the heartbeat age after which a live-looking owner is
// replaced, as the C client's shm_takeover_threshold_sec.
const DefaultThreshold = 30 * time.Second
