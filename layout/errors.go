package layout

import (
	"errors"
	"fmt"
)

// Kinds of header problems. Every error from Check wraps exactly one of them,
// so callers can branch with errors.Is.
var (
	ErrNotOurs   = errors.New("not a shmkit segment")
	ErrNotReady  = errors.New("segment not initialized")
	ErrTruncated = errors.New("segment truncated")
	ErrChecksum  = errors.New("header checksum mismatch")
	ErrVersion   = errors.New("incompatible format version")
	ErrByteOrder = errors.New("segment byte order differs from this machine's")
	ErrPlatform  = errors.New("segment written by a different platform")
	ErrCorrupt   = errors.New("segment header corrupt")
	ErrMismatch  = errors.New("segment configuration mismatch")
	ErrSpec      = errors.New("invalid segment spec")
)

// CheckError is returned by Check: Kind is one of the Err* values, Detail
// says what exactly was found.
type CheckError struct {
	Kind   error
	Detail string
}

func (e *CheckError) Error() string { return fmt.Sprintf("layout: %v: %s", e.Kind, e.Detail) }

// Unwrap returns the kind, for errors.Is.
func (e *CheckError) Unwrap() error { return e.Kind }

func cerr(kind error, format string, args ...any) error {
	return &CheckError{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// MismatchError says that a segment's configuration differs from what this
// process asks for. Segment and Remedy are filled in by the code that knows
// where the segment lives (package arena), so that the message names the key
// or path and the way out.
type MismatchError struct {
	Segment  string // e.g. "SysV key 0x53010000"
	Field    string // e.g. "max_nodes"
	Have     uint64 // the segment's value
	Want     uint64 // this process's value
	HaveText string // set instead of Have/Want for non-numeric fields
	WantText string
	Remedy   string // e.g. "ipcrm -M 0x53010000"
}

func (e *MismatchError) Error() string {
	have, want := e.HaveText, e.WantText
	if have == "" && want == "" {
		have, want = fmt.Sprint(e.Have), fmt.Sprint(e.Want)
	}
	seg := e.Segment
	if seg == "" {
		seg = "the segment"
	}
	msg := fmt.Sprintf("%s has %s=%s, this process asks for %s", seg, e.Field, have, want)
	if e.Remedy != "" {
		msg += fmt.Sprintf(": stop every process using it and remove it (%s), or use a new key for a rolling upgrade", e.Remedy)
	} else {
		msg += ": remove the segment after stopping its users, or use a new key for a rolling upgrade"
	}
	return msg
}

// Unwrap returns ErrMismatch.
func (e *MismatchError) Unwrap() error { return ErrMismatch }
