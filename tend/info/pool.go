package info

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultMaxIdlePerAddr is the number of idle connections a Pool keeps per
// address when MaxIdlePerAddr is 0.
const DefaultMaxIdlePerAddr = 1

// PoolOptions configures a Pool.
type PoolOptions struct {
	// Options apply to every connection the pool dials.
	Options
	// MaxIdlePerAddr is how many idle connections are kept per address
	// (0: DefaultMaxIdlePerAddr). Concurrent requests to one address dial
	// extra connections; those beyond the limit are closed after use.
	MaxIdlePerAddr int
}

// Pool keeps info connections per node address and reuses them. A
// connection that fails is dropped and the next request redials. It is
// safe for concurrent use.
type Pool struct {
	opts PoolOptions

	mu     sync.Mutex
	idle   map[string][]*Conn
	closed bool

	sent  atomic.Uint64
	dials atomic.Uint64
}

// NewPool returns an empty pool.
func NewPool(opts PoolOptions) *Pool {
	opts.Options = opts.Options.withDefaults()
	if opts.MaxIdlePerAddr <= 0 {
		opts.MaxIdlePerAddr = DefaultMaxIdlePerAddr
	}
	return &Pool{opts: opts, idle: make(map[string][]*Conn)}
}

// Request sends one info request for names to addr, reusing an idle
// connection when there is one. See Conn.Request.
func (p *Pool) Request(ctx context.Context, addr string, names ...string) (map[string]string, error) {
	return p.RequestTLS(ctx, addr, "", names...)
}

// RequestTLS is Request to a node whose certificate carries tlsName (see
// DialTLS; ignored without Options.TLS). Connections are kept per address
// and TLS name.
func (p *Pool) RequestTLS(ctx context.Context, addr, tlsName string, names ...string) (map[string]string, error) {
	key := addr
	if p.opts.TLS != nil {
		key = addr + "\x00" + tlsName
	}
	c, err := p.get(ctx, key, addr, tlsName)
	if err != nil {
		return nil, err
	}
	before := c.RequestsSent()
	reply, err := c.Request(ctx, names...)
	p.sent.Add(c.RequestsSent() - before)
	p.put(key, c)
	return reply, err
}

// RequestsSent returns how many info request messages the pool's
// connections have written, over the pool's lifetime.
func (p *Pool) RequestsSent() uint64 { return p.sent.Load() }

// Dials returns how many connections the pool has dialed.
func (p *Pool) Dials() uint64 { return p.dials.Load() }

// CloseAddr closes the idle connections to addr, e.g. when a node left the
// cluster.
func (p *Pool) CloseAddr(addr string) {
	p.mu.Lock()
	var conns []*Conn
	for k, cs := range p.idle {
		if k == addr || strings.HasPrefix(k, addr+"\x00") { // any TLS name
			conns = append(conns, cs...)
			delete(p.idle, k)
		}
	}
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Close closes every idle connection; requests in flight finish and their
// connections are then closed. Later requests fail with ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = make(map[string][]*Conn)
	p.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	return nil
}

func (p *Pool) get(ctx context.Context, key, addr, tlsName string) (*Conn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("info: pool request to %s: %w", addr, ErrClosed)
	}
	if conns := p.idle[key]; len(conns) > 0 {
		c := conns[len(conns)-1]
		p.idle[key] = conns[:len(conns)-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	p.dials.Add(1)
	return DialTLS(ctx, addr, tlsName, p.opts.Options)
}

func (p *Pool) put(addr string, c *Conn) {
	if c.Err() != nil {
		return // already closed by the failure
	}
	p.mu.Lock()
	if !p.closed && len(p.idle[addr]) < p.opts.MaxIdlePerAddr {
		p.idle[addr] = append(p.idle[addr], c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = c.Close()
}
