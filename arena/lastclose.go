package arena

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/layout"
)

// CloseLast detaches the segment like Close and, if no other process has
// it attached, removes it: the last user of a segment cleans it up, as the
// Aerospike C client does with its shared-memory cluster view. It reports
// whether it removed the segment.
//
// Removal is by identity: the SysV segment this handle attached (IPC_RMID
// by its shmid, never by key) or the file's inode (unlinked only while
// the path still names it), so a segment created at the same key or path
// meanwhile is never touched. A process that attaches at the same moment
// either attached first (then nothing is removed) or finds the segment
// gone and creates a fresh one (OpenOrCreate retries), or, in the one
// interleaving where it attaches between the check and the removal, sees
// Removed() == true and should reattach. Heap segments are removed from
// their store the same way.
func (s *Segment) CloseLast() (bool, error) {
	if s.closed.Load() {
		return false, s.Close()
	}
	switch m := s.m.(type) {
	case *sysvMap:
		id, key := m.id, m.loc.key
		if err := s.Close(); err != nil {
			return false, err
		}
		var d unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) {
				return false, nil // already removed by someone else
			}
			return false, sysErr("stat", m.loc, err)
		}
		if d.Nattch != 0 || d.Perm.Mode&shmDest != 0 || Key(uint32(d.Perm.Key)) != key {
			return false, nil
		}
		if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) {
				return false, nil
			}
			return false, sysErr("remove", m.loc, err)
		}
		removeSysVLock(key, id)
		return true, nil
	case *fileMap:
		return s.closeLastFile(m)
	case *heapMap:
		// Under the store's lock, so no handle attaches in between.
		if !s.closed.CompareAndSwap(false, true) {
			return false, nil
		}
		s.closeLiveness()
		h := m.loc.h
		h.mu.Lock()
		defer h.mu.Unlock()
		m.s.attach--
		if m.s.attach != 0 || m.s.removed || h.segs[m.loc.name] != m.s {
			return false, nil
		}
		m.s.removed = true
		delete(h.segs, m.loc.name)
		_ = m.s.lock.Close()
		return true, nil
	default:
		return false, s.Close()
	}
}

// closeLastFile: every attached process holds a shared flock on the file.
// If this one can turn its lock exclusive without waiting, nobody else is
// attached; it then marks the header retired (a process that opened the
// file and waits for its shared lock sees that, and the zero link count,
// and creates a new file), unlinks the path if it still names this inode,
// and detaches.
func (s *Segment) closeLastFile(m *fileMap) (bool, error) {
	if unix.Flock(int(m.f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false, s.Close()
	}
	removed := false
	fi, err := m.f.Stat()
	cur, lerr := os.Lstat(m.loc.path)
	if err == nil && lerr == nil && os.SameFile(cur, fi) {
		for {
			w := s.Load64(layout.OffState)
			_, pid := layout.SplitStateWord(w)
			if s.CAS64(layout.OffState, w, layout.StateWord(layout.StateRetired, pid)) {
				break
			}
		}
		if uerr := os.Remove(m.loc.path); uerr == nil {
			removed = true
		} else if !errors.Is(uerr, os.ErrNotExist) {
			err = fileErr("remove", m.loc, uerr)
		}
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return removed, err
}

// unlinked reports whether the open file has no name left (a last closer
// removed it while this process waited for its lock).
func unlinked(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	return ok && sys.Nlink == 0
}
