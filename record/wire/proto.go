package wire

import (
	"fmt"
	"io"

	"github.com/shmkit/shmkit/tend/info"
)

// Protocol header constants, shared with the info protocol (package
// tend/info), which frames its messages the same way.
const (
	// ProtoVersion is byte 0 of every message.
	ProtoVersion = info.ProtoVersion
	// TypeInfo is the message type of info messages (package tend/info).
	TypeInfo = info.TypeInfo
	// TypeMessage is the message type of record messages (AS_MSG).
	TypeMessage = info.TypeMessage
	// TypeCompressed is the message type of a zlib-compressed record
	// message; this package neither sends nor accepts it (it never sets
	// Info1CompressResponse).
	TypeCompressed = 4
	// ProtoHeaderSize is the size of the protocol header.
	ProtoHeaderSize = info.HeaderSize
	// MaxBodyLen is the largest body length the 48-bit field can carry.
	MaxBodyLen = info.MaxBodyLen
	// DefaultMaxBody bounds a body ReadMessage accepts when the caller
	// passes no limit: twice the largest record a server stores by default
	// (8 MiB), so that no reply to a record command is refused.
	DefaultMaxBody = 16 << 20
)

// ProtoHeader is a decoded protocol header.
type ProtoHeader struct {
	// Version is the protocol version (ProtoVersion).
	Version uint8
	// Type is the message type (TypeMessage for record messages).
	Type uint8
	// Length is the body length in bytes.
	Length uint64
}

// DecodeProtoHeader decodes the 8 bytes of a protocol header without
// validating them (see ProtoHeader.Validate).
func DecodeProtoHeader(b [ProtoHeaderSize]byte) ProtoHeader {
	h := info.DecodeHeader(b)
	return ProtoHeader{Version: h.Version, Type: h.Type, Length: h.Length}
}

// Encode returns the wire form of h (Length truncated to 48 bits).
func (h ProtoHeader) Encode() [ProtoHeaderSize]byte {
	return info.Header{Version: h.Version, Type: h.Type, Length: h.Length}.Encode()
}

// Validate checks that h announces a record message (version 2, type 3)
// of at most maxBody bytes (maxBody <= 0 means DefaultMaxBody) and at
// least the message header.
func (h ProtoHeader) Validate(maxBody int) error {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	switch {
	case h.Version != ProtoVersion:
		return decodeErr(ErrMalformed, "proto header", 0, "version %d, want %d", h.Version, ProtoVersion)
	case h.Type == TypeCompressed:
		return decodeErr(ErrUnsupported, "proto header", 1, "compressed message (type 4)")
	case h.Type != TypeMessage:
		return decodeErr(ErrMalformed, "proto header", 1, "message type %d, want %d", h.Type, TypeMessage)
	case h.Length > uint64(maxBody):
		return decodeErr(ErrTooLarge, "proto header", 2, "body of %d bytes exceeds the limit of %d", h.Length, maxBody)
	case h.Length < MsgHeaderSize:
		return decodeErr(ErrMalformed, "proto header", 2, "body of %d bytes is shorter than the %d-byte message header", h.Length, MsgHeaderSize)
	}
	return nil
}

// ReadMessage reads one record message from r: the protocol header, which
// must pass Validate(maxBody), then the body, into buf when it has the
// capacity (it is grown otherwise). It returns the body. A connection that
// ends early gives an error wrapping ErrTruncated (and io.ErrUnexpectedEOF
// or the read error); a clean EOF before the first byte gives io.EOF.
func ReadMessage(r io.Reader, buf []byte, maxBody int) ([]byte, error) {
	var hb [ProtoHeaderSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if n == 0 && err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: reading proto header (%d of %d bytes): %w", ErrTruncated, n, ProtoHeaderSize, err)
	}
	h := DecodeProtoHeader(hb)
	if err := h.Validate(maxBody); err != nil {
		return nil, err
	}
	n := int(h.Length)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if got, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: reading body (%d of %d bytes): %w", ErrTruncated, got, n, err)
	}
	return buf, nil
}
