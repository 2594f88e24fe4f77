// Package admin speaks the part of Aerospike's admin protocol (message type
// 2) that a client needs to authenticate its connections: a login with a
// user and password (internal authentication) or with the TLS client
// certificate alone (PKI), which returns a session token with a time to
// live, and the authentication of a further connection with that token.
//
// Wire format, as the official clients use it: the 8-byte proto header
// (version 2, type 2, 48-bit body length), a 16-byte admin header (byte 1
// the result code in a reply, byte 2 the command, byte 3 the field count,
// the rest zero), then fields, each a 4-byte big-endian length (data
// length + 1), a 1-byte id and the data. A password travels only as its
// bcrypt hash under Aerospike's fixed salt (HashPassword).
//
// Nothing here writes anywhere but the connection: tokens and hashes stay
// in the memory of the process that logged in.
package admin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Commands and field ids of the admin protocol used here.
const (
	CmdAuthenticate = 0
	CmdLogin        = 20

	FieldUser         = 0
	FieldCredential   = 3
	FieldSessionToken = 5
	FieldSessionTTL   = 6
)

// Protocol framing.
const (
	protoVersion = 2
	msgType      = 2
	headerSize   = 8 + 16
	// MaxMessage bounds a message body read from the network.
	MaxMessage = 64 << 10
)

// Mode is how a client authenticates.
type Mode uint8

// Authentication modes.
const (
	// ModeNone: no authentication (the server's security is off).
	ModeNone Mode = iota
	// ModeInternal: user and password, checked by the server.
	ModeInternal
	// ModePKI: the TLS client certificate's common name is the user; no
	// password is sent.
	ModePKI
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeInternal:
		return "internal"
	case ModePKI:
		return "pki"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ResultCode is a server result code of an admin reply.
type ResultCode uint8

// Result codes a login or authentication can return.
const (
	ResultOK                 ResultCode = 0
	ResultSecurityNotEnabled ResultCode = 52
	ResultInvalidCommand     ResultCode = 54
	ResultInvalidField       ResultCode = 55
	ResultInvalidUser        ResultCode = 60
	ResultInvalidPassword    ResultCode = 62
	ResultExpiredPassword    ResultCode = 63
	ResultInvalidCredential  ResultCode = 65
	ResultExpiredSession     ResultCode = 66
	ResultNotAuthenticated   ResultCode = 80
)

// Sentinel errors; every *Error wraps the one of its code.
var (
	// ErrBadCredentials: the server refused the user or password
	// (invalid user, invalid password, expired password, invalid
	// credential).
	ErrBadCredentials = errors.New("admin: credentials refused")
	// ErrSessionExpired: the session token is no longer valid (expired,
	// or the node restarted): log in again.
	ErrSessionExpired = errors.New("admin: session expired")
	// ErrRefused: any other result code.
	ErrRefused = errors.New("admin: refused")
	// ErrProtocol: the reply is malformed (bad header, lengths out of
	// range, a login reply without a token).
	ErrProtocol = errors.New("admin: malformed reply")
)

// Error is a refusal by the server. It names the user, never the
// password or token.
type Error struct {
	Op   string // "login" or "authenticate"
	User string
	Code ResultCode
}

func (e *Error) Error() string {
	return fmt.Sprintf("admin: %s as user %q refused by the server: %s (result code %d)", e.Op, e.User, e.Code.describe(), uint8(e.Code))
}

// Unwrap returns the sentinel of the code.
func (e *Error) Unwrap() error {
	switch e.Code {
	case ResultInvalidUser, ResultInvalidPassword, ResultExpiredPassword, ResultInvalidCredential:
		return ErrBadCredentials
	case ResultExpiredSession, ResultNotAuthenticated:
		return ErrSessionExpired
	}
	return ErrRefused
}

func (c ResultCode) describe() string {
	switch c {
	case ResultInvalidUser:
		return "invalid user"
	case ResultInvalidPassword:
		return "invalid password"
	case ResultExpiredPassword:
		return "expired password"
	case ResultInvalidCredential:
		return "invalid credential"
	case ResultExpiredSession:
		return "expired session"
	case ResultNotAuthenticated:
		return "not authenticated"
	case ResultInvalidCommand:
		return "invalid command"
	case ResultInvalidField:
		return "invalid field"
	}
	return "refused"
}

// Credentials say how to log in. The password stays in this process.
type Credentials struct {
	Mode     Mode
	User     string
	Password string
}

// Session is what a login returns: the token that authenticates further
// connections until Expires (zero: the server gave no time to live).
type Session struct {
	Token   []byte
	Expires time.Time
}

// Valid reports whether the session has a token that has not expired at
// now. Expiry is taken a minute early, as the official clients do, so the
// client re-logs in before the server drops the session.
func (s *Session) Valid(now time.Time) bool {
	return s != nil && len(s.Token) > 0 && (s.Expires.IsZero() || now.Before(s.Expires))
}

// Field is one field of an admin message.
type Field struct {
	ID   byte
	Data []byte
}

// Message is a decoded admin message.
type Message struct {
	Command byte
	Result  ResultCode
	Fields  []Field
}

// Field returns the data of the first field with id, and whether there is
// one.
func (m *Message) Field(id byte) ([]byte, bool) {
	for _, f := range m.Fields {
		if f.ID == id {
			return f.Data, true
		}
	}
	return nil, false
}

// Append appends m's encoding to b.
func (m *Message) Append(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, headerSize)...)
	for _, f := range m.Fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.Data)+1))
		b = append(b, f.ID)
		b = append(b, f.Data...)
	}
	body := uint64(len(b) - start - 8)
	binary.BigEndian.PutUint64(b[start:], body|protoVersion<<56|msgType<<48)
	b[start+8+1] = byte(m.Result)
	b[start+8+2] = m.Command
	b[start+8+3] = byte(len(m.Fields))
	return b
}

// ReadMessage reads one admin message from r, checking the header and
// every length against MaxMessage and the body.
func ReadMessage(r io.Reader) (*Message, error) {
	var h [headerSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("admin: read header: %w", err)
	}
	proto := binary.BigEndian.Uint64(h[:8])
	if proto>>56 != protoVersion || proto>>48&0xff != msgType {
		return nil, fmt.Errorf("%w: proto version %d type %d, want %d and %d", ErrProtocol, proto>>56, proto>>48&0xff, protoVersion, msgType)
	}
	size := proto & (1<<48 - 1)
	if size < 16 || size > MaxMessage {
		return nil, fmt.Errorf("%w: body of %d bytes (16..%d)", ErrProtocol, size, MaxMessage)
	}
	body := make([]byte, size-16)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("admin: read body: %w", err)
	}
	m := &Message{Result: ResultCode(h[8+1]), Command: h[8+2]}
	n := int(h[8+3])
	for i := range n {
		if len(body) < 5 {
			return nil, fmt.Errorf("%w: field %d of %d truncated", ErrProtocol, i+1, n)
		}
		l := binary.BigEndian.Uint32(body)
		if l < 1 || uint64(l-1) > uint64(len(body)-5) {
			return nil, fmt.Errorf("%w: field %d length %d beyond the body", ErrProtocol, i+1, l)
		}
		m.Fields = append(m.Fields, Field{ID: body[4], Data: body[5 : 5+l-1]})
		body = body[5+l-1:]
	}
	return m, nil
}

// exchange writes req and reads the reply within timeout (and ctx).
func exchange(ctx context.Context, conn net.Conn, req *Message, timeout time.Duration) (*Message, error) {
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	if err := conn.SetDeadline(dl); err != nil {
		return nil, err
	}
	defer conn.SetDeadline(time.Time{})
	if _, err := conn.Write(req.Append(nil)); err != nil {
		return nil, fmt.Errorf("admin: write: %w", err)
	}
	return ReadMessage(conn)
}

// Login logs in on conn with c and returns the session (a zero Session,
// nil error, when the server's security is off). hashed is
// HashPassword(c.Password), computed once by the caller (bcrypt costs
// tens of milliseconds). A refusal is an *Error naming the user.
func Login(ctx context.Context, conn net.Conn, c Credentials, hashed string, timeout time.Duration) (Session, error) {
	req := &Message{Command: CmdLogin}
	switch c.Mode {
	case ModeInternal:
		req.Fields = []Field{{FieldUser, []byte(c.User)}, {FieldCredential, []byte(hashed)}}
	case ModePKI:
	default:
		return Session{}, fmt.Errorf("admin: login with mode %v", c.Mode)
	}
	rep, err := exchange(ctx, conn, req, timeout)
	if err != nil {
		return Session{}, err
	}
	switch rep.Result {
	case ResultOK:
	case ResultSecurityNotEnabled:
		return Session{}, nil
	default:
		return Session{}, &Error{Op: "login", User: c.User, Code: rep.Result}
	}
	tok, ok := rep.Field(FieldSessionToken)
	if !ok || len(tok) == 0 {
		return Session{}, fmt.Errorf("%w: login reply without a session token", ErrProtocol)
	}
	s := Session{Token: append([]byte(nil), tok...)}
	if ttl, ok := rep.Field(FieldSessionTTL); ok {
		if len(ttl) != 4 {
			return Session{}, fmt.Errorf("%w: session TTL field of %d bytes", ErrProtocol, len(ttl))
		}
		if secs := int64(binary.BigEndian.Uint32(ttl)) - 60; secs > 0 {
			s.Expires = time.Now().Add(time.Duration(secs) * time.Second)
		} else {
			// A TTL of a minute or less: valid for this connection only.
			s.Expires = time.Now()
		}
	}
	return s, nil
}

// Authenticate authenticates conn with a session token from Login. An
// expired or unknown token (the node restarted) is an *Error wrapping
// ErrSessionExpired: log in again.
func Authenticate(ctx context.Context, conn net.Conn, c Credentials, token []byte, timeout time.Duration) error {
	req := &Message{Command: CmdAuthenticate}
	if c.Mode != ModePKI {
		req.Fields = append(req.Fields, Field{FieldUser, []byte(c.User)})
	}
	req.Fields = append(req.Fields, Field{FieldSessionToken, token})
	rep, err := exchange(ctx, conn, req, timeout)
	if err != nil {
		return err
	}
	if rep.Result != ResultOK && rep.Result != ResultSecurityNotEnabled {
		return &Error{Op: "authenticate", User: c.User, Code: rep.Result}
	}
	return nil
}
