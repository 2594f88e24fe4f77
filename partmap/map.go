package partmap

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/seqlock"
)

// DefaultTimeout is the default Config.Timeout.
const DefaultTimeout = 5 * time.Second

// Bounds of the retry loops of readers. A record is republished at most
// once per owner publish (about once a second), so a read that overlaps
// more than a few publications is facing a hostile or broken segment.
const (
	readAttempts   = 8
	lookupAttempts = 8
)

// Config configures a Map. The zero value is the default configuration.
type Config struct {
	// MaxNodes is the number of node slots, 1..MaxNodesLimit (default
	// DefaultMaxNodes, 16). Every process sharing a segment must agree.
	MaxNodes int
	// MaxNamespaces is the number of namespace tables,
	// 1..MaxNamespacesLimit (default DefaultMaxNamespaces, 8). Every
	// process sharing a segment must agree.
	MaxNamespaces int
	// Mode is the permission of a created segment (default 0600; 0660 for
	// a group of processes of different users), and the widest accepted
	// of an existing one (arena.Options.Mode).
	Mode os.FileMode
	// AllowUIDs are the users besides this process's whose segment it
	// attaches (arena.Options.AllowUIDs): a group of worker processes under
	// several users lists the uid of the process that creates the segment.
	AllowUIDs []uint32
	// Timeout bounds Open's wait for another process's initialization of
	// the segment and Snapshot's wait for a stable map. Default
	// DefaultTimeout (5 s).
	Timeout time.Duration
	// StallTimeout is how long a record may stay busy under a live but
	// stalled writer before a read gives up (package seqlock). Default
	// seqlock.DefaultStallTimeout (1 s).
	StallTimeout time.Duration
	// Failpoints, when not nil, arms failpoints (FailPublishMid and those
	// of arena and seqlock), for tests.
	Failpoints *failpoint.Set
	// Logger receives operational messages; default slog.Default().
	Logger *slog.Logger
	// NoScrub turns off the owner's comparison of the partition entries
	// with its mirror at every Publish (Writer), so that a damaged entry
	// stays wrong until the partition changes. It exists for tests (the
	// negative control of the repair); never set it otherwise.
	NoScrub bool
}

// Map is one process's handle on a cluster segment: the node table, the
// namespace tables and the partition maps, plus the tend owner's lease.
// Readers use it lock-free from any number of goroutines; the owner
// writes through a Writer.
//
// Using a Map after Close is a bug (the segment is detached).
type Map struct {
	seg      *arena.Segment
	cfg      Config
	maxNodes int
	maxNS    int

	leaseOff arena.Offset
	pub      arena.Offset
	futex    arena.Offset
	nodeOvf  arena.Offset
	nsOvf    arena.Offset
	// conflicts and repairs are plain counters (layout.go).
	conflicts arena.Offset
	repairs   arena.Offset
	nodeCtl   arena.Offset // + 8*i for node slot i (0-based)
	nsCtl     arena.Offset
	statsCtl  arena.Offset
	parts     arena.Offset
	// partsW, ctlW and pubW view the partition entries, the node control
	// words and the publish word for the lookup hot paths (one bounds
	// compare per load).
	partsW, ctlW, pubW arena.Words

	// tables holds the resolved tables (resolved.go), at index NS.i.
	tables [nsTablesLen]nsTable

	nodeT, nsT, statsT *seqlock.Table

	// cache holds, per node slot (1-based: index 0 and indexes above
	// maxNodes stay nil), the last record this process verified, with the
	// control word it was verified under. 256 entries, so that an 8-bit
	// slot indexes it without a bounds check.
	cache [256]atomic.Pointer[cachedNode]
	// fills counts completed verifications; each cache entry carries the
	// count its verification produced, so that a lookup can tell entries
	// verified before it began from those verified since.
	fills atomic.Uint64

	nsMu    sync.Mutex
	nsNames atomic.Pointer[map[string]nsEntry]

	// bad remembers, per control word offset, a record that failed
	// validation (*badRecord): it is not read again under the same
	// control word until badRetry has passed, so that a damaged record
	// (one left busy costs StallTimeout per read) costs one read, not one
	// per lookup.
	bad      sync.Map
	badRetry time.Duration
}

type badRecord struct {
	ctl uint64
	err error
	at  time.Time
}

// cachedNode is a verified node record: node (nil for an empty slot) was
// read from the copy named by control word ctl, and the control word still
// had that value after the read. seq is the fill count the verification
// produced (Map.fills).
type cachedNode struct {
	ctl, seq uint64
	node     *Node
}

type nsEntry struct {
	idx int
	ctl uint64
}

// NS is a handle on a namespace table, from Map.Namespace or
// Writer.EnsureNamespace. The zero NS refers to no namespace. A handle is
// valid for the life of the segment: a namespace slot is never given to
// another namespace (unless a new owner finds its record damaged; lookups
// through the old handle then find nothing).
type NS struct {
	i uint16 // slot index + 1
}

// Index returns the namespace's slot index, or -1 for the zero NS.
func (n NS) Index() int { return int(n.i) - 1 }

// Open attaches the cluster segment at loc, creating and initializing it
// if it does not exist. A segment created with another configuration is
// refused with a *layout.MismatchError (errors.As) that names the field,
// both values and the command that removes the segment.
func Open(ctx context.Context, loc arena.Location, cfg Config) (*Map, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	spec, err := SegmentSpec(cfg)
	if err != nil {
		return nil, err
	}
	seg, err := arena.OpenOrCreate(ctx, loc, arena.Options{
		Spec: spec, Mode: cfg.Mode, AllowUIDs: cfg.AllowUIDs, Timeout: cfg.Timeout, Failpoints: cfg.Failpoints, Logger: cfg.Logger,
		Init: func(s *arena.Segment) error { _, err := newMap(s, cfg); return err },
	})
	if err != nil {
		return nil, fmt.Errorf("partmap: %w", err) // arena's error names the segment
	}
	m, err := newMap(seg, cfg)
	if err != nil {
		_ = seg.Close()
		return nil, fmt.Errorf("partmap: open %s: %w", loc, err)
	}
	return m, nil
}

// newMap locates the sections of an attached segment and attaches the
// seqlock tables (initializing them in a fresh segment).
func newMap(seg *arena.Segment, cfg Config) (*Map, error) {
	m := &Map{seg: seg, cfg: cfg, maxNodes: cfg.MaxNodes, maxNS: cfg.MaxNamespaces}
	sec := func(name string, want uint64) (arena.Offset, error) {
		off, size, err := seg.Section(name)
		if err != nil {
			return 0, err
		}
		if size < want || off%8 != 0 {
			return 0, corrupt("section", -1, arena.ErrRange, "%s at %d has %d bytes, want %d, 8-byte aligned", name, off, size, want)
		}
		return off, seg.CheckRange(off, want)
	}
	spec, _ := SegmentSpec(cfg)
	offs := make(map[string]arena.Offset, len(spec.Sections))
	for _, s := range spec.Sections {
		off, err := sec(s.Name, s.Size)
		if err != nil {
			return nil, err
		}
		offs[s.Name] = off
	}
	meta := offs[secMeta]
	m.leaseOff = offs[secLease]
	m.pub, m.futex = meta+offPub, meta+offFutex
	m.nodeOvf, m.nsOvf = meta+offNodeOverflow, meta+offNSOverflow
	m.conflicts, m.repairs = meta+offConflicts, meta+offRepairs
	m.nodeCtl = meta + offNodeCtl
	m.nsCtl = m.nodeCtl + arena.Offset(8*m.maxNodes)
	m.statsCtl = m.nsCtl + arena.Offset(8*m.maxNS)
	m.parts = offs[secParts]
	var werr error
	if m.partsW, werr = seg.Words(m.parts, uint64(m.maxNS)*Partitions); werr != nil {
		return nil, corrupt("section", -1, werr, "%s is smaller than %d namespace tables", secParts, m.maxNS)
	}
	if m.ctlW, werr = seg.Words(m.nodeCtl, uint64(m.maxNodes)); werr != nil {
		return nil, corrupt("section", -1, werr, "%s has no room for %d node control words", secMeta, m.maxNodes)
	}
	if m.pubW, werr = seg.Words(m.pub, 1); werr != nil {
		return nil, corrupt("section", -1, werr, "%s has no room for the publish word", secMeta)
	}
	opts := seqlock.Options{StallTimeout: cfg.StallTimeout, Failpoints: cfg.Failpoints}
	table := func(name string, records, words int) (*seqlock.Table, error) {
		t, err := seqlock.New(seg, offs[name], records, words, opts)
		if err != nil {
			return nil, corrupt("section", -1, err, "%s does not hold the expected seqlock table", name)
		}
		return t, nil
	}
	var err error
	if m.nodeT, err = table(secNodes, 2*m.maxNodes, nodeWords); err != nil {
		return nil, err
	}
	if m.nsT, err = table(secNS, 2*m.maxNS, nsWords); err != nil {
		return nil, err
	}
	if m.statsT, err = table(secStats, 2, statsWords); err != nil {
		return nil, err
	}
	m.badRetry = 10 * cfg.StallTimeout
	if cfg.StallTimeout <= 0 {
		m.badRetry = 10 * seqlock.DefaultStallTimeout
	}
	return m, nil
}

// Close detaches the segment (it stays for other processes; remove it
// with arena.Remove). It is idempotent.
func (m *Map) Close() error { return m.seg.Close() }

// Segment returns the attached segment.
func (m *Map) Segment() *arena.Segment { return m.seg }

// LeaseOffset returns the offset of the tend owner's lease record, for
// lease.New(m.Segment(), m.LeaseOffset(), …).
func (m *Map) LeaseOffset() arena.Offset { return m.leaseOff }

// Config returns the configuration in effect (defaults applied).
func (m *Map) Config() Config { return m.cfg }

func (m *Map) nodeCtlOff(i int) arena.Offset { return m.nodeCtl + arena.Offset(8*i) }
func (m *Map) nsCtlOff(i int) arena.Offset   { return m.nsCtl + arena.Offset(8*i) }

// ctlOff returns the control word of slot i of record table t.
func (m *Map) ctlOff(t *seqlock.Table, i int) arena.Offset {
	switch t {
	case m.nodeT:
		return m.nodeCtlOff(i)
	case m.nsT:
		return m.nsCtlOff(i)
	}
	return m.statsCtl
}
func (m *Map) entryOff(ns int, pid uint32) arena.Offset {
	return m.parts + arena.Offset(ns)<<partShift + arena.Offset(pid)<<3
}

// Master returns the master node of partition pid of namespace ns. See
// Lookup; ok is false whenever Lookup would return an error.
//
// It is Replica(ns, pid, 0), written out for the hot path.
func (m *Map) Master(ns NS, pid uint32) (*Node, bool) {
	if t := m.tables[ns.i&(nsTablesLen-1)].cur.Load(); t != nil && pid < Partitions && t.pub == m.pubW.Load(0) {
		if n := t.nodes[0][pid]; n != nil {
			return n, true
		}
	}
	return m.entryLookup(ns, pid, 0)
}

// Replica returns replica r (0 master, 1 and 2 the proles) of partition
// pid of namespace ns, or false if there is none (or it cannot be read:
// use Lookup for the reason).
//
// The hot path loads one shared word, the publish word, and finds the node
// in this process's resolved table of the namespace, valid while that word
// is unchanged (see resolved.go). Otherwise (the first lookup after a
// publish, or while one is in progress) it loads the partition's entry and
// the node's control word, and finds the node in this process's cache of
// verified node records; see the package documentation for why neither
// path ever returns a node the partition was not assigned to.
func (m *Map) Replica(ns NS, pid uint32, r int) (*Node, bool) {
	if t := m.tables[ns.i&(nsTablesLen-1)].cur.Load(); t != nil && pid < Partitions && uint(r) < StoredReplicas && t.pub == m.pubW.Load(0) {
		if n := t.nodes[r][pid]; n != nil {
			return n, true
		}
	}
	return m.entryLookup(ns, pid, r)
}

// entryLookup is the lookup path through the partition entry and the node
// cache, taken when the resolved table cannot answer; it asks for the
// table to be rebuilt first.
func (m *Map) entryLookup(ns NS, pid uint32, r int) (*Node, bool) {
	i := uint(ns.i) - 1
	if i >= uint(m.maxNS) || pid >= Partitions || uint(r) >= StoredReplicas {
		return nil, false
	}
	m.refresh(int(i))
	f := m.fills.Load()
	s := uint8(m.partsW.Load(uint64(i)*Partitions+uint64(pid)) >> (8 * uint(r)))
	if s == 0 {
		return nil, false
	}
	// Slots above MaxNodes have no cache entry: the slow path reports them.
	if c := m.cache[s].Load(); c != nil && c.seq <= f && c.ctl == m.ctlW.Load(uint64(s)-1) {
		return c.node, c.node != nil
	}
	n, err := m.lookupSlow(int(i), pid, r, nil)
	return n, err == nil
}

// Lookup returns replica r (0 master, 1 and 2 the proles) of partition
// pid of namespace ns. It fails with ErrInvalid for bad arguments,
// ErrNotFound if the partition has no such replica, a *CorruptError
// (ErrCorrupt) if the node's newest record cannot be verified, and
// ErrUnstable if the node was republished during every attempt.
//
// A record rewritten after its publication (damage)
// does not disturb a process that verified it before: its cached copy
// stays valid for as long as the control word is unchanged.
func (m *Map) Lookup(ns NS, pid uint32, r int) (*Node, error) {
	i := uint(ns.i) - 1
	switch {
	case i >= uint(m.maxNS):
		return nil, fmt.Errorf("partmap: namespace handle %d of %d: %w", ns.Index(), m.maxNS, ErrInvalid)
	case pid >= Partitions:
		return nil, fmt.Errorf("partmap: partition %d: %w", pid, ErrPartitionOutOfRange)
	case uint(r) >= StoredReplicas:
		return nil, fmt.Errorf("partmap: replica %d: want 0..%d: %w", r, StoredReplicas-1, ErrInvalid)
	}
	return m.lookupSlow(int(i), pid, r, nil)
}

// lookupSlow is Replica's path when the cache cannot answer: it verifies
// the node's record and retries the lookup with it. pause, if not nil, is
// called between the entry's load and the control word's (tests widen the
// race window with it).
func (m *Map) lookupSlow(ns int, pid uint32, r int, pause func()) (*Node, error) {
	for range lookupAttempts {
		f := m.fills.Load()
		e := m.seg.Load64(m.entryOff(ns, pid))
		if pause != nil {
			pause()
		}
		s := int(e >> (8 * r) & 0xff)
		switch {
		case s == 0:
			return nil, fmt.Errorf("partmap: namespace %d partition %d has no replica %d: %w", ns, pid, r, ErrNotFound)
		case s > m.maxNodes:
			return nil, corrupt("partition", int(pid), nil, "namespace %d replica %d names node slot %d of %d", ns, r, s, m.maxNodes)
		}
		if c := m.cache[s].Load(); c != nil && c.seq <= f && c.ctl == m.seg.Load64(m.nodeCtlOff(s-1)) {
			return c.result(ns, pid)
		}
		if _, err := m.fillNode(s - 1); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("partmap: namespace %d partition %d: node republished during %d attempts: %w", ns, pid, lookupAttempts, ErrUnstable)
}

func (c *cachedNode) result(ns int, pid uint32) (*Node, error) {
	if c.node == nil {
		return nil, fmt.Errorf("partmap: namespace %d partition %d refers to an empty node slot: %w", ns, pid, ErrNotFound)
	}
	return c.node, nil
}

// fillNode verifies node slot i's (0-based) published record and caches it.
func (m *Map) fillNode(i int) (*cachedNode, error) {
	var rec [nodeWords]uint64
	ctl, present, err := m.readRecord(m.nodeT, m.nodeCtlOff(i), i, rec[:], "node slot", i+1)
	if err != nil {
		return nil, err
	}
	var n *Node
	if present {
		if n, err = decodeNode(i+1, rec[:]); err != nil {
			return nil, err
		}
	}
	// Count the fill after the verification (readRecord's last load of
	// the control word) and before the entry becomes visible.
	c := &cachedNode{ctl: ctl, seq: m.fills.Add(1), node: n}
	m.cache[i+1].Store(c)
	return c, nil
}

// readRecord reads the published copy of slot idx of table t, whose control
// word is at ctlOff, into rec and verifies it. It returns the control word
// the copy was verified against, and present = false for a slot that was
// never published (rec is then untouched). shown is the slot number used
// in messages.
func (m *Map) readRecord(t *seqlock.Table, ctlOff arena.Offset, idx int, rec []uint64, what string, shown int) (uint64, bool, error) {
	waited := false
	for range readAttempts {
		c := m.seg.Load64(ctlOff)
		_, p := lease.SplitFenced(c)
		if p == 0 {
			return c, false, nil
		}
		if v, ok := m.bad.Load(ctlOff); ok {
			if b := v.(*badRecord); b.ctl == c && time.Since(b.at) < m.badRetry {
				return c, true, b.err
			}
		}
		cp := copyOf(p)
		err := t.Read(2*idx+cp, rec)
		if m.seg.Load64(ctlOff) != c {
			continue // republished during the read
		}
		switch {
		case err != nil:
			err = corrupt(what, shown, err, "copy %d cannot be read", cp)
		case rec[wTag] != c:
			// A new owner adopting the record shows this between its stamp
			// of the control word and its republication (one copy write):
			// wait that out, once, for a bounded time.
			if !waited && adopting(rec[wTag], c) {
				waited = true
				if m.awaitChange(ctlOff, c) {
					continue
				}
			}
			err = corrupt(what, shown, nil,
				"copy %d carries tag %#x but the control word is %#x: it was rewritten after publication, or a new owner is adopting it (or stopped doing so)", cp, rec[wTag], c)
		case rec[wSum] != checksum(rec):
			err = corrupt(what, shown, nil, "copy %d checksum %#x, computed %#x", cp, rec[wSum], checksum(rec))
		default:
			if _, ok := m.bad.Load(ctlOff); ok {
				m.bad.Delete(ctlOff)
			}
			return c, true, nil
		}
		m.bad.Store(ctlOff, &badRecord{ctl: c, err: err, at: time.Now()})
		return c, true, err
	}
	return 0, false, fmt.Errorf("partmap: %s %d: republished during %d reads: %w", what, shown, readAttempts, ErrUnstable)
}

// adoptWait bounds how long a reader waits for a record whose copy's tag
// is not its control word to be republished (see readRecord).
const adoptWait = 20 * time.Millisecond

// adopting reports whether a copy tagged tag under control word c is what
// a new owner's adoption shows (see "Fencing" in the package doc): stamped
// but not yet rewritten (the tag is the control word under an earlier
// epoch), or rewritten but not yet republished (the tag carries the
// control word's epoch and another publication). Anything else is damage,
// reported at once.
func adopting(tag, c uint64) bool {
	te, tp := lease.SplitFenced(tag)
	ce, cp := lease.SplitFenced(c)
	return (tp == cp && te < ce) || (te == ce && tp != cp)
}

// awaitChange reports whether the control word at ctlOff moves from c
// within adoptWait, yielding, then sleeping briefly, while it waits.
func (m *Map) awaitChange(ctlOff arena.Offset, c uint64) bool {
	deadline := time.Now().Add(adoptWait)
	for i := 0; ; i++ {
		if m.seg.Load64(ctlOff) != c {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		if i < 64 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// node returns node slot i's (0-based) current record, from the cache
// when its control word has not changed.
func (m *Map) node(i int) (*Node, error) {
	if c := m.cache[i+1].Load(); c != nil && c.ctl == m.seg.Load64(m.nodeCtlOff(i)) {
		return c.node, nil
	}
	c, err := m.fillNode(i)
	if err != nil {
		return nil, err
	}
	return c.node, nil
}

// Nodes returns the nodes in the node table, in slot order. Slots whose
// record cannot be verified are left out (Stats counts them).
func (m *Map) Nodes() []*Node {
	var out []*Node
	for i := range m.maxNodes {
		if n, err := m.node(i); err == nil && n != nil {
			out = append(out, n)
		}
	}
	return out
}

// Namespace returns the handle of the namespace called name, or false if
// the owner has not registered it. Handles are cached: a call costs a map
// lookup and one atomic load.
func (m *Map) Namespace(name string) (NS, bool) {
	if names := m.nsNames.Load(); names != nil {
		if e, ok := (*names)[name]; ok && m.seg.Load64(m.nsCtlOff(e.idx)) == e.ctl {
			return NS{i: uint16(e.idx + 1)}, true
		}
	}
	m.nsMu.Lock()
	defer m.nsMu.Unlock()
	names := m.scanNamespaces()
	m.nsNames.Store(&names)
	if e, ok := names[name]; ok {
		return NS{i: uint16(e.idx + 1)}, true
	}
	return NS{}, false
}

// scanNamespaces reads every namespace record; unverifiable ones are left
// out, and a name found twice (only in a damaged segment) keeps its first
// slot.
func (m *Map) scanNamespaces() map[string]nsEntry {
	names := map[string]nsEntry{}
	var rec [nsWords]uint64
	for i := range m.maxNS {
		ctl, present, err := m.readRecord(m.nsT, m.nsCtlOff(i), i, rec[:], "namespace slot", i)
		if err != nil || !present {
			continue
		}
		info, err := decodeNamespace(i, rec[:])
		if err != nil {
			continue
		}
		if _, dup := names[info.Name]; !dup {
			names[info.Name] = nsEntry{idx: i, ctl: ctl}
		}
	}
	return names
}

// NamespaceInfo returns the registration of namespace ns.
func (m *Map) NamespaceInfo(ns NS) (NamespaceInfo, error) {
	i := ns.Index()
	if i < 0 || i >= m.maxNS {
		return NamespaceInfo{}, fmt.Errorf("partmap: namespace handle %d of %d: %w", i, m.maxNS, ErrInvalid)
	}
	var rec [nsWords]uint64
	_, present, err := m.readRecord(m.nsT, m.nsCtlOff(i), i, rec[:], "namespace slot", i)
	if err != nil {
		return NamespaceInfo{}, err
	}
	if !present {
		return NamespaceInfo{}, fmt.Errorf("partmap: namespace slot %d is not registered: %w", i, ErrNotFound)
	}
	return decodeNamespace(i, rec[:])
}

// Namespaces returns the registered namespaces, in slot order.
func (m *Map) Namespaces() []NamespaceInfo {
	var out []NamespaceInfo
	for i := range m.maxNS {
		if info, err := m.NamespaceInfo(NS{i: uint16(i + 1)}); err == nil {
			out = append(out, info)
		}
	}
	return out
}

// Generation returns the generation of the last completed publish. It
// grows by one with every publish and jumps with every change of owner
// (it is the publish word, epoch and counter, shifted right by one).
func (m *Map) Generation() uint64 { return m.seg.Load64(m.pub) >> 1 }

// WaitChange blocks until the generation differs from since, and returns
// it. It sleeps on the segment's futex word, which the owner's Publish
// wakes (in every process), so it costs nothing while nothing changes.
// It fails, wrapping ctx.Err(), when ctx is done first.
func (m *Map) WaitChange(ctx context.Context, since uint64) (uint64, error) {
	// On cancellation, bump the wake word and wake every waiter: ours
	// returns, others re-check and sleep again. Bumping (not only waking)
	// covers a cancellation between our check of ctx and FUTEX_WAIT.
	// The callback touches the segment, so WaitChange does not return
	// while it runs: the caller may Close (unmap) right after.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		m.seg.Add32(m.futex, 1)
		m.seg.FutexWake(m.futex, math.MaxInt32)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()
	for {
		f := m.seg.Load32(m.futex) // before the generation: a publish in between changes it
		if g := m.Generation(); g != since {
			return g, nil
		}
		if err := ctx.Err(); err != nil {
			return since, fmt.Errorf("partmap: wait for a change after generation %d: %w", since, err)
		}
		wait := time.Minute
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(d)+time.Millisecond)
		}
		m.seg.FutexWait(m.futex, f, wait)
	}
}

// Replicas holds the node slots (1-based, 0 = none) of a partition's
// master, prole 1 and prole 2.
type Replicas [StoredReplicas]uint8

// Snapshot is a consistent copy of one namespace table: every partition
// entry and every node they refer to, as of one generation.
type Snapshot struct {
	// Generation is the generation the copy was taken at.
	Generation uint64
	// NS is the handle the snapshot was taken of.
	NS NS
	// Namespace is the namespace's registration.
	Namespace NamespaceInfo
	// Partitions holds the node slots of every partition.
	Partitions [Partitions]Replicas
	// Nodes maps every slot the partitions refer to to its node (nil for
	// a slot that is empty, which only a damaged segment shows).
	Nodes map[int]*Node
}

// Node returns replica r of partition pid in the snapshot, or nil.
func (s *Snapshot) Node(pid uint32, r int) *Node {
	if pid >= Partitions || uint(r) >= StoredReplicas {
		return nil
	}
	return s.Nodes[int(s.Partitions[pid][r])]
}

// Snapshot copies namespace ns's table as of one generation: it reads the
// publish word, the namespace record, the 4096 entries and the nodes they
// refer to, then the publish word again, and retries until both reads of
// the publish word agree and no batch was open. It gives up with
// ErrUnstable after Config.Timeout (an owner stopped in the middle of a
// publish keeps a batch open until another process takes over); records
// that fail validation are *CorruptError errors.
func (m *Map) Snapshot(ns NS) (*Snapshot, error) {
	i := ns.Index()
	if i < 0 || i >= m.maxNS {
		return nil, fmt.Errorf("partmap: namespace handle %d of %d: %w", i, m.maxNS, ErrInvalid)
	}
	deadline := time.Now().Add(m.cfg.Timeout)
	words := make([]uint64, Partitions)
	snap := &Snapshot{NS: ns}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if !time.Now().Before(deadline) {
				return nil, fmt.Errorf("partmap: snapshot of namespace %d: the map changed, or a publish stayed open, for %v: %w",
					i, m.cfg.Timeout, ErrUnstable)
			}
			m.pauseForPublish(deadline)
		}
		p1 := m.seg.Load64(m.pub)
		if p1&1 != 0 {
			continue // a batch is open
		}
		var err error
		if snap.Namespace, err = m.NamespaceInfo(ns); err == nil {
			m.seg.LoadWords(m.entryOff(i, 0), words)
			snap.Nodes, err = m.snapNodes(words, snap)
		}
		if m.seg.Load64(m.pub) != p1 {
			continue
		}
		if err != nil {
			return nil, err
		}
		snap.Generation = p1 >> 1
		return snap, nil
	}
}

// snapNodes decodes the entries into snap.Partitions and resolves every
// slot they name.
func (m *Map) snapNodes(words []uint64, snap *Snapshot) (map[int]*Node, error) {
	nodes := map[int]*Node{}
	for pid, w := range words {
		for r := range StoredReplicas {
			s := int(w >> (8 * r) & 0xff)
			snap.Partitions[pid][r] = uint8(s)
			if s == 0 {
				continue
			}
			if s > m.maxNodes {
				return nil, corrupt("partition", pid, nil, "replica %d names node slot %d of %d", r, s, m.maxNodes)
			}
			if _, done := nodes[s]; done {
				continue
			}
			n, err := m.node(s - 1)
			if err != nil {
				return nil, err
			}
			nodes[s] = n
		}
	}
	return nodes, nil
}

// pauseForPublish waits a little for an open batch to be published: on
// the futex word, so that the wait ends with the publish.
func (m *Map) pauseForPublish(deadline time.Time) {
	f := m.seg.Load32(m.futex)
	if m.seg.Load64(m.pub)&1 == 0 {
		return // retry at once: the map changed under the copy
	}
	m.seg.FutexWait(m.futex, f, min(time.Until(deadline), 10*time.Millisecond))
}

// Stats describes the segment's content and its owner.
type Stats struct {
	// Generation is the generation of the last completed publish.
	Generation uint64
	// Publishing is true while the owner has a batch open.
	Publishing bool
	// Nodes counts the nodes in the node table, ActiveNodes those marked
	// active; Namespaces counts registered namespaces.
	Nodes, ActiveNodes, Namespaces int
	// Unreadable counts records that failed validation.
	Unreadable int
	// NodeOverflow and NamespaceOverflow count the nodes and namespaces
	// the owner refused for lack of a slot (ErrNoRoom) and has not stored
	// since: distinct names, not attempts. A new owner counts afresh.
	NodeOverflow, NamespaceOverflow uint64
	// Conflicts counts the partition rows in which the tender found one
	// node at two replica ranks and dropped the older claim
	// (TendReport.Conflicts), over all owners.
	Conflicts uint64
	// Repairs counts the shared words (partition entries, the publish
	// word, control words, records) the owner found damaged and rewrote,
	// over all owners.
	Repairs uint64
	// Owner are the owner's tend statistics (zero until it published
	// some).
	Owner OwnerStats
}

// Stats returns the segment's statistics.
func (m *Map) Stats() Stats {
	pub := m.seg.Load64(m.pub)
	st := Stats{Generation: pub >> 1, Publishing: pub&1 != 0,
		NodeOverflow: m.seg.Load64(m.nodeOvf), NamespaceOverflow: m.seg.Load64(m.nsOvf),
		Conflicts: m.seg.Load64(m.conflicts), Repairs: m.seg.Load64(m.repairs)}
	for i := range m.maxNodes {
		n, err := m.node(i)
		switch {
		case err != nil:
			st.Unreadable++
		case n != nil:
			st.Nodes++
			if n.Active {
				st.ActiveNodes++
			}
		}
	}
	var rec [nsWords]uint64
	for i := range m.maxNS {
		_, present, err := m.readRecord(m.nsT, m.nsCtlOff(i), i, rec[:], "namespace slot", i)
		if err == nil && present {
			_, err = decodeNamespace(i, rec[:])
		}
		switch {
		case err != nil:
			st.Unreadable++
		case present:
			st.Namespaces++
		}
	}
	var srec [statsWords]uint64
	_, present, err := m.readRecord(m.statsT, m.statsCtl, 0, srec[:], "stats", 0)
	switch {
	case err != nil:
		st.Unreadable++
	case present:
		if st.Owner, err = decodeStats(srec[:]); err != nil {
			st.Unreadable++
		}
	}
	return st
}

// ClusterName returns the cluster name the segment records: the name its
// first tend owner was configured with or observed, kept by every later
// owner ("" while none is recorded). A stats record that fails validation
// is an error wrapping ErrCorrupt; the owner rewrites it at its next tend.
func (m *Map) ClusterName() (string, error) {
	var srec [statsWords]uint64
	_, present, err := m.readRecord(m.statsT, m.statsCtl, 0, srec[:], "stats", 0)
	if err != nil || !present {
		return "", err
	}
	s, err := decodeStats(srec[:])
	return s.ClusterName, err
}

// CheckClusterName returns a *layout.MismatchError naming both names if
// the segment records a cluster name other than want (want "" matches
// any). It is how a process configured for one cluster refuses the
// segment of another.
func (m *Map) CheckClusterName(want string) error {
	if want == "" {
		return nil
	}
	have, err := m.ClusterName()
	if err != nil {
		return err
	}
	if have != "" && have != want {
		return &layout.MismatchError{Segment: m.seg.Location().String(), Field: "cluster-name", HaveText: have, WantText: want}
	}
	return nil
}
