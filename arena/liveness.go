package arena

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/procid"
)

// Liveness lock files.
//
// Every process that may leave a claim in a segment (a lease owner, a
// seqlock writer, a pool allocator) first takes a liveness slot of the
// segment (procid.Registry): an open-file-description lock on one byte of
// the segment's lock file, held until the process exits or closes the
// segment. Anyone may test the lock; a slot whose lock is free names a
// process that is gone, whatever its uid or PID namespace and however
// /proc is mounted.
//
// The lock file of a file segment is the segment file itself (the slots'
// bytes lie far beyond its end; locks never touch data). A SysV segment
// has a companion file in DefaultDir named
//
//	.shmkit-sysv-<ipc namespace inode>-<key>-<shmid>.lock
//
// created (exclusively, with the segment's mode) by the process that
// created the segment, before anyone can attach it, and removed with the
// segment. Attachers never create it: a lock file deleted while processes
// hold slots cannot be replaced by one on which their slots would look
// free, so a missing file means only "no lock evidence" (callers fall back
// to pid evidence and heartbeats). The name carries the shmid, so a
// segment re-created at the same key gets a new file. Heap segments use a
// memfd.
const lockFilePrefix = ".shmkit-sysv-"

// liveState is a Segment's lazily opened liveness registry.
type liveState struct {
	mu   sync.Mutex
	done bool
	reg  *procid.Registry
	err  error
}

// Liveness returns this handle's liveness registry for the segment,
// opening it on first use. Each Segment handle is a registrant of its own
// (two handles in one process hold two slots). It fails if the segment has
// no usable lock file (a SysV segment whose lock file was deleted, or one
// created by a process that died before writing it): callers then judge
// by pid evidence and heartbeats alone.
func (s *Segment) Liveness() (*procid.Registry, error) {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	if s.closed.Load() {
		return nil, &Error{Op: "liveness", Seg: s.loc.String(), Err: ErrClosed}
	}
	if !s.live.done {
		s.live.done = true
		s.live.reg, s.live.err = openRegistry(s.m)
		if s.live.err != nil {
			s.live.err = &Error{Op: "liveness", Seg: s.loc.String(), Err: s.live.err,
				Hint: "claims in this segment are judged by pid and heartbeat only; re-create the segment to restore its lock file"}
		}
	}
	return s.live.reg, s.live.err
}

// closeLiveness releases the handle's slot; Close calls it before the
// mapping (whose descriptor a file segment's registry borrows) goes away.
func (s *Segment) closeLiveness() {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	s.live.done = true
	if s.live.reg != nil {
		_ = s.live.reg.Close()
		s.live.reg = nil
	}
}

func openRegistry(m mapping) (*procid.Registry, error) {
	switch m := m.(type) {
	case *fileMap:
		return procid.NewRegistry(m.f, false), nil
	case *sysvMap:
		st, err := m.stat()
		if err != nil {
			return nil, err
		}
		f, err := openLockFile(sysvLockPath(m.loc.key, m.id), 0, 0)
		if err != nil {
			return nil, err
		}
		// Only the segment's owner (its creator made the file) may have
		// made it: a file planted by another user could fake locks.
		var fst unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &fst); err != nil || fst.Uid != st.OwnerUID {
			f.Close()
			return nil, fmt.Errorf("lock file %s belongs to uid %d, the segment to uid %d: %w", f.Name(), fst.Uid, st.OwnerUID, ErrForeignOwner)
		}
		return procid.NewRegistry(f, true), nil
	case *heapMap:
		// A new open file description of the store's memfd per handle.
		f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", m.s.lock.Fd()), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("reopen heap lock memfd: %w", err)
		}
		return procid.NewRegistry(f, true), nil
	}
	return nil, fmt.Errorf("segment kind %T has no lock file: %w", m, ErrNotFound)
}

// ipcNamespace returns the inode number of the caller's IPC namespace (0 if
// unknown): SysV keys and shmids are per IPC namespace, /dev/shm need not be.
func ipcNamespace() uint64 {
	s, err := os.Readlink("/proc/self/ns/ipc")
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(s, "ipc:["), "]"), 10, 64)
	return n
}

func sysvLockPath(k Key, id int) string {
	return filepath.Join(DefaultDir, fmt.Sprintf("%s%d-%08x-%d.lock", lockFilePrefix, ipcNamespace(), uint32(k), id))
}

// openLockFile opens (flags 0) or exclusively creates (O_CREAT|O_EXCL) a
// lock file without following a symlink, and refuses one that is not a
// regular file.
func openLockFile(path string, flags int, mode os.FileMode) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW|flags, uint32(mode.Perm()))
	if err != nil {
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock file %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("lock file %s is not a regular file: %w", path, ErrNotFound)
	}
	if flags&unix.O_CREAT != 0 {
		// The umask may have narrowed the mode; a group of workers needs it.
		if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock file %s: %w", path, err)
		}
	}
	return f, nil
}

// createSysVLock creates the lock file of a SysV segment that this process
// has just created (shmget IPC_EXCL succeeded, so no one holds a slot of
// it yet). A stale file of an earlier segment that had the same shmid is
// replaced. Failure is not fatal to the segment: it is then judged by pid
// evidence and heartbeats alone.
func createSysVLock(k Key, id int, mode os.FileMode) error {
	path := sysvLockPath(k, id)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale lock file: %w", err)
	}
	f, err := openLockFile(path, unix.O_CREAT|unix.O_EXCL, defaultMode(mode))
	if err != nil {
		return err
	}
	SweepLockFiles()
	return f.Close()
}

// removeSysVLock removes the lock file of a removed SysV segment.
func removeSysVLock(k Key, id int) {
	_ = os.Remove(sysvLockPath(k, id))
}

// SweepLockFiles removes the lock files in DefaultDir of SysV segments of
// this IPC namespace that no longer exist (removed by ipcrm, or by a
// process that died before removing the file). It returns how many it
// removed. Creating a SysV segment sweeps too.
func SweepLockFiles() int {
	ents, err := os.ReadDir(DefaultDir)
	if err != nil {
		return 0
	}
	prefix := fmt.Sprintf("%s%d-", lockFilePrefix, ipcNamespace())
	n := 0
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".lock") {
			continue
		}
		parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".lock"), "-")
		if len(parts) != 2 {
			continue
		}
		key, err1 := strconv.ParseUint(parts[0], 16, 32)
		id, err2 := strconv.Atoi(parts[1])
		if err1 != nil || err2 != nil {
			continue
		}
		var d unix.SysvShmDesc
		_, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d)
		gone := errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) ||
			(err == nil && (Key(uint32(d.Perm.Key)) != Key(key) || d.Perm.Mode&shmDest != 0))
		if gone && os.Remove(filepath.Join(DefaultDir, name)) == nil {
			n++
		}
	}
	return n
}
