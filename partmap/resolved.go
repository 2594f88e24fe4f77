package partmap

import "sync/atomic"

// Resolved tables: the lookup fast path.
//
// A process keeps, per namespace it looks up, the namespace's partition
// map resolved to *Node values (a resolved table), built from the shared
// entries and node records while the publish word held one even value P,
// and unchanged across the build. A lookup uses the table only if the
// publish word still holds P when it loads it; it then costs one load of
// shared memory (the publish word) and two of this process's memory (the
// table pointer and the table's slot).
//
// Why that returns what the entry names at the instant of that load: the
// owner changes an entry or a node's control word only inside a batch,
// which it opens by moving the publish word from even to odd (Writer.begin;
// a new owner's StampAll seizes the word before it stamps anything), and
// the owner never writes a publish word value twice: its counter does not
// wrap within an epoch (ErrExhausted ends the epoch first), each new owner
// has a larger epoch, and an owner that finds the word damaged moves the
// counter past the damaged value (Writer.fixPub). So if the word holds P
// at the lookup's load, the owner changed no entry or control word
// between the build and that load, and every record the build verified
// under its control word is still the published one. A stale owner cannot
// open a batch (its CAS of the publish word is fenced), and stores into
// record copies do not touch the *Node values the table holds.
//
// Damage is outside that argument: a bit flip changes an entry without a
// batch (tables built before it keep the owner's answer; the per-entry
// path sees the damage), or sets the publish word back to a value it once
// held (tables built under that value answer from then). The owner's next
// Publish rewrites both (Writer: the scrub), so such wrong answers last
// until then at most.
//
// A table is built by the first lookup that finds the publish word
// changed (one build per publish per namespace per process, 52 to 68 µs
// for 4096 partitions, BENCHMARKS.md; Map.Prepare builds eagerly). While a
// batch is open, or when a build fails (a record cannot be verified, or
// the owner published during the build), lookups take the per-entry path
// (Map.entryLookup in map.go), which is correct on its own; a failed build
// is not retried under the same publish word value.

// nsTablesLen sizes Map.tables: index NS.i (0 is the zero NS, never
// built), a power of two above MaxNamespacesLimit, so that the hot path
// indexes with a mask instead of a bounds check.
const nsTablesLen = 64

var _ [nsTablesLen - 1 - MaxNamespacesLimit]struct{}

// resolved is one namespace's partition map resolved to nodes as of the
// publish word value pub. A nil node is a replica the per-entry path must
// answer (none, an empty or damaged slot).
type resolved struct {
	pub   uint64
	nodes [StoredReplicas][Partitions]*Node
}

// nsTable holds a namespace's resolved table and its build state.
type nsTable struct {
	cur atomic.Pointer[resolved]
	// tried is 1 + the publish word value of the last build attempt.
	tried    atomic.Uint64
	building atomic.Bool
}

// refresh builds namespace ns's (0-based) resolved table if the publish
// word is even, no build was tried under its value, and no other goroutine
// is building one.
func (m *Map) refresh(ns int) {
	t := &m.tables[ns+1]
	p := m.pubW.Load(0)
	if p&1 != 0 || t.tried.Load() == p+1 || !t.building.CompareAndSwap(false, true) {
		return
	}
	defer t.building.Store(false)
	t.tried.Store(p + 1)
	r, ok := m.resolve(ns, p, nil)
	if !ok {
		r = nil // a stale or torn table is of no use
	}
	t.cur.Store(r)
}

// resolve builds namespace ns's table under publish word value p: it loads
// the entries, then resolves the node slots they name, then loads the
// publish word again. ok is false if the word changed: the table may then
// mix two maps. pause, if not nil, is called between the entries' load and
// the slots' resolution (tests widen that window with it).
func (m *Map) resolve(ns int, p uint64, pause func()) (r *resolved, ok bool) {
	var entries [Partitions]uint64
	m.partsW.LoadN(uint64(ns)*Partitions, entries[:])
	if pause != nil {
		pause()
	}
	var nodes [MaxNodesLimit + 1]*Node
	for s := 1; s <= m.maxNodes; s++ {
		// Unverifiable records stay nil, as do empty slots: the
		// per-entry path answers for them (with the reason, in Lookup).
		nodes[s], _ = m.node(s - 1)
	}
	r = &resolved{pub: p}
	for pid, e := range entries {
		for k := range StoredReplicas {
			r.nodes[k][pid] = nodes[uint8(e>>(8*k))] // slot 0 and slots above MaxNodes are nil
		}
	}
	return r, m.pubW.Load(0) == p
}

// Prepare builds the resolved table of namespace ns now, so that no lookup
// pays for the build (about 60 µs) after a publish: call it, for example,
// when Map.WaitChange returns.
// It is optional: lookups build tables as they need them. It returns false
// if no table could be built (a publish is in progress, a record cannot be
// verified, or ns is not a valid handle).
func (m *Map) Prepare(ns NS) bool {
	i := ns.Index()
	if i < 0 || i >= m.maxNS {
		return false
	}
	t := &m.tables[ns.i]
	p := m.pubW.Load(0)
	if p&1 != 0 {
		return false
	}
	if r := t.cur.Load(); r != nil && r.pub == p {
		return true
	}
	t.tried.Store(0) // ask for a build even if one failed under p
	m.refresh(i)
	r := t.cur.Load()
	return r != nil && r.pub == m.pubW.Load(0)
}
