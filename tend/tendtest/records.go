package tendtest

import (
	"bytes"
	"math"
	"slices"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record/wire"
)

// MaxRecordSize bounds the bytes of a record's bins, as a namespace's
// max-record-size does; a larger write gets ResultRecordTooBig.
const MaxRecordSize = 8 << 20

// MaxBins bounds the operations of one request and the bins of one
// record (a server's limit is higher; the simulator keeps bins in a list).
// More gives ResultParameterError.
const MaxBins = 4096

// maxReplyOps bounds the bins of one reply: its op count is 16 bits.
const maxReplyOps = 0xFFFF

// maxRecordBody bounds a record request a node accepts.
const maxRecordBody = MaxRecordSize + 1<<20

// maxGeneration is where record generations wrap (to 1), as the server's
// 16-bit generation does.
const maxGeneration = 0xFFFF

// bin is one stored bin. Values own their bytes: nothing aliases a
// connection buffer.
type bin struct {
	name  string
	value wire.Value
}

// record is one stored record. Records are never modified in place: a
// write builds a new one, so partition copies on several nodes share
// records safely.
type record struct {
	bins     []bin // in the order they were first written
	gen      uint32
	voidTime uint32 // seconds since wire.CitrusleafEpoch; 0 = never expires
	userKey  wire.Value
	size     int
}

// partData is a node's copy of one partition of one namespace. version
// orders copies: every write stamps the copies it reaches with a new
// cluster-wide version, and migration copies the highest live version to
// the partition's owners.
type partData struct {
	version uint64
	recs    map[partmap.Digest]*record
}

func (p *partData) clone() *partData {
	return &partData{version: p.version, recs: cloneRecs(p.recs)}
}

func cloneRecs(m map[partmap.Digest]*record) map[partmap.Digest]*record {
	out := make(map[partmap.Digest]*record, len(m))
	for d, r := range m {
		out[d] = r
	}
	return out
}

// RecordInfo describes a record as one node stores it.
type RecordInfo struct {
	// Bins maps bin names to values.
	Bins map[string]wire.Value
	// Generation is the record's generation.
	Generation uint32
	// VoidTime is when the record expires, in seconds since
	// wire.CitrusleafEpoch (0: never).
	VoidTime uint32
	// UserKey is the user key stored with the record (null unless a
	// client sent it).
	UserKey wire.Value
}

// StoredRecord returns node i's copy of the record with digest d in
// namespace ns (ok false when the node has no live copy). It reads the
// node's storage directly, whether or not the node owns the partition.
func (c *Cluster) StoredRecord(i int, ns string, d partmap.Digest) (RecordInfo, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return RecordInfo{}, false, err
	}
	if _, err := c.nsLocked(ns); err != nil {
		return RecordInfo{}, false, err
	}
	pd := n.partLocked(ns, d.PartitionID(), false)
	if pd == nil {
		return RecordInfo{}, false, nil
	}
	r := live(pd.recs[d], c.voidNowLocked())
	if r == nil {
		return RecordInfo{}, false, nil
	}
	out := RecordInfo{Bins: make(map[string]wire.Value, len(r.bins)), Generation: r.gen, VoidTime: r.voidTime, UserKey: r.userKey}
	for _, b := range r.bins {
		out.Bins[b.name] = b.value
	}
	return out, true, nil
}

// RecordCount returns how many live records node i stores for namespace
// ns, over every partition it has a copy of (owned or not).
func (c *Cluster) RecordCount(i int, ns string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return 0, err
	}
	if _, err := c.nsLocked(ns); err != nil {
		return 0, err
	}
	now := c.voidNowLocked()
	count := 0
	for _, pd := range n.data[ns] {
		if pd == nil {
			continue
		}
		for _, r := range pd.recs {
			if live(r, now) != nil {
				count++
			}
		}
	}
	return count, nil
}

// OwnedRecordCount returns how many live records of namespace ns the
// cluster holds, counting each record once in its master's copy.
func (c *Cluster) OwnedRecordCount(ns string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.nsLocked(ns)
	if err != nil {
		return 0, err
	}
	now := c.voidNowLocked()
	count := 0
	for pid := range uint32(partmap.Partitions) {
		owners := c.ownersLocked(st, pid)
		if len(owners) == 0 || owners[0] == nil {
			continue
		}
		if pd := owners[0].partLocked(ns, pid, false); pd != nil {
			for _, r := range pd.recs {
				if live(r, now) != nil {
					count++
				}
			}
		}
	}
	return count, nil
}

// RecordMessages returns how many record (message type 3) requests node i
// answered.
func (c *Cluster) RecordMessages(i int) uint64 {
	return c.nodeCounter(i, func(n *node) uint64 { return n.recordMsgs })
}

// Proxied returns how many record requests reached node i for a partition
// it does not hold in the needed role — a write on a node that is not the
// partition's master, a read on a node that is not one of its replicas. A
// server proxies such a request to the right node; the simulator answers
// it as the right node would and counts it here. A client routing by a
// converged map makes this 0.
func (c *Cluster) Proxied(i int) uint64 {
	return c.nodeCounter(i, func(n *node) uint64 { return n.proxied })
}

// TotalProxied returns the sum of Proxied over every node.
func (c *Cluster) TotalProxied() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total uint64
	for _, n := range c.nodes {
		total += n.proxied
	}
	return total
}

// now returns the cluster's clock.
func (c *Cluster) nowLocked() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

// voidNowLocked is the current time as a void time.
func (c *Cluster) voidNowLocked() uint32 {
	v := c.nowLocked().Unix() - wire.CitrusleafEpoch
	return uint32(max(0, min(v, math.MaxUint32)))
}

// live returns r unless it is nil or expired at void time now.
func live(r *record, now uint32) *record {
	if r == nil || (r.voidTime != 0 && r.voidTime <= now) {
		return nil
	}
	return r
}

// ownersLocked returns the nodes holding each replica index of partition
// pid (nil where nobody does), resolved as Replicas documents.
func (c *Cluster) ownersLocked(st *nsState, pid uint32) []*node {
	ns := st.spec.Name
	top := uint32(0)
	for _, n := range c.nodes {
		if n.removed {
			continue
		}
		for _, bm := range n.claims[ns] {
			if bm.Has(pid) {
				top = max(top, n.regime[ns])
			}
		}
	}
	return c.rankOwnersLocked(st, pid, top)
}

// rankOwnersLocked resolves each replica index on its own among the
// claims with a regime of at least top.
func (c *Cluster) rankOwnersLocked(st *nsState, pid, top uint32) []*node {
	ns := st.spec.Name
	out := make([]*node, st.rf)
	for r := range out {
		var best *node
		for _, n := range c.nodes {
			if n.removed || len(n.claims[ns]) <= r || !n.claims[ns][r].Has(pid) || n.regime[ns] < top {
				continue
			}
			if best == nil || beats(n, best, ns) {
				best = n
			}
		}
		out[r] = best
	}
	return out
}

// partLocked returns n's copy of partition pid of ns, creating an empty
// one when create is true.
func (n *node) partLocked(ns string, pid uint32, create bool) *partData {
	parts := n.data[ns]
	if parts == nil {
		if !create {
			return nil
		}
		parts = make([]*partData, partmap.Partitions)
		n.data[ns] = parts
	}
	if parts[pid] == nil && create {
		parts[pid] = &partData{recs: map[partmap.Digest]*record{}}
	}
	return parts[pid]
}

// migrateLocked makes every owner of every partition that is up hold the
// newest copy any live node has: records follow their partitions through
// rebalances, moves and restarts. A partition whose every copy is on
// removed or stopped nodes has no live copy and its owners start empty, as
// on a real cluster.
func (c *Cluster) migrateLocked() {
	for i := range c.ns {
		for pid := range uint32(partmap.Partitions) {
			c.migratePartLocked(&c.ns[i], pid)
		}
	}
}

// migratePartLocked is migrateLocked for one partition of one namespace.
func (c *Cluster) migratePartLocked(st *nsState, pid uint32) {
	ns := st.spec.Name
	var best *partData
	for _, n := range c.nodes {
		if !n.up || n.removed {
			continue
		}
		if pd := n.partLocked(ns, pid, false); pd != nil && (best == nil || pd.version > best.version) {
			best = pd
		}
	}
	if best == nil {
		return
	}
	for _, o := range c.ownersLocked(st, pid) {
		if o == nil || !o.up {
			continue
		}
		if pd := o.partLocked(ns, pid, false); pd == nil || pd.version < best.version {
			*o.partLocked(ns, pid, true) = *best.clone()
		}
	}
}

// answerRecord executes one record request on behalf of node n and
// appends the reply to dst.
func (c *Cluster) answerRecord(n *node, m *wire.Message, stop chan struct{}, dst []byte) ([]byte, time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || n.stop != stop {
		return nil, 0, false
	}
	n.recordMsgs++
	h, ops := c.executeLocked(n, m)
	out, err := wire.AppendReply(dst, &h, ops)
	if err != nil {
		return nil, 0, false
	}
	return out, n.delay, true
}

// fail is a reply header carrying only a result code.
func fail(code wire.ResultCode) (wire.Header, []wire.Op) {
	return wire.Header{ResultCode: code}, nil
}

// executeLocked runs the command of m as the cluster would, with n the
// node that received it.
func (c *Cluster) executeLocked(n *node, m *wire.Message) (wire.Header, []wire.Op) {
	k, err := m.Key()
	if err != nil || len(m.Ops) > MaxBins {
		return fail(wire.ResultParameterError)
	}
	st, err := c.nsLocked(k.Namespace)
	if err != nil {
		return fail(wire.ResultInvalidNamespace)
	}
	pid := k.PartitionID()
	owners := c.ownersLocked(st, pid)
	write := m.Info2&wire.Info2Write != 0
	var target *node
	if write {
		target = owners[0]
	} else if slices.Contains(owners, n) {
		target = n
	} else {
		for _, o := range owners {
			if o != nil && o.up {
				target = o
				break
			}
		}
	}
	if target != n {
		n.proxied++
	}
	switch {
	case target == nil && owners[0] == nil:
		return fail(wire.ResultPartitionUnavailable)
	case target == nil || !target.up:
		// The proxy to an unreachable node times out.
		return fail(wire.ResultTimeout)
	}
	now := c.voidNowLocked()
	pd := target.partLocked(st.spec.Name, pid, write)
	if !write {
		var r *record
		if pd != nil {
			r = live(pd.recs[k.Digest], now)
		}
		return readRecord(r, m)
	}
	before := pd.version
	h, ops, next, changed := c.writeRecord(st, live(pd.recs[k.Digest], now), &k, m, now)
	if !changed {
		return h, ops
	}
	c.dataSeq++
	for _, o := range owners {
		if o == nil || !o.up {
			continue
		}
		opd := o.partLocked(st.spec.Name, pid, true)
		if o != target && opd.version != before {
			// A copy that missed writes gets the whole partition.
			*opd = *pd.clone()
		}
		if next == nil {
			delete(opd.recs, k.Digest)
		} else {
			opd.recs[k.Digest] = next
		}
		opd.version = c.dataSeq
	}
	return h, ops
}

// readRecord answers a read of record r (nil: missing).
func readRecord(r *record, m *wire.Message) (wire.Header, []wire.Op) {
	if r == nil {
		return fail(wire.ResultKeyNotFound)
	}
	h := wire.Header{Generation: r.gen, Expiration: r.voidTime}
	if m.Info1&wire.Info1NoBinData != 0 {
		return h, nil
	}
	if m.Info1&wire.Info1GetAll != 0 || len(m.Ops) == 0 {
		return h, allBins(r, nil)
	}
	var out []wire.Op
	for _, op := range m.Ops {
		if op.Type != wire.OpRead {
			return fail(wire.ResultParameterError)
		}
		if op.Bin == "" {
			out = allBins(r, out)
			if len(out) > maxReplyOps {
				return fail(wire.ResultParameterError)
			}
			continue
		}
		if i := r.find(op.Bin); i >= 0 {
			out = append(out, wire.Op{Type: wire.OpRead, Bin: op.Bin, Value: r.bins[i].value})
		}
	}
	return h, out
}

func allBins(r *record, out []wire.Op) []wire.Op {
	for _, b := range r.bins {
		out = append(out, wire.Op{Type: wire.OpRead, Bin: b.name, Value: b.value})
	}
	return out
}

func (r *record) find(name string) int {
	for i, b := range r.bins {
		if b.name == name {
			return i
		}
	}
	return -1
}

func (r *record) set(name string, v wire.Value) {
	if i := r.find(name); i >= 0 {
		r.bins[i].value = v
		return
	}
	r.bins = append(r.bins, bin{name: name, value: v})
}

func (r *record) remove(name string) {
	if i := r.find(name); i >= 0 {
		r.bins = slices.Delete(r.bins, i, i+1)
	}
}

// own copies a value out of the request buffer.
func own(v wire.Value) wire.Value {
	return wire.RawValue(v.Type(), bytes.Clone(v.Encoded()))
}

// writeRecord applies a write request to old (nil: missing) and returns
// the reply, the new record (nil: deleted) and whether anything changed.
func (c *Cluster) writeRecord(st *nsState, old *record, k *wire.Key, m *wire.Message, now uint32) (wire.Header, []wire.Op, *record, bool) {
	h, ops := wire.Header{}, []wire.Op(nil)
	var curGen uint32
	if old != nil {
		curGen = old.gen
	}
	if m.Info2&wire.Info2Generation != 0 && m.Generation != curGen {
		h, ops = fail(wire.ResultGenerationError)
		return h, ops, nil, false
	}
	if m.Info2&wire.Info2GenerationGT != 0 && m.Generation <= curGen {
		h, ops = fail(wire.ResultGenerationError)
		return h, ops, nil, false
	}
	if m.Info2&wire.Info2Delete != 0 {
		if old == nil {
			h, ops = fail(wire.ResultKeyNotFound)
			return h, ops, nil, false
		}
		return h, nil, nil, true
	}
	if m.Info2&wire.Info2CreateOnly != 0 && old != nil {
		h, ops = fail(wire.ResultKeyExists)
		return h, ops, nil, false
	}
	if m.Info3&(wire.Info3UpdateOnly|wire.Info3ReplaceOnly) != 0 && old == nil {
		h, ops = fail(wire.ResultKeyNotFound)
		return h, ops, nil, false
	}
	next := &record{userKey: own(k.UserKey)}
	if old != nil {
		next.userKey = old.userKey
		if k.UserKey.Type() != wire.ParticleNull {
			next.userKey = own(k.UserKey)
		}
		if m.Info3&(wire.Info3CreateOrReplace|wire.Info3ReplaceOnly) == 0 {
			next.bins = slices.Clone(old.bins)
		}
	}
	deleted := false
	for _, op := range m.Ops {
		code := wire.ResultOK
		switch op.Type {
		case wire.OpWrite:
			if op.Value.Type() == wire.ParticleNull {
				next.remove(op.Bin)
			} else {
				next.set(op.Bin, own(op.Value))
			}
		case wire.OpAdd:
			code = next.add(op)
		case wire.OpAppend, wire.OpPrepend:
			code = next.concat(op)
		case wire.OpTouch:
			if old == nil {
				code = wire.ResultKeyNotFound
			}
		case wire.OpDelete:
			deleted, next.bins = true, nil
		case wire.OpRead:
			if op.Bin == "" {
				ops = allBins(next, ops)
				if len(ops) > maxReplyOps {
					code = wire.ResultParameterError
				}
			} else if i := next.find(op.Bin); i >= 0 {
				ops = append(ops, wire.Op{Type: wire.OpRead, Bin: op.Bin, Value: next.bins[i].value})
			}
		default:
			code = wire.ResultUnsupportedFeature
		}
		if code != wire.ResultOK {
			h, ops = fail(code)
			return h, ops, nil, false
		}
	}
	if len(next.bins) == 0 {
		// A record without bins does not exist.
		if old == nil && !deleted {
			return h, ops, nil, false
		}
		return h, ops, nil, true
	}
	if len(next.bins) > MaxBins {
		h, ops = fail(wire.ResultParameterError)
		return h, ops, nil, false
	}
	for _, b := range next.bins {
		next.size += len(b.name) + b.value.EncodedLen()
	}
	if next.size > MaxRecordSize {
		h, ops = fail(wire.ResultRecordTooBig)
		return h, ops, nil, false
	}
	next.gen = curGen%maxGeneration + 1
	next.voidTime = c.voidTime(st, old, m.Expiration, now)
	h.Generation, h.Expiration = next.gen, next.voidTime
	return h, ops, next, true
}

// voidTime computes a written record's void time from the request's TTL.
func (c *Cluster) voidTime(st *nsState, old *record, ttl, now uint32) uint32 {
	switch ttl {
	case wire.TTLNeverExpire:
		return 0
	case wire.TTLDontUpdate:
		if old != nil {
			return old.voidTime
		}
		ttl = wire.TTLNamespaceDefault
	}
	if ttl == wire.TTLNamespaceDefault {
		if st.spec.DefaultTTL <= 0 {
			return 0
		}
		ttl = uint32(min(st.spec.DefaultTTL/time.Second, math.MaxUint32-2))
	}
	return uint32(min(uint64(now)+uint64(ttl), math.MaxUint32))
}

// add applies an OpAdd: integers add (wrapping as the server's do), floats
// add, a missing bin takes the operand.
func (r *record) add(op wire.Op) wire.ResultCode {
	return r.modify(op, wire.ParticleInteger, wire.ParticleFloat, func(cur wire.Value) (wire.Value, bool) {
		if cur.Type() == wire.ParticleInteger {
			a, err1 := cur.AsInt()
			b, err2 := op.Value.AsInt()
			return wire.IntValue(a + b), err1 == nil && err2 == nil
		}
		a, err1 := cur.AsFloat()
		b, err2 := op.Value.AsFloat()
		return wire.FloatValue(a + b), err1 == nil && err2 == nil
	})
}

// concat applies OpAppend and OpPrepend to string and blob bins.
func (r *record) concat(op wire.Op) wire.ResultCode {
	return r.modify(op, wire.ParticleString, wire.ParticleBlob, func(cur wire.Value) (wire.Value, bool) {
		var b []byte
		if op.Type == wire.OpAppend {
			b = append(bytes.Clone(cur.Encoded()), op.Value.Encoded()...)
		} else {
			b = append(bytes.Clone(op.Value.Encoded()), cur.Encoded()...)
		}
		return wire.RawValue(cur.Type(), b), true
	})
}

// modify applies an operation whose operand must be of particle type t1
// or t2: a missing bin takes the operand, a bin of another type than the
// operand refuses it (ResultBinTypeError), otherwise combine computes the
// new value from the current one (false: a malformed value).
func (r *record) modify(op wire.Op, t1, t2 wire.ParticleType, combine func(cur wire.Value) (wire.Value, bool)) wire.ResultCode {
	if t := op.Value.Type(); t != t1 && t != t2 {
		return wire.ResultParameterError
	}
	i := r.find(op.Bin)
	if i < 0 {
		r.set(op.Bin, own(op.Value))
		return wire.ResultOK
	}
	if r.bins[i].value.Type() != op.Value.Type() {
		return wire.ResultBinTypeError
	}
	v, ok := combine(r.bins[i].value)
	if !ok {
		return wire.ResultParameterError
	}
	r.bins[i].value = v
	return wire.ResultOK
}
