package record

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
)

// connReadBuffer is the size of a connection's read buffer: a reply up to
// this size is read with one system call.
const connReadBuffer = 4096

// setupTimeout bounds a new connection's TLS handshake and login when the
// attempt has no deadline (no SocketTimeout, TotalTimeout or context
// deadline); the context still cuts them short.
const setupTimeout = 10 * time.Second

// conn is one pooled connection to a node with its reusable buffers.
type conn struct {
	nc        net.Conn
	br        *bufio.Reader // replies usually arrive whole: one read syscall, not two
	p         *nodePool
	wbuf      []byte // the request being sent
	rbuf      []byte // the reply being read
	ops       []wire.Op
	msg       wire.Message
	idleSince time.Time
}

// nodePool is this process's connections to one node: a LIFO stack of idle
// connections (the most recently used on top, so that the ones at the
// bottom age out under IdleTimeout) and the count of open ones, capped by
// ClientPolicy.ConnectionQueueSize.
type nodePool struct {
	name    string
	addr    netip.AddrPort
	tlsName string               // the node's TLS name from the view
	tls     *tls.Config          // nil: clear text
	auth    *admin.Authenticator // nil: no login
	spin    *spinner             // polling for replies (nil: none)
	max     int
	idle    time.Duration

	mu     sync.Mutex
	stack  []*conn
	open   int
	closed bool

	requests atomic.Uint64 // attempts sent to this node
	dials    atomic.Uint64
}

// get returns an idle connection or dials a new one (bounded by deadline).
func (p *nodePool) get(ctx context.Context, deadline time.Time) (*conn, error) {
	p.mu.Lock()
	if p.closed {
		// Retired (the node left the view or moved) or the client closed:
		// the next attempt finds the node's new pool, or ErrClosed.
		p.mu.Unlock()
		return nil, fmt.Errorf("record: node %s: pool retired: %w", p.name, ErrNoConnection)
	}
	for n := len(p.stack); n > 0; n = len(p.stack) {
		c := p.stack[n-1]
		p.stack[n-1] = nil
		p.stack = p.stack[:n-1]
		if p.idle > 0 && time.Since(c.idleSince) > p.idle {
			// Every connection below c is older: drop them all.
			stale := append(p.stack, c)
			p.stack = p.stack[:0]
			p.open -= len(stale)
			p.mu.Unlock()
			for _, s := range stale {
				s.nc.Close()
			}
			p.mu.Lock()
			continue
		}
		p.mu.Unlock()
		return c, nil
	}
	if p.open >= p.max {
		p.mu.Unlock()
		return nil, fmt.Errorf("record: node %s: %d connections in use: %w", p.name, p.max, ErrNoConnection)
	}
	p.open++
	p.mu.Unlock()
	nc, err := p.dial(ctx, deadline)
	if err != nil {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
		return nil, err
	}
	return &conn{nc: nc, p: p, br: bufio.NewReaderSize(newReader(nc, p.spin), connReadBuffer)}, nil
}

// dial opens a connection to the node, runs the TLS handshake (verifying
// the node's TLS name) and logs it in, all by deadline. Errors are
// classified for the retry decision: connect failures and I/O errors wrap
// ErrNetwork (retried); a certificate the client or the server refused
// wraps info.ErrTLS and not ErrNetwork (a configuration error: not
// retried); refused credentials wrap ErrAuth and the *admin.Error naming
// the user (not retried).
func (p *nodePool) dial(ctx context.Context, deadline time.Time) (net.Conn, error) {
	addr := p.addr.String()
	d := net.Dialer{Deadline: deadline}
	p.dials.Add(1)
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: record: node %s at %s: %w", ErrNetwork, p.name, addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if p.tls == nil && p.auth == nil {
		return nc, nil
	}
	timeout := setupTimeout
	if !deadline.IsZero() {
		timeout = time.Until(deadline)
	}
	if p.tls != nil {
		tc, err := info.Handshake(ctx, nc, addr, p.tlsName, p.tls, timeout)
		if err != nil {
			if tlsRefused(err) {
				return nil, fmt.Errorf("record: node %s: %w", p.name, err)
			}
			return nil, fmt.Errorf("%w: record: node %s: %w", ErrNetwork, p.name, err)
		}
		nc = tc
	}
	if err := p.auth.Auth(ctx, nc, addr, timeout); err != nil {
		nc.Close()
		var ae *admin.Error
		switch {
		case errors.As(err, &ae):
			return nil, fmt.Errorf("record: node %s at %s: %w: %w", p.name, addr, ErrAuth, err)
		case errors.Is(err, admin.ErrProtocol):
			return nil, fmt.Errorf("record: node %s at %s: login: %w: %w", p.name, addr, ErrProtocol, err)
		case tlsRefused(err):
			return nil, fmt.Errorf("record: node %s at %s: login: %w: %w", p.name, addr, info.ErrTLS, err)
		}
		return nil, fmt.Errorf("%w: record: node %s at %s: login: %w", ErrNetwork, p.name, addr, err)
	}
	return nc, nil
}

// tlsRefused reports whether err is a TLS verification failure rather
// than a transient I/O error: the client refused the server's certificate
// (untrusted, or not for the node's TLS name), or the server sent an alert
// refusing the handshake or, under TLS 1.3, the client's certificate
// (which the client learns at its first read after the handshake).
func tlsRefused(err error) bool {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// put returns a healthy connection (its last exchange complete) to the
// pool.
func (p *nodePool) put(c *conn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	if p.closed {
		p.open--
		p.mu.Unlock()
		c.nc.Close()
		return
	}
	p.stack = append(p.stack, c)
	p.mu.Unlock()
}

// discard closes a connection whose stream can no longer be trusted (an
// error or a timeout mid-exchange).
func (p *nodePool) discard(c *conn) {
	c.nc.Close()
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
}

// close closes the idle connections and makes the pool close the busy ones
// when they come back.
func (p *nodePool) close() {
	p.mu.Lock()
	p.closed = true
	stale := p.stack
	p.stack = nil
	p.open -= len(stale)
	p.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// counts returns the open and idle connection counts.
func (p *nodePool) counts() (open, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open, len(p.stack)
}
