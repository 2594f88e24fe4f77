package arena

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RemoveCond decides, for RemoveIf, whether the segment it found is to be
// removed. seg is attached without a spec, as Inspect does; hdrErr is the
// error of reading its header (nil: seg.Header() is valid; otherwise
// seg.Header() is nil and seg's bytes may be anything, or none for a file
// whose creator has not reserved it yet). cond must not keep seg or close
// it.
type RemoveCond func(seg *Segment, hdrErr error) bool

// RemoveIf removes the segment at loc if cond, shown that segment, says
// so, and then removes exactly the segment cond was shown. Remove, or a
// check followed by Remove, names the segment by its location twice: if
// another process removes it and creates a new one at the same location
// in between, Remove deletes the new one. RemoveIf keeps the segment it
// checked attached until it is removed, and removes it by its identity:
//
//   - SysV: IPC_RMID on the shmid it attached. A shmid names one segment;
//     it cannot be reused while RemoveIf holds the attachment.
//   - Files: the file opened (without following symlinks) is checked,
//     then the path is renamed to a unique name in the same directory
//     (rename is atomic: the new name holds whatever file the path held
//     at that instant), the renamed file's device and inode are compared
//     with the opened file's, and only if they are the same is it
//     unlinked. Otherwise another process's file was moved aside: it is
//     renamed back (without replacing anything that took the path
//     meanwhile) and RemoveIf reports the checked segment as gone.
//   - Heap segments: removed if the store still holds the checked one.
//
// It reports whether it removed the segment. A segment that is missing,
// or that another process removed (or replaced) after cond saw it, gives
// an error wrapping ErrNotFound. opts.Force has Remove's meaning: the
// segment is marked retired first and, without Force, refused if others
// have it attached or it is not shmkit's.
func RemoveIf(loc Location, opts RemoveOptions, cond RemoveCond) (bool, error) {
	switch l := loc.(type) {
	case sysvLoc:
		return l.removeIf(opts.Force, cond)
	case fileLoc:
		return l.removeIf(opts.Force, cond)
	case heapLoc:
		return l.removeIf(opts.Force, cond)
	}
	return false, &Error{Op: "remove", Seg: loc.String(), Err: fmt.Errorf("location of unknown type %T", loc)}
}

// inspected is data as a Segment for a RemoveCond, with its header if it
// reads.
func inspected(loc Location, data []byte) (*Segment, error) {
	s := &Segment{loc: loc, data: data}
	if len(data) == 0 {
		return s, errShort
	}
	h, err := s.readHeader()
	if err == nil {
		s.hdr = h
	}
	return s, err
}

func (l sysvLoc) removeIf(force bool, cond RemoveCond) (bool, error) {
	m, err := l.open(access{any: true})
	if err != nil {
		return false, err
	}
	sm := m.(*sysvMap)
	defer sm.close()
	if seg, herr := inspected(l, sm.data); !cond(seg, herr) {
		return false, nil
	}
	if err := retire(l, sm.data, sm.nattch, force); err != nil {
		return false, err
	}
	if _, err := unix.SysvShmCtl(sm.id, unix.IPC_RMID, nil); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) {
			return false, &Error{Op: "remove", Seg: l.String(), Err: fmt.Errorf("%w: removed by another process meanwhile: %w", ErrNotFound, err)}
		}
		return false, sysErr("remove", l, err)
	}
	removeSysVLock(l.key, sm.id)
	return true, nil
}

func (l fileLoc) removeIf(force bool, cond RemoveCond) (bool, error) {
	f, _, err := l.openNoFollow("remove", os.O_RDWR, access{any: true})
	if err != nil {
		return false, err
	}
	defer f.Close()
	inUse := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
	var id unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &id); err != nil { // after the lock, as remove
		return false, fileErr("remove", l, err)
	}
	if id.Size == 0 {
		if seg, herr := inspected(l, nil); !cond(seg, herr) {
			return false, nil
		}
		if inUse && !force {
			return false, &Error{Op: "remove", Seg: l.String(), Err: ErrInUse, Hint: "stop the processes using it first, or force"}
		}
	} else {
		data, err := unix.Mmap(int(f.Fd()), 0, int(id.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return false, fileErr("remove", l, err)
		}
		ok := false
		if seg, herr := inspected(l, data); cond(seg, herr) {
			ok = true
			err = retire(l, data, func() (int, error) {
				if inUse {
					return 2, nil
				}
				return 1, nil
			}, force)
		}
		_ = unix.Munmap(data)
		if !ok || err != nil {
			return false, err
		}
	}
	return l.unlinkIdentical(&id)
}

// unlinkIdentical removes the file at l.path if it is the file id
// describes (see RemoveIf).
func (l fileLoc) unlinkIdentical(id *unix.Stat_t) (bool, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return false, fileErr("remove", l, err)
	}
	aside := filepath.Join(filepath.Dir(l.path), filepath.Base(l.path)+".removing-"+hex.EncodeToString(r[:]))
	if err := unix.Renameat2(unix.AT_FDCWD, l.path, unix.AT_FDCWD, aside, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, &Error{Op: "remove", Seg: l.String(), Err: fmt.Errorf("%w: removed by another process meanwhile", ErrNotFound)}
		}
		return false, fileErr("remove", l, &os.LinkError{Op: "rename", Old: l.path, New: aside, Err: err})
	}
	var got unix.Stat_t
	if err := unix.Lstat(aside, &got); err != nil {
		return false, fileErr("remove", l, fmt.Errorf("stat %s after moving the segment there (move it back by hand if it is not stale): %w", aside, err))
	}
	if got.Dev == id.Dev && got.Ino == id.Ino {
		if err := unix.Unlink(aside); err != nil {
			return false, fileErr("remove", l, &os.PathError{Op: "unlink", Path: aside, Err: err})
		}
		return true, nil
	}
	// Another process replaced the checked file after it was opened: the
	// file moved aside is that process's. Put it back.
	if err := unix.Renameat2(unix.AT_FDCWD, aside, unix.AT_FDCWD, l.path, unix.RENAME_NOREPLACE); err != nil {
		return false, &Error{Op: "remove", Seg: l.String(), Err: fmt.Errorf("another process's segment file was moved to %s and cannot be moved back: %w", aside, err),
			Hint: "the checked segment was replaced meanwhile; move " + aside + " back to " + l.path + " unless another segment is there now"}
	}
	return false, &Error{Op: "remove", Seg: l.String(), Err: fmt.Errorf("%w: replaced by another process meanwhile (left in place)", ErrNotFound)}
}

func (l heapLoc) removeIf(force bool, cond RemoveCond) (bool, error) {
	l.h.mu.Lock()
	s, ok := l.h.segs[l.name]
	l.h.mu.Unlock()
	if !ok {
		return false, &Error{Op: "remove", Seg: l.String(), Err: ErrNotFound}
	}
	if seg, herr := inspected(l, s.data); !cond(seg, herr) {
		return false, nil
	}
	if err := retire(l, s.data, func() (int, error) {
		l.h.mu.Lock()
		defer l.h.mu.Unlock()
		return s.attach + 1, nil
	}, force); err != nil {
		return false, err
	}
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	if l.h.segs[l.name] != s {
		return false, &Error{Op: "remove", Seg: l.String(), Err: fmt.Errorf("%w: replaced by another process meanwhile", ErrNotFound)}
	}
	s.removed = true
	delete(l.h.segs, l.name)
	_ = s.lock.Close()
	return true, nil
}
