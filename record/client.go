package record

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
)

// Errors of the client itself; server result codes have their own (see
// errors.go). Every error a command returns wraps one of them.
var (
	// ErrClosed reports use of a closed Client.
	ErrClosed = errors.New("record: client closed")
	// ErrNoNode reports a partition with no active node in the view (the
	// map is not converged yet, or every replica is marked inactive).
	ErrNoNode = errors.New("record: no active node holds the partition")
	// ErrNoConnection reports a node whose ConnectionQueueSize
	// connections are all in use.
	ErrNoConnection = errors.New("record: no connection available")
	// ErrTimeout reports a command that did not complete within its
	// TotalTimeout or its context's deadline; it wraps the last
	// attempt's error too.
	ErrTimeout = errors.New("record: timeout")
	// ErrNetwork reports a connection that failed during an attempt
	// (refused, reset, closed by the server, or a SocketTimeout).
	ErrNetwork = errors.New("record: network error")
	// ErrProtocol reports a reply that is not a well-formed answer to the
	// request (wrong header, bad length, truncated or malformed content).
	// The connection is closed; the command is not retried.
	ErrProtocol = errors.New("record: malformed reply")
	// ErrInvalid reports a bad argument (key, bin, policy).
	ErrInvalid = errors.New("record: invalid argument")
	// ErrAuth reports a connection the server refused to log in: wrong
	// credentials, or another refusal of the login. It wraps the
	// *admin.Error, which names the user (never the password). The
	// command is not retried.
	ErrAuth = errors.New("record: authentication refused")
)

// errSession marks a reply saying the connection is not authenticated
// (result NOT_AUTHENTICATED): the connection is closed, the node's session
// forgotten, and the command retried on a new connection, which logs in
// again.
var errSession = errors.New("record: connection not authenticated")

// MaxReply bounds the size of a reply the client accepts (the protocol's
// 48-bit length is checked against it before anything is allocated).
const MaxReply = 128 << 20

// Client sends record commands to the nodes of a shared cluster view.
// Routing reads the view's partition map (tend.Cluster.Map) on every
// attempt, with no lock and no polling; each process keeps its own
// connections, a pool per node.
//
// Connections are set up as the view's info connections are: with the
// view's TLS configuration (tend.Config.TLS: each node's certificate
// verified against its TLS name from the view, the client certificate
// offered for mutual TLS), and authenticated through the view's
// Authenticator (tend.Config.User, Password, AuthMode): the first
// connection to a node logs in, later ones present the session token
// kept in this process's memory, and an expired or unknown token (the
// node restarted) makes the connection log in again. No password or
// token goes into shared memory. A Client is safe for concurrent use.
type Client struct {
	cl    *tend.Cluster
	pol   ClientPolicy
	log   *slog.Logger
	tls   *tls.Config          // nil: clear text
	auth  *admin.Authenticator // nil: no authentication
	racks []int                // ClientPolicy.RackIds
	spin  *spinner             // ClientPolicy.SpinWait

	mu     sync.Mutex // guards pool creation and replacement, and closed
	pools  sync.Map   // node name → *nodePool
	closed atomic.Bool

	// nsr caches, per namespace slot, the facts PREFER_RACK and retries
	// route by (nsFacts).
	nsr [partmap.MaxNamespacesLimit]atomic.Pointer[nsRoute]

	retries  atomic.Uint64
	timeouts atomic.Uint64
	commands atomic.Uint64 // counts commands, to sweep pools every sweepEvery
}

// sweepEvery is how many commands pass between two sweeps of the pools of
// nodes that left the view.
const sweepEvery = 1024

// NewClient returns a client on cluster view cl. A nil policy means
// NewClientPolicy(). The Client does not own cl: close the Client before
// cl.
func NewClient(cl *tend.Cluster, policy *ClientPolicy) (*Client, error) {
	if cl == nil {
		return nil, fmt.Errorf("record: nil cluster: %w", ErrInvalid)
	}
	p := NewClientPolicy()
	if policy != nil {
		p = policy
	}
	if p.ConnectionQueueSize <= 0 || p.IdleTimeout < 0 || p.SpinWait < 0 {
		return nil, fmt.Errorf("record: ConnectionQueueSize %d, IdleTimeout %v, SpinWait %v: %w", p.ConnectionQueueSize, p.IdleTimeout, p.SpinWait, ErrInvalid)
	}
	for i, r := range p.RackIds {
		if r < 0 || r > partmap.MaxRackID {
			return nil, fmt.Errorf("record: RackIds[%d] = %d, want 0..%d: %w", i, r, partmap.MaxRackID, ErrInvalid)
		}
	}
	c := &Client{cl: cl, pol: *p, log: p.Logger, tls: cl.TLSConfig(), auth: cl.Authenticator(), racks: slices.Clone(p.RackIds), spin: newSpinner(p.SpinWait)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Close closes every idle connection; connections in use are closed when
// their command ends. Commands after Close fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	c.mu.Unlock()
	c.pools.Range(func(_, v any) bool {
		v.(*nodePool).close()
		return true
	})
	c.spin.close()
	return nil
}

// NodeStats are one node's counts in a Client.
type NodeStats struct {
	// Name is the node's name.
	Name string
	// Requests counts the attempts sent to the node.
	Requests uint64
	// Dials counts the connections opened to it.
	Dials uint64
	// Open and Idle are the connections open now, and idle among them.
	Open, Idle int
}

// Stats are a Client's counts.
type Stats struct {
	// Nodes has one entry per node the client has a pool for: every node
	// it sent to, until the node leaves the view's node table.
	Nodes []NodeStats
	// Retries counts attempts after the first of a command.
	Retries uint64
	// Timeouts counts commands that failed with ErrTimeout.
	Timeouts uint64
}

// Stats returns the client's counts.
func (c *Client) Stats() Stats {
	s := Stats{Retries: c.retries.Load(), Timeouts: c.timeouts.Load()}
	c.pools.Range(func(_, v any) bool {
		p := v.(*nodePool)
		o, i := p.counts()
		s.Nodes = append(s.Nodes, NodeStats{Name: p.name, Requests: p.requests.Load(), Dials: p.dials.Load(), Open: o, Idle: i})
		return true
	})
	return s
}

// pool returns the pool of node n, creating it (or replacing it, if the
// node's preferred address changed).
func (c *Client) pool(n *partmap.Node) (*nodePool, error) {
	if len(n.Addresses) == 0 {
		return nil, fmt.Errorf("record: node %s has no address: %w", n.Name, ErrNoNode)
	}
	if v, ok := c.pools.Load(n.Name); ok {
		if p := v.(*nodePool); p.addr == n.Addresses[0] && p.tlsName == n.TLSName {
			return p, nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if v, ok := c.pools.Load(n.Name); ok {
		p := v.(*nodePool)
		if p.addr == n.Addresses[0] && p.tlsName == n.TLSName {
			return p, nil
		}
		c.log.Debug("node moved", "node", n.Name, "from", p.addr.String(), "to", n.Addresses[0].String(),
			"tls_name", n.TLSName)
		p.close()
	}
	p := &nodePool{name: n.Name, addr: n.Addresses[0], tlsName: n.TLSName, tls: c.tls, auth: c.auth, spin: c.spin,
		max: c.pol.ConnectionQueueSize, idle: c.pol.IdleTimeout}
	c.pools.Store(n.Name, p)
	return p, nil
}

// sweep retires the pools of nodes that are no longer in the view's node
// table (they left the cluster and their slot was freed), closing their
// idle connections, which the servers have closed on their side.
func (c *Client) sweep() {
	nodes := c.cl.Map().Nodes()
	c.pools.Range(func(k, v any) bool {
		p := v.(*nodePool)
		for _, n := range nodes {
			if n.Name == p.name {
				return true
			}
		}
		c.mu.Lock()
		if c.pools.CompareAndDelete(k, v) {
			p.close()
			c.log.Debug("node pool retired", "node", p.name)
		}
		c.mu.Unlock()
		return true
	})
}

// router is one command's replica choice across its attempts, as the
// official clients' Partition keeps it: the sequence (the replica rank the
// next attempt starts from, counted without wrapping) and, for
// PREFER_RACK, the node of the previous attempt.
type router struct {
	seq  int
	prev string // name of the previous attempt's node ("" before the first)
}

// routing returns the policy an attempt routes by and how many replica
// ranks the sequence wraps over (the namespace's replication factor as far
// as the map stores it). PREFER_RACK writes route as SEQUENCE, and
// PREFER_RACK reads of a strong-consistency namespace as MASTER: the
// official clients read such a namespace from the master (their default
// session consistency), never from a prole on the preferred rack. A first
// SEQUENCE or MASTER attempt (seq 0) never wraps, and ranks past the
// replication factor are empty, so it needs no namespace facts (the
// default hot path); a retry or a PREFER_RACK read does (nsFacts).
func (c *Client) routing(m *partmap.Map, h partmap.NS, pol ReplicaPolicy, k kind, seq int) (ReplicaPolicy, int) {
	if pol == PREFER_RACK && k.isWrite() {
		pol = SEQUENCE
	}
	if pol != PREFER_RACK && seq == 0 {
		return pol, partmap.StoredReplicas
	}
	f := c.nsFacts(m, h)
	if pol == PREFER_RACK && f.sc {
		pol = MASTER
	}
	return pol, f.count
}

// nsRoute is what routing needs of a namespace record, as of one
// generation of one map.
type nsRoute struct {
	m     *partmap.Map
	gen   uint64
	count int  // replication factor, 1..StoredReplicas
	sc    bool // strong consistency
}

// nsFacts returns namespace h's routing facts, from the client's cache
// while the map's generation is the one they were read at (the owner
// changes a namespace record only inside a publish, which moves the
// generation), or read from the namespace record (a seqlock read and a
// small allocation, once per generation). A record that cannot be read
// gives StoredReplicas and strong consistency: PREFER_RACK then reads
// from the master, which is right for either kind of namespace.
func (c *Client) nsFacts(m *partmap.Map, h partmap.NS) *nsRoute {
	i := h.Index()
	gen := m.Generation()
	if i >= 0 && i < len(c.nsr) {
		if r := c.nsr[i].Load(); r != nil && r.m == m && r.gen == gen {
			return r
		}
	}
	ni, err := m.NamespaceInfo(h)
	if err != nil || ni.ReplicaCount <= 0 {
		return &nsRoute{count: partmap.StoredReplicas, sc: true}
	}
	r := &nsRoute{m: m, gen: gen, count: min(ni.ReplicaCount, partmap.StoredReplicas), sc: ni.SC}
	if i >= 0 && i < len(c.nsr) {
		c.nsr[i].Store(r)
	}
	return r
}

// replicas is where a router reads a partition's replicas: the view's map
// (mapReplicas), or a fixed list in tests.
type replicas interface {
	// replica returns the node at rank r, if the partition has one.
	replica(r int) (*partmap.Node, bool)
}

// mapReplicas reads partition pid of namespace h in m.
type mapReplicas struct {
	m   *partmap.Map
	h   partmap.NS
	pid uint32
}

func (s mapReplicas) replica(r int) (*partmap.Node, bool) { return s.m.Replica(s.h, s.pid, r) }

// sequenceNode returns the first active node at replica rank rt.seq or
// after it (wrapping over count ranks), moving rt.seq to its rank, as the
// official clients' getSequenceNode.
func sequenceNode[R replicas](rt *router, src R, count int) *partmap.Node {
	start := rt.seq
	for range count {
		if n, ok := src.replica(rt.seq % count); ok && n.Active {
			rt.prev = n.Name
			return n
		}
		rt.seq++
	}
	// None: the official client's sequence has gone round once (start +
	// the replica count), which is start again modulo the count.
	rt.seq = start
	return nil
}

// rackNode returns the node a PREFER_RACK read of namespace ns goes to, as
// the official clients' getRackNode: for each rack of racks in order, the
// first active replica on that rack from rank rt.seq on (wrapping) that
// is not the previous attempt's node (rt.seq then moves past it); if there
// is none, the first active replica from rt.seq on (sequenceNode), the
// previous node included.
func rackNode[R replicas](rt *router, src R, ns string, count int, racks []int) *partmap.Node {
	for _, rack := range racks {
		seq := rt.seq
		for range count {
			if n, ok := src.replica(seq % count); ok && n.Active && n.Name != rt.prev {
				if r, ok := n.Rack(ns); ok && r == rack {
					rt.prev = n.Name
					rt.seq = seq + 1
					return n
				}
			}
			seq++
		}
	}
	return sequenceNode(rt, src, count)
}

// execute runs cmd under policy p: routes each attempt by the shared map,
// retries network failures and timeouts on the next replica (SEQUENCE) or
// the master again (MASTER) within MaxRetries and TotalTimeout.
func (c *Client) execute(ctx context.Context, p *Policy, cmd *command) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.commands.Add(1)%sweepEvery == 0 {
		c.sweep()
	}
	if p.MaxRetries < 0 || p.SocketTimeout < 0 || p.TotalTimeout < 0 || p.SleepBetweenRetries < 0 || p.ReplicaPolicy > PREFER_RACK {
		return fmt.Errorf("record: policy %+v: %w", *p, ErrInvalid)
	}
	var deadline time.Time
	if p.TotalTimeout > 0 {
		deadline = time.Now().Add(p.TotalTimeout)
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	// cur is the connection of the running attempt, for cancellation: a
	// context that can be cancelled gets a watcher that cuts it short
	// (the only allocation it costs; context.Background() costs none).
	var cur *atomic.Pointer[conn]
	if ctx.Done() != nil {
		cur = new(atomic.Pointer[conn])
		stop := context.AfterFunc(ctx, func() {
			if cn := cur.Load(); cn != nil {
				cn.nc.SetDeadline(time.Unix(1, 0))
			}
		})
		defer stop()
	}
	pid := cmd.key.Digest.PartitionID()
	var rt router
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.retries.Add(1)
		}
		err := c.attempt(ctx, p, cmd, pid, &rt, deadline, cur)
		if err == nil || !retryable(err) {
			return err
		}
		last = err
		if p.ReplicaPolicy != MASTER {
			rt.seq++
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("record: %s: %w (last attempt: %w)", cmd.kind, err, last)
		}
		if attempt >= p.MaxRetries {
			if expired(deadline) {
				c.timeouts.Add(1)
				return fmt.Errorf("record: %s after %d attempts: %w (last attempt: %w)", cmd.kind, attempt+1, ErrTimeout, last)
			}
			return last
		}
		if p.SleepBetweenRetries > 0 {
			if !deadline.IsZero() && time.Until(deadline) < p.SleepBetweenRetries {
				c.timeouts.Add(1)
				return fmt.Errorf("record: %s after %d attempts: %w (last attempt: %w)", cmd.kind, attempt+1, ErrTimeout, last)
			}
			t := time.NewTimer(p.SleepBetweenRetries)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("record: %s: %w (last attempt: %w)", cmd.kind, ctx.Err(), last)
			case <-t.C:
			}
		}
		if expired(deadline) {
			c.timeouts.Add(1)
			return fmt.Errorf("record: %s after %d attempts: %w (last attempt: %w)", cmd.kind, attempt+1, ErrTimeout, last)
		}
	}
}

func expired(deadline time.Time) bool { return !deadline.IsZero() && !time.Now().Before(deadline) }

// retryable reports whether an attempt's error lets the command go on to
// the next attempt: a network error or timeout, no connection, no node, a
// namespace the view does not have (yet: a view opened a moment ago), the
// server's timeout result (as the official client, which retries result
// code 9 like a network timeout: e.g. a node whose proxy to the
// partition's unreachable master timed out), or a connection the server
// no longer counts as authenticated.
func retryable(err error) bool {
	return errors.Is(err, ErrNetwork) || errors.Is(err, ErrNoConnection) || errors.Is(err, ErrNoNode) ||
		errors.Is(err, tend.ErrNamespace) || errors.Is(err, ErrServerTimeout) || errors.Is(err, errSession)
}

// isWrite reports whether the command writes (PREFER_RACK routes it as
// SEQUENCE).
func (k kind) isWrite() bool { return k != kindGet && k != kindExists }

// attempt sends cmd once, to the node rt chooses under p.ReplicaPolicy.
func (c *Client) attempt(ctx context.Context, p *Policy, cmd *command, pid uint32, rt *router, deadline time.Time, cur *atomic.Pointer[conn]) error {
	if expired(deadline) {
		return fmt.Errorf("record: %s: %w", cmd.kind, ErrTimeout)
	}
	m := c.cl.Map()
	h, ok := m.Namespace(cmd.key.Namespace)
	if !ok {
		return fmt.Errorf("record: namespace %q: %w", cmd.key.Namespace, tend.ErrNamespace)
	}
	pol, count := c.routing(m, h, p.ReplicaPolicy, cmd.kind, rt.seq)
	src := mapReplicas{m, h, pid}
	var n *partmap.Node
	switch pol {
	case PREFER_RACK:
		n = rackNode(rt, src, cmd.key.Namespace, count, c.racks)
	case MASTER:
		// The master, or the next active replica while the master is
		// inactive; every attempt starts from the master.
		rt.seq = 0
		n = sequenceNode(rt, src, count)
	default:
		n = sequenceNode(rt, src, count)
	}
	if n == nil {
		return fmt.Errorf("record: %s partition %d: %w", cmd.key.Namespace, pid, ErrNoNode)
	}
	pool, err := c.pool(n)
	if err != nil {
		return err
	}
	ad := deadline
	if p.SocketTimeout > 0 {
		if s := time.Now().Add(p.SocketTimeout); ad.IsZero() || s.Before(ad) {
			ad = s
		}
	}
	cn, err := pool.get(ctx, ad)
	if err != nil {
		return err
	}
	pool.requests.Add(1)
	if cur != nil {
		cur.Store(cn)
		defer cur.Store(nil)
	}
	if err := cn.nc.SetDeadline(ad); err != nil {
		pool.discard(cn)
		return fmt.Errorf("%w: node %s: %w", ErrNetwork, n.Name, err)
	}
	if err := cmd.encode(cn, p); err != nil {
		pool.put(cn)
		return err
	}
	if _, err := cn.nc.Write(cn.wbuf); err != nil {
		pool.discard(cn)
		if tlsRefused(err) {
			return fmt.Errorf("record: node %s: send: %w: %w", n.Name, info.ErrTLS, err)
		}
		return fmt.Errorf("%w: node %s: send: %w", ErrNetwork, n.Name, err)
	}
	body, err := readReply(cn)
	if err != nil {
		pool.discard(cn)
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := cmd.decode(cn, body); err != nil {
		if errors.Is(err, ErrProtocol) {
			pool.discard(cn)
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if errors.Is(err, wire.ResultNotAuthenticated) {
			// The server does not count the connection as logged in: drop
			// it. With credentials, its session may have ended: forget the
			// session, so that the retry's new connection logs in.
			// Without, a retry cannot help (the view is configured
			// without the user the servers require).
			pool.discard(cn)
			if c.auth == nil {
				return err
			}
			c.auth.Forget(pool.addr.String())
			return fmt.Errorf("node %s: %w: %w", n.Name, errSession, err)
		}
		pool.put(cn)
		return err
	}
	pool.put(cn)
	return nil
}

// readReply reads one reply into cn.rbuf and returns its body. A stream
// that ends or times out early is a network error (the command may be
// retried); a TLS alert from the server (it refused the client's
// certificate) an error wrapping info.ErrTLS; a header that announces
// anything but a record message of at most MaxReply bytes is a protocol
// error.
func readReply(cn *conn) ([]byte, error) {
	body, err := wire.ReadMessage(cn.br, cn.rbuf[:0], MaxReply)
	if err != nil {
		if tlsRefused(err) {
			return nil, fmt.Errorf("record: reply: %w: %w", info.ErrTLS, err)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, wire.ErrTruncated) {
			return nil, netErr("reply", err)
		}
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if n := cn.br.Buffered(); n > 0 {
		// A server answers one request with one reply: bytes after it
		// would be taken for the next command's reply.
		return nil, fmt.Errorf("%w: %d bytes after the reply", ErrProtocol, n)
	}
	cn.rbuf = body
	return body, nil
}

// netErr wraps an error of a read: a timeout or a closed stream.
func netErr(what string, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %w: %s: socket timeout: %w", ErrTimeout, ErrNetwork, what, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrNetwork, what, err)
}
