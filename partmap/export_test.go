package partmap

import "github.com/shmkit/shmkit/arena"

// Test-only access for the external test package.

// PausedReplica is Lookup with pause called between the partition entry's
// load and the node control word's, widening the window in which a slot
// can change hands: the protocol must stay correct however long it is.
func (m *Map) PausedReplica(ns NS, pid uint32, r int, pause func()) (*Node, error) {
	return m.lookupSlow(ns.Index(), pid, r, pause)
}

// NaiveMaster is the negative control: a lookup that validates the cached
// node against the slot's control word only, without checking that the
// record was verified before the entry was loaded. If the slot changes
// hands between the entry's load and the control word's, and another
// goroutine (or this one) caches the new record meanwhile, it returns a
// node the partition was never assigned to.
func (m *Map) NaiveMaster(ns NS, pid uint32, pause func()) (*Node, bool) {
	e := m.seg.Load64(m.entryOff(ns.Index(), pid))
	s := int(e & 0xff)
	if s == 0 || s > m.maxNodes {
		return nil, false
	}
	pause()
	if c := m.cache[s].Load(); c != nil && c.ctl == m.seg.Load64(m.nodeCtlOff(s-1)) {
		return c.node, c.node != nil
	}
	c, err := m.fillNode(s - 1)
	if err != nil {
		return nil, false
	}
	return c.node, c.node != nil
}

// BuildTable builds namespace ns's resolved table, with pause called
// between the entries' load and the resolution of their slots, and returns
// a lookup into it. It reports whether the publish word was unchanged
// across the build; with keepTorn false a table it was not is refused
// (nil), as the real path does. keepTorn true is the negative control: it
// keeps tables a publish tore.
func (m *Map) BuildTable(ns NS, pause func(), keepTorn bool) (func(pid uint32, r int) *Node, bool) {
	p := m.pubW.Load(0)
	if p&1 != 0 && !keepTorn {
		return nil, false
	}
	r, ok := m.resolve(ns.Index(), p, pause)
	if !ok && !keepTorn {
		return nil, false
	}
	return func(pid uint32, k int) *Node { return r.nodes[k][pid] }, ok
}

// TablePub returns the publish word value namespace ns's resolved table
// was built under, or false if this process has none.
func (m *Map) TablePub(ns NS) (uint64, bool) {
	if r := m.tables[ns.i].cur.Load(); r != nil {
		return r.pub, true
	}
	return 0, false
}

// PubWord returns the publish word.
func (m *Map) PubWord() uint64 { return m.pubW.Load(0) }

// StaleMaster is the negative control of the resolved table's check: it
// answers from the table without checking the publish word.
func (m *Map) StaleMaster(ns NS, pid uint32) (*Node, bool) {
	if r := m.tables[ns.i].cur.Load(); r != nil && r.nodes[0][pid] != nil {
		return r.nodes[0][pid], true
	}
	return nil, false
}

// WakeWord is the offset of the futex word WaitChange sleeps on, so that
// a test can tell (FutexWake's count) that waiters are blocked.
func (m *Map) WakeWord() arena.Offset { return m.futex }
