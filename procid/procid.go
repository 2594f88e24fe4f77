// Package procid identifies processes in a way that survives pid reuse,
// reboots and PID namespaces, and tells whether an identified process is
// still alive.
//
// An [Identity] is the tuple (pid, start time, boot id, pid namespace). The
// pid alone is ambiguous: Linux reuses pids, so a record left in shared
// memory by a process that died may name an unrelated process later. The
// start time (clock ticks since boot, from /proc/<pid>/stat) disambiguates
// within one boot, the boot id across reboots, and the namespace inode
// says in which PID namespace the pid number is meaningful.
//
// Identities are plain values: they can be compared with ==, packed into
// [Words] 64-bit words for shared memory with [Identity.Pack], and checked
// with [Identity.Check] or watched with [Watch].
//
// # Liveness: unknowable is never dead
//
// A pid, even with its start time, proves little across uids, PID
// namespaces and a /proc mounted with hidepid. The proof shmkit relies on
// is a [Registry] slot: an open-file-description lock that a process holds
// on one byte of a lock file for as long as it may own anything in shared
// memory, and names in every claim it makes there. The kernel releases it
// when the process exits, so a claim whose slot is free was left by a
// dead process. [Registry.Judge] is the one liveness judgement of the
// lease, the seqlock, the pool and the segment initializer: Dead only on
// such proof (or a pid proven gone from our own PID namespace); Unknown
// otherwise, which only a heartbeat threshold may override.
package procid

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
)

// Sentinel errors. Errors returned by this package wrap one of these (or an
// underlying OS error) so callers can test them with [errors.Is].
var (
	// ErrNoProcess means the pid does not name a process in our /proc.
	ErrNoProcess = errors.New("procid: no such process")
	// ErrUnknowable means the identity belongs to another PID namespace, so
	// its pid cannot be looked up from here and its liveness is unknowable.
	ErrUnknowable = errors.New("procid: identity from another PID namespace: liveness unknowable")
	// ErrInvalid means an argument (pid or identity) is out of range or zero.
	ErrInvalid = errors.New("procid: invalid argument")
	// ErrMalformed means a /proc file did not have the expected format.
	ErrMalformed = errors.New("procid: malformed /proc data")
)

// Identity names one process uniquely across pid reuse and reboots.
// The zero value names no process.
type Identity struct {
	// PID is the process id as seen in the PID namespace PIDNS.
	PID uint32
	// StartTime is field 22 of /proc/<pid>/stat: when the process
	// started, in clock ticks since boot.
	StartTime uint64
	// BootID is /proc/sys/kernel/random/boot_id (a UUID) as 16 bytes.
	BootID [16]byte
	// PIDNS is the inode number of the PID namespace in which PID is
	// meaningful (the inode of /proc/self/ns/pid for that namespace's
	// processes). Zero means unknown and is treated as "ours".
	PIDNS uint64
}

// Self returns the identity of the calling process. It reads /proc on every
// call; callers that need it often should cache the result.
func Self() (Identity, error) {
	st, err := readStat("self")
	if err != nil {
		return Identity{}, fmt.Errorf("procid: identify self: %w", err)
	}
	boot, ns, err := readBootAndNS()
	if err != nil {
		return Identity{}, err
	}
	return Identity{PID: uint32(os.Getpid()), StartTime: st.startTime, BootID: boot, PIDNS: ns}, nil
}

// Of returns the identity of process pid, a pid in the caller's PID
// namespace. It works across users: /proc/<pid>/stat is world-readable.
//
// PIDNS is set to the caller's own PID namespace, because that is the
// namespace in which the number pid is meaningful, even when the target
// itself lives in a nested (child) namespace where its pid differs. An
// Identity therefore always pairs a pid with the namespace that interprets
// it, and [Identity.Check] from any process in that namespace is sound.
//
// Of fails with an error wrapping [ErrNoProcess] if there is no such
// process, and [ErrInvalid] if pid is not a positive 32-bit number.
func Of(pid int) (Identity, error) {
	if pid <= 0 || pid > math.MaxUint32 {
		return Identity{}, fmt.Errorf("procid: pid %d: %w", pid, ErrInvalid)
	}
	st, err := readStat(strconv.Itoa(pid))
	if errors.Is(err, fs.ErrNotExist) {
		return Identity{}, fmt.Errorf("procid: pid %d: %w", pid, ErrNoProcess)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("procid: identify pid %d: %w", pid, err)
	}
	boot, ns, err := readBootAndNS()
	if err != nil {
		return Identity{}, err
	}
	return Identity{PID: uint32(pid), StartTime: st.startTime, BootID: boot, PIDNS: ns}, nil
}

// IsZero reports whether id is the zero Identity (names no process).
func (id Identity) IsZero() bool { return id == Identity{} }

// String formats id as "pid 1234 (start 5678, boot 1a2b3c4d…, pidns 4026531836)".
func (id Identity) String() string {
	return fmt.Sprintf("pid %d (start %d, boot %s…, pidns %d)",
		id.PID, id.StartTime, hex.EncodeToString(id.BootID[:4]), id.PIDNS)
}

// Words is the number of 64-bit words an Identity occupies when packed.
const Words = 5

// Pack encodes id into [Words] 64-bit words, for storage in shared memory.
// [Unpack] inverts it exactly. The zero Identity packs to all-zero words,
// so zeroed memory reads back as "no process".
//
//	       63                  32 31                   0
//	      +----------------------+----------------------+
//	w[0]  |   reserved (zero)    |         PID          |
//	      +----------------------+----------------------+
//	w[1]  |                  StartTime                  |
//	      +---------------------------------------------+
//	w[2]  |      BootID[0:8]  (big-endian: byte 0 high) |
//	      +---------------------------------------------+
//	w[3]  |      BootID[8:16] (big-endian: byte 8 high) |
//	      +---------------------------------------------+
//	w[4]  |                    PIDNS                    |
//	      +---------------------------------------------+
//
// Storing the words is not atomic as a whole; protect them with a seqlock
// or similar when other processes may read concurrently.
func (id Identity) Pack() [Words]uint64 {
	return [Words]uint64{
		uint64(id.PID),
		id.StartTime,
		binary.BigEndian.Uint64(id.BootID[0:8]),
		binary.BigEndian.Uint64(id.BootID[8:16]),
		id.PIDNS,
	}
}

// Unpack decodes words produced by [Identity.Pack]. Reserved bits are
// ignored.
func Unpack(w [Words]uint64) Identity {
	var id Identity
	id.PID = uint32(w[0])
	id.StartTime = w[1]
	binary.BigEndian.PutUint64(id.BootID[0:8], w[2])
	binary.BigEndian.PutUint64(id.BootID[8:16], w[3])
	id.PIDNS = w[4]
	return id
}
