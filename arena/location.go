package arena

import (
	"fmt"
	"os"
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
	open() (mapping, error)
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
