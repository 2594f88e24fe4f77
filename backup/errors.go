package backup

import (
	"errors"
	"fmt"
)

// Errors. Every error of this package is an *Error wrapping one of them,
// so that callers (shmctl's exit codes) can tell them apart with errors.Is.
var (
	// Refusals: nothing was read or created.
	ErrAttached      = errors.New("segment is attached by a process")
	ErrNotClean      = errors.New("segment was not cleanly shut down")
	ErrExists        = errors.New("target already exists")
	ErrWriterRunning = errors.New("a live writer holds the index")
	ErrNoSegments    = errors.New("no segments to back up")
	ErrNotShmkit     = errors.New("not a shmkit segment")

	// A damaged or foreign backup.
	ErrManifest  = errors.New("manifest damaged")
	ErrVersion   = errors.New("backup of another format version")
	ErrMissing   = errors.New("backup file missing")
	ErrTruncated = errors.New("backup file truncated")
	ErrChecksum  = errors.New("chunk checksum mismatch")
	ErrLength    = errors.New("decompressed length is not the recorded size")
	ErrForeign   = errors.New("foreign files in the backup directory")
	ErrPartial   = errors.New("backup was never completed")

	// Resources and the system.
	ErrNoSpace = errors.New("not enough free memory or disk")
	ErrIO      = errors.New("I/O error")
)

// Error is an error of a backup, restore or verify: what it was doing,
// on what, and which of the Err values it is.
type Error struct {
	Kind   error  // one of the Err values
	Target string // a file, directory or segment
	Detail string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("backup: %s: %v: %s", e.Target, e.Kind, e.Detail)
}

// Unwrap returns Kind.
func (e *Error) Unwrap() error { return e.Kind }

func fail(kind error, target, format string, args ...any) error {
	return &Error{Kind: kind, Target: target, Detail: fmt.Sprintf(format, args...)}
}

// Damaged reports whether err says a backup is damaged, foreign or
// incomplete (as opposed to a refusal or a system error).
func Damaged(err error) bool {
	for _, k := range []error{ErrManifest, ErrVersion, ErrMissing, ErrTruncated, ErrChecksum, ErrLength, ErrForeign, ErrPartial} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// Refused reports whether err is a refusal: an attached or unclean
// segment, an existing target, a live writer, no or foreign segments.
func Refused(err error) bool {
	for _, k := range []error{ErrAttached, ErrNotClean, ErrExists, ErrWriterRunning, ErrNoSegments, ErrNotShmkit} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
