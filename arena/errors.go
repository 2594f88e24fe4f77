package arena

import (
	"errors"
	"fmt"
)

// Errors of segment management. Each is wrapped in an *Error that names the
// segment and says what to do.
var (
	ErrNotFound    = errors.New("segment does not exist")
	ErrExists      = errors.New("segment already exists")
	ErrPermission  = errors.New("permission denied")
	ErrSize        = errors.New("segment size mismatch")
	ErrTimeout     = errors.New("timed out waiting for segment initialization")
	ErrRemoved     = errors.New("segment was removed while attached")
	ErrInUse       = errors.New("segment is attached by other processes")
	ErrReservedKey = errors.New("key is in a range Aerospike uses")
	ErrClosed      = errors.New("segment is closed")
	ErrRange       = errors.New("offset out of range")
	ErrInitFailed  = errors.New("segment initialization failed")
	// ErrForeignOwner: the segment (its owner, or for SysV its creator) is
	// another user's than this process's and Options.AllowUIDs'. Another
	// user could have planted it to feed this process forged contents.
	ErrForeignOwner = errors.New("segment belongs to a user this process does not accept")
	// ErrModeTooWide: the segment's permission bits allow more than
	// Options.Mode, so users this process does not trust could change it.
	ErrModeTooWide = errors.New("segment permissions are wider than configured")
	// ErrSymlink: the final component of a file segment's path is a
	// symbolic link. shmkit never follows one: a link planted by another
	// user would make this process create, grow or write the file it names.
	ErrSymlink = errors.New("segment path is a symbolic link")
	// ErrNotRegular: a file segment's path names something other than a
	// regular file with exactly one link (a directory, FIFO, device,
	// socket, or a hard link to a file that also lives elsewhere).
	ErrNotRegular = errors.New("segment path is not a regular file with a single link")
)

// Error is an arena failure: what was attempted, on which segment, the
// cause (one of the Err* values or a layout error), and a hint saying what
// to do about it.
type Error struct {
	Op   string // "create", "open", "remove", …
	Seg  string // "SysV key 0x53010000" or "file /dev/shm/shmkit.x"
	Err  error
	Hint string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("arena: %s %s: %v", e.Op, e.Seg, e.Err)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }
