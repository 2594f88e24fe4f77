package partmap

// Test-only access for the external test package.

// PausedReplica is Lookup with pause called between the partition entry's
// load and the node control word's, widening the window in which a slot
// can change hands: the protocol must stay correct however long it is.
func (m *Map) PausedReplica(ns NS, pid uint32, r int, pause func()) (*Node, error) {
	return m.lookupSlow(ns.Index(), pid, r, pause)
}

// NaiveMaster is the negative control: a lookup that validates the cached
// node against the slot's control word only, without the reuse counter.
// A slot that changes hands between the entry's load and the control
// word's makes it return a node the partition was never assigned to.
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
