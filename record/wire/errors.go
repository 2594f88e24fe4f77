package wire

import (
	"errors"
	"fmt"
)

// Kinds of decoding and encoding failure. Every error this package returns
// for bad input wraps one of them (test with errors.Is); decoding errors
// are *DecodeError values.
var (
	// ErrTruncated means the input ended before a length or count said it
	// would: a connection closed mid-message or a corrupt length.
	ErrTruncated = errors.New("wire: message truncated")
	// ErrMalformed means the input breaks the format: a wrong version or
	// header size, a length that does not add up, a value of the wrong
	// size for its particle type, bytes left over.
	ErrMalformed = errors.New("wire: malformed message")
	// ErrTooLarge means a length exceeds a limit (the caller's body limit,
	// MaxBinNameLen, MaxNamespaceLen, MaxDepth).
	ErrTooLarge = errors.New("wire: length over limit")
	// ErrUnsupported means well-formed input this package does not handle:
	// a compressed message, a particle or MessagePack type it cannot map to
	// a Go value, an unhashable map key.
	ErrUnsupported = errors.New("wire: unsupported content")
	// ErrInvalid means an argument to an encoder is invalid: a name too
	// long, a Go type with no particle type, a nil key.
	ErrInvalid = errors.New("wire: invalid argument")
)

// DecodeError describes input that could not be decoded: what was being
// decoded, at which byte offset of the input, and why.
type DecodeError struct {
	// What names the element being decoded ("message header", "field 2",
	// "op 0 (bin \"x\")", "list element", ...).
	What string
	// Offset is the byte offset in the decoded input where the problem
	// was found.
	Offset int
	// Reason says what was wrong.
	Reason string
	// Err is the kind: ErrTruncated, ErrMalformed, ErrTooLarge or
	// ErrUnsupported.
	Err error
}

// Error formats the error.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("%v: %s at offset %d: %s", e.Err, e.What, e.Offset, e.Reason)
}

// Unwrap returns the kind.
func (e *DecodeError) Unwrap() error { return e.Err }

func decodeErr(kind error, what string, off int, format string, args ...any) *DecodeError {
	return &DecodeError{What: what, Offset: off, Reason: fmt.Sprintf(format, args...), Err: kind}
}
