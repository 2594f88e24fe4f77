package storage

import "errors"

// Errors. Every error the package returns wraps one of them (test with
// errors.Is) and says which file, offset or field was wrong.
var (
	// ErrConfig means the Options are invalid; fix the caller.
	ErrConfig = errors.New("storage: invalid options")
	// ErrInvalidRecord means a field of a record is too long.
	ErrInvalidRecord = errors.New("storage: invalid record")
	// ErrTooLarge means a record does not fit in a Location (Size below
	// 2^24) or in one log file; store smaller bins or raise FileSize.
	ErrTooLarge = errors.New("storage: record too large")
	// ErrCorrupt means a file header or a record frame fails validation
	// (bad magic, version, checksum or lengths). The file was damaged
	// outside the storage's control: restore it or move it away.
	ErrCorrupt = errors.New("storage: corrupt data")
	// ErrTruncated means bytes end inside a header or a frame.
	ErrTruncated = errors.New("storage: truncated data")
	// ErrForeign means a file in the directory belongs to another storage
	// (its UUID differs): two logs were mixed; move the stray file away.
	ErrForeign = errors.New("storage: file of another storage")
	// ErrNotFound means no record lies at a Location: its file was removed
	// by the defragmenter (look the digest up in the index again: it was
	// moved) or the location was never written.
	ErrNotFound = errors.New("storage: no record at location")
	// ErrLocked means another process (or another Storage in this one)
	// has the directory open.
	ErrLocked = errors.New("storage: directory in use")
	// ErrLogFull means every file id up to MaxFileID is in use: defragment
	// or raise FileSize.
	ErrLogFull = errors.New("storage: no free file id")
	// ErrClosed means the Storage was closed.
	ErrClosed = errors.New("storage: closed")
	// ErrFailed means an earlier write error left the head file in an
	// unknown state; close the Storage and open it again (Open cuts the
	// tail back to the last whole record).
	ErrFailed = errors.New("storage: failed by an earlier write error")
)
