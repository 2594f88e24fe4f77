package arena

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// shmDest is SHM_DEST: the segment is marked for destruction and waits for
// its last detach (linux/shm.h; x/sys/unix has no constant for it).
const shmDest = 0o1000

type sysvLoc struct{ key Key }

// SysV returns the location of the SysV segment with key k. Keys in the
// ranges Aerospike uses are refused at create and open time.
func SysV(k Key) Location { return sysvLoc{key: k} }

func (l sysvLoc) String() string     { return "SysV key " + l.key.String() }
func (l sysvLoc) RemoveHint() string { return "ipcrm -M " + l.key.String() }
func (l sysvLoc) Stage(n int) (Location, error) {
	if err := stageCheck(n); err != nil {
		return nil, err
	}
	if l.key.Stage() != 0 {
		return nil, fmt.Errorf("arena: %s is itself a stage key", l)
	}
	return sysvLoc{key: l.key.WithStage(n)}, nil
}

func (l sysvLoc) checkKey() error {
	if aerospikeOwned(l.key) {
		return &Error{Op: "use", Seg: l.String(), Err: ErrReservedKey,
			Hint: "keys 0xA5…–0xAC…, 0xAE…, 0xA2… and 0xAD… belong to Aerospike clients and servers; use arena.MakeKey"}
	}
	return nil
}

func sysErr(op string, l Location, err error) error {
	switch {
	case errors.Is(err, unix.EEXIST):
		return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: %w", ErrExists, err)}
	case errors.Is(err, unix.ENOENT):
		return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: %w", ErrNotFound, err)}
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: %w", ErrPermission, err),
			Hint: "run as the segment's owner, or have it created with a group mode such as 0660 for a shared group " +
				"(whose other members set Options.Mode 0660 and the creator's uid in Options.AllowUIDs)"}
	case errors.Is(err, unix.EINVAL):
		return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: %w", ErrSize, err),
			Hint: "a segment exists at this key with another size, or the size exceeds kernel.shmmax; remove it (" + l.RemoveHint() + ") or use another key"}
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.ENOMEM):
		return &Error{Op: op, Seg: l.String(), Err: err, Hint: "out of shared memory: raise kernel.shmall/shmmni or free segments"}
	}
	return &Error{Op: op, Seg: l.String(), Err: err}
}

func (l sysvLoc) create(size uint64, mode os.FileMode) (mapping, error) {
	return l.createFlags(size, mode, 0)
}

// createFlags is create with more shmget flags (SHM_HUGETLB: hugepage.go).
func (l sysvLoc) createFlags(size uint64, mode os.FileMode, flags int) (mapping, error) {
	if err := l.checkKey(); err != nil {
		return nil, err
	}
	id, err := unix.SysvShmGet(int(l.key), int(size), unix.IPC_CREAT|unix.IPC_EXCL|flags|int(defaultMode(mode)))
	if err != nil {
		return nil, sysErr("create", l, err)
	}
	// Not fatal: without its lock file the segment's claims are judged by
	// pid and heartbeat alone (Segment.Liveness reports why).
	_ = createSysVLock(l.key, id, mode)
	return l.attach(id)
}

func (l sysvLoc) open(a access) (mapping, error) {
	if err := l.checkKey(); err != nil {
		return nil, err
	}
	id, err := unix.SysvShmGet(int(l.key), 0, 0)
	if err != nil {
		return nil, sysErr("open", l, err)
	}
	// Check owner, creator and mode before attaching: anyone may create a
	// segment at any key, and its creator keeps the owner's rights even
	// after handing the ownership to someone else (IPC_SET).
	var d unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) {
			return nil, &Error{Op: "open", Seg: l.String(), Err: fmt.Errorf("%w: removed while opening: %w", ErrNotFound, err)}
		}
		return nil, sysErr("open", l, err)
	}
	if err := a.check("open", l, owner{uid: d.Perm.Uid, creator: d.Perm.Cuid, mode: os.FileMode(d.Perm.Mode & 0o777)}); err != nil {
		return nil, err
	}
	return l.attach(id)
}

func (l sysvLoc) attach(id int) (mapping, error) {
	b, err := unix.SysvShmAttach(id, 0, 0)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) {
		// Removed between shmget and shmat (its last user closed it:
		// Segment.CloseLast): open or create anew.
		return nil, &Error{Op: "attach", Seg: l.String(), Err: fmt.Errorf("%w: removed while opening: %w", ErrNotFound, err)}
	}
	if err != nil {
		return nil, sysErr("attach", l, err)
	}
	return &sysvMap{loc: l, id: id, data: b}, nil
}

func (l sysvLoc) remove(force bool) error {
	if err := l.checkKey(); err != nil {
		return err
	}
	id, err := unix.SysvShmGet(int(l.key), 0, 0)
	if err != nil {
		return sysErr("remove", l, err)
	}
	m, err := l.attach(id)
	if err != nil {
		return err
	}
	sm := m.(*sysvMap)
	if err := retire(l, sm.data, sm.nattch, force); err != nil {
		_ = sm.close()
		return err
	}
	_ = sm.close()
	if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil {
		return sysErr("remove", l, err)
	}
	removeSysVLock(l.key, id)
	return nil
}

func (l sysvLoc) statNoAttach() (Stat, error) {
	id, err := unix.SysvShmGet(int(l.key), 0, 0)
	if err != nil {
		return Stat{}, sysErr("stat", l, err)
	}
	return sysvStat(l, id)
}

func sysvStat(l sysvLoc, id int) (Stat, error) {
	var d unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &d); err != nil {
		return Stat{}, sysErr("stat", l, err)
	}
	return Stat{
		Location:   l.String(),
		Key:        l.key,
		ID:         id,
		Size:       d.Segsz,
		Attached:   int(d.Nattch),
		OwnerUID:   d.Perm.Uid,
		Mode:       os.FileMode(d.Perm.Mode & 0o777),
		CreatorPID: int(d.Cpid),
		Created:    time.Unix(d.Ctime, 0),
		Removed:    d.Perm.Mode&shmDest != 0,
	}, nil
}

type sysvMap struct {
	loc  sysvLoc
	id   int
	data []byte
}

func (m *sysvMap) bytes() []byte { return m.data }
func (m *sysvMap) close() error {
	if err := unix.SysvShmDetach(m.data); err != nil {
		return sysErr("detach", m.loc, err)
	}
	return nil
}

func (m *sysvMap) nattch() (int, error) {
	st, err := sysvStat(m.loc, m.id)
	return st.Attached, err
}

func (m *sysvMap) removed() (bool, error) {
	var d unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(m.id, unix.IPC_STAT, &d); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) {
			return true, nil
		}
		return false, sysErr("stat", m.loc, err)
	}
	// After IPC_RMID the key reads as IPC_PRIVATE (0) and SHM_DEST is set.
	return d.Perm.Mode&shmDest != 0 || Key(uint32(d.Perm.Key)) != m.loc.key, nil
}

func (m *sysvMap) stat() (Stat, error) { return sysvStat(m.loc, m.id) }
