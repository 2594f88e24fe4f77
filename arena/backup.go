package arena

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Support for backup tools (package backup, shmctl backup/restore): raw
// access to a whole segment that no other process uses, creation of a
// segment without the initialization protocol, and its owner, group and
// mode.

// Ownership is who owns a segment and its permission bits.
type Ownership struct {
	UID  uint32
	GID  uint32
	Mode os.FileMode // permission bits
}

// OwnershipOf returns the owner, group and mode of the segment at loc
// (SysV: from IPC_STAT; file: from lstat, never following a symlink).
func OwnershipOf(loc Location) (Ownership, error) {
	switch l := loc.(type) {
	case sysvLoc:
		id, err := unix.SysvShmGet(int(l.key), 0, 0)
		if err != nil {
			return Ownership{}, sysErr("stat", l, err)
		}
		var d unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil {
			return Ownership{}, sysErr("stat", l, err)
		}
		return Ownership{UID: d.Perm.Uid, GID: d.Perm.Gid, Mode: os.FileMode(d.Perm.Mode & 0o777)}, nil
	case fileLoc:
		fi, err := os.Lstat(l.path)
		if err != nil {
			return Ownership{}, fileErr("stat", l, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return Ownership{}, symlinkErr("stat", l, unix.ELOOP)
		}
		sys, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return Ownership{}, &Error{Op: "stat", Seg: l.String(), Err: errors.New("no owner information")}
		}
		return Ownership{UID: sys.Uid, GID: sys.Gid, Mode: fi.Mode().Perm()}, nil
	}
	return Ownership{}, &Error{Op: "stat", Seg: loc.String(), Err: errors.New("ownership is kept only for SysV and file segments")}
}

// SetOwnership gives the segment at loc the owner, group and mode of o
// (SysV: IPC_SET; file: fchown and fchmod on a descriptor opened without
// following a symlink). Changing the owner to another user needs the
// privilege to do so (root or CAP_CHOWN / CAP_IPC_OWNER).
func SetOwnership(loc Location, o Ownership) error {
	switch l := loc.(type) {
	case sysvLoc:
		id, err := unix.SysvShmGet(int(l.key), 0, 0)
		if err != nil {
			return sysErr("chown", l, err)
		}
		var d unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil {
			return sysErr("chown", l, err)
		}
		d.Perm.Uid, d.Perm.Gid = o.UID, o.GID
		d.Perm.Mode = d.Perm.Mode&^0o777 | uint32(o.Mode.Perm())
		if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &d); err != nil {
			return sysErr("chown", l, err)
		}
		return nil
	case fileLoc:
		f, err := os.OpenFile(l.path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			return fileErr("chown", l, err)
		}
		defer f.Close()
		if err := f.Chown(int(o.UID), int(o.GID)); err != nil {
			return fileErr("chown", l, err)
		}
		if err := f.Chmod(o.Mode.Perm()); err != nil {
			return fileErr("chmod", l, err)
		}
		return nil
	}
	return &Error{Op: "chown", Seg: loc.String(), Err: errors.New("ownership is kept only for SysV and file segments")}
}

// CreateRaw creates a segment of size bytes at loc (failing with ErrExists
// if one is there) and attaches it WITHOUT the initialization protocol: the
// memory is zero, the header state empty, and Header returns nil. It is for
// restore tools, which write a whole saved image (header included) into it;
// a process that opens the segment meanwhile waits for it as for any
// segment being initialized (claim the initialization first: CAS64 the
// state word to layout.InitWord), and Inspect it again once its header is
// written to get a validated handle.
func CreateRaw(loc Location, size uint64, mode os.FileMode) (*Segment, error) {
	if size == 0 {
		return nil, &Error{Op: "create", Seg: loc.String(), Err: fmt.Errorf("%w: size 0", ErrSize)}
	}
	m, err := loc.create(size, mode)
	if err != nil {
		return nil, err
	}
	return &Segment{loc: loc, m: m, data: m.bytes()}, nil
}

// QuiescentWriteAt copies p into the segment's memory at off, under the
// same rule as QuiescentBytes (nobody else may use that memory meanwhile):
// for restore tools. A file segment is written through its file (pwrite
// into the page cache, which on tmpfs takes a third of the time of the
// same copy through the mapping, whose first touch of each page faults);
// SysV and heap segments through the mapping.
func (s *Segment) QuiescentWriteAt(p []byte, off uint64) error {
	dst, err := s.QuiescentBytes(off, uint64(len(p)))
	if err != nil {
		return err
	}
	if w, ok := s.m.(interface {
		writeAt(p []byte, off uint64) error
	}); ok {
		return w.writeAt(p, off)
	}
	copy(dst, p)
	return nil
}

// QuiescentBytes returns n bytes of the segment's memory from off for bulk
// copies by backup and restore tools: plain memory, not atomic words. Use it
// only while no other process can change that memory (the segment is not
// attached by anyone else and its writer lease, if any, is held), and never
// after Close.
func (s *Segment) QuiescentBytes(off, n uint64) ([]byte, error) {
	if s.closed.Load() {
		return nil, &Error{Op: "read", Seg: s.loc.String(), Err: ErrClosed}
	}
	size := uint64(len(s.data))
	if off > size || n > size-off {
		return nil, &Error{Op: "read", Seg: s.loc.String(), Err: fmt.Errorf("%w: [%d, +%d) outside %d bytes", ErrRange, off, n, size)}
	}
	return s.data[off : off+n : off+n], nil
}
