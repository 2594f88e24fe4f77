package tend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/procid"
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

// DefaultShmKey returns the default Config.ShmKey, a key of shmkit's scheme
// (class cluster, instance 0) that the C client's 0xA7000000 can never be.
func DefaultShmKey() arena.Key { return arena.MakeKey(arena.ClassCluster, 0) }

// Roles reported in Stats.Role.
const (
	RoleOwner    = "owner"
	RoleFollower = "follower"
)

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
	// Seeds are host:port addresses of cluster nodes, used while no node
	// is known.
	Seeds []string
	// UseShm shares the cluster view through shared memory with every
	// process opening the same key, and lets one of them tend. False: this
	// process tends for itself into process memory.
	UseShm bool
	// ShmKey is the SysV key of the segment (default DefaultShmKey()).
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
	// Mode is the permission of a created segment (default 0600).
	Mode os.FileMode
	// Logger receives role changes, takeovers and node changes (default
	// slog.Default()).
	Logger *slog.Logger
	// Failpoints arms failpoints (tests).
	Failpoints *failpoint.Set
	// Self overrides this process's identity for the lease (tests).
	Self procid.Identity
}

// Step-down reasons reported in StepDown.Reason.
const (
	// StepDownOverrun: a tend cycle did not complete TendInterval before
	// the heartbeat it was to renew would expire; the owner released the
	// lease.
	StepDownOverrun = "tend cycle overran the takeover threshold"
	// StepDownLost: a fenced write or the heartbeat renewal found that
	// another process holds the lease.
	StepDownLost = "lease lost"
)

// StepDown records one loss of the tend lease by this process (Close is
// not recorded).
type StepDown struct {
	// Epoch is the epoch that was given up.
	Epoch uint64
	// Reason is StepDownOverrun or StepDownLost.
	Reason string
	// Detail is the error or measurement behind the reason.
	Detail string
	// At is when it happened.
	At time.Time
}

// Takeover records one acquisition of the tend lease by this process.
type Takeover struct {
	// Epoch is the lease epoch acquired.
	Epoch uint64
	// Reason says why: "first owner", "released", "owner dead" or
	// "heartbeat expired".
	Reason string
	// At is when it happened.
	At time.Time
}

// Stats describes this process's role and the tend owner's work.
type Stats struct {
	// Role is RoleOwner or RoleFollower.
	Role string
	// OwnerPID is the tend owner's pid (0 if none) and Epoch its epoch.
	OwnerPID int
	Epoch    uint64
	// Tends and InfoRequests count tend cycles and the info requests they
	// sent, TendErrors the cycles that failed (a node failed or the
	// cluster was unreachable), over all owners of the segment.
	Tends, InfoRequests, TendErrors uint64
	// Takeovers lists this process's acquisitions of the lease, StepDowns
	// its losses of it, oldest first.
	Takeovers []Takeover
	StepDowns []StepDown
	// NodeOverflow and NamespaceOverflow count the nodes and namespaces
	// the segment had no room for (MaxNodes, MaxNamespaces), over all
	// owners; such nodes and namespaces are left out of the view.
	NodeOverflow, NamespaceOverflow uint64
	// LastTend is when the last tend cycle finished.
	LastTend time.Time
	// MapGeneration is the partition map generation.
	MapGeneration uint64
}

// Cluster is one process's view of a tended cluster. Its methods are safe
// for concurrent use.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	loc   arena.Location
	m     *partmap.Map
	l     *lease.Lease
	pool  *info.Pool
	heap  *arena.HeapStore
	stop  context.CancelFunc
	done  chan struct{}
	close sync.Once

	mu        sync.Mutex
	owner     bool
	takeovers []Takeover
	stepDowns []StepDown
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
	if c.ShmKey == 0 {
		c.ShmKey = DefaultShmKey()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
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
	m, err := partmap.Open(ctx, c.loc, partmap.Config{
		MaxNodes: cfg.MaxNodes, MaxNamespaces: cfg.MaxNamespaces, Mode: cfg.Mode,
		Failpoints: cfg.Failpoints, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("tend: open cluster view at %s: %w", c.loc, err)
	}
	c.m = m
	c.l, err = lease.New(m.Segment(), m.LeaseOffset(), lease.Config{
		Threshold: cfg.TakeoverThreshold, Self: cfg.Self, Failpoints: cfg.Failpoints, Logger: cfg.Logger,
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("tend: lease: %w", err)
	}
	c.pool = info.NewPool(info.PoolOptions{Options: info.Options{ConnectTimeout: cfg.InfoTimeout, ReadTimeout: cfg.InfoTimeout}})
	runCtx, stop := context.WithCancel(context.Background())
	c.stop, c.done = stop, make(chan struct{})
	var first *tender
	if a, err := c.l.TryAcquire(); err == nil {
		first = c.becomeOwner(a)
		if first != nil {
			first.cycle(ctx)
		}
	} else {
		c.log.Info("tend: follower", "owner", c.l.Owner().Identity.String())
	}
	go c.run(runCtx, first)
	return c, nil
}

// becomeOwner records an acquisition and stamps the segment; nil means the
// stamp failed and this process is a follower again.
func (c *Cluster) becomeOwner(a lease.Acquired) *tender {
	at := time.Now() // about when the lease wrote our first heartbeat
	c.mu.Lock()
	c.takeovers = append(c.takeovers, Takeover{Epoch: a.Epoch, Reason: a.Reason.String(), At: at})
	c.mu.Unlock()
	c.log.Info("tend: became owner", "epoch", a.Epoch, "reason", a.Reason.String(), "previous", a.Previous.String())
	w := c.m.Writer(c.l)
	if err := w.StampAll(); err != nil {
		c.log.Warn("tend: stamp failed, back to follower", "err", err)
		return nil
	}
	c.setOwner(true)
	return newTender(c, w, at)
}

// steppedDown records a loss of the lease and makes this process a
// follower.
func (c *Cluster) steppedDown(sd StepDown) {
	c.mu.Lock()
	c.owner = false
	c.stepDowns = append(c.stepDowns, sd)
	c.mu.Unlock()
}

func (c *Cluster) setOwner(v bool) {
	c.mu.Lock()
	c.owner = v
	c.mu.Unlock()
}

// run is the process's one tend goroutine: wait for the lease, tend while
// holding it, repeat. After stepping down because its cycle overran, the
// process sits out one TakeoverThreshold before it competes for the lease
// again, so that a process that can tend in time takes over; alone, it
// takes the lease back after that pause.
func (c *Cluster) run(ctx context.Context, t *tender) {
	defer close(c.done)
	fresh := false // a tender handed in by Open has already tended once
	for {
		if t != nil {
			t.loop(ctx, fresh)
			c.setOwner(false)
			if ctx.Err() != nil {
				return
			}
			c.log.Info("tend: became follower", "epoch", t.w.Epoch(), "reason", t.reason)
			if t.reason == StepDownOverrun {
				pause := time.NewTimer(c.cfg.TakeoverThreshold)
				select {
				case <-ctx.Done():
					pause.Stop()
					return
				case <-pause.C:
				}
			}
		}
		a, err := c.l.Acquire(ctx)
		if err != nil {
			return
		}
		t, fresh = c.becomeOwner(a), true
	}
}

// Close stops tending, releases the lease if this process holds it (another
// process takes over at once) and detaches the segment. It is idempotent.
func (c *Cluster) Close() error {
	var err error
	c.close.Do(func() {
		c.stop()
		<-c.done
		if c.l.Epoch() != 0 {
			if rerr := c.l.Release(); rerr != nil && !errors.Is(rerr, lease.ErrLost) && !errors.Is(rerr, lease.ErrNotOwner) {
				err = fmt.Errorf("tend: release lease: %w", rerr)
			} else {
				c.log.Info("tend: released lease")
			}
		}
		c.pool.Close()
		if cerr := c.m.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("tend: close: %w", cerr)
		}
		if c.heap != nil {
			arena.Remove(c.loc, arena.RemoveOptions{Force: true})
		}
	})
	return err
}

// ns resolves a namespace name through partmap's cache, which checks the
// slot's control word on every call: a handle follows the namespace when a
// new owner re-registers it in another slot (after finding its record
// damaged).
func (c *Cluster) ns(name string) (partmap.NS, error) {
	ns, ok := c.m.Namespace(name)
	if !ok {
		return partmap.NS{}, fmt.Errorf("%w %q", ErrNamespace, name)
	}
	return ns, nil
}

// Map returns the shared view itself, for the lock-free hot path: resolve a
// namespace once with Map().Namespace and look partitions up by handle
// (Map().Master(ns, d.PartitionID())), which skips the name lookup Master
// does on every call. Do not use it after Close.
func (c *Cluster) Map() *partmap.Map { return c.m }

// Nodes returns the nodes of the cluster view, active or not, in slot order.
func (c *Cluster) Nodes() []*partmap.Node { return c.m.Nodes() }

// Master returns the master node of the partition digest d belongs to in
// namespace ns. Errors wrap ErrNamespace or partmap's errors (ErrNotFound
// for a partition without master).
func (c *Cluster) Master(ns string, d partmap.Digest) (*partmap.Node, error) {
	h, err := c.ns(ns)
	if err != nil {
		return nil, err
	}
	if n, ok := c.m.Master(h, d.PartitionID()); ok { // the lock-free fast path
		return n, nil
	}
	return c.lookupErr(ns, h, d.PartitionID(), 0)
}

// Replica returns replica i (0 master, 1 and 2 proles) of the partition
// digest d belongs to in namespace ns.
func (c *Cluster) Replica(ns string, d partmap.Digest, i int) (*partmap.Node, error) {
	h, err := c.ns(ns)
	if err != nil {
		return nil, err
	}
	pid := d.PartitionID()
	if n, ok := c.m.Replica(h, pid, i); ok { // the lock-free fast path
		return n, nil
	}
	return c.lookupErr(ns, h, pid, i)
}

// lookupErr is the lookup of Master and Replica when the fast path found
// nothing: Lookup says why (or finds the node, if the map changed since).
func (c *Cluster) lookupErr(ns string, h partmap.NS, pid uint32, i int) (*partmap.Node, error) {
	n, err := c.m.Lookup(h, pid, i)
	if err != nil {
		return nil, fmt.Errorf("tend: %s partition %d replica %d: %w", ns, pid, i, err)
	}
	return n, nil
}

// Snapshot returns a consistent copy of namespace ns's partition map.
func (c *Cluster) Snapshot(ns string) (*partmap.Snapshot, error) {
	h, err := c.ns(ns)
	if err != nil {
		return nil, err
	}
	s, err := c.m.Snapshot(h)
	if err != nil {
		return nil, fmt.Errorf("tend: snapshot %s: %w", ns, err)
	}
	return s, nil
}

// WaitChange blocks until the map generation differs from since and
// returns it (see partmap.Map.WaitChange).
func (c *Cluster) WaitChange(ctx context.Context, since uint64) (uint64, error) {
	return c.m.WaitChange(ctx, since)
}

// Stats returns this process's role and the owner's tend statistics.
func (c *Cluster) Stats() Stats {
	ms := c.m.Stats()
	o := c.l.Owner()
	c.mu.Lock()
	s := Stats{Role: RoleFollower, Takeovers: append([]Takeover(nil), c.takeovers...),
		StepDowns: append([]StepDown(nil), c.stepDowns...)}
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
	return s
}
