package arena

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/shmkit/shmkit/layout"
)

// Location says where a segment lives: a SysV key (SysV), a file path
// (File), or a name in a process-local HeapStore (for tests under the race
// detector, which cannot see memory outside the Go heap). The interface is
// sealed: only this package implements it.
type Location interface {
	// String names the segment for messages, e.g. "SysV key 0x53010000".
	String() string
	// RemoveHint is the shell command that removes the segment.
	RemoveHint() string
	// Stage returns the location of growth stage n (1 ≤ n < MaxStages)
	// derived from this one: the same key with stage bits n, the path with
	// suffix ".s<n>", or the heap name with that suffix.
	Stage(n int) (Location, error)

	create(size uint64, mode os.FileMode) (mapping, error)
	// open attaches an existing segment after checking, before anything
	// is mapped, that its owner and mode are acceptable to a.
	open(a access) (mapping, error)
	remove(force bool) error
	statNoAttach() (Stat, error)
}

// mapping is one attachment of a segment.
type mapping interface {
	bytes() []byte
	close() error
	removed() (bool, error)
	stat() (Stat, error)
}

// Stat describes a segment as the operating system sees it.
type Stat struct {
	Location   string      // as Location.String
	Key        Key         // SysV key (0 for files and heap segments)
	ID         int         // SysV shmid (0 otherwise)
	Path       string      // file path ("" for SysV)
	Size       uint64      // bytes
	Attached   int         // attached processes: SysV nattch; files: holders of the shared flock
	OwnerUID   uint32      // owner user id
	Mode       os.FileMode // permission bits
	CreatorPID int         // the process that created it (SysV cpid; files and heap: from the header when readable)
	Created    time.Time   // creation (or last change, for SysV ctime) time
	Removed    bool        // SysV: marked for destruction (SHM_DEST) and waiting for detaches
}

func stageCheck(n int) error {
	if n < 1 || n >= MaxStages {
		return fmt.Errorf("arena: stage %d outside 1..%d", n, MaxStages-1)
	}
	return nil
}

// access is what a process accepts of an existing segment: owners besides
// its own effective uid, and the widest permission bits.
type access struct {
	uids []uint32
	mode os.FileMode
	any  bool // accept any owner and mode (Inspect, Remove: they never initialize)
}

func (o *Options) access() access { return access{uids: o.AllowUIDs, mode: defaultMode(o.Mode)} }

// owner is what the kernel says about who owns an existing segment.
type owner struct {
	uid     uint32      // owner uid
	creator uint32      // SysV: the creator's uid (it keeps the owner's rights); files: the owner
	mode    os.FileMode // permission bits
}

func (o owner) String() string {
	if o.creator != o.uid {
		return fmt.Sprintf("owner uid %d, creator uid %d, mode %#o", o.uid, o.creator, o.mode)
	}
	return fmt.Sprintf("owner uid %d, mode %#o", o.uid, o.mode)
}

func (a access) allows(uid uint32) bool {
	return uint64(uid) == uint64(os.Geteuid()) || slices.Contains(a.uids, uid)
}

// check refuses a segment whose owner or creator a does not accept, or
// whose mode is wider than a's, naming both and the ways out.
func (a access) check(op string, l Location, o owner) error {
	if a.any {
		return nil
	}
	if !a.allows(o.uid) || !a.allows(o.creator) {
		stranger := o.uid
		if a.allows(stranger) {
			stranger = o.creator
		}
		hint := fmt.Sprintf("if it is legitimate, add uid %d to Options.AllowUIDs", stranger)
		if _, ok := l.(fileLoc); ok {
			hint += fmt.Sprintf(" (or chown it to uid %d)", os.Geteuid())
		}
		hint += "; otherwise remove it (" + l.RemoveHint() + ") and find out who created it"
		return &Error{Op: op, Seg: l.String(), Hint: hint,
			Err: fmt.Errorf("%w: %s; this process runs as uid %d and accepts uids %v", ErrForeignOwner, o, os.Geteuid(), a.accepted())}
	}
	if o.mode&^a.mode != 0 {
		hint := fmt.Sprintf("if other users are meant to use it, set Options.Mode to %#o in every process that opens it; otherwise ", o.mode)
		if fl, ok := l.(fileLoc); ok {
			hint += fmt.Sprintf("narrow it (chmod %#o %s)", a.mode, fl.path)
		} else {
			hint += "remove it (" + l.RemoveHint() + ") so that it is created again with the configured mode"
		}
		return &Error{Op: op, Seg: l.String(), Hint: hint,
			Err: fmt.Errorf("%w: %s, configured mode %#o", ErrModeTooWide, o, a.mode)}
	}
	return nil
}

// accepted lists the uids a accepts, this process's first.
func (a access) accepted() []uint32 {
	return append([]uint32{uint32(os.Geteuid())}, a.uids...)
}

func defaultMode(m os.FileMode) os.FileMode {
	if m == 0 {
		return 0o600
	}
	return m.Perm()
}

// mismatchRemedy fills in where and how to remove a mismatched segment.
func withRemedy(err error, loc Location) error {
	if me, ok := err.(*layout.MismatchError); ok {
		c := *me
		c.Segment = loc.String()
		c.Remedy = loc.RemoveHint()
		return &c
	}
	return err
}
