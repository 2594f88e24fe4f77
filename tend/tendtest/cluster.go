// Package tendtest runs a simulated Aerospike cluster in-process for tests:
// every node is a TCP listener on 127.0.0.1 that answers the info protocol
// the way a server does for cluster tending (node, build, peers-*,
// partition-generation, replicas, ...) and serves single-record commands
// (message type 3: get, exists, put, add, append, touch, delete, operate
// with reads) on the records it stores.
//
// Records live on the nodes, per namespace and partition. A write executes
// on the partition's master and is copied to its other replicas that are
// up; a read executes on the receiving node when it is one of the
// partition's replicas. A request that reached a node not holding the
// partition in the needed role is answered as the right node would answer
// it (a server proxies it) and counted (Proxied). Whenever ownership
// changes (Rebalance, MovePartition, ClaimPartition, SetRegime,
// RemoveNode, RestartNode), every owner that is up receives the newest copy
// of its partitions any live node has: records follow their partitions.
//
// The simulator keeps, per node, exactly what that node reports: its peers
// list, its generations, and per namespace its regime and one ownership
// bitmap per replica index. Control methods change that state the way
// cluster events do (a node joins, leaves, a partition moves, a regime
// changes), bumping the generations a tender watches; expected-state
// accessors (Master, Replicas, Nodes) tell a test what a correct tender
// must conclude. Faults (delays, dropped connections, malformed values)
// can be injected per node.
//
// Production features are simulated too (see Options): TLS listeners
// with certificates from the simulator's own authority (CertPool,
// ClientCertificate) and per-node TLS names answered in peers-tls-std;
// security with users and passwords over the admin protocol (login,
// session tokens with a TTL, PKI); per-node, per-namespace rack ids; and
// alternate addresses answered in peers-clear-alt and peers-tls-alt.
//
// A Cluster is safe for concurrent use. Close stops every goroutine it
// started.
package tendtest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend/info"
)

// Errors returned by the simulator; they are wrapped with details.
var (
	// ErrInvalidOptions reports unusable Options.
	ErrInvalidOptions = errors.New("tendtest: invalid options")
	// ErrNoSuchNode reports a node index that does not exist.
	ErrNoSuchNode = errors.New("tendtest: no such node")
	// ErrNodeRemoved reports an operation on a node that was removed.
	ErrNodeRemoved = errors.New("tendtest: node was removed")
	// ErrNodeNotMember reports a node that does not hold partitions.
	ErrNodeNotMember = errors.New("tendtest: node is not a cluster member")
	// ErrNoSuchNamespace reports an unknown namespace.
	ErrNoSuchNamespace = errors.New("tendtest: no such namespace")
	// ErrBadPartition reports a partition id or replica index out of range.
	ErrBadPartition = errors.New("tendtest: partition or replica index out of range")
	// ErrNoLiveNodes reports a rebalance with no node up.
	ErrNoLiveNodes = errors.New("tendtest: no live node to rebalance onto")
	// ErrClosed reports use of a closed Cluster.
	ErrClosed = errors.New("tendtest: cluster closed")
)

// DefaultBuild is the build string nodes report when Options.Build is
// empty. Clients send "user-agent-set" to servers of 8.1 and later, so the
// default exercises that path too.
const DefaultBuild = "8.1.0.0"

// DefaultNamespace is the namespace created when Options.Namespaces is
// empty.
const DefaultNamespace = "test"

// maxRequestBody bounds an info request a node accepts.
const maxRequestBody = 1 << 20

// features is the "features" value every node reports.
const features = "batch-any;batch-index;blob-bits;cdt-list;cdt-map;cluster-stable;float;geo;" +
	"sindex-exists;peers;pipelining;pquery;pscans;query-show;relaxed-sc;replicas;" +
	"replicas-all;replicas-master;replicas-max;truncate-namespace;udf"

// NamespaceSpec describes one namespace of the simulated cluster.
type NamespaceSpec struct {
	// Name is the namespace name (1 to 31 bytes, none of ":;,").
	Name string
	// ReplicationFactor is the configured number of copies (1..256;
	// 0 means 2). The effective factor is capped by the member count, as
	// on a real cluster.
	ReplicationFactor int
	// SC makes the namespace strong-consistency: nodes report a non-zero
	// regime that every rebalance raises.
	SC bool
	// DefaultTTL is the TTL of records written with TTL 0 (the namespace
	// default); 0 means such records never expire.
	DefaultTTL time.Duration
}

// Options configures New.
type Options struct {
	// Nodes is the number of nodes to start (0 means 1).
	Nodes int
	// Namespaces lists the namespaces (empty means one AP namespace
	// DefaultNamespace with replication factor 2).
	Namespaces []NamespaceSpec
	// ClusterName is what "cluster-name" answers; empty answers "null" as
	// a server without a configured name does.
	ClusterName string
	// Build is what "build" answers (empty means DefaultBuild).
	Build string
	// Logger receives debug records about connections and cluster events
	// (nil: discard).
	Logger *slog.Logger
	// Clock is the time records expire by (nil: time.Now).
	Clock func() time.Time
	// RecordTrace, when set, is called when node has answered a record
	// message, before the reply is sent, with copies of the request body
	// and of the complete reply (protocol header included). Tests use it
	// to see what a client sent. It is called from the node's connection
	// goroutine, outside any lock.
	RecordTrace func(node int, request, reply []byte)

	// TLS, when not nil, gives every node TLS listeners (see TLSOptions);
	// nil: clear text only.
	TLS *TLSOptions
	// Users, when not nil, enables security: user name -> password. Every
	// connection must then log in (admin protocol LOGIN with the user and
	// admin.HashPassword of the password, or PKI: the TLS client
	// certificate's common name as the user, which must be listed here)
	// or authenticate with a session token before any info or record
	// command; an info command before that closes the connection, a record
	// command gets result 80 (not authenticated) first. Sessions are per
	// node: a token is valid on the node that issued it, until SessionTTL
	// or a RestartNode. An empty map enables security with no user.
	Users map[string]string
	// SessionTTL is the session time to live a login grants, rounded down
	// to whole seconds (0: 24 hours, Aerospike's default session-ttl). A
	// token is refused (result 66, expired session) once it is older, by
	// Clock.
	SessionTTL time.Duration
	// Racks gives node i the rack id Racks[i] in every namespace ("rack-ids"
	// answers it); nodes beyond the slice are on rack 0. SetRack changes a
	// node's rack per namespace. Replica placement is rack-aware (see
	// Rebalance).
	Racks []int
	// Alternate gives every node a second listener per service (clear
	// text, and TLS when on) on another port of 127.0.0.1: the alternate
	// access address that "peers-clear-alt", "service-clear-alt",
	// "peers-tls-alt" and "service-tls-alt" answer. Without it the
	// alternate lists answer the standard addresses.
	Alternate bool
}

// NodeInfo describes one simulated node.
type NodeInfo struct {
	// Index is the node's index for the control methods.
	Index int
	// Name is the node name, 15 uppercase hex digits.
	Name string
	// Addr is the node's clear-text host:port ("" for a TLS-only node).
	Addr string
	// TLSName is the name in the node's certificate ("" without TLS).
	TLSName string
	// TLSAddr is the node's TLS host:port ("" without TLS).
	TLSAddr string
	// AltAddr and AltTLSAddr are the node's alternate clear-text and TLS
	// host:port (Options.Alternate; "" otherwise or when the service is
	// off).
	AltAddr, AltTLSAddr string
	// Up is true while the node accepts connections.
	Up bool
	// Member is true while the node is part of the cluster (listed in its
	// peers' lists, holding partitions) as of the last rebalance.
	Member bool
	// Removed is true once RemoveNode was called for the node.
	Removed bool
}

type nsState struct {
	spec NamespaceSpec
	rf   int // effective replication factor as of the last rebalance
}

// Cluster is a running simulated cluster.
type Cluster struct {
	log   *slog.Logger
	build string
	cname string
	clock func() time.Time
	trace func(node int, request, reply []byte)

	sec security // TLS, users, racks, alternate addresses

	mu     sync.Mutex
	closed bool
	ns     []nsState
	nodes  []*node
	// dataSeq numbers record writes: partition copies carry the number of
	// the last write they received (partData.version).
	dataSeq uint64

	wg sync.WaitGroup
}

type node struct {
	idx     int
	name    string
	tlsName string
	tlsCfg  *tls.Config          // the TLS endpoints' server configuration
	addrs   [numEndpoints]string // "" for an endpoint that is off
	lns     [numEndpoints]net.Listener
	stop    chan struct{} // closed when the node stops
	conns   map[net.Conn]struct{}
	up      bool
	member  bool
	removed bool

	peersGen, partGen, rebalanceGen int64
	peers                           []int // node indexes in this node's peers list

	claims map[string][]info.Bitmap // namespace -> one bitmap per replica index
	regime map[string]uint32

	// data holds the node's partition copies: namespace -> partition id
	// -> copy (nil: none).
	data map[string][]*partData

	requests   map[string]uint64
	messages   uint64
	nonInfo    uint64
	accepted   uint64
	epAccepts  [numEndpoints]uint64
	recordMsgs uint64
	proxied    uint64

	delay     time.Duration
	dropNext  int
	malformed map[string]string

	racks    map[string]int     // namespace -> rack id
	sessions map[string]session // session token -> session (Options.Users)
	auth     AuthStats
}

// New starts a simulated cluster.
func New(opts Options) (*Cluster, error) {
	if opts.Nodes < 0 {
		return nil, fmt.Errorf("%w: Nodes = %d", ErrInvalidOptions, opts.Nodes)
	}
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	if len(opts.Namespaces) == 0 {
		opts.Namespaces = []NamespaceSpec{{Name: DefaultNamespace, ReplicationFactor: 2}}
	}
	if opts.Build == "" {
		opts.Build = DefaultBuild
	}
	if _, err := info.ParseBuild(opts.Build); err != nil {
		return nil, fmt.Errorf("%w: Build %q: %w", ErrInvalidOptions, opts.Build, err)
	}
	if strings.ContainsAny(opts.ClusterName, "\n\t") {
		return nil, fmt.Errorf("%w: ClusterName %q has a control character", ErrInvalidOptions, opts.ClusterName)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{log: log, build: opts.Build, cname: opts.ClusterName, clock: opts.Clock, trace: opts.RecordTrace}
	if err := c.sec.init(opts); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, spec := range opts.Namespaces {
		if spec.Name == "" || len(spec.Name) > info.MaxNamespaceLen || strings.ContainsAny(spec.Name, ":;,\n\t") {
			return nil, fmt.Errorf("%w: namespace name %q", ErrInvalidOptions, spec.Name)
		}
		if seen[spec.Name] {
			return nil, fmt.Errorf("%w: namespace %q listed twice", ErrInvalidOptions, spec.Name)
		}
		seen[spec.Name] = true
		if spec.ReplicationFactor == 0 {
			spec.ReplicationFactor = 2
		}
		if spec.ReplicationFactor < 1 || spec.ReplicationFactor > info.MaxReplicaCount {
			return nil, fmt.Errorf("%w: namespace %q replication factor %d", ErrInvalidOptions, spec.Name, spec.ReplicationFactor)
		}
		c.ns = append(c.ns, nsState{spec: spec})
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for range opts.Nodes {
		if _, err := c.startNewNodeLocked(); err != nil {
			c.closeLocked()
			return nil, err
		}
	}
	if err := c.rebalanceLocked(); err != nil {
		c.closeLocked()
		return nil, err
	}
	return c, nil
}

// nodeName builds a node name that looks like a real one: 15 uppercase
// hex digits.
func nodeName(idx int) string {
	return fmt.Sprintf("BB9%04X%08X", idx+1, 0x0011AC42)
}

// startNewNodeLocked creates node len(c.nodes), listening on a fresh port.
func (c *Cluster) startNewNodeLocked() (*node, error) {
	n := &node{
		idx:       len(c.nodes),
		name:      nodeName(len(c.nodes)),
		claims:    map[string][]info.Bitmap{},
		regime:    map[string]uint32{},
		requests:  map[string]uint64{},
		malformed: map[string]string{},
		data:      map[string][]*partData{},
		member:    true,
		racks:     map[string]int{},
		sessions:  map[string]session{},
	}
	if n.idx < len(c.sec.racks) {
		for _, ns := range c.ns {
			n.racks[ns.spec.Name] = c.sec.racks[n.idx]
		}
	}
	for ep := range Endpoint(numEndpoints) {
		if c.sec.enabled(ep) {
			n.addrs[ep] = "127.0.0.1:0"
		}
	}
	if c.sec.tls != nil {
		n.tlsName = nodeTLSName(n.idx)
		cfg, err := c.sec.serverConfig(n.tlsName)
		if err != nil {
			return nil, err
		}
		n.tlsCfg = cfg
	}
	if err := c.listenLocked(n); err != nil {
		return nil, err
	}
	c.nodes = append(c.nodes, n)
	c.log.Debug("tendtest node started", "node", n.name, "addrs", n.addrs)
	return n, nil
}

// listenLocked opens node n's listeners on n.addrs (port 0 at the first
// start, the old ports on a restart) and starts their accept loops.
func (c *Cluster) listenLocked(n *node) error {
	var lns [numEndpoints]net.Listener
	for ep, addr := range n.addrs {
		if addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				if l != nil {
					_ = l.Close()
				}
			}
			return fmt.Errorf("tendtest: node %d listen on %s (%v): %w", n.idx, addr, Endpoint(ep), err)
		}
		lns[ep] = ln
	}
	n.up = true
	n.stop = make(chan struct{})
	n.conns = map[net.Conn]struct{}{}
	for ep, ln := range lns {
		if ln == nil {
			continue
		}
		n.lns[ep] = ln
		n.addrs[ep] = ln.Addr().String()
		c.wg.Add(1)
		go c.acceptLoop(n, Endpoint(ep), ln, n.stop)
	}
	return nil
}

func (c *Cluster) stopNodeLocked(n *node) {
	if !n.up {
		return
	}
	n.up = false
	close(n.stop)
	for _, ln := range n.lns {
		if ln != nil {
			_ = ln.Close()
		}
	}
	for conn := range n.conns {
		_ = conn.Close()
	}
	n.conns = map[net.Conn]struct{}{}
}

// Close stops every node and waits for all goroutines to end.
func (c *Cluster) Close() error {
	c.mu.Lock()
	c.closeLocked()
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

func (c *Cluster) closeLocked() {
	c.closed = true
	for _, n := range c.nodes {
		c.stopNodeLocked(n)
	}
}

// nodeLocked returns node i for a control method; c.mu must be held.
func (c *Cluster) nodeLocked(i int) (*node, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if i < 0 || i >= len(c.nodes) {
		return nil, fmt.Errorf("%w: index %d (have %d nodes)", ErrNoSuchNode, i, len(c.nodes))
	}
	return c.nodes[i], nil
}

func (c *Cluster) nsLocked(name string) (*nsState, error) {
	for i := range c.ns {
		if c.ns[i].spec.Name == name {
			return &c.ns[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoSuchNamespace, name)
}

// AddNode starts a new node, makes it a member and rebalances (every
// member's peers and partition generations change). It returns the new
// node's index.
func (c *Cluster) AddNode() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, ErrClosed
	}
	n, err := c.startNewNodeLocked()
	if err != nil {
		return 0, err
	}
	if err := c.rebalanceLocked(); err != nil {
		return 0, err
	}
	return n.idx, nil
}

// StopNode makes node i unreachable: its listener and connections are
// closed. Its state is kept and the other nodes still list it until the
// next Rebalance, as a real cluster does until it notices.
func (c *Cluster) StopNode(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return err
	}
	c.stopNodeLocked(n)
	c.log.Debug("tendtest node stopped", "node", n.name)
	return nil
}

// RestartNode makes a stopped node reachable again on its old addresses,
// with its old state, except that it has forgotten every session it
// issued (clients must log in again). It does not rebalance.
func (c *Cluster) RestartNode(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return err
	}
	if n.removed {
		return fmt.Errorf("%w: node %d", ErrNodeRemoved, i)
	}
	if n.up {
		return nil
	}
	if err := c.listenLocked(n); err != nil {
		return err
	}
	clear(n.sessions)
	c.migrateLocked()
	c.log.Debug("tendtest node restarted", "node", n.name)
	return nil
}

// RemoveNode stops node i for good and rebalances the cluster without it:
// it disappears from every peers list (bumping peers-generation) and its
// partitions move to the remaining members.
func (c *Cluster) RemoveNode(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return err
	}
	if n.removed {
		return fmt.Errorf("%w: node %d", ErrNodeRemoved, i)
	}
	c.stopNodeLocked(n)
	n.removed = true
	n.member = false
	n.data = map[string][]*partData{}
	return c.rebalanceLocked()
}

// Rebalance re-forms the cluster from the nodes that are up: they become
// the members, each lists the others as peers, and every namespace's
// partitions are assigned deterministically — replica r of partition p
// goes to member (p+r) mod n, members in index order — with the effective
// replication factor min(configured, n). With racks (Options.Racks,
// SetRack) placement is rack-aware: the master stays member p mod n and
// each further replica goes to the next member in that order on a rack
// the partition has no copy on yet, while there is one. Strong-consistency namespaces get
// a regime one above any regime reported so far. Nodes whose answers
// change get their generations bumped.
func (c *Cluster) Rebalance() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return c.rebalanceLocked()
}

// place appends the rf owners of partition p of namespace ns to dst:
// the master is members[p mod n]; each further replica is the next member
// in ring order (from the master) on a rack no earlier replica is on, or,
// when every rack is used, the next member not chosen yet. With every node
// on one rack this is member (p+r) mod n for replica r.
func place(dst, members []*node, ns string, p uint32, rf int) []*node {
	n := len(members)
	start := int(p) % n
	dst = append(dst, members[start])
	for len(dst) < rf {
		var pick, fallback *node
		for k := 1; k < n && pick == nil; k++ {
			m := members[(start+k)%n]
			if slices.Contains(dst, m) {
				continue
			}
			if fallback == nil {
				fallback = m
			}
			if !slices.ContainsFunc(dst, func(o *node) bool { return o.racks[ns] == m.racks[ns] }) {
				pick = m
			}
		}
		if pick == nil {
			pick = fallback
		}
		dst = append(dst, pick)
	}
	return dst
}

func (c *Cluster) rebalanceLocked() error {
	var members []*node
	for _, n := range c.nodes {
		n.member = n.up && !n.removed
		if n.member {
			members = append(members, n)
		}
	}
	if len(members) == 0 {
		return ErrNoLiveNodes
	}
	for _, n := range members {
		var peers []int
		for _, m := range members {
			if m != n {
				peers = append(peers, m.idx)
			}
		}
		if !slices.Equal(peers, n.peers) {
			n.peers = peers
			n.peersGen++
		}
	}
	changed := make(map[*node]bool)
	for i := range c.ns {
		ns := &c.ns[i]
		ns.rf = min(ns.spec.ReplicationFactor, len(members))
		var regime uint32
		if ns.spec.SC {
			for _, n := range c.nodes {
				regime = max(regime, n.regime[ns.spec.Name])
			}
			regime++
		}
		fresh := make(map[*node][]info.Bitmap, len(members))
		for _, n := range members {
			fresh[n] = make([]info.Bitmap, ns.rf)
		}
		owners := make([]*node, 0, ns.rf)
		for p := range uint32(partmap.Partitions) {
			owners = place(owners[:0], members, ns.spec.Name, p, ns.rf)
			for r, owner := range owners {
				fresh[owner][r].Set(p)
			}
		}
		for _, n := range members {
			if !slices.Equal(fresh[n], n.claims[ns.spec.Name]) || n.regime[ns.spec.Name] != regime {
				changed[n] = true
			}
			n.claims[ns.spec.Name] = fresh[n]
			n.regime[ns.spec.Name] = regime
		}
	}
	for _, n := range members {
		n.rebalanceGen++
		if changed[n] {
			n.partGen++
		}
	}
	c.migrateLocked()
	c.log.Debug("tendtest rebalanced", "members", len(members))
	return nil
}

// MovePartition makes node toNode the holder of replica replicaIndex of
// partition pid in namespace ns. If toNode already held another replica
// of the partition, the two holders swap. Both affected nodes bump their
// partition-generation.
func (c *Cluster) MovePartition(ns string, pid uint32, replicaIndex, toNode int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	to, st, err := c.partitionArgsLocked(ns, pid, replicaIndex, toNode)
	if err != nil {
		return err
	}
	if !to.member {
		return fmt.Errorf("%w: node %d", ErrNodeNotMember, toNode)
	}
	name := st.spec.Name
	var from *node
	for _, n := range c.nodes {
		if n.member && len(n.claims[name]) > replicaIndex && n.claims[name][replicaIndex].Has(pid) {
			from = n
			break
		}
	}
	if from == to {
		return nil
	}
	other := -1 // replica index toNode held before, if any
	for r, b := range to.claims[name] {
		if b.Has(pid) {
			other = r
			break
		}
	}
	ensureLen(to, name, st.rf)
	to.claims[name][replicaIndex].Set(pid)
	if other >= 0 {
		to.claims[name][other].Clear(pid)
	}
	if from != nil {
		from.claims[name][replicaIndex].Clear(pid)
		if other >= 0 {
			ensureLen(from, name, other+1)
			from.claims[name][other].Set(pid)
		}
		from.partGen++
	}
	to.partGen++
	c.migratePartLocked(st, pid)
	return nil
}

// ClaimPartition makes node additionally report replica replicaIndex of
// partition pid, without taking it from its current holder — a stale or
// conflicting claim such as a node cut off from the cluster would make.
// Which claim wins is decided by the regimes (see SetRegime). The node's
// partition-generation is bumped.
func (c *Cluster) ClaimPartition(ns string, pid uint32, replicaIndex, node int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, st, err := c.partitionArgsLocked(ns, pid, replicaIndex, node)
	if err != nil {
		return err
	}
	ensureLen(n, st.spec.Name, replicaIndex+1)
	n.claims[st.spec.Name][replicaIndex].Set(pid)
	n.partGen++
	c.migratePartLocked(st, pid)
	return nil
}

func ensureLen(n *node, ns string, count int) {
	for len(n.claims[ns]) < count {
		n.claims[ns] = append(n.claims[ns], info.Bitmap{})
	}
}

func (c *Cluster) partitionArgsLocked(ns string, pid uint32, replicaIndex, node int) (*node, *nsState, error) {
	n, err := c.nodeLocked(node)
	if err != nil {
		return nil, nil, err
	}
	if n.removed {
		return nil, nil, fmt.Errorf("%w: node %d", ErrNodeRemoved, node)
	}
	st, err := c.nsLocked(ns)
	if err != nil {
		return nil, nil, err
	}
	if pid >= partmap.Partitions {
		return nil, nil, fmt.Errorf("%w: partition %d (want < %d)", ErrBadPartition, pid, partmap.Partitions)
	}
	if replicaIndex < 0 || replicaIndex >= st.rf {
		return nil, nil, fmt.Errorf("%w: replica index %d (namespace %q has %d replicas)", ErrBadPartition, replicaIndex, ns, st.rf)
	}
	return n, st, nil
}

// SetRegime sets the regime node reports for namespace ns and bumps its
// partition-generation. Regimes matter for strong-consistency namespaces:
// when nodes claim the same partition, the higher regime wins.
func (c *Cluster) SetRegime(ns string, node int, regime uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, name, err := c.nodeNSLocked(node, ns)
	if err != nil {
		return err
	}
	n.regime[name] = regime
	n.partGen++
	c.migrateLocked()
	return nil
}

// Regime returns the regime node reports for namespace ns.
func (c *Cluster) Regime(ns string, node int) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, name, err := c.nodeNSLocked(node, ns)
	if err != nil {
		return 0, err
	}
	return n.regime[name], nil
}

// nodeNSLocked returns node i and the name of namespace ns for a control
// method; c.mu must be held.
func (c *Cluster) nodeNSLocked(i int, ns string) (*node, string, error) {
	n, err := c.nodeLocked(i)
	if err != nil {
		return nil, "", err
	}
	st, err := c.nsLocked(ns)
	if err != nil {
		return nil, "", err
	}
	return n, st.spec.Name, nil
}

// Replicas returns the expected owners of partition pid of namespace ns:
// element r is the name of the node a correct tender (tend.MergeClaims)
// maps replica r to ("" when no node claims it). Only the nodes that were
// not removed count. The partition's regime is the highest regime any of
// them claims it with, at any rank; claims of lower regimes are ignored.
// Among the remaining claims on a rank, a member beats a non-member and
// then the lower node index wins (real tenders resolve such ties by
// answer order, so tests should avoid them). The slice has one element
// per replica index of the effective replication factor.
func (c *Cluster) Replicas(ns string, pid uint32) ([]string, error) {
	return c.replicas(ns, pid, true)
}

// ClientReplicas returns the owners the official clients conclude for
// partition pid of namespace ns (tendtest.MergeReplicas follows them):
// each rank on its own, the claim with the highest regime wins it, ties as
// in Replicas. It differs from Replicas where a node claims one rank of a
// partition with a regime below another node's claim on another rank:
// the official clients keep such a claim (when it arrives first), a
// correct tender ignores it.
func (c *Cluster) ClientReplicas(ns string, pid uint32) ([]string, error) {
	return c.replicas(ns, pid, false)
}

// replicas is Replicas (byPartition: the regime rule per partition) and
// ClientReplicas (per rank).
func (c *Cluster) replicas(ns string, pid uint32, byPartition bool) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.nsLocked(ns)
	if err != nil {
		return nil, err
	}
	if pid >= partmap.Partitions {
		return nil, fmt.Errorf("%w: partition %d", ErrBadPartition, pid)
	}
	var owners []*node
	if byPartition {
		owners = c.ownersLocked(st, pid)
	} else {
		owners = c.rankOwnersLocked(st, pid, 0)
	}
	out := make([]string, len(owners))
	for r, n := range owners {
		if n != nil {
			out[r] = n.name
		}
	}
	return out, nil
}

// beats reports whether claim a wins over claim b (see Replicas).
func beats(a, b *node, ns string) bool {
	if a.regime[ns] != b.regime[ns] {
		return a.regime[ns] > b.regime[ns]
	}
	if a.member != b.member {
		return a.member
	}
	return a.idx < b.idx
}

// Master returns the expected master node name of partition pid of
// namespace ns ("" if none), i.e. Replicas(ns, pid)[0].
func (c *Cluster) Master(ns string, pid uint32) (string, error) {
	r, err := c.Replicas(ns, pid)
	if err != nil {
		return "", err
	}
	if len(r) == 0 {
		return "", nil
	}
	return r[0], nil
}

// Namespaces returns the namespace specs, with defaults applied.
func (c *Cluster) Namespaces() []NamespaceSpec {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NamespaceSpec, len(c.ns))
	for i, ns := range c.ns {
		out[i] = ns.spec
	}
	return out
}

// ReplicationFactor returns the effective replication factor of ns as of
// the last rebalance.
func (c *Cluster) ReplicationFactor(ns string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.nsLocked(ns)
	if err != nil {
		return 0, err
	}
	return st.rf, nil
}

// Nodes describes every node ever started, removed ones included, in index
// order.
func (c *Cluster) Nodes() []NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NodeInfo, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = NodeInfo{Index: n.idx, Name: n.name, Addr: n.addrs[EndpointClear], TLSName: n.tlsName,
			TLSAddr: n.addrs[EndpointTLS], AltAddr: n.addrs[EndpointClearAlt], AltTLSAddr: n.addrs[EndpointTLSAlt],
			Up: n.up, Member: n.member, Removed: n.removed}
	}
	return out
}

// Seeds returns the clear-text host:port of every node that is up and
// not removed (none for a TLS-only cluster: see TLSSeeds).
func (c *Cluster) Seeds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range c.nodes {
		if n.up && !n.removed && n.addrs[EndpointClear] != "" {
			out = append(out, n.addrs[EndpointClear])
		}
	}
	return out
}

// PartitionGeneration returns node i's current partition-generation.
func (c *Cluster) PartitionGeneration(i int) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return 0, err
	}
	return n.partGen, nil
}

// PeersGeneration returns node i's current peers-generation.
func (c *Cluster) PeersGeneration(i int) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return 0, err
	}
	return n.peersGen, nil
}

// Requests returns, for node i, how many times each info command was
// requested (keyed by the command name before any ':' parameters).
func (c *Cluster) Requests(i int) map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		return map[string]uint64{}
	}
	return maps.Clone(c.nodes[i].requests)
}

// Messages returns how many info messages node i received (one message may
// carry several commands).
func (c *Cluster) Messages(i int) uint64 {
	return c.nodeCounter(i, func(n *node) uint64 { return n.messages })
}

// NonInfoMessages returns how many messages node i received that it does
// not serve — neither info, nor a well-formed admin (login) or record
// message (other types, a message it cannot decode); the simulator closes
// the connection on each.
func (c *Cluster) NonInfoMessages(i int) uint64 {
	return c.nodeCounter(i, func(n *node) uint64 { return n.nonInfo })
}

// Connections returns how many connections node i accepted (dropped ones
// included).
func (c *Cluster) Connections(i int) uint64 {
	return c.nodeCounter(i, func(n *node) uint64 { return n.accepted })
}

// nodeCounter reads one of node i's counters under the lock (0 for an
// index out of range).
func (c *Cluster) nodeCounter(i int, get func(*node) uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		return 0
	}
	return get(c.nodes[i])
}

// InfoRequests returns the total number of info messages all nodes
// received.
func (c *Cluster) InfoRequests() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total uint64
	for _, n := range c.nodes {
		total += n.messages
	}
	return total
}

// ResetCounters zeroes every node's request, message, connection
// (EndpointConnections too), record, proxy and security (AuthStats)
// counters.
func (c *Cluster) ResetCounters() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		n.requests = map[string]uint64{}
		n.messages, n.nonInfo, n.accepted = 0, 0, 0
		n.epAccepts = [numEndpoints]uint64{}
		n.auth = AuthStats{}
		n.recordMsgs, n.proxied = 0, 0
	}
}

// SetDelay makes node i wait d before answering each info or record
// message.
func (c *Cluster) SetDelay(i int, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return err
	}
	n.delay = max(d, 0)
	return nil
}

// DropNextConnections makes node i close its next n accepted connections
// immediately, without reading from them.
func (c *Cluster) DropNextConnections(i, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd, err := c.nodeLocked(i)
	if err != nil {
		return err
	}
	nd.dropNext = max(n, 0)
	return nil
}

// SetMalformed makes node i answer command with value instead of the real
// value, until ClearFaults. command matches either the exact requested
// name or the name before its ':' parameters. The value is sent verbatim,
// so it may even break the reply framing (e.g. contain '\n').
func (c *Cluster) SetMalformed(i int, command, value string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return err
	}
	n.malformed[command] = value
	return nil
}

// ClearFaults removes node i's delay, pending drops and malformed values.
func (c *Cluster) ClearFaults(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return err
	}
	n.delay, n.dropNext = 0, 0
	n.malformed = map[string]string{}
	return nil
}

func (c *Cluster) acceptLoop(n *node, ep Endpoint, ln net.Listener, stop chan struct{}) {
	defer c.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.closed || !n.up || n.stop != stop {
			c.mu.Unlock()
			_ = conn.Close()
			return
		}
		n.accepted++
		n.epAccepts[ep]++
		if n.dropNext > 0 {
			n.dropNext--
			c.mu.Unlock()
			_ = conn.Close()
			c.log.Debug("tendtest dropped connection", "node", n.name)
			continue
		}
		n.conns[conn] = struct{}{}
		var tcfg *tls.Config
		if ep.TLS() {
			tcfg = n.tlsCfg
		}
		c.wg.Add(1)
		c.mu.Unlock()
		go c.serve(n, conn, tcfg, stop)
	}
}

func (c *Cluster) serve(n *node, raw net.Conn, tcfg *tls.Config, stop chan struct{}) {
	defer c.wg.Done()
	defer func() {
		_ = raw.Close()
		c.mu.Lock()
		delete(n.conns, raw)
		c.mu.Unlock()
	}()
	conn := raw
	if tcfg != nil {
		tc, ok := c.handshake(n, raw, tcfg)
		if !ok {
			return
		}
		conn = tc
	}
	cs := c.sec.newConnState(conn)
	var buf, out []byte
	var msg wire.Message
	for {
		h, err := info.ReadHeader(conn)
		if err != nil {
			return
		}
		if h.Version == info.ProtoVersion && h.Type == info.TypeAdmin {
			if !c.serveAdmin(n, conn, h, &cs, stop) {
				return
			}
			continue
		}
		if !cs.authed {
			c.refuseUnauthenticated(n, conn, h)
			return
		}
		if h.Version == info.ProtoVersion && h.Type == info.TypeMessage {
			ph := wire.ProtoHeader{Version: h.Version, Type: h.Type, Length: h.Length}
			var body []byte
			if err = ph.Validate(maxRecordBody); err == nil {
				if body, err = info.ReadBody(conn, h, buf); err == nil {
					buf = body[:0]
					err = msg.Decode(body)
				}
			}
			if err != nil {
				c.mu.Lock()
				n.nonInfo++
				c.mu.Unlock()
				c.log.Debug("tendtest bad record message", "node", n.name, "err", err)
				return
			}
			reply, delay, ok := c.answerRecord(n, &msg, stop, out[:0])
			if !ok || !sleep(delay, stop) {
				return
			}
			out = reply[:0]
			if c.trace != nil {
				// Before the reply leaves: a client that got its reply
				// finds its request traced.
				c.trace(n.idx, bytes.Clone(buf[:h.Length]), bytes.Clone(reply))
			}
			if _, err := conn.Write(reply); err != nil {
				return
			}
			continue
		}
		if h.Version != info.ProtoVersion || h.Type != info.TypeInfo {
			c.mu.Lock()
			n.nonInfo++
			c.mu.Unlock()
			c.log.Debug("tendtest non-info message", "node", n.name, "version", h.Version, "type", h.Type)
			return
		}
		if h.Length > maxRequestBody {
			return
		}
		body, err := info.ReadBody(conn, h, buf)
		if err != nil {
			return
		}
		buf = body[:0]
		reply, delay, ok := c.answer(n, info.ParseRequest(body), stop)
		if !ok || !sleep(delay, stop) {
			return
		}
		msg, err := info.AppendMessage(nil, reply)
		if err != nil {
			return
		}
		if _, err := conn.Write(msg); err != nil {
			return
		}
	}
}

// sleep waits d, or until stop is closed (then it returns false).
func sleep(d time.Duration, stop chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// answer builds the reply body for one info message.
func (c *Cluster) answer(n *node, names []string, stop chan struct{}) ([]byte, time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || n.stop != stop {
		return nil, 0, false
	}
	n.messages++
	if len(names) == 0 {
		names = []string{"node", "build", "edition", "version", "cluster-name"}
	}
	var body []byte
	for _, name := range names {
		base, _, _ := strings.Cut(name, ":")
		n.requests[base]++
		value, ok := n.malformed[name]
		if !ok {
			value, ok = n.malformed[base]
		}
		if !ok {
			value = c.valueLocked(n, base)
		}
		body = info.AppendReplyLine(body, name, value)
	}
	return body, n.delay, true
}

// valueLocked is node n's answer to one info command.
func (c *Cluster) valueLocked(n *node, cmd string) string {
	switch cmd {
	case info.CmdNode, "name":
		return n.name
	case info.CmdBuild:
		return c.build
	case "edition":
		return "Aerospike Enterprise Edition"
	case "version":
		return "Aerospike Enterprise Edition build " + c.build
	case info.CmdFeatures:
		return features
	case info.CmdClusterName:
		if c.cname == "" {
			return "null"
		}
		return c.cname
	case info.CmdPartitionGeneration:
		return strconv.FormatInt(n.partGen, 10)
	case info.CmdPeersGeneration:
		return strconv.FormatInt(n.peersGen, 10)
	case info.CmdRebalanceGeneration:
		return strconv.FormatInt(n.rebalanceGen, 10)
	case info.CmdPeersClearStd, "alumni-clear-std":
		return info.FormatPeers(c.peersLocked(n, EndpointClear))
	case info.CmdPeersClearAlt, "alumni-clear-alt":
		return info.FormatPeers(c.peersLocked(n, c.sec.alt(EndpointClearAlt)))
	case info.CmdPeersTLSStd, "alumni-tls-std":
		return info.FormatPeers(c.peersLocked(n, EndpointTLS))
	case info.CmdPeersTLSAlt, "alumni-tls-alt":
		return info.FormatPeers(c.peersLocked(n, c.sec.alt(EndpointTLSAlt)))
	case info.CmdServiceClearStd, "service":
		return n.addrs[EndpointClear]
	case info.CmdServiceClearAlt:
		return n.addrs[c.sec.alt(EndpointClearAlt)]
	case info.CmdServiceTLSStd:
		return n.addrs[EndpointTLS]
	case info.CmdServiceTLSAlt:
		return n.addrs[c.sec.alt(EndpointTLSAlt)]
	case "services", "services-alternate":
		ep := EndpointClear
		if cmd == "services-alternate" {
			ep = c.sec.alt(EndpointClearAlt)
		}
		var addrs []string
		for _, p := range n.peers {
			if a := c.nodes[p].addrs[ep]; a != "" {
				addrs = append(addrs, a)
			}
		}
		return strings.Join(addrs, ";")
	case info.CmdReplicas:
		return info.FormatReplicas(c.replicasLocked(n))
	case info.CmdReplicasAll:
		return info.FormatReplicasAll(c.replicasLocked(n))
	case "replicas-master":
		var parts []string
		for _, r := range c.replicasLocked(n) {
			parts = append(parts, r.Namespace+":"+r.Bitmaps[0].Base64())
		}
		return strings.Join(parts, ";")
	case info.CmdRackIDs:
		var parts []string
		for _, ns := range c.ns {
			parts = append(parts, ns.spec.Name+":"+strconv.Itoa(n.racks[ns.spec.Name]))
		}
		return strings.Join(parts, ";")
	case "namespaces":
		var parts []string
		for _, ns := range c.ns {
			parts = append(parts, ns.spec.Name)
		}
		return strings.Join(parts, ";")
	case "status", "user-agent-set":
		return "ok"
	case "statistics":
		members := 0
		for _, m := range c.nodes {
			if m.member {
				members++
			}
		}
		return "cluster_size=" + strconv.Itoa(members) + ";cluster_integrity=true;migrate_partitions_remaining=0"
	default:
		// Unknown command: echo the name with an empty value.
		return ""
	}
}

// peersLocked is node n's peers list of endpoint ep (peers-clear-std for
// EndpointClear, ...): every peer with that endpoint, with its TLS name
// for a TLS endpoint. A node without the endpoint answers the generation
// and an empty list, as a server without that service does.
func (c *Cluster) peersLocked(n *node, ep Endpoint) info.Peers {
	out := info.Peers{Generation: n.peersGen}
	if n.addrs[ep] == "" {
		return out
	}
	_, portStr, _ := net.SplitHostPort(n.addrs[ep])
	out.DefaultPort, _ = strconv.Atoi(portStr)
	for _, i := range n.peers {
		p := c.nodes[i]
		if p.addrs[ep] == "" {
			continue
		}
		host, pstr, _ := net.SplitHostPort(p.addrs[ep])
		pport, _ := strconv.Atoi(pstr)
		peer := info.Peer{Name: p.name, Hosts: []info.HostPort{{Host: host, Port: pport}}}
		if ep.TLS() {
			peer.TLSName = p.tlsName
		}
		out.Peers = append(out.Peers, peer)
	}
	return out
}

// replicasLocked is node n's "replicas" answer: every namespace, with its
// regime and one bitmap per replica index (at least one, all empty for a
// node that holds nothing, as a server that has not rebalanced reports).
func (c *Cluster) replicasLocked(n *node) []info.NamespaceReplicas {
	out := make([]info.NamespaceReplicas, 0, len(c.ns))
	for _, ns := range c.ns {
		bitmaps := n.claims[ns.spec.Name]
		if len(bitmaps) == 0 {
			bitmaps = []info.Bitmap{{}}
		}
		out = append(out, info.NamespaceReplicas{
			Namespace:    ns.spec.Name,
			Regime:       n.regime[ns.spec.Name],
			ReplicaCount: len(bitmaps),
			Bitmaps:      bitmaps,
		})
	}
	return out
}
