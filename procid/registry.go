package procid

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Slot is a process's liveness slot in a [Registry]: the byte of a lock
// file on which the process holds an open-file-description lock for as
// long as it may own anything in the shared memory the registry belongs
// to. Shared records name their owner by slot, and anyone can test the
// slot's lock: the kernel drops it when the process exits, whatever its
// uid, PID namespace or /proc visibility. Slot 0 means "none recorded".
type Slot uint16

// MaxSlot is the highest slot number; a registry holds at most MaxSlot
// live registrants.
const MaxSlot = 1<<16 - 1

// slotBase is the byte offset of slot 0's lock. It lies far beyond the
// end of any segment file, so the slots of a file segment can be locked
// on the segment file itself. Locks are advisory: they never touch data.
const slotBase = 1 << 62

// ErrNoSlot means every slot of a registry is held by a live process.
var ErrNoSlot = errors.New("procid: every liveness slot is held")

// Registry hands out liveness slots on one lock file and tests them.
//
// The evidence it gives cannot be wrong in the dangerous direction: a
// process locks its slot before it publishes the slot in any shared
// record, and holds the lock until it exits (or closes the registry, after
// which it can no longer write the shared memory either). So a slot named
// by a record whose lock nobody holds belongs to a process that is gone.
// A held lock proves less: after its registrant died, a slot may be taken
// again by another process (slots are picked at random among 65535, so
// this is rare); such a claim then looks alive and is replaced only by
// the heartbeat threshold, the safe direction.
//
// Open-file-description locks (F_OFD_SETLK, Linux 3.15) belong to the open
// file, not to the process's pid: two handles of one process on two opens
// of the file are distinct registrants (tests use this to play several
// processes), and a forked child that inherits the descriptor keeps the
// lock alive (Go programs do not fork without exec, and the descriptor is
// close-on-exec).
type Registry struct {
	f   *os.File
	own bool // close f on Close

	mu     sync.Mutex
	slot   Slot
	closed bool
}

// NewRegistry returns a registry on the lock file f, which must be open
// for reading and writing. If own is set, Close closes f; otherwise the
// caller keeps f open for the registry's life (closing f releases the
// registry's slot, since the lock belongs to f's open file description).
// Each Registry must have its own open file description: two registries
// sharing one would share their locks.
func NewRegistry(f *os.File, own bool) *Registry {
	return &Registry{f: f, own: own}
}

// Register returns this registrant's slot, locking a free one on first
// use. It fails with [ErrNoSlot] if all are held, or with the OS error of
// the lock call (wrapped).
func (r *Registry) Register() (Slot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fmt.Errorf("procid: register: %w", os.ErrClosed)
	}
	if r.slot != 0 {
		return r.slot, nil
	}
	start := rand.N(uint32(MaxSlot))
	for i := range uint32(MaxSlot) {
		s := Slot(1 + (start+i)%MaxSlot)
		err := r.lock(s, unix.F_WRLCK)
		switch {
		case err == nil:
			r.slot = s
			return s, nil
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
			continue
		default:
			return 0, fmt.Errorf("procid: lock liveness slot %d: %w", s, err)
		}
	}
	return 0, ErrNoSlot
}

// Slot returns this registrant's slot, or 0 before Register.
func (r *Registry) Slot() Slot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.slot
}

func (r *Registry) lock(s Slot, typ int16) error {
	fl := unix.Flock_t{Type: typ, Whence: 0, Start: slotBase + int64(s), Len: 1}
	for {
		err := unix.FcntlFlock(r.f.Fd(), unix.F_OFD_SETLK, &fl)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Held reports whether some process holds slot s's lock. This
// registrant's own slot is held.
func (r *Registry) Held(s Slot) (bool, error) {
	if s == 0 {
		return false, fmt.Errorf("procid: slot 0: %w", ErrInvalid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, fmt.Errorf("procid: test slot %d: %w", s, os.ErrClosed)
	}
	if s == r.slot {
		return true, nil // F_OFD_GETLK ignores the caller's own locks
	}
	fl := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: slotBase + int64(s), Len: 1}
	for {
		err := unix.FcntlFlock(r.f.Fd(), unix.F_OFD_GETLK, &fl)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("procid: test slot %d: %w", s, err)
		}
		return fl.Type != unix.F_UNLCK, nil
	}
}

// Close releases the slot (and closes the lock file if the registry owns
// it). Shared records that still name the slot then read as dead.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var err error
	if r.slot != 0 {
		err = r.lock(r.slot, unix.F_UNLCK)
		r.slot = 0
	}
	if r.own {
		if cerr := r.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Claimant is what a shared record says about the process holding it.
type Claimant struct {
	// Slot is the claimant's liveness slot in the registry of the
	// record's segment; 0 if none was recorded.
	Slot Slot
	// ID identifies the claimant as far as the record says: a full
	// identity, or only a PID (StartTime zero) with the PID namespace in
	// which it is meaningful (PIDNS zero: unknown). Zero: no PID recorded.
	ID Identity
}

// Reasons given by [Registry.Judge] beyond those of [Identity.CheckFrom].
const (
	ReasonSlotFree     Reason = "liveness lock released: the process has exited"
	ReasonSlotHeld     Reason = "liveness lock held"
	ReasonNoEvidence   Reason = "no evidence that cannot be wrong: liveness unknown"
	ReasonNoRegistry   Reason = "no liveness lock file: liveness judged by pid only"
	ReasonForeignPIDNS Reason = "pid of an unknown or other PID namespace: liveness unknowable"
)

// Judge is shmkit's one liveness judgement, used by the lease, the
// seqlock, the pool and everything that reclaims what a process left.
// Its rule: a process is Dead only on evidence that cannot be wrong;
// anything else is Unknown (or Alive), and only a heartbeat threshold may
// replace an Unknown owner.
//
// Evidence, in order:
//   - the claimant's slot is free in this registry: Dead (the kernel
//     released the lock when the process exited; this holds across uids,
//     PID namespaces and a hidepid /proc);
//   - a full identity (with start time): [Identity.CheckFrom], which says
//     Dead only on a pidfd or a /proc entry of our own PID namespace;
//   - a bare PID of our own PID namespace: Dead if no such pid exists;
//   - otherwise Unknown, or Alive when the slot is held.
//
// self is the observer's identity (for its boot id and PID namespace). r
// may be nil: then only pid evidence is used.
func (r *Registry) Judge(c Claimant, self Identity) (Liveness, Reason) {
	held := false
	if r != nil && c.Slot != 0 {
		h, err := r.Held(c.Slot)
		if err == nil && !h {
			return Dead, ReasonSlotFree
		}
		held = err == nil && h
	}
	lv, why := Unknown, ReasonNoEvidence
	switch {
	case c.ID.PID == 0:
	case c.ID.StartTime != 0:
		lv, why = c.ID.CheckFrom(self)
	case c.ID.PIDNS == 0 || c.ID.PIDNS != self.PIDNS:
		why = ReasonForeignPIDNS
	default:
		if pidGone(int(c.ID.PID)) {
			lv, why = Dead, ReasonGone
		}
	}
	if lv == Unknown && held {
		// A held slot is most likely the claimant's own; it may also be a
		// later process's, so it is never proof of life for reclaiming,
		// but it is no reason to doubt either.
		return Alive, ReasonSlotHeld
	}
	if lv == Unknown && r == nil && c.Slot != 0 {
		why = ReasonNoRegistry
	}
	return lv, why
}

// pidGone reports whether no process has pid in the caller's PID
// namespace: pidfd_open says ESRCH, or (where pidfd_open is unavailable)
// kill(pid, 0) does. Either is certain; EPERM and the like are not.
func pidGone(pid int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		unix.Close(fd)
		return false
	}
	if errors.Is(err, unix.ESRCH) {
		return true
	}
	return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
}
