package tendtest

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record/wire"
)

// rconn is a minimal record client over one connection, built on package
// wire, for driving the simulator.
type rconn struct {
	t    *testing.T
	conn net.Conn
	buf  []byte
}

func dialRecord(t *testing.T, addr string) *rconn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rconn{t: t, conn: conn}
}

// do sends one command and returns the decoded reply.
func (r *rconn) do(h wire.Header, k wire.Key, ops ...wire.Op) *wire.Message {
	r.t.Helper()
	req, err := wire.AppendCommand(nil, &h, &k, true, ops)
	if err != nil {
		r.t.Fatal(err)
	}
	r.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.conn.Write(req); err != nil {
		r.t.Fatal(err)
	}
	body, err := wire.ReadMessage(r.conn, r.buf, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	r.buf = body[:0]
	m := &wire.Message{}
	if err := m.Decode(body); err != nil {
		r.t.Fatal(err)
	}
	return m
}

func (r *rconn) put(k wire.Key, h wire.Header, bins ...wire.Op) wire.ResultCode {
	r.t.Helper()
	h.Info2 |= wire.Info2Write
	return r.do(h, k, bins...).ResultCode
}

func (r *rconn) get(k wire.Key, bins ...string) (*wire.Message, map[string]any) {
	r.t.Helper()
	h := wire.Header{Info1: wire.Info1Read}
	var ops []wire.Op
	for _, b := range bins {
		ops = append(ops, wire.Op{Type: wire.OpRead, Bin: b})
	}
	if len(ops) == 0 {
		h.Info1 |= wire.Info1GetAll
	}
	m := r.do(h, k, ops...)
	out := map[string]any{}
	for _, op := range m.Ops {
		x, err := op.Value.Any()
		if err != nil {
			r.t.Fatal(err)
		}
		out[op.Bin] = x
	}
	return m, out
}

func w(bin string, x any) wire.Op {
	v, err := wire.ValueOf(x)
	if err != nil {
		panic(err)
	}
	return wire.Op{Type: wire.OpWrite, Bin: bin, Value: v}
}

func mustKey(t *testing.T, ns, set string, uk any) wire.Key {
	t.Helper()
	k, err := wire.NewKey(ns, set, uk)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// nodeIndexByName maps a node name to its index.
func nodeIndexByName(t *testing.T, c *Cluster, name string) int {
	t.Helper()
	for _, n := range c.Nodes() {
		if n.Name == name {
			return n.Index
		}
	}
	t.Fatalf("no node %q", name)
	return -1
}

func masterConn(t *testing.T, c *Cluster, k wire.Key) (*rconn, int) {
	t.Helper()
	m, err := c.Master(k.Namespace, k.PartitionID())
	if err != nil {
		t.Fatal(err)
	}
	i := nodeIndexByName(t, c, m)
	return dialRecord(t, c.Nodes()[i].Addr), i
}

// TestRecordCommands runs every command and policy against a one-node
// cluster and checks the result codes and values a server gives.
func TestRecordCommands(t *testing.T) {
	now := time.Unix(wire.CitrusleafEpoch+1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newCluster(t, Options{Clock: clock, Namespaces: []NamespaceSpec{{Name: "test", DefaultTTL: time.Hour}}})
	r := dialRecord(t, c.Nodes()[0].Addr)
	k := mustKey(t, "test", "demo", "k1")

	if m, _ := r.get(k); m.ResultCode != wire.ResultKeyNotFound {
		t.Fatalf("get of a missing record: %v", m.ResultCode)
	}
	exists := wire.Header{Info1: wire.Info1Read | wire.Info1NoBinData}
	if m := r.do(exists, k); m.ResultCode != wire.ResultKeyNotFound {
		t.Fatalf("exists of a missing record: %v", m.ResultCode)
	}
	// Update-only and replace-only need the record.
	if rc := r.put(k, wire.Header{Info3: wire.Info3UpdateOnly}, w("x", 1)); rc != wire.ResultKeyNotFound {
		t.Fatalf("update-only on a missing record: %v", rc)
	}
	if rc := r.put(k, wire.Header{Info3: wire.Info3ReplaceOnly}, w("x", 1)); rc != wire.ResultKeyNotFound {
		t.Fatalf("replace-only on a missing record: %v", rc)
	}
	// Create with every particle type.
	bins := map[string]any{
		"i": int64(1234), "f": 1.5, "s": "abcd", "b": []byte{1, 2}, "t": true,
		"l": []any{int64(1), "x", []byte{3}}, "m": map[any]any{"k": "v", int64(2): 2.5},
	}
	var ops []wire.Op
	for name, x := range bins {
		ops = append(ops, w(name, x))
	}
	if rc := r.put(k, wire.Header{Info2: wire.Info2CreateOnly}, ops...); rc != wire.ResultOK {
		t.Fatalf("create: %v", rc)
	}
	if rc := r.put(k, wire.Header{Info2: wire.Info2CreateOnly}, w("x", 1)); rc != wire.ResultKeyExists {
		t.Fatalf("create-only on an existing record: %v", rc)
	}
	m, got := r.get(k)
	if m.ResultCode != wire.ResultOK || !reflect.DeepEqual(got, bins) {
		t.Fatalf("get: %v %#v", m.ResultCode, got)
	}
	if m.Generation != 1 || m.Expiration != wire.VoidTime(3600, now) {
		t.Fatalf("generation %d void time %d (want 1, %d)", m.Generation, m.Expiration, wire.VoidTime(3600, now))
	}
	// Named bins, a missing one left out.
	if _, got := r.get(k, "s", "nope"); !reflect.DeepEqual(got, map[string]any{"s": "abcd"}) {
		t.Fatalf("named bins: %#v", got)
	}
	if m := r.do(exists, k); m.ResultCode != wire.ResultOK || len(m.Ops) != 0 || m.Generation != 1 {
		t.Fatalf("exists: %v %d ops gen %d", m.ResultCode, len(m.Ops), m.Generation)
	}
	// Generation check.
	if rc := r.put(k, wire.Header{Info2: wire.Info2Generation, Generation: 7}, w("x", 1)); rc != wire.ResultGenerationError {
		t.Fatalf("wrong generation: %v", rc)
	}
	if rc := r.put(k, wire.Header{Info2: wire.Info2Generation, Generation: 1}, w("i", 1)); rc != wire.ResultOK {
		t.Fatalf("right generation: %v", rc)
	}
	if rc := r.put(k, wire.Header{Info2: wire.Info2GenerationGT, Generation: 2}, w("i", 1)); rc != wire.ResultGenerationError {
		t.Fatalf("generation not greater: %v", rc)
	}
	// Add: integers add, a string bin refuses.
	add := func(bin string, x any) wire.ResultCode {
		v, _ := wire.ValueOf(x)
		return r.put(k, wire.Header{}, wire.Op{Type: wire.OpAdd, Bin: bin, Value: v})
	}
	if rc := add("i", 10); rc != wire.ResultOK {
		t.Fatal(rc)
	}
	if rc := add("s", 1); rc != wire.ResultBinTypeError {
		t.Fatalf("add to a string bin: %v", rc)
	}
	if rc := add("f", 1); rc != wire.ResultBinTypeError {
		t.Fatalf("integer add to a float bin: %v", rc)
	}
	if rc := add("f", 0.25); rc != wire.ResultOK {
		t.Fatal(rc)
	}
	if rc := add("new", 5); rc != wire.ResultOK {
		t.Fatal(rc)
	}
	m, got = r.get(k, "i", "f", "new")
	if !reflect.DeepEqual(got, map[string]any{"i": int64(11), "f": 1.75, "new": int64(5)}) || m.Generation != 5 {
		t.Fatalf("after adds: %#v gen %d", got, m.Generation)
	}
	// Touch keeps bins, bumps generation, resets TTL.
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	touch := wire.Header{Info2: wire.Info2Write, Expiration: 100}
	if m := r.do(touch, k, wire.Op{Type: wire.OpTouch}); m.ResultCode != wire.ResultOK || m.Generation != 6 || m.Expiration != wire.VoidTime(100, now) {
		t.Fatalf("touch: %v gen %d exp %d", m.ResultCode, m.Generation, m.Expiration)
	}
	if m := r.do(touch, mustKey(t, "test", "demo", "nope"), wire.Op{Type: wire.OpTouch}); m.ResultCode != wire.ResultKeyNotFound {
		t.Fatalf("touch of a missing record: %v", m.ResultCode)
	}
	// Replace drops the other bins.
	if rc := r.put(k, wire.Header{Info3: wire.Info3CreateOrReplace}, w("only", "one")); rc != wire.ResultOK {
		t.Fatal(rc)
	}
	if _, got := r.get(k); !reflect.DeepEqual(got, map[string]any{"only": "one"}) {
		t.Fatalf("after replace: %#v", got)
	}
	// Writing a null bin removes it; the last bin removed deletes the record.
	if rc := r.put(k, wire.Header{}, wire.Op{Type: wire.OpWrite, Bin: "only"}); rc != wire.ResultOK {
		t.Fatal(rc)
	}
	if m, _ := r.get(k); m.ResultCode != wire.ResultKeyNotFound {
		t.Fatalf("record without bins still there: %v", m.ResultCode)
	}
	// Delete.
	r.put(k, wire.Header{}, w("x", 1))
	del := wire.Header{Info2: wire.Info2Write | wire.Info2Delete}
	if m := r.do(del, k); m.ResultCode != wire.ResultOK {
		t.Fatalf("delete: %v", m.ResultCode)
	}
	if m := r.do(del, k); m.ResultCode != wire.ResultKeyNotFound {
		t.Fatalf("second delete: %v", m.ResultCode)
	}
	// TTL: the record expires by the cluster clock.
	r.put(k, wire.Header{Expiration: 10}, w("x", 1))
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	if m, _ := r.get(k); m.ResultCode != wire.ResultKeyNotFound {
		t.Fatalf("expired record: %v", m.ResultCode)
	}
	r.put(k, wire.Header{Expiration: wire.TTLNeverExpire}, w("x", 1))
	if m, _ := r.get(k); m.Expiration != 0 {
		t.Fatalf("never-expiring record has void time %d", m.Expiration)
	}
	// Operate: write then read in one command.
	m = r.do(wire.Header{Info1: wire.Info1Read, Info2: wire.Info2Write}, k,
		wire.Op{Type: wire.OpAdd, Bin: "x", Value: wire.IntValue(41)}, wire.Op{Type: wire.OpRead, Bin: "x"})
	if len(m.Ops) != 1 {
		t.Fatalf("operate reply ops %v", m.Ops)
	}
	if v, _ := m.Ops[0].Value.AsInt(); v != 42 {
		t.Fatalf("operate read %d", v)
	}
	// Errors: unknown namespace, unsupported operation.
	if m, _ := r.get(mustKey(t, "nosuch", "", 1)); m.ResultCode != wire.ResultInvalidNamespace {
		t.Fatalf("unknown namespace: %v", m.ResultCode)
	}
	if rc := r.put(k, wire.Header{}, wire.Op{Type: wire.OpCDTModify, Bin: "x", Value: wire.IntValue(1)}); rc != wire.ResultUnsupportedFeature {
		t.Fatalf("CDT op: %v", rc)
	}
	// Too big.
	big := make([]byte, MaxRecordSize+1)
	if rc := r.put(k, wire.Header{}, wire.Op{Type: wire.OpWrite, Bin: "big", Value: wire.BytesValue(big)}); rc != wire.ResultRecordTooBig {
		t.Fatalf("record too big: %v", rc)
	}
	// Too many operations, and a reply that would list too many bins.
	many := make([]wire.Op, MaxBins+1)
	for i := range many {
		many[i] = w(fmt.Sprintf("b%d", i), i)
	}
	if rc := r.put(k, wire.Header{}, many...); rc != wire.ResultParameterError {
		t.Fatalf("%d ops: %v", len(many), rc)
	}
	if rc := r.put(k, wire.Header{}, many[:MaxBins-1]...); rc != wire.ResultOK {
		t.Fatalf("%d bins: %v", MaxBins-1, rc)
	}
	readAll := make([]wire.Op, 20)
	for i := range readAll {
		readAll[i] = wire.Op{Type: wire.OpRead}
	}
	if m := r.do(wire.Header{Info1: wire.Info1Read}, k, readAll...); m.ResultCode != wire.ResultParameterError {
		t.Fatalf("reply of %d bins: %v", 20*(MaxBins-1), m.ResultCode)
	}
	// The user key sent was stored.
	info, ok, err := c.StoredRecord(0, "test", k.Digest)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if s, _ := info.UserKey.AsString(); s != "k1" {
		t.Fatalf("stored user key %q", s)
	}
	if c.RecordMessages(0) == 0 || c.Proxied(0) != 0 {
		t.Fatalf("record messages %d proxied %d", c.RecordMessages(0), c.Proxied(0))
	}
}

// TestRoutingCounts: over every partition of a 3-node RF 2 cluster, writes
// sent to the master and reads sent to either replica are never proxied;
// the same commands sent to the wrong node are, and still succeed.
func TestRoutingCounts(t *testing.T) {
	c := newCluster(t, Options{Nodes: 3})
	nodes := c.Nodes()
	conns := make([]*rconn, len(nodes))
	for i, n := range nodes {
		conns[i] = dialRecord(t, n.Addr)
	}
	for pid := range uint32(partmap.Partitions) {
		d, _ := partmap.DigestForPartition(pid)
		k, _ := wire.NewDigestKey("test", "", d)
		owners, _ := c.Replicas("test", pid)
		master := nodeIndexByName(t, c, owners[0])
		replica := nodeIndexByName(t, c, owners[1])
		if rc := conns[master].put(k, wire.Header{}, w("p", int64(pid))); rc != wire.ResultOK {
			t.Fatalf("partition %d: put %v", pid, rc)
		}
		for _, i := range []int{master, replica} {
			if _, got := conns[i].get(k); got["p"] != int64(pid) {
				t.Fatalf("partition %d node %d: read %v", pid, i, got)
			}
		}
	}
	if p := c.TotalProxied(); p != 0 {
		t.Fatalf("%d requests proxied with correct routing", p)
	}
	// Wrong routing: a write to a replica, a read on the third node.
	d, _ := partmap.DigestForPartition(7)
	k, _ := wire.NewDigestKey("test", "", d)
	owners, _ := c.Replicas("test", 7)
	replica := nodeIndexByName(t, c, owners[1])
	other := 3 - nodeIndexByName(t, c, owners[0]) - replica
	if rc := conns[replica].put(k, wire.Header{}, w("p", "moved")); rc != wire.ResultOK {
		t.Fatal(rc)
	}
	if _, got := conns[other].get(k); got["p"] != "moved" {
		t.Fatalf("proxied read %v", got)
	}
	if c.Proxied(replica) != 1 || c.Proxied(other) != 1 || c.TotalProxied() != 2 {
		t.Fatalf("proxied counts %d %d total %d", c.Proxied(replica), c.Proxied(other), c.TotalProxied())
	}
	// The write reached both replicas' copies.
	for _, name := range owners {
		info, ok, _ := c.StoredRecord(nodeIndexByName(t, c, name), "test", d)
		if !ok || info.Bins["p"].Type() != wire.ParticleString {
			t.Fatalf("copy on %s: %v %+v", name, ok, info)
		}
	}
	// Negative control: the third node holds no copy.
	if _, ok, _ := c.StoredRecord(other, "test", d); ok {
		t.Fatal("a non-owner holds a copy")
	}
}

// TestRecordsFollowPartitions writes records, then moves partitions, adds
// and removes nodes, and checks every record is still readable from its
// new owners and stored on them.
func TestRecordsFollowPartitions(t *testing.T) {
	c := newCluster(t, Options{Nodes: 3})
	const records = 300
	keys := make([]wire.Key, records)
	for i := range keys {
		keys[i] = mustKey(t, "test", "s", i)
		r, _ := masterConn(t, c, keys[i])
		if rc := r.put(keys[i], wire.Header{}, w("v", i)); rc != wire.ResultOK {
			t.Fatal(rc)
		}
	}
	check := func(step string) {
		t.Helper()
		if n, _ := c.OwnedRecordCount("test"); n != records {
			t.Fatalf("%s: %d records owned, want %d", step, n, records)
		}
		for i, k := range keys {
			owners, _ := c.Replicas("test", k.PartitionID())
			for _, name := range owners {
				idx := nodeIndexByName(t, c, name)
				info, ok, _ := c.StoredRecord(idx, "test", k.Digest)
				if !ok {
					t.Fatalf("%s: record %d missing on owner %s", step, i, name)
				}
				if v, _ := info.Bins["v"].AsInt(); v != int64(i) {
					t.Fatalf("%s: record %d holds %d on %s", step, i, v, name)
				}
			}
			r, _ := masterConn(t, c, k)
			if _, got := r.get(k); got["v"] != int64(i) {
				t.Fatalf("%s: read of record %d gives %v", step, i, got)
			}
		}
	}
	check("start")
	// Move the master of the first key's partition to the third node.
	pid := keys[0].PartitionID()
	owners, _ := c.Replicas("test", pid)
	var third int
	for _, n := range c.Nodes() {
		if n.Name != owners[0] && n.Name != owners[1] {
			third = n.Index
		}
	}
	if err := c.MovePartition("test", pid, 0, third); err != nil {
		t.Fatal(err)
	}
	check("after MovePartition")
	if _, err := c.AddNode(); err != nil {
		t.Fatal(err)
	}
	check("after AddNode")
	if err := c.RemoveNode(0); err != nil {
		t.Fatal(err)
	}
	check("after RemoveNode")
	if err := c.StopNode(1); err != nil {
		t.Fatal(err)
	}
	if err := c.Rebalance(); err != nil {
		t.Fatal(err)
	}
	check("after StopNode and Rebalance")
}

// TestRecordsLostWithEveryCopy is the negative control of the test above:
// with replication factor 1, removing a node loses its records.
func TestRecordsLostWithEveryCopy(t *testing.T) {
	c := newCluster(t, Options{Nodes: 2, Namespaces: []NamespaceSpec{{Name: "test", ReplicationFactor: 1}}})
	k := mustKey(t, "test", "", "gone")
	r, idx := masterConn(t, c, k)
	r.put(k, wire.Header{}, w("v", 1))
	if err := c.RemoveNode(idx); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.OwnedRecordCount("test"); n != 0 {
		t.Fatalf("%d records survived their only copy", n)
	}
}

// TestWriteToStoppedMasterTimesOut: a write proxied to a master that is
// down gets the server's timeout code; the read of a replica still works.
func TestWriteToStoppedMasterTimesOut(t *testing.T) {
	c := newCluster(t, Options{Nodes: 2})
	k := mustKey(t, "test", "", "x")
	r, master := masterConn(t, c, k)
	r.put(k, wire.Header{}, w("v", 1))
	other := dialRecord(t, c.Nodes()[1-master].Addr)
	if err := c.StopNode(master); err != nil {
		t.Fatal(err)
	}
	if rc := other.put(k, wire.Header{}, w("v", 2)); !errors.Is(rc, wire.ErrServerTimeout) {
		t.Fatalf("write to a stopped master: %v", rc)
	}
	if _, got := other.get(k); got["v"] != int64(1) {
		t.Fatalf("replica read %v", got)
	}
	// After the cluster notices, the replica becomes master and accepts
	// writes; the restarted node catches up.
	if err := c.Rebalance(); err != nil {
		t.Fatal(err)
	}
	if rc := other.put(k, wire.Header{}, w("v", 3)); rc != wire.ResultOK {
		t.Fatal(rc)
	}
	if err := c.RestartNode(master); err != nil {
		t.Fatal(err)
	}
	if err := c.Rebalance(); err != nil {
		t.Fatal(err)
	}
	info, ok, _ := c.StoredRecord(master, "test", k.Digest)
	if v, _ := info.Bins["v"].AsInt(); !ok || v != 3 {
		t.Fatalf("restarted node holds %v %d", ok, v)
	}
}

// TestBadRecordMessageClosesConnection: an undecodable record message is
// counted as unserved and ends the connection.
func TestBadRecordMessageClosesConnection(t *testing.T) {
	c := newCluster(t, Options{})
	r := dialRecord(t, c.Nodes()[0].Addr)
	k := mustKey(t, "test", "", 1)
	req, _ := wire.AppendCommand(nil, &wire.Header{Info1: wire.Info1Read}, &k, false, nil)
	req[wire.ProtoHeaderSize+19] = 9 // nine fields claimed, three present
	r.conn.Write(req)
	r.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection not closed")
	}
	waitFor(t, func() bool { return c.NonInfoMessages(0) == 1 })
	if c.RecordMessages(0) != 0 {
		t.Fatal("bad message counted as served")
	}
}

// TestConcurrentAdds: adds to one record from many connections, through
// every node (so most are proxied), are each applied once: the final value
// and generation count them all.
func TestConcurrentAdds(t *testing.T) {
	c := newCluster(t, Options{Nodes: 3})
	k := mustKey(t, "test", "", "counter")
	const workers, adds = 6, 150
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		addr := c.Nodes()[i%3].Addr
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			var buf []byte
			for range adds {
				req, _ := wire.AppendCommand(nil, &wire.Header{Info2: wire.Info2Write}, &k, false,
					[]wire.Op{{Type: wire.OpAdd, Bin: "n", Value: wire.IntValue(1)}})
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write(req); err != nil {
					errs <- err
					return
				}
				body, err := wire.ReadMessage(conn, buf, 0)
				if err != nil {
					errs <- err
					return
				}
				buf = body[:0]
				var m wire.Message
				if err := m.Decode(body); err != nil || m.ResultCode != wire.ResultOK {
					errs <- fmt.Errorf("add: %v %v", m.ResultCode, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	r, _ := masterConn(t, c, k)
	m, got := r.get(k)
	if got["n"] != int64(workers*adds) || m.Generation != workers*adds {
		t.Fatalf("counter %v generation %d, want %d", got["n"], m.Generation, workers*adds)
	}
	if p := c.TotalProxied(); p == 0 {
		t.Fatal("no add was proxied: the test did not reach the non-masters")
	}
}
