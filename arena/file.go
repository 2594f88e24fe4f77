package arena

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	mmap "github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/layout"
)

type fileLoc struct{ path string }

// File returns the location of a file-backed segment at path (anywhere; use
// DefaultFilePath for a tmpfs file under /dev/shm).
//
// Each process attached to a file segment holds a shared flock on it, so
// Remove, backup tools and Stat can tell an attached segment from an idle
// one. Creation reserves the whole size with fallocate: a full filesystem
// fails creation with ENOSPC rather than delivering SIGBUS on a later write.
//
// If another process truncates a mapped file, accesses past the new end
// raise SIGBUS in every process that maps it, which the Go runtime turns
// into a fatal fault: shmkit cannot guard against that, so never truncate
// a segment file; remove it with Remove (or rm, which leaves attached
// processes working on the unlinked file until they detach).
//
// The final component of path is never followed if it is a symbolic link
// (ErrSymlink), and must be a regular file with one link (ErrNotRegular):
// in a shared directory such as /dev/shm another user could otherwise
// plant a link that makes this process create, grow or write a file it
// names. An existing file's owner and mode are checked before it is
// mapped (see Options.AllowUIDs and Options.Mode).
func File(path string) Location { return fileLoc{path: path} }

func (l fileLoc) String() string     { return "file " + l.path }
func (l fileLoc) RemoveHint() string { return "rm " + l.path }
func (l fileLoc) Stage(n int) (Location, error) {
	if err := stageCheck(n); err != nil {
		return nil, err
	}
	return fileLoc{path: fmt.Sprintf("%s.s%d", l.path, n)}, nil
}

func fileErr(op string, l fileLoc, err error) error {
	switch {
	case errors.Is(err, os.ErrExist):
		return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: %w", ErrExists, err)}
	case errors.Is(err, os.ErrNotExist):
		return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: %w", ErrNotFound, err)}
	case errors.Is(err, unix.EISDIR):
		return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: it is a directory: %w", ErrNotRegular, err),
			Hint: "shmkit segments are regular files with one link; use another path"}
	case errors.Is(err, unix.ELOOP):
		// O_NOFOLLOW met a symlink as the final component (or the
		// directories loop).
		return symlinkErr(op, l, err)
	case errors.Is(err, os.ErrPermission):
		return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: %w", ErrPermission, err),
			Hint: "run as the file's owner, or have it created with a group mode such as 0660 for a shared group " +
				"(whose other members set Options.Mode 0660 and the creator's uid in Options.AllowUIDs)"}
	case errors.Is(err, unix.ENOSPC):
		return &Error{Op: op, Seg: l.String(), Err: err, Hint: "the filesystem is full: free space or use a smaller segment"}
	}
	return &Error{Op: op, Seg: l.String(), Err: err}
}

// symlinkErr is the error for a path whose final component is a symlink.
func symlinkErr(op string, l fileLoc, cause error) error {
	detail := "final component"
	if fi, err := os.Lstat(l.path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			detail = fmt.Sprintf("link owned by uid %d", sys.Uid)
		}
		if target, err := os.Readlink(l.path); err == nil {
			detail += fmt.Sprintf(", pointing to %q", target)
		}
	}
	return &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w (%s): %w", ErrSymlink, detail, cause),
		Hint: "shmkit never follows one: another user may have planted it to make this process write where it points; " +
			"check who created it, remove the link (" + l.RemoveHint() + ") or use another path"}
}

// openNoFollow opens the segment file with flag, refusing a symlink as the
// final component, and checks before returning it that it is a regular
// file with one link whose owner and mode a accepts. O_NONBLOCK keeps an
// open of a FIFO planted at the path from blocking.
func (l fileLoc) openNoFollow(op string, flag int, a access) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(l.path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fileErr(op, l, err)
	}
	fi, err := l.checkFile(op, f, a)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// checkFile checks an opened segment file with fstat.
func (l fileLoc) checkFile(op string, f *os.File, a access) (os.FileInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fileErr(op, l, err)
	}
	hint := "shmkit segments are regular files with one link; check who created it, remove it (" + l.RemoveHint() + ") or use another path"
	if !fi.Mode().IsRegular() {
		return nil, &Error{Op: op, Seg: l.String(), Hint: hint,
			Err: fmt.Errorf("%w: it is a %s (mode %v)", ErrNotRegular, fileType(fi.Mode()), fi.Mode())}
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: no owner information (%T)", ErrNotRegular, fi.Sys())}
	}
	switch {
	case sys.Nlink == 0:
		// Removed between our open and fstat.
		return nil, &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: removed while opening", ErrNotFound)}
	case sys.Nlink > 1:
		return nil, &Error{Op: op, Seg: l.String(), Hint: hint,
			Err: fmt.Errorf("%w: it has %d hard links (owner uid %d): its contents also live under another name", ErrNotRegular, sys.Nlink, sys.Uid)}
	}
	if err := a.check(op, l, owner{uid: sys.Uid, creator: sys.Uid, mode: fi.Mode().Perm()}); err != nil {
		return nil, err
	}
	return fi, nil
}

func fileType(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "FIFO"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	case m&os.ModeSymlink != 0:
		return "symbolic link"
	}
	return "non-regular file"
}

func (l fileLoc) create(size uint64, mode os.FileMode) (mapping, error) {
	mode = defaultMode(mode)
	// O_EXCL never follows a symlink (it fails with EEXIST); O_NOFOLLOW
	// says so again.
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, mode)
	if err != nil {
		if fi, lerr := os.Lstat(l.path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, symlinkErr("create", l, err)
		}
		return nil, fileErr("create", l, err)
	}
	fail := func(err error) (mapping, error) {
		f.Close()
		os.Remove(l.path)
		return nil, fileErr("create", l, err)
	}
	if err := f.Chmod(mode); err != nil { // the umask may have cleared bits
		return fail(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		return fail(err)
	}
	return l.mapFile(f, "create")
}

func (l fileLoc) open(a access) (mapping, error) {
	f, _, err := l.openNoFollow("open", os.O_RDWR, a)
	if err != nil {
		return nil, err
	}
	return l.mapFile(f, "open")
}

// growTo fallocates an existing file that a creator left short (it died
// between creating and reserving it), after the same checks as open.
// fallocate is idempotent.
func (l fileLoc) growTo(size uint64, a access) error {
	f, _, err := l.openNoFollow("grow", os.O_RDWR, a)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		return fileErr("grow", l, err)
	}
	return nil
}

func (l fileLoc) mapFile(f *os.File, op string) (mapping, error) {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fileErr(op, l, err)
	}
	if unlinked(f) {
		// Its last user removed it while we waited for the lock
		// (Segment.CloseLast): open or create anew.
		f.Close()
		return nil, &Error{Op: op, Seg: l.String(), Err: fmt.Errorf("%w: removed while opening", ErrNotFound)}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileErr(op, l, err)
	}
	if fi.Size() == 0 {
		f.Close()
		return nil, &Error{Op: op, Seg: l.String(), Err: errShort}
	}
	mm, err := mmap.Map(f, mmap.RDWR, 0)
	if err != nil {
		f.Close()
		return nil, fileErr(op, l, err)
	}
	return &fileMap{loc: l, f: f, mm: mm, fi: fi}, nil
}

// errShort marks a file that exists but has no size yet.
var errShort = errors.New("file has size 0: its creator has not reserved it yet")

func (l fileLoc) remove(force bool) error {
	// Any owner (removing is an administrator's decision), but never
	// through a symlink or into a file that also lives elsewhere.
	f, _, err := l.openNoFollow("remove", os.O_RDWR, access{any: true})
	if err != nil {
		return err
	}
	defer f.Close()
	inUse := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil
	fi, err := f.Stat() // after the lock: a creator may have reserved it meanwhile
	if err != nil {
		return fileErr("remove", l, err)
	}
	if fi.Size() == 0 {
		// A creation that never got its size (the creator died before
		// fallocate): nothing to mark retired.
		if inUse && !force {
			return &Error{Op: "remove", Seg: l.String(), Err: ErrInUse, Hint: "stop the processes using it first, or force"}
		}
	} else {
		mm, err := mmap.Map(f, mmap.RDWR, 0)
		if err != nil {
			return fileErr("remove", l, err)
		}
		// retire refuses (without force) what is not shmkit's, including
		// a file too small to hold a magic.
		err = retire(l, mm, func() (int, error) {
			if inUse {
				return 2, nil
			}
			return 1, nil
		}, force)
		mm.Unmap()
		if err != nil {
			return err
		}
	}
	if err := os.Remove(l.path); err != nil {
		return fileErr("remove", l, err)
	}
	return nil
}

func (l fileLoc) statNoAttach() (Stat, error) {
	fi, err := os.Lstat(l.path)
	if err != nil {
		return Stat{}, fileErr("stat", l, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return Stat{}, symlinkErr("stat", l, unix.ELOOP)
	}
	if !fi.Mode().IsRegular() {
		return Stat{}, &Error{Op: "stat", Seg: l.String(), Err: fmt.Errorf("%w: it is a %s", ErrNotRegular, fileType(fi.Mode()))}
	}
	return fileStat(l, fi, nil), nil
}

// fileStat describes the file; f, when not nil, is an open descriptor of it
// from which the header is read (otherwise the path is opened).
func fileStat(l fileLoc, fi os.FileInfo, f *os.File) Stat {
	st := Stat{Location: l.String(), Path: l.path, Size: uint64(fi.Size()), Mode: fi.Mode().Perm(), Created: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.OwnerUID = sys.Uid
		st.Attached = flockHolders(sys.Dev, sys.Ino)
	}
	if h := readFileHeader(l, f); h != nil {
		st.CreatorPID = int(h.Creator.PID)
		st.Created = h.Created
	}
	return st
}

// readFileHeader reads and validates the header of a file segment with
// pread (not through a mapping), returning nil if it is not readable or not
// a valid, initialized shmkit header.
func readFileHeader(l fileLoc, f *os.File) *layout.Header {
	if f == nil {
		var err error
		if f, err = os.OpenFile(l.path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0); err != nil {
			return nil
		}
		defer f.Close()
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	b := make([]byte, layout.HeaderSize)
	n, _ := f.ReadAt(b, 0)
	h, err := layout.Check(b[:n], uint64(fi.Size()))
	if err != nil {
		return nil
	}
	return h
}

// flockHolders counts the processes holding a flock on the inode, from
// /proc/locks (lines "1: FLOCK ADVISORY READ 1234 00:1a:5678 0 EOF").
func flockHolders(dev, ino uint64) int {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return -1
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	pids := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// "->" marks a waiter: "1: -> FLOCK ..."
		if len(fs) < 6 || fs[1] != "FLOCK" {
			continue
		}
		if fs[5] == want {
			pids[fs[4]] = true
		}
	}
	return len(pids)
}

type fileMap struct {
	loc fileLoc
	f   *os.File
	mm  mmap.MMap
	fi  os.FileInfo
}

func (m *fileMap) bytes() []byte { return m.mm }

// writeAt writes p at off through the file (QuiescentWriteAt).
func (m *fileMap) writeAt(p []byte, off uint64) error {
	if _, err := m.f.WriteAt(p, int64(off)); err != nil {
		return fileErr("write", m.loc, err)
	}
	return nil
}
func (m *fileMap) close() error {
	err := m.mm.Unmap()
	if cerr := m.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fileErr("detach", m.loc, err)
	}
	return nil
}

func (m *fileMap) removed() (bool, error) {
	fi, err := m.f.Stat()
	if err != nil {
		return false, fileErr("stat", m.loc, err)
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && sys.Nlink == 0 {
		return true, nil
	}
	cur, err := os.Lstat(m.loc.path) // a symlink put in its place is another file
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fileErr("stat", m.loc, err)
	}
	return !os.SameFile(cur, fi), nil
}

func (m *fileMap) stat() (Stat, error) {
	fi, err := m.f.Stat()
	if err != nil {
		return Stat{}, fileErr("stat", m.loc, err)
	}
	return fileStat(m.loc, fi, m.f), nil
}
