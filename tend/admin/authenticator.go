package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxSessions bounds the sessions an Authenticator keeps (one per node).
const maxSessions = 4096

// Authenticator authenticates new connections for one set of credentials:
// the first connection to a node logs in and keeps the session token (in
// this process's memory only); later connections authenticate with the
// token; an expired or unknown token (expiry, or a node that restarted)
// makes it log in again. It is safe for concurrent use.
type Authenticator struct {
	creds  Credentials
	hashed string

	mu       sync.Mutex
	sessions map[string]Session

	logins, tokenAuths atomic.Uint64
}

// NewAuthenticator returns an Authenticator for c, hashing the password
// once. A nil Authenticator (mode none) authenticates nothing.
func NewAuthenticator(c Credentials) (*Authenticator, error) {
	a := &Authenticator{creds: c, sessions: map[string]Session{}}
	switch c.Mode {
	case ModeNone:
		return nil, nil
	case ModeInternal:
		if c.User == "" {
			return nil, errors.New("admin: internal authentication needs a user")
		}
		h, err := HashPassword(c.Password)
		if err != nil {
			return nil, err
		}
		a.hashed = h
	case ModePKI:
	default:
		return nil, fmt.Errorf("admin: unknown authentication mode %v", c.Mode)
	}
	return a, nil
}

// User returns the user the Authenticator logs in as.
func (a *Authenticator) User() string { return a.creds.User }

// Auth authenticates conn, a new connection to the node at key (its
// address): with the node's session token if one is valid, otherwise (or
// if the node no longer knows the token) by logging in. Errors are
// *Error values naming the user (errors.Is ErrBadCredentials for wrong
// credentials), or I/O errors; the connection is then unusable.
func (a *Authenticator) Auth(ctx context.Context, conn net.Conn, key string, timeout time.Duration) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	s, ok := a.sessions[key]
	a.mu.Unlock()
	if ok && s.Valid(time.Now()) {
		err := Authenticate(ctx, conn, a.creds, s.Token, timeout)
		if err == nil {
			a.tokenAuths.Add(1)
			return nil
		}
		if !errors.Is(err, ErrSessionExpired) && !errors.Is(err, ErrBadCredentials) {
			return err
		}
		a.Forget(key)
	}
	s, err := Login(ctx, conn, a.creds, a.hashed, timeout)
	if err != nil {
		return err
	}
	a.logins.Add(1)
	if len(s.Token) > 0 {
		a.mu.Lock()
		if len(a.sessions) >= maxSessions {
			clear(a.sessions)
		}
		a.sessions[key] = s
		a.mu.Unlock()
	}
	return nil
}

// Forget drops the session of key (the next connection logs in).
func (a *Authenticator) Forget(key string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	delete(a.sessions, key)
	a.mu.Unlock()
}

// Logins counts the logins made; TokenAuths the connections authenticated
// with a kept token.
func (a *Authenticator) Logins() uint64 { return a.logins.Load() }

// TokenAuths counts the connections authenticated with a kept token.
func (a *Authenticator) TokenAuths() uint64 { return a.tokenAuths.Load() }
