package info

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Default timeouts used when Options leaves them at zero.
const (
	// DefaultConnectTimeout bounds Dial when Options.ConnectTimeout is 0.
	DefaultConnectTimeout = 2 * time.Second
	// DefaultReadTimeout bounds one Request when Options.ReadTimeout is 0.
	DefaultReadTimeout = 2 * time.Second
)

// keepBufferLimit is the largest reply buffer a Conn keeps for reuse;
// bigger ones are dropped after use so one huge reply does not pin memory.
const keepBufferLimit = 1 << 20

// Options configures a Conn (and a Pool).
type Options struct {
	// ConnectTimeout bounds the TCP connect in Dial (0: DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// ReadTimeout bounds one Request, write and read together
	// (0: DefaultReadTimeout). A context deadline that is earlier wins.
	ReadTimeout time.Duration
	// MaxReplySize is the largest reply body accepted (0: DefaultMaxReplySize).
	// A reply header announcing more is rejected with ErrTooLarge without
	// allocating the body, and the connection is closed.
	MaxReplySize int
	// Logger receives debug records about dials and broken connections
	// (nil: discard).
	Logger *slog.Logger
	// TLS, when not nil, makes every connection TLS: the server's
	// certificate is verified against the node's TLS name (DialTLS's
	// tlsName; the host of addr when empty, or TLS.ServerName when set),
	// and TLS.Certificates are offered for mutual TLS. Nil: clear text.
	TLS *tls.Config
	// Auth, when not nil, authenticates every new connection (after the
	// TLS handshake) before its first request: tend passes an
	// admin.Authenticator's login. An error closes the connection and is
	// returned by the dial.
	Auth func(ctx context.Context, nc net.Conn, addr string) error
}

func (o Options) withDefaults() Options {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.MaxReplySize <= 0 {
		o.MaxReplySize = DefaultMaxReplySize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Conn is one connection to a server node that carries info requests. It
// is safe for concurrent use; requests are serialized. After an I/O or
// framing error the connection is closed and every later Request fails
// with ErrClosed: a tender keeps one Conn per node and redials on error.
type Conn struct {
	opts Options
	addr string

	nc net.Conn

	mu   sync.Mutex // serializes requests and guards wbuf and rbuf
	wbuf []byte
	rbuf []byte

	closed atomic.Bool
	cause  atomic.Pointer[error] // why the connection became unusable
	sent   atomic.Uint64
}

// Dial connects to addr ("host:port") and returns a Conn. The connect is
// bounded by opts.ConnectTimeout and by ctx. With opts.TLS it is DialTLS
// with the host of addr as the TLS name.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	return DialTLS(ctx, addr, "", opts)
}

// DialTLS is Dial for a node whose certificate carries tlsName (its
// "host:tlsname:port" seed, or the TLS name of its peers-tls entry). The
// connect and the handshake together are bounded by opts.ConnectTimeout
// and ctx; a failed handshake is an error wrapping ErrTLS. Without
// opts.TLS, tlsName is ignored and the connection is clear text.
func DialTLS(ctx context.Context, addr, tlsName string, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	d := net.Dialer{Timeout: opts.ConnectTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		opts.Logger.Debug("info dial failed", "addr", addr, "err", err)
		return nil, fmt.Errorf("info: dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if opts.TLS != nil {
		tc, err := Handshake(ctx, nc, addr, tlsName, opts.TLS, opts.ConnectTimeout)
		if err != nil {
			opts.Logger.Debug("info TLS handshake failed", "addr", addr, "tls_name", tlsName, "err", err)
			return nil, err
		}
		nc = tc
	}
	if opts.Auth != nil {
		actx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
		err := opts.Auth(actx, nc, addr)
		cancel()
		if err != nil {
			nc.Close()
			opts.Logger.Debug("info authentication failed", "addr", addr, "err", err)
			return nil, fmt.Errorf("info: authenticate to %s: %w", addr, err)
		}
	}
	return NewConn(nc, opts), nil
}

// Handshake runs a client TLS handshake on nc (which it closes on
// failure) against a server whose certificate carries tlsName (the host
// of addr when empty; cfg.ServerName when set wins), within timeout and
// ctx. It is what DialTLS does after connecting, for other connections to
// a node (record commands) that must verify it the same way. Errors wrap
// ErrTLS and the crypto error.
func Handshake(ctx context.Context, nc net.Conn, addr, tlsName string, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	c := cfg.Clone()
	if c.ServerName == "" {
		c.ServerName = tlsName
		if c.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				nc.Close()
				return nil, fmt.Errorf("info: TLS to %s: %w: %w", addr, ErrTLS, err)
			}
			c.ServerName = host
		}
	}
	tc := tls.Client(nc, c)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("info: TLS to %s (name %q): %w: %w", addr, c.ServerName, ErrTLS, err)
	}
	return tc, nil
}

// NewConn wraps an established connection (for example one end of
// net.Pipe in tests). The Conn owns nc from now on.
func NewConn(nc net.Conn, opts Options) *Conn {
	opts = opts.withDefaults()
	addr := ""
	if ra := nc.RemoteAddr(); ra != nil {
		addr = ra.String()
	}
	return &Conn{opts: opts, addr: addr, nc: nc}
}

// Addr returns the remote address the Conn talks to.
func (c *Conn) Addr() string { return c.addr }

// RequestsSent returns how many info request messages this Conn has
// written to the network (one per Request call that got that far,
// whatever the number of command names in it).
func (c *Conn) RequestsSent() uint64 { return c.sent.Load() }

// Err returns nil while the Conn is usable, or the error that closed it.
func (c *Conn) Err() error {
	if !c.closed.Load() {
		return nil
	}
	if p := c.cause.Load(); p != nil {
		return *p
	}
	return ErrClosed
}

// Close closes the connection, interrupting a request in flight. It is
// safe to call more than once and concurrently with Request.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := ErrClosed
	c.cause.CompareAndSwap(nil, &err)
	return c.nc.Close()
}

// Request sends one info message asking for names and returns the reply
// as a map from name to value. Names absent from the reply are absent from
// the map (see Value for a checked lookup). The request is bounded by
// Options.ReadTimeout and by ctx; on any I/O or framing error the Conn is
// closed and the error returned wraps the cause (context.Canceled,
// context.DeadlineExceeded, os.ErrDeadlineExceeded, ErrTooLarge, ...).
func (c *Conn) Request(ctx context.Context, names ...string) (map[string]string, error) {
	body, err := c.RequestRaw(ctx, names...)
	if err != nil {
		return nil, err
	}
	m, err := ParseReply(body)
	if err != nil {
		return nil, fmt.Errorf("info: request %v to %s: %w", names, c.addr, err)
	}
	return m, nil
}

// RequestRaw is Request without the parsing: it returns the reply body.
// The returned slice is valid until the next request on this Conn.
func (c *Conn) RequestRaw(ctx context.Context, names ...string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("info: request %v to %s: %w", names, c.addr, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, fmt.Errorf("info: request %v to %s: %w", names, c.addr, c.closedErr())
	}
	wbuf, err := AppendRequest(c.wbuf[:0], names...)
	if err != nil {
		return nil, fmt.Errorf("info: request to %s: %w", c.addr, err)
	}
	c.wbuf = wbuf

	deadline := time.Now().Add(c.opts.ReadTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return nil, c.fail(ctx, names, err)
	}
	// Abort blocked I/O as soon as ctx is cancelled.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := c.nc.Write(wbuf); err != nil {
		return nil, c.fail(ctx, names, err)
	}
	c.sent.Add(1)

	body, err := ReadMessage(c.nc, c.opts.MaxReplySize, c.rbuf)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: connection closed by server before the reply", io.ErrUnexpectedEOF)
		}
		return nil, c.fail(ctx, names, err)
	}
	if cap(body) <= keepBufferLimit {
		c.rbuf = body[:0]
	} else {
		c.rbuf = nil
	}
	return body, nil
}

// fail closes the connection after an I/O error and builds the returned
// error; c.mu must be held.
func (c *Conn) fail(ctx context.Context, names []string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	} else if c.closed.Load() {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	c.cause.CompareAndSwap(nil, &err)
	if c.closed.CompareAndSwap(false, true) {
		_ = c.nc.Close()
	}
	c.opts.Logger.Debug("info connection broken", "addr", c.addr, "err", err)
	return fmt.Errorf("info: request %v to %s: %w", names, c.addr, err)
}

// closedErr is the error for a request on a closed Conn: it wraps
// ErrClosed and, when different, the error that closed it.
func (c *Conn) closedErr() error {
	cause := c.Err()
	if errors.Is(cause, ErrClosed) {
		return cause
	}
	return fmt.Errorf("%w: %w", ErrClosed, cause)
}

// Value returns reply[name], or a *ParseError wrapping ErrMissing when the
// reply has no such line.
func Value(reply map[string]string, name string) (string, error) {
	v, ok := reply[name]
	if !ok {
		return "", parseErr(ErrMissing, name, "reply", 0, "no line for the command in the reply")
	}
	return v, nil
}
