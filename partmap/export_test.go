package partmap

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
