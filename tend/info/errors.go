// Package info speaks the Aerospike info protocol: the framing of info
// requests and replies, a connection that sends them, and pure parsers for
// the values a cluster tender needs (node, generations, peers, replicas,
// build, ...).
//
// Wire format: every message starts with an 8-byte header — byte 0 is the
// protocol version (2), byte 1 the message type (1 = info), bytes 2–7 the
// body length as a 48-bit big-endian integer. A request body is a list of
// command names, each followed by '\n'. A reply body is one line per
// command, "name\tvalue\n"; a command without a value may come back as
// "name\n" or "name\t\n".
//
// Parsers never panic; every failure is a *ParseError (or *FrameError for
// framing) that wraps one of the sentinel errors below, so callers can test
// the kind with errors.Is and the details with errors.As.
package info

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel error kinds. Every error returned by this package wraps one of
// them (or a context / network error for I/O failures).
var (
	// ErrTLS reports a TLS handshake that failed: an untrusted or expired
	// certificate, a certificate for another name than the node's TLS
	// name, a client certificate the server refused, or a peer that does
	// not speak TLS. The underlying crypto/tls or crypto/x509 error is
	// wrapped too (errors.As with *x509.HostnameError,
	// x509.UnknownAuthorityError, …).
	ErrTLS = errors.New("info: TLS handshake failed")
	// ErrMalformed reports a value or message that does not follow the
	// expected grammar.
	ErrMalformed = errors.New("info: malformed")
	// ErrTruncated reports input that ends before the grammar is complete.
	ErrTruncated = errors.New("info: truncated")
	// ErrOutOfRange reports a number outside its allowed range.
	ErrOutOfRange = errors.New("info: value out of range")
	// ErrServer reports a value in which the server answered with an
	// "ERROR..." string instead of data.
	ErrServer = errors.New("info: server returned an error")
	// ErrBadHeader reports a message header with the wrong protocol version
	// or message type.
	ErrBadHeader = errors.New("info: bad message header")
	// ErrTooLarge reports a message whose announced body length exceeds the
	// configured limit. The body is never allocated.
	ErrTooLarge = errors.New("info: message too large")
	// ErrInvalidCommand reports a request command name that cannot be sent
	// (empty, or containing a newline or tab).
	ErrInvalidCommand = errors.New("info: invalid command name")
	// ErrMissing reports a command that is absent from a reply.
	ErrMissing = errors.New("info: command missing from reply")
	// ErrClosed reports use of a connection or pool after Close, or of a
	// connection that an earlier I/O error left unusable.
	ErrClosed = errors.New("info: connection closed")
)

// ParseError describes why an info value (or reply body) could not be
// parsed. Err is one of the sentinel kinds (ErrMalformed, ErrTruncated,
// ErrOutOfRange, ErrServer).
type ParseError struct {
	// Command is the info command whose value was being parsed.
	Command string
	// Field names the part of the value that was wrong, e.g. "generation",
	// "peer name", "bitmap 1".
	Field string
	// Offset is the byte offset in the value where the problem was found.
	Offset int
	// Reason is a human-readable description of the problem.
	Reason string
	// Err is the sentinel kind.
	Err error
}

// Error implements error.
func (e *ParseError) Error() string {
	return fmt.Sprintf("info: parse %q: %s at offset %d: %s", e.Command, e.Field, e.Offset, e.Reason)
}

// Unwrap returns the sentinel kind.
func (e *ParseError) Unwrap() error { return e.Err }

func parseErr(kind error, command, field string, offset int, format string, args ...any) *ParseError {
	return &ParseError{Command: command, Field: field, Offset: offset, Reason: fmt.Sprintf(format, args...), Err: kind}
}

// FrameError describes a message header or body that violates the info
// framing. Err is ErrBadHeader, ErrTooLarge, ErrTruncated or ErrMalformed.
type FrameError struct {
	// Version and Type are the header's first two bytes (zero if the
	// header itself could not be read).
	Version, Type uint8
	// Length is the body length the header announced.
	Length uint64
	// Reason is a human-readable description of the problem.
	Reason string
	// Err is the sentinel kind.
	Err error
}

// Error implements error.
func (e *FrameError) Error() string {
	return fmt.Sprintf("info: frame (version %d, type %d, length %d): %s", e.Version, e.Type, e.Length, e.Reason)
}

// Unwrap returns the sentinel kind.
func (e *FrameError) Unwrap() error { return e.Err }

// CheckServerError returns a *ParseError wrapping ErrServer when value is a
// server error string ("ERROR", "ERROR:code:message", any case), nil
// otherwise.
func CheckServerError(command, value string) error {
	if len(value) >= 5 && strings.EqualFold(value[:5], "ERROR") {
		return parseErr(ErrServer, command, "value", 0, "server answered %q", truncate(value, 120))
	}
	return nil
}

// truncate shortens s for error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
