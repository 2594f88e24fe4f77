package info

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Protocol constants of the info message framing.
const (
	// ProtoVersion is the protocol version byte of every message.
	ProtoVersion = 2
	// TypeInfo is the message type byte of info messages.
	TypeInfo = 1
	// TypeAdmin is the message type byte of security (login) messages.
	TypeAdmin = 2
	// TypeMessage is the message type byte of data (AS_MSG) messages.
	TypeMessage = 3
	// HeaderSize is the size of the message header in bytes.
	HeaderSize = 8
	// MaxBodyLen is the largest body length a header can express (48 bits).
	MaxBodyLen = 1<<48 - 1
	// DefaultMaxReplySize is the reply body limit used when Options leaves
	// MaxReplySize at zero.
	DefaultMaxReplySize = 16 << 20
)

// Header is a decoded message header.
type Header struct {
	// Version is the protocol version (ProtoVersion for valid messages).
	Version uint8
	// Type is the message type (TypeInfo for info messages).
	Type uint8
	// Length is the body length in bytes (at most MaxBodyLen).
	Length uint64
}

// Encode returns the 8-byte wire form of h. Length is truncated to 48 bits;
// AppendMessage checks it first.
func (h Header) Encode() [HeaderSize]byte {
	var b [HeaderSize]byte
	b[0] = h.Version
	b[1] = h.Type
	n := h.Length & MaxBodyLen
	for i := 7; i >= 2; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	return b
}

// DecodeHeader decodes an 8-byte message header. It does not validate it;
// see Header.Validate.
func DecodeHeader(b [HeaderSize]byte) Header {
	var n uint64
	for i := 2; i < 8; i++ {
		n = n<<8 | uint64(b[i])
	}
	return Header{Version: b[0], Type: b[1], Length: n}
}

// Validate checks that h is an info message header whose body is at most
// maxBody bytes (maxBody <= 0 means DefaultMaxReplySize).
func (h Header) Validate(maxBody int) error {
	if maxBody <= 0 {
		maxBody = DefaultMaxReplySize
	}
	if h.Version != ProtoVersion {
		return h.frameErr(ErrBadHeader, "protocol version %d, want %d", h.Version, ProtoVersion)
	}
	if h.Type != TypeInfo {
		return h.frameErr(ErrBadHeader, "message type %d, want %d (info)", h.Type, TypeInfo)
	}
	if h.Length > uint64(maxBody) {
		return h.frameErr(ErrTooLarge, "body of %d bytes exceeds the limit of %d", h.Length, maxBody)
	}
	return nil
}

// frameErr builds a *FrameError of the given kind about the message with
// header h.
func (h Header) frameErr(kind error, format string, args ...any) *FrameError {
	return &FrameError{Version: h.Version, Type: h.Type, Length: h.Length, Reason: fmt.Sprintf(format, args...), Err: kind}
}

// AppendMessage appends an info message (header and body) to dst.
func AppendMessage(dst, body []byte) ([]byte, error) {
	if uint64(len(body)) > MaxBodyLen {
		return dst, &FrameError{Version: ProtoVersion, Type: TypeInfo, Length: uint64(len(body)),
			Reason: "body longer than 48 bits can express", Err: ErrTooLarge}
	}
	h := Header{Version: ProtoVersion, Type: TypeInfo, Length: uint64(len(body))}.Encode()
	dst = append(dst, h[:]...)
	return append(dst, body...), nil
}

// ValidateCommand checks that name can be sent as one info command: it must
// be non-empty and contain neither '\n' nor '\t'.
func ValidateCommand(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidCommand)
	}
	if i := strings.IndexAny(name, "\n\t"); i >= 0 {
		return fmt.Errorf("%w: %q has a control character at offset %d", ErrInvalidCommand, truncate(name, 60), i)
	}
	return nil
}

// AppendRequest appends a complete info request message asking for names
// to dst. With no names the server answers with its default set of values.
func AppendRequest(dst []byte, names ...string) ([]byte, error) {
	n := 0
	for _, name := range names {
		if err := ValidateCommand(name); err != nil {
			return dst, err
		}
		n += len(name) + 1
	}
	h := Header{Version: ProtoVersion, Type: TypeInfo, Length: uint64(n)}.Encode()
	dst = append(dst, h[:]...)
	for _, name := range names {
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	return dst, nil
}

// ReadHeader reads one 8-byte header from r without validating it. A
// stream that ends inside the header yields a *FrameError wrapping
// ErrTruncated; a stream that ends before the header returns io.EOF.
func ReadHeader(r io.Reader) (Header, error) {
	var b [HeaderSize]byte
	n, err := io.ReadFull(r, b[:])
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, &FrameError{Reason: fmt.Sprintf("stream ended after %d of %d header bytes", n, HeaderSize), Err: ErrTruncated}
		}
		return Header{}, err
	}
	return DecodeHeader(b), nil
}

// ReadMessage reads one info message from r and returns its body. The
// header must announce an info message of at most maxBody bytes (maxBody
// <= 0 means DefaultMaxReplySize); otherwise a *FrameError is returned
// before anything is allocated. buf, if large enough, is reused for the
// body.
func ReadMessage(r io.Reader, maxBody int, buf []byte) ([]byte, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if err := h.Validate(maxBody); err != nil {
		return nil, err
	}
	return ReadBody(r, h, buf)
}

// ReadBody reads the h.Length body bytes that follow a header already read
// and validated. buf is reused when its capacity suffices.
func ReadBody(r io.Reader, h Header, buf []byte) ([]byte, error) {
	var body []byte
	if uint64(cap(buf)) >= h.Length {
		body = buf[:h.Length]
	} else {
		body = make([]byte, h.Length)
	}
	n, err := io.ReadFull(r, body)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, h.frameErr(ErrTruncated, "stream ended after %d of %d body bytes", n, h.Length)
		}
		return nil, err
	}
	return body, nil
}

// ParseRequest splits a request body into command names (the server side
// of AppendRequest). Empty lines are skipped; a missing final newline is
// accepted.
func ParseRequest(body []byte) []string {
	var names []string
	for line := range strings.SplitSeq(string(body), "\n") {
		if line != "" {
			names = append(names, line)
		}
	}
	return names
}

// AppendReplyLine appends one "name\tvalue\n" reply line to dst. It does
// not validate name or value, so tests can build malformed replies.
func AppendReplyLine(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, '\t')
	dst = append(dst, value...)
	return append(dst, '\n')
}

// ParseReply parses a reply body into a map from command name to value.
// Lines are "name\tvalue"; a line without a tab is a name with an empty
// value; the value is everything after the first tab. Empty lines are
// skipped and a missing final newline is accepted. A line with an empty
// name is an error (ErrMalformed).
func ParseReply(body []byte) (map[string]string, error) {
	out := make(map[string]string)
	s := string(body)
	for off := 0; off < len(s); {
		line, _, _ := strings.Cut(s[off:], "\n")
		if line != "" {
			name, value, _ := strings.Cut(line, "\t")
			if name == "" {
				return nil, parseErr(ErrMalformed, "", "reply line", off, "line has an empty command name")
			}
			out[name] = value
		}
		off += len(line) + 1
	}
	return out, nil
}

// ReadReply reads one info message from r and parses its body with
// ParseReply. maxBody <= 0 means DefaultMaxReplySize.
func ReadReply(r io.Reader, maxBody int) (map[string]string, error) {
	body, err := ReadMessage(r, maxBody, nil)
	if err != nil {
		return nil, err
	}
	return ParseReply(body)
}
