package tend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/procid"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
)

// Defaults of Config fields left zero.
const (
	DefaultMaxNodes          = partmap.DefaultMaxNodes
	DefaultMaxNamespaces     = partmap.DefaultMaxNamespaces
	DefaultTakeoverThreshold = lease.DefaultThreshold
	DefaultTendInterval      = time.Second
	DefaultInfoTimeout       = 2 * time.Second
	DefaultMode              = os.FileMode(0o600)
)

// FailLimit is how many tends in a row a node may fail before the owner
// deactivates it.
const FailLimit = 3

// DefaultShmKey returns the default Config.ShmKey of a view without a
// cluster name, a key of shmkit's scheme (class cluster, instance 0) that
// the C client's 0xA7000000 can never be.
func DefaultShmKey() arena.Key { return arena.MakeKey(arena.ClassCluster, 0) }

// ShmKeyFor returns the default Config.ShmKey of a view of the cluster
// called name: instance 0 for "" (DefaultShmKey), otherwise 1 + the name's
// FNV-1a hash modulo 4095, so that two named clusters on one host do not
// share a segment by default. Two names that hash alike (a chance of
// 1/4095 per pair) still never read each other's map: the second gets a
// *layout.MismatchError naming both, and sets ShmKey itself.
func ShmKeyFor(name string) arena.Key {
	if name == "" {
		return DefaultShmKey()
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return arena.MakeKey(arena.ClassCluster, uint16(1+h.Sum32()%4095))
}

// Role is a process's part in tending a view.
type Role uint8

// Roles reported in Stats.Role.
const (
	// RoleFollower reads the view and waits for the lease.
	RoleFollower Role = iota
	// RoleOwner holds the lease and tends.
	RoleOwner
)

var roleNames = [...]string{RoleFollower: "follower", RoleOwner: "owner"}

// String returns "follower" or "owner".
func (r Role) String() string { return enumString(roleNames[:], uint8(r), "role") }

// MarshalText encodes the role as its String (JSON shows "owner").
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes a role's String.
func (r *Role) UnmarshalText(b []byte) error { return enumParse(roleNames[:], b, (*uint8)(r), "role") }

// TakeoverReason says why this process acquired the tend lease.
type TakeoverReason uint8

// Takeover reasons, from the lease's (lease.Reason).
const (
	// TakeoverUnknown is a reason the lease did not state.
	TakeoverUnknown TakeoverReason = iota
	// TakeoverFirst: the lease had never been held.
	TakeoverFirst
	// TakeoverReleased: the previous owner released it (Close, or a
	// step-down).
	TakeoverReleased
	// TakeoverOwnerDead: the previous owner's process is gone.
	TakeoverOwnerDead
	// TakeoverExpired: the previous owner's heartbeat is older than the
	// threshold (hung, stopped, or its liveness cannot be known).
	TakeoverExpired
)

var takeoverNames = [...]string{TakeoverUnknown: "unknown", TakeoverFirst: "first owner", TakeoverReleased: "released",
	TakeoverOwnerDead: "owner dead", TakeoverExpired: "heartbeat expired"}

// String returns the reason as the lease words it ("released", "owner
// dead", ...).
func (r TakeoverReason) String() string {
	return enumString(takeoverNames[:], uint8(r), "takeover reason")
}

// MarshalText encodes the reason as its String.
func (r TakeoverReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes a reason's String.
func (r *TakeoverReason) UnmarshalText(b []byte) error {
	return enumParse(takeoverNames[:], b, (*uint8)(r), "takeover reason")
}

func takeoverReason(r lease.Reason) TakeoverReason {
	switch r {
	case lease.ReasonFirst:
		return TakeoverFirst
	case lease.ReasonReleased:
		return TakeoverReleased
	case lease.ReasonOwnerDead:
		return TakeoverOwnerDead
	case lease.ReasonHeartbeatExpired:
		return TakeoverExpired
	}
	return TakeoverUnknown
}

// StepDownReason says why this process stopped tending.
type StepDownReason uint8

// Step-down reasons reported in StepDown.Reason.
const (
	// StepDownOverrun: a tend cycle did not complete TendInterval before
	// the heartbeat it was to renew would expire; the owner released the
	// lease and sits out one TakeoverThreshold.
	StepDownOverrun StepDownReason = iota + 1
	// StepDownLost: a fenced write or the heartbeat renewal found that
	// another process holds the lease.
	StepDownLost
	// StepDownStampFailed: the new owner could not stamp the segment
	// (partmap.Writer.StampAll failed while the lease was still its own:
	// the segment is being written by something else); it released the
	// lease and sits out one TakeoverThreshold.
	StepDownStampFailed
	// StepDownExhausted: the owner's epoch ran out of publication numbers
	// (partmap.ErrExhausted); it released the lease, and the next
	// acquisition starts a new epoch.
	StepDownExhausted
	// StepDownRemoved: the segment was removed (ipcrm, arena.Remove,
	// unlinked file); the process released the lease and moved to the
	// segment now at the location.
	StepDownRemoved
	// StepDownForeign: the segment records another cluster name than
	// Config.ClusterName (recorded by another process after this one
	// attached); the process stops tending and its lookups fail with the
	// *layout.MismatchError.
	StepDownForeign
)

var stepDownNames = [...]string{0: "none", StepDownOverrun: "tend cycle overran the takeover threshold",
	StepDownLost: "lease lost", StepDownStampFailed: "stamping the segment failed",
	StepDownExhausted: "publication numbers exhausted", StepDownRemoved: "segment removed",
	StepDownForeign: "the segment belongs to another cluster"}

// String describes the reason.
func (r StepDownReason) String() string {
	return enumString(stepDownNames[:], uint8(r), "step-down reason")
}

// MarshalText encodes the reason as its String.
func (r StepDownReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes a reason's String.
func (r *StepDownReason) UnmarshalText(b []byte) error {
	return enumParse(stepDownNames[:], b, (*uint8)(r), "step-down reason")
}

func enumString(names []string, v uint8, what string) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", what, v)
}

func enumParse(names []string, b []byte, v *uint8, what string) error {
	for i, n := range names {
		if n != "" && n == string(b) {
			*v = uint8(i)
			return nil
		}
	}
	return fmt.Errorf("tend: %s %q: %w", what, b, ErrConfig)
}

// Errors of this package; returned errors wrap them (errors.Is), or the
// error of the package underneath (partmap, arena, layout, lease).
var (
	// ErrConfig means a Config field is invalid.
	ErrConfig = errors.New("tend: invalid configuration")
	// ErrClosed means the Cluster was closed.
	ErrClosed = errors.New("tend: cluster closed")
	// ErrNamespace means the namespace is not (yet) in the cluster view.
	ErrNamespace = errors.New("tend: unknown namespace")
)

// Config configures Open. The zero value, with Seeds, is a shared-memory
// view at the default key.
type Config struct {
	// Seeds are addresses of cluster nodes, used while no node is known:
	// "host:port", or "host:tlsname:port" for a node whose certificate
	// carries tlsname (with TLS; the host is verified otherwise). IPv6
	// hosts are bracketed: "[::1]:3000", "[::1]:tlsname:3000".
	Seeds []string
	// TLS, when not nil, makes every info connection TLS with this
	// configuration (trusted roots in RootCAs, a client certificate in
	// Certificates for mutual TLS): each node's certificate is verified
	// against its TLS name (from its seed or from "peers-tls-std"), and
	// peers are learned from the TLS lists only, so clear-text and TLS
	// nodes are never mixed. Nil: clear text, TLS lists ignored. The
	// record client uses the same configuration for its connections.
	TLS *tls.Config
	// ClusterName is the expected cluster name (the servers'
	// cluster-name, at most partmap.MaxClusterName bytes). Nodes that
	// answer another name are refused, as the official clients do (logged
	// with both names, counted in Stats.ForeignNodes), and a segment that
	// records another name is refused with a *layout.MismatchError naming
	// both. Empty: the tender records the name its first node answers,
	// and from then on refuses nodes of other names the same way.
	ClusterName string
	// User and Password authenticate to servers with security enabled
	// (AuthMode AuthInternal, the default when User is set): every info
	// connection logs in over the admin protocol, keeps the session token
	// in this process's memory and re-logs in when the token expires or
	// a node restarts. AuthMode admin.ModePKI logs in with the TLS client
	// certificate instead (no password). Neither the password, its hash
	// nor a token is ever written to the shared segment; each process
	// logs in for itself (Cluster.Authenticator serves its record
	// connections). Wrong credentials show as Stats.AuthError, an
	// *admin.Error naming the user.
	User, Password string
	// AuthMode selects the authentication (default: admin.ModeInternal
	// with a User, admin.ModeNone without).
	AuthMode admin.Mode
	// RackAware has the tender ask every node for its "rack-ids" at each
	// tend and keep them in the shared view (partmap.Node.Racks), for
	// reads that prefer a rack (Cluster.RackReplica).
	RackAware bool
	// UseServicesAlternate has the tender learn peers from their
	// alternate addresses ("peers-clear-alt") instead of their standard
	// ones, for clients outside the servers' network (containers, NAT),
	// as the official clients' option of the same name.
	UseServicesAlternate bool
	// KeepSegment keeps the shared segment when the last process using it
	// closes. By default the last Close removes it (as the C client does),
	// so that no process started later reads a map nobody tends.
	KeepSegment bool
	// UseShm shares the cluster view through shared memory with every
	// process opening the same key, and lets one of them tend. False: this
	// process tends for itself into process memory.
	UseShm bool
	// ShmKey is the SysV key of the segment (default
	// ShmKeyFor(ClusterName)).
	ShmKey arena.Key
	// Location overrides ShmKey with another location (a file, or a heap
	// segment for tests under the race detector).
	Location arena.Location
	// MaxNodes and MaxNamespaces size the segment (defaults 16 and 8);
	// every process on a key must agree.
	MaxNodes, MaxNamespaces int
	// TakeoverThreshold is how long an owner may go without a completed
	// tend before another process takes over (default 30 s).
	TakeoverThreshold time.Duration
	// TendInterval is the time between tend cycles (default 1 s).
	TendInterval time.Duration
	// InfoTimeout bounds each info request to a node, connect included
	// (default TakeoverThreshold/4, at most DefaultInfoTimeout). Nodes are
	// asked in parallel, so a cycle in which every node times out still
	// completes — unsuccessfully — well within the threshold, and the
	// owner keeps the lease. A value near or above TakeoverThreshold lets
	// one slow node make cycles overrun, and the owner step down.
	InfoTimeout time.Duration
	// Mode is the permission of a created segment (default 0600; 0660 for
	// worker processes of several users in one group), and the widest
	// accepted of an existing one.
	Mode os.FileMode
	// AllowUIDs are the users besides this process's whose segment it
	// attaches; a group of workers under several users lists the uid of
	// the process that creates the segment (see arena.Options.AllowUIDs).
	AllowUIDs []uint32
	// Logger receives role changes, takeovers and node changes (default
	// slog.Default()).
	Logger *slog.Logger
	// Failpoints arms failpoints (tests).
	Failpoints *failpoint.Set
	// Self overrides this process's identity for the lease (tests).
	Self procid.Identity
	// NoScrub turns off the owner's repair of damaged partition entries
	// (partmap.Config.NoScrub): the negative control of the tests. Never
	// set it otherwise.
	NoScrub bool
}

// StepDown records one loss of the tend lease by this process (Close is
// not recorded).
type StepDown struct {
	// Epoch is the epoch that was given up.
	Epoch uint64
	// Reason says why.
	Reason StepDownReason
	// Detail is the error or measurement behind the reason.
	Detail string
	// At is when it happened.
	At time.Time
}

// Takeover records one acquisition of the tend lease by this process.
type Takeover struct {
	// Epoch is the lease epoch acquired.
	Epoch uint64
	// Reason says why.
	Reason TakeoverReason
	// At is when it happened.
	At time.Time
}

// MaxEvents is how many takeovers and step-downs Stats lists (the most
// recent); Stats.TakeoverCount and Stats.StepDownCount count them all.
const MaxEvents = 32

// Stats describes this process's role and the tend owner's work.
type Stats struct {
	// Role is RoleOwner or RoleFollower.
	Role Role
	// OwnerPID is the tend owner's pid (0 if none) and Epoch its epoch.
	OwnerPID int
	Epoch    uint64
	// Tends and InfoRequests count tend cycles and the info requests they
	// sent, TendErrors the cycles that failed (a node failed or the
	// cluster was unreachable), over all owners of the segment.
	Tends, InfoRequests, TendErrors uint64
	// Takeovers lists this process's last MaxEvents acquisitions of the
	// lease, StepDowns its last MaxEvents losses of it, oldest first;
	// TakeoverCount and StepDownCount count all of them.
	Takeovers                    []Takeover
	StepDowns                    []StepDown
	TakeoverCount, StepDownCount uint64
	// NodeOverflow and NamespaceOverflow count the nodes and namespaces
	// the owner found no room for in the segment (MaxNodes,
	// MaxNamespaces) and left out of the view: each once, however often
	// it was retried.
	NodeOverflow, NamespaceOverflow uint64
	// Conflicts counts the partitions in which the owner found one node
	// at two replica ranks and dropped the older claim (MergeClaims),
	// over all owners.
	Conflicts uint64
	// Repairs counts the shared words the owner found damaged and
	// rewrote (partmap.Stats.Repairs), over all owners.
	Repairs uint64
	// Moves counts the times this process found its segment removed and
	// moved to the segment at the location.
	Moves uint64
	// LastTend is when the last tend cycle finished.
	LastTend time.Time
	// MapGeneration is the partition map generation.
	MapGeneration uint64
	// ClusterName is the cluster name the segment records: the configured
	// one, or the one the first owner observed ("" while none).
	ClusterName string
	// ForeignNodes counts the nodes owners refused because they answered
	// another cluster name, over all owners.
	ForeignNodes uint64
	// AuthError is the last refusal of this process's credentials by a
	// node (an error wrapping *admin.Error, which names the user and
	// wraps admin.ErrBadCredentials); nil once a login succeeds again.
	AuthError error
	// Logins counts the logins this process made (the first connection
	// to each node, and again after a session expired).
	Logins uint64
	// Foreign is the *layout.MismatchError (wrapped) that lookups return
	// once the segment turned out to record another cluster's name; nil
	// otherwise.
	Foreign error
}

// Cluster is one process's view of a tended cluster. Its methods are safe
// for concurrent use.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	loc   arena.Location
	v     atomic.Pointer[view]
	pool  *info.Pool
	heap  *arena.HeapStore
	stop  context.CancelFunc
	done  chan struct{}
	close sync.Once

	mu        sync.Mutex
	owner     bool
	takeovers []Takeover
	stepDowns []StepDown
	nTakeover uint64
	nStepDown uint64
	// retired are the views of removed segments this process moved away
	// from, newest last: the last MaxRetired stay attached until Close,
	// since a *partmap.Map handed out by Map may still be in use.
	retired []*view
	moves   uint64
	// foreign is set once the segment records another cluster name than
	// the configured one (checkForeign).
	foreign atomic.Pointer[foreignError]
	// auth logs this process's connections in (nil without security);
	// authErr is the last refusal of the credentials, cleared by the next
	// successful authentication.
	auth    *admin.Authenticator
	authErr atomic.Pointer[error]
}

// Authenticator returns this process's authenticator (nil without
// authentication), for the record client's connections: the same
// credentials, sessions kept in this process only.
func (c *Cluster) Authenticator() *admin.Authenticator { return c.auth }

// TLSConfig returns Config.TLS (nil for clear text), for the record
// client's connections, which verify each node against its TLS name as
// the info connections do. The caller must not modify it.
func (c *Cluster) TLSConfig() *tls.Config { return c.cfg.TLS }

// MaxRetired is how many removed segments a Cluster keeps attached after
// moving away from them (see Cluster.Map): an older one is detached, so a
// segment removed again and again costs bounded memory.
const MaxRetired = 4

// view is one attached segment: its map and the lease in it.
type view struct {
	m *partmap.Map
	l *lease.Lease
}

// seed is a parsed Config.Seeds entry.
type seed struct {
	addr    string // host:port
	tlsName string // "" when the seed names none
}

// parseSeed parses "host:port" or "host:tlsname:port" (IPv6 hosts in
// brackets).
func parseSeed(s string) (seed, error) {
	host, rest := "", ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 || len(s) == end+1 || s[end+1] != ':' {
			return seed{}, fmt.Errorf("%w: seed %q: want [ipv6]:port or [ipv6]:tlsname:port", ErrConfig, s)
		}
		host, rest = s[:end+1], s[end+2:]
	} else {
		h, r, ok := strings.Cut(s, ":")
		if !ok {
			return seed{}, fmt.Errorf("%w: seed %q: want host:port or host:tlsname:port", ErrConfig, s)
		}
		host, rest = h, r
	}
	tlsName, port, hasName := strings.Cut(rest, ":")
	if !hasName {
		tlsName, port = "", rest
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 || host == "" || host == "[]" || strings.Contains(port, ":") {
		return seed{}, fmt.Errorf("%w: seed %q: want host:port or host:tlsname:port with a port in 1..65535", ErrConfig, s)
	}
	if hasName && tlsName == "" {
		return seed{}, fmt.Errorf("%w: seed %q: empty TLS name", ErrConfig, s)
	}
	return seed{addr: host + ":" + port, tlsName: tlsName}, nil
}

func (c *Config) defaults() error {
	if c.MaxNodes == 0 {
		c.MaxNodes = DefaultMaxNodes
	}
	if c.MaxNamespaces == 0 {
		c.MaxNamespaces = DefaultMaxNamespaces
	}
	if c.TakeoverThreshold == 0 {
		c.TakeoverThreshold = DefaultTakeoverThreshold
	}
	if c.TendInterval == 0 {
		c.TendInterval = DefaultTendInterval
	}
	if c.Mode == 0 {
		c.Mode = DefaultMode
	}
	if len(c.ClusterName) > partmap.MaxClusterName || strings.ContainsAny(c.ClusterName, "\x00\n\t;:") {
		return fmt.Errorf("%w: ClusterName %q: want at most %d bytes, no NUL, tab, newline, ';' or ':'", ErrConfig, c.ClusterName, partmap.MaxClusterName)
	}
	if c.ShmKey == 0 {
		c.ShmKey = ShmKeyFor(c.ClusterName)
	}
	for _, sd := range c.Seeds {
		if _, err := parseSeed(sd); err != nil {
			return err
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.AuthMode == admin.ModeNone && c.User != "" {
		c.AuthMode = admin.ModeInternal
	}
	if c.AuthMode == admin.ModePKI && c.TLS == nil {
		return fmt.Errorf("%w: PKI authentication needs TLS with a client certificate", ErrConfig)
	}
	if c.TakeoverThreshold < 0 || c.TendInterval < 0 || c.InfoTimeout < 0 {
		return fmt.Errorf("%w: negative TakeoverThreshold, TendInterval or InfoTimeout", ErrConfig)
	}
	if c.InfoTimeout == 0 {
		c.InfoTimeout = min(DefaultInfoTimeout, c.TakeoverThreshold/4)
	}
	if c.TendInterval >= c.TakeoverThreshold {
		return fmt.Errorf("%w: TendInterval %v must be below TakeoverThreshold %v", ErrConfig, c.TendInterval, c.TakeoverThreshold)
	}
	return nil
}

// Open attaches (creating if needed) the cluster view and starts this
// process's tend goroutine. If the lease is free, this process becomes the
// owner and Open runs the first tend cycle before returning, so lookups
// answer at once; otherwise Open returns as a follower.
func Open(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger.With("component", "tend")}
	switch {
	case !cfg.UseShm:
		c.heap = arena.NewHeapStore()
		c.loc = c.heap.At("tend")
	case cfg.Location != nil:
		c.loc = cfg.Location
	default:
		c.loc = arena.SysV(cfg.ShmKey)
	}
	v, err := c.attach(ctx)
	if err != nil {
		return nil, err
	}
	c.v.Store(v)
	if c.auth, err = admin.NewAuthenticator(admin.Credentials{Mode: cfg.AuthMode, User: cfg.User, Password: cfg.Password}); err != nil {
		v.m.Close()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	opts := info.Options{ConnectTimeout: cfg.InfoTimeout, ReadTimeout: cfg.InfoTimeout, TLS: cfg.TLS}
	if c.auth != nil {
		opts.Auth = func(ctx context.Context, nc net.Conn, addr string) error {
			err := c.auth.Auth(ctx, nc, addr, cfg.InfoTimeout)
			if errors.Is(err, admin.ErrBadCredentials) {
				c.authErr.Store(&err)
			} else if err == nil {
				c.authErr.Store(nil)
			}
			return err
		}
	}
	c.pool = info.NewPool(info.PoolOptions{Options: opts})
	runCtx, stop := context.WithCancel(context.Background())
	c.stop, c.done = stop, make(chan struct{})
	var first *tender
	var firstErr error
	var epoch uint64
	if a, err := v.l.TryAcquire(); err == nil {
		epoch = a.Epoch
		if first, firstErr = c.becomeOwner(v, a); first != nil {
			// Open's ctx ending cuts this cycle short; run tends on.
			if err := first.cycle(ctx); isStop(err) {
				firstErr = err
			}
		}
	} else {
		c.log.Info("tend: follower", "owner", v.l.Owner().Identity.String())
	}
	go c.run(runCtx, first, firstErr, epoch)
	return c, nil
}

// attach opens (creating if needed) the segment at c.loc and the lease in
// it.
func (c *Cluster) attach(ctx context.Context) (*view, error) {
	cfg := &c.cfg
	m, err := partmap.Open(ctx, c.loc, partmap.Config{
		MaxNodes: cfg.MaxNodes, MaxNamespaces: cfg.MaxNamespaces, Mode: cfg.Mode, AllowUIDs: cfg.AllowUIDs,
		Failpoints: cfg.Failpoints, Logger: cfg.Logger, NoScrub: cfg.NoScrub,
	})
	if err != nil {
		return nil, fmt.Errorf("tend: open cluster view at %s: %w", c.loc, err)
	}
	if err := m.CheckClusterName(cfg.ClusterName); err != nil {
		m.Close()
		return nil, fmt.Errorf("tend: open cluster view at %s: %w", c.loc, err)
	}
	l, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{
		Threshold: cfg.TakeoverThreshold, Self: cfg.Self, Failpoints: cfg.Failpoints, Logger: cfg.Logger,
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("tend: lease: %w", err)
	}
	return &view{m: m, l: l}, nil
}

// foreignError is what Cluster.foreign holds.
type foreignError struct{ err error }

// checkForeign compares the segment's recorded cluster name with the
// configured one; on a mismatch it records the error, which every lookup
// returns from then on, and returns it.
func (c *Cluster) checkForeign(v *view) error {
	if fe := c.foreign.Load(); fe != nil {
		return fe.err
	}
	err := v.m.CheckClusterName(c.cfg.ClusterName)
	if err == nil || !errors.Is(err, layout.ErrMismatch) {
		return nil // unreadable now: the owner rewrites the record
	}
	err = fmt.Errorf("tend: cluster view at %s: %w", c.loc, err)
	if c.foreign.CompareAndSwap(nil, &foreignError{err: err}) {
		c.log.Error("tend: the segment belongs to another cluster; lookups fail from now on", "err", err)
	}
	return err
}

// becomeOwner records an acquisition and stamps the segment. A stamp that
// fails leaves this process a follower: the error is a *stopError
// (StepDownLost if another process holds the lease, StepDownStampFailed
// otherwise).
func (c *Cluster) becomeOwner(v *view, a lease.Acquired) (*tender, error) {
	at := time.Now() // about when the lease wrote our first heartbeat
	reason := takeoverReason(a.Reason)
	c.mu.Lock()
	c.takeovers = appendCapped(c.takeovers, Takeover{Epoch: a.Epoch, Reason: reason, At: at})
	c.nTakeover++
	c.mu.Unlock()
	c.log.Info("tend: became owner", "epoch", a.Epoch, "reason", reason, "previous", a.Previous.String())
	w := v.m.Writer(v.l)
	if err := w.StampAll(); err != nil {
		if fenced(err) {
			return nil, &stopError{reason: StepDownLost, err: err}
		}
		if errors.Is(err, partmap.ErrExhausted) {
			return nil, &stopError{reason: StepDownExhausted, err: err}
		}
		return nil, &stopError{reason: StepDownStampFailed, err: err}
	}
	if name := c.cfg.ClusterName; name != "" {
		// Recorded before anything of the cluster is published, so that a
		// process of another cluster never reads a map under no name.
		if err := w.SetClusterName(name); err != nil {
			if errors.Is(err, layout.ErrMismatch) {
				c.checkForeign(v)
				return nil, &stopError{reason: StepDownForeign, err: err}
			}
			if se := stopFor(err); se != nil {
				return nil, se
			}
			return nil, &stopError{reason: StepDownStampFailed, err: err}
		}
	}
	c.setOwner(true)
	return newTender(c, v, w, at), nil
}

// appendCapped appends e to s, keeping the last MaxEvents elements.
func appendCapped[E any](s []E, e E) []E {
	if len(s) >= MaxEvents {
		s = append(s[:0], s[len(s)-MaxEvents+1:]...)
	}
	return append(s, e)
}

func (c *Cluster) setOwner(v bool) {
	c.mu.Lock()
	c.owner = v
	c.mu.Unlock()
}

// run is the process's one tend goroutine: wait for the lease, tend while
// holding it, repeat. t is a tender Open started (it has tended once), or
// nil; err is why Open's attempt to tend stopped, if it did, and epoch
// the lease epoch Open acquired.
//
// After any step-down the process gives the lease up if it still holds
// it: a lease nobody tends must not stay held. After stepping down
// because its cycle overran or the stamp failed, it sits out one
// TakeoverThreshold before it competes for the lease again, so that a
// process that can tend takes over; alone, it takes the lease back after
// that pause. Nothing here loops without waiting.
func (c *Cluster) run(ctx context.Context, t *tender, err error, epoch uint64) {
	defer close(c.done)
	fresh := false // a tender handed in by Open has already tended once
	for {
		if t != nil && err == nil {
			err = t.loop(ctx, fresh)
		}
		t = nil
		c.setOwner(false)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !c.steppedDown(ctx, epoch, err) {
				return
			}
			err = nil
		}
		if c.foreign.Load() != nil {
			return // another cluster's segment: never tend it
		}
		v := c.v.Load()
		a, aerr := c.acquire(ctx, v)
		switch {
		case errors.Is(aerr, errRemoved):
			err, epoch = &stopError{reason: StepDownRemoved, err: aerr}, 0
			continue
		case aerr != nil:
			return
		}
		t, err = c.becomeOwner(v, a)
		fresh, epoch = true, a.Epoch
	}
}

// steppedDown records a step-down (a *stopError, or another error the
// tender stopped with), gives the lease up if this process still holds
// it, and waits or moves as the reason asks. It returns false if ctx
// ended.
func (c *Cluster) steppedDown(ctx context.Context, epoch uint64, err error) bool {
	var se *stopError
	if !errors.As(err, &se) {
		se = &stopError{reason: StepDownLost, err: err}
	}
	v := c.v.Load()
	if v.l.Epoch() != 0 {
		if rerr := v.l.Release(); rerr != nil {
			c.log.Info("tend: lease already taken over", "err", rerr)
		}
	}
	if se.reason != StepDownRemoved || epoch != 0 {
		c.mu.Lock()
		c.stepDowns = appendCapped(c.stepDowns, StepDown{Epoch: epoch, Reason: se.reason, Detail: se.err.Error(), At: time.Now()})
		c.nStepDown++
		c.mu.Unlock()
		c.log.Warn("tend: became follower", "epoch", epoch, "reason", se.reason, "detail", se.err.Error())
	}
	switch se.reason {
	case StepDownOverrun, StepDownStampFailed:
		pause := time.NewTimer(c.cfg.TakeoverThreshold)
		defer pause.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-pause.C:
		}
	case StepDownRemoved:
		return c.move(ctx)
	}
	return ctx.Err() == nil
}

// errRemoved means the segment was removed while this process used it.
var errRemoved = errors.New("tend: the segment was removed")

// removed reports whether v's segment was removed (checked with one system
// call: the SysV segment's state, the file's link count and name). A check
// that fails is logged and counts as not removed.
func (c *Cluster) removed(v *view) bool {
	if !c.cfg.UseShm {
		return false
	}
	rm, err := v.m.Segment().Removed()
	if err != nil {
		c.log.Debug("tend: removal check failed", "err", err)
		return false
	}
	return rm
}

// acquire waits for v's lease like Lease.Acquire and, in a shared view,
// checks every TendInterval whether the segment was removed: then it
// returns an error wrapping errRemoved.
func (c *Cluster) acquire(ctx context.Context, v *view) (lease.Acquired, error) {
	if !c.cfg.UseShm {
		return v.l.Acquire(ctx)
	}
	actx, cancel := context.WithCancel(ctx)
	var gone atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(c.cfg.TendInterval)
		defer tick.Stop()
		for {
			select {
			case <-actx.Done():
				return
			case <-tick.C:
			}
			if c.removed(v) {
				gone.Store(true)
				cancel()
				return
			}
			if c.checkForeign(v) != nil {
				cancel()
				return
			}
		}
	})
	a, err := v.l.Acquire(actx)
	cancel()
	wg.Wait() // the watcher touches the segment: done before a move detaches it
	if err != nil && gone.Load() {
		return a, fmt.Errorf("%w (%s)", errRemoved, c.loc)
	}
	return a, err
}

// move attaches the segment now at the location (another process's, or a
// new one) in place of a removed one, so that every process of the key
// shares one view and one owner again. The removed segment stays attached
// until Close (a *partmap.Map from Map may still be in use). An attempt
// that fails is logged and retried every TendInterval. It returns false
// if ctx ended.
func (c *Cluster) move(ctx context.Context) bool {
	old := c.v.Load()
	for {
		nv, err := c.attach(ctx)
		if err == nil {
			c.v.Store(nv)
			c.mu.Lock()
			c.retired = append(c.retired, old)
			c.moves++
			moves := c.moves
			var drop *view
			if len(c.retired) > MaxRetired {
				drop = c.retired[0]
				c.retired = slices.Delete(c.retired, 0, 1)
			}
			c.mu.Unlock()
			if drop != nil {
				// Cluster's own lookups load the current view per call; only
				// a Map obtained MaxRetired moves ago can still name it.
				if err := drop.m.Close(); err != nil {
					c.log.Warn("tend: detach a removed segment", "err", err)
				}
			}
			st, _ := nv.m.Segment().Stat()
			c.log.Warn("tend: the segment was removed under this process; moved to the segment now at the location",
				"location", c.loc.String(), "id", st.ID, "moves", moves)
			return true
		}
		c.log.Error("tend: the segment was removed and the one at the location cannot be opened; retrying", "err", err)
		retry := time.NewTimer(c.cfg.TendInterval)
		select {
		case <-ctx.Done():
			retry.Stop()
			return false
		case <-retry.C:
		}
	}
}

// Close stops tending, releases the lease if this process holds it (another
// process takes over at once) and detaches the segment (and the removed
// segments it moved away from). It is idempotent.
func (c *Cluster) Close() error {
	var err error
	c.close.Do(func() {
		c.stop()
		<-c.done
		v := c.v.Load()
		if v.l.Epoch() != 0 {
			if rerr := v.l.Release(); rerr != nil && !errors.Is(rerr, lease.ErrLost) && !errors.Is(rerr, lease.ErrNotOwner) {
				err = fmt.Errorf("tend: release lease: %w", rerr)
			} else {
				c.log.Info("tend: released lease")
			}
		}
		c.pool.Close()
		c.mu.Lock()
		views := append([]*view{v}, c.retired...)
		c.mu.Unlock()
		for i, v := range views {
			var cerr error
			if i == 0 && c.cfg.UseShm && !c.cfg.KeepSegment && c.heap == nil {
				// The last process to close removes the segment, so that no
				// process started later reads a map nobody tends.
				var removed bool
				if removed, cerr = v.m.Segment().CloseLast(); removed {
					c.log.Info("tend: last process to close the view; removed the segment", "location", c.loc.String())
				}
			} else {
				cerr = v.m.Close()
			}
			if cerr != nil && err == nil {
				err = fmt.Errorf("tend: close: %w", cerr)
			}
		}
		if c.heap != nil {
			arena.Remove(c.loc, arena.RemoveOptions{Force: true})
		}
	})
	return err
}

// m returns the current map.
func (c *Cluster) m() *partmap.Map { return c.v.Load().m }

// ns resolves a namespace name in m through partmap's cache, which checks
// the slot's control word on every call: a handle follows the namespace
// when a new owner re-registers it in another slot (after finding its
// record damaged).
func ns(m *partmap.Map, name string) (partmap.NS, error) {
	h, ok := m.Namespace(name)
	if !ok {
		return partmap.NS{}, fmt.Errorf("%w %q", ErrNamespace, name)
	}
	return h, nil
}

// Map returns the shared view itself, for the lock-free hot path: resolve a
// namespace once with Map().Namespace and look partitions up by handle
// (Map().Master(ns, d.PartitionID())), which skips the name lookup Master
// does on every call. Do not use it after Close. Unlike Master, Replica
// and Snapshot, the map's own lookups do not check Stats.Foreign.
//
// If the segment is removed under the process (Stats.Moves grows), the
// Cluster moves to the segment now at the location and Map returns that
// one; a Map returned before stays valid, its content frozen, until Close
// or until MaxRetired more moves, whichever comes first. Handles belong to the Map they came from: after a move,
// call Map again and resolve the namespaces again.
func (c *Cluster) Map() *partmap.Map { return c.m() }

// Nodes returns the nodes of the cluster view, active or not, in slot order.
func (c *Cluster) Nodes() []*partmap.Node { return c.m().Nodes() }

// Master returns the master node of the partition digest d belongs to in
// namespace ns. Errors wrap ErrNamespace or partmap's errors (ErrNotFound
// for a partition without master).
func (c *Cluster) Master(name string, d partmap.Digest) (*partmap.Node, error) {
	m, h, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	if n, ok := m.Master(h, d.PartitionID()); ok { // the lock-free fast path
		return n, nil
	}
	return lookupErr(m, name, h, d.PartitionID(), 0)
}

// Replica returns replica i (0 master, 1 and 2 proles) of the partition
// digest d belongs to in namespace ns.
func (c *Cluster) Replica(name string, d partmap.Digest, i int) (*partmap.Node, error) {
	m, h, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	pid := d.PartitionID()
	if n, ok := m.Replica(h, pid, i); ok { // the lock-free fast path
		return n, nil
	}
	return lookupErr(m, name, h, pid, i)
}

// resolve returns the current map and the handle of namespace name in it,
// or the error every lookup returns on another cluster's segment.
func (c *Cluster) resolve(name string) (*partmap.Map, partmap.NS, error) {
	if fe := c.foreign.Load(); fe != nil {
		return nil, partmap.NS{}, fe.err
	}
	m := c.m()
	h, err := ns(m, name)
	return m, h, err
}

// lookupErr is the lookup of Master and Replica when the fast path found
// nothing: Lookup says why (or finds the node, if the map changed since).
func lookupErr(m *partmap.Map, name string, h partmap.NS, pid uint32, i int) (*partmap.Node, error) {
	n, err := m.Lookup(h, pid, i)
	if err != nil {
		return nil, fmt.Errorf("tend: %s partition %d replica %d: %w", name, pid, i, err)
	}
	return n, nil
}

// peersCmd is the info command that lists peers' addresses.
func (c *Cluster) peersCmd() string {
	switch {
	case c.cfg.TLS != nil && c.cfg.UseServicesAlternate:
		return info.CmdPeersTLSAlt
	case c.cfg.TLS != nil:
		return info.CmdPeersTLSStd
	case c.cfg.UseServicesAlternate:
		return info.CmdPeersClearAlt
	}
	return info.CmdPeersClearStd
}

// RackReplica returns the node a read of digest d in namespace ns goes to
// under a prefer-rack policy, as the official clients choose it on a
// first attempt: for each rack in racks, in order, the first active
// replica (master, then proles) on that rack; if none is, the first
// active replica. Racks come from the nodes' "rack-ids" (Config.RackAware;
// without it no node has a rack and the choice is the first active
// replica). Errors are Replica's.
func (c *Cluster) RackReplica(name string, d partmap.Digest, racks []int) (*partmap.Node, error) {
	m, h, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	pid := d.PartitionID()
	var reps [partmap.StoredReplicas]*partmap.Node
	for i := range reps {
		if n, ok := m.Replica(h, pid, i); ok && n.Active {
			reps[i] = n
		}
	}
	for _, rack := range racks {
		for _, n := range reps {
			if n != nil {
				if r, ok := n.Rack(name); ok && r == rack {
					return n, nil
				}
			}
		}
	}
	for _, n := range reps {
		if n != nil {
			return n, nil
		}
	}
	return lookupErr(m, name, h, pid, 0)
}

// Snapshot returns a consistent copy of namespace ns's partition map.
func (c *Cluster) Snapshot(name string) (*partmap.Snapshot, error) {
	m, h, err := c.resolve(name)
	if err != nil {
		return nil, err
	}
	s, err := m.Snapshot(h)
	if err != nil {
		return nil, fmt.Errorf("tend: snapshot %s: %w", name, err)
	}
	return s, nil
}

// WaitChange blocks until the map generation differs from since and
// returns it (see partmap.Map.WaitChange). After a move to another
// segment (Stats.Moves), generations are those of the new segment.
func (c *Cluster) WaitChange(ctx context.Context, since uint64) (uint64, error) {
	return c.m().WaitChange(ctx, since)
}

// Stats returns this process's role and the owner's tend statistics.
func (c *Cluster) Stats() Stats {
	v := c.v.Load()
	ms := v.m.Stats()
	o := v.l.Owner()
	c.mu.Lock()
	s := Stats{Role: RoleFollower, Takeovers: append([]Takeover(nil), c.takeovers...),
		StepDowns: append([]StepDown(nil), c.stepDowns...), TakeoverCount: c.nTakeover, StepDownCount: c.nStepDown,
		Moves: c.moves}
	if c.owner {
		s.Role = RoleOwner
	}
	c.mu.Unlock()
	if o.Held {
		s.OwnerPID, s.Epoch = int(o.Identity.PID), o.Epoch
	}
	s.Tends, s.InfoRequests, s.TendErrors, s.LastTend = ms.Owner.Tends, ms.Owner.InfoRequests, ms.Owner.TendErrors, ms.Owner.LastTend
	s.MapGeneration = ms.Generation
	s.NodeOverflow, s.NamespaceOverflow = ms.NodeOverflow, ms.NamespaceOverflow
	s.Conflicts, s.Repairs = ms.Conflicts, ms.Repairs
	s.ClusterName, s.ForeignNodes = ms.Owner.ClusterName, ms.Owner.ForeignNodes
	if fe := c.foreign.Load(); fe != nil {
		s.Foreign = fe.err
	}
	if ae := c.authErr.Load(); ae != nil {
		s.AuthError = *ae
	}
	if c.auth != nil {
		s.Logins = c.auth.Logins()
	}
	return s
}
