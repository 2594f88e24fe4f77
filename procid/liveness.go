package procid

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Liveness is the verdict of [Identity.Check].
type Liveness int

// Liveness values.
const (
	// Unknown means liveness cannot be decided from here (another PID
	// namespace, /proc unreadable, ...). Do not reclaim resources of an
	// Unknown process.
	Unknown Liveness = iota
	// Alive means the identified process exists and has not exited.
	Alive
	// Dead means the identified process has exited (it may still be an
	// unreaped zombie) or can no longer exist.
	Dead
)

// String returns "unknown", "alive" or "dead".
func (l Liveness) String() string {
	switch l {
	case Alive:
		return "alive"
	case Dead:
		return "dead"
	case Unknown:
		return "unknown"
	}
	return "Liveness(" + strconv.Itoa(int(l)) + ")"
}

// Reason explains a [Liveness] verdict in a few words, for logs.
// The constants below are the fixed reasons; others embed an error text.
type Reason string

// Fixed reasons returned by [Identity.Check] and [Watcher.Reason].
const (
	ReasonAlive       Reason = "alive"
	ReasonZero        Reason = "zero identity"
	ReasonExited      Reason = "exited (pidfd readable)"
	ReasonZombie      Reason = "zombie (state Z)"
	ReasonDeadState   Reason = "dead (state X)"
	ReasonGone        Reason = "pid gone"
	ReasonPIDReused   Reason = "start time differs: pid reused"
	ReasonOtherBoot   Reason = "other boot"
	ReasonOtherPIDNS  Reason = "other PID namespace: liveness unknowable"
	ReasonHidden      Reason = "pid exists but /proc entry hidden (hidepid?)"
	ReasonForeignProc Reason = "/proc belongs to another PID namespace: liveness unknowable"
)

// procIsOurs reports whether the mounted /proc shows the caller's own PID
// namespace: /proc/self then names the pid that getpid returns. In a PID
// namespace made without a /proc of its own (unshare -p without
// --mount-proc), /proc/self names the host's pid instead.
func procIsOurs() bool {
	s, err := os.Readlink("/proc/self")
	return err == nil && s == strconv.Itoa(os.Getpid())
}

// Check reports whether the process named by id is alive. It is
// [Identity.CheckFrom] with the caller's own identity.
func (id Identity) Check() (Liveness, Reason) {
	self, err := Self()
	if err != nil {
		return Unknown, Reason("cannot identify self: " + err.Error())
	}
	return id.CheckFrom(self)
}

// CheckFrom is [Identity.Check] for an observer whose identity self the
// caller has cached (only its BootID and PIDNS are used), saving two /proc
// reads per call.
//
// Rules, in order:
//   - a different boot id: Dead (the process cannot exist in this boot);
//   - a different PID namespace (both non-zero): Unknown;
//   - pid gone (pidfd_open ESRCH; without pidfd, kill ESRCH): Dead;
//   - /proc of another PID namespace (its /proc/self is not getpid()):
//     Unknown, since /proc/<pid> names some other process there;
//   - pid present but hidden from /proc (hidepid): Unknown;
//   - a different start time: Dead (the pid was reused);
//   - /proc state Z or X: Dead (exited, not yet reaped);
//   - its pidfd is readable: Dead (it has exited; a pidfd becomes readable
//     at exit, before the parent reaps the zombie);
//   - otherwise Alive.
//
// It never uses kill(pid, 0): that fails with EPERM for other users'
// processes and succeeds for zombies, so it proves neither death nor life.
func (id Identity) CheckFrom(self Identity) (Liveness, Reason) {
	if id.PID == 0 {
		return Unknown, ReasonZero
	}
	if id.BootID != self.BootID {
		return Dead, ReasonOtherBoot
	}
	if id.PIDNS != 0 && self.PIDNS != 0 && id.PIDNS != self.PIDNS {
		return Unknown, ReasonOtherPIDNS
	}
	pid := int(id.PID)
	// Open the pidfd first: if the start time read afterwards matches, the
	// pidfd refers to the very process we identified.
	pidfd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return Dead, ReasonGone
	case err != nil:
		pidfd = -1 // ENOSYS (Linux < 5.3), EMFILE, ...: judge by /proc alone
	default:
		defer unix.Close(pidfd)
	}
	if !procIsOurs() {
		// /proc belongs to another PID namespace (unshare -p without a
		// /proc of its own): /proc/<pid> names some other process, so
		// nothing read there says anything about pid.
		return Unknown, ReasonForeignProc
	}
	// exited reports whether the pidfd, if there is one, shows that the
	// process has exited.
	exited := func() bool {
		if pidfd < 0 {
			return false
		}
		e, _ := pidfdExited(pidfd)
		return e
	}
	st, err := readStat(strconv.Itoa(pid))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if pidfd < 0 {
			// hidepid hides other users' entries: only kill's ESRCH is
			// proof that the pid is gone.
			if errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
				return Dead, ReasonGone
			}
			return Unknown, ReasonHidden
		}
		if exited() {
			return Dead, ReasonExited
		}
		// The pid exists (we hold a pidfd to a live process) but /proc
		// does not show it, so its start time cannot be compared.
		return Unknown, ReasonHidden
	case err != nil:
		// A process reaped while we read its stat gives ESRCH on the read.
		if exited() {
			return Dead, ReasonExited
		}
		if errors.Is(err, unix.ESRCH) {
			return Dead, ReasonGone
		}
		return Unknown, Reason(fmt.Sprintf("cannot read /proc/%d/stat: %v", pid, err))
	}
	if st.startTime != id.StartTime {
		return Dead, ReasonPIDReused
	}
	switch st.state {
	case 'Z':
		return Dead, ReasonZombie
	case 'X':
		return Dead, ReasonDeadState
	}
	if exited() {
		return Dead, ReasonExited
	}
	return Alive, ReasonAlive
}

// pidfdExited polls pidfd without blocking; a pidfd is readable once the
// process has exited.
func pidfdExited(pidfd int) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, err
		}
		return n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0, nil
	}
}
