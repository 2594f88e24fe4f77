package interop

import (
	"bytes"
	"encoding/hex"
	"net"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v8"
	"github.com/aerospike/aerospike-client-go/v8/types"

	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// tracedRequest is one record request the simulator answered.
type tracedRequest struct {
	node           int
	request, reply []byte
}

// recordSim is a 3-node RF 2 simulator whose record requests are kept.
type recordSim struct {
	*tendtest.Cluster
	mu    sync.Mutex
	trace []tracedRequest
}

func newRecordSim(t *testing.T) *recordSim {
	t.Helper()
	rs := &recordSim{}
	sim, err := tendtest.New(tendtest.Options{
		Nodes: 3,
		RecordTrace: func(node int, req, reply []byte) {
			rs.mu.Lock()
			rs.trace = append(rs.trace, tracedRequest{node, req, reply})
			rs.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	rs.Cluster = sim
	return rs
}

// last returns the last request traced and forgets the trace.
func (rs *recordSim) last(t *testing.T) (tracedRequest, *wire.Message) {
	t.Helper()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.trace) == 0 {
		t.Fatal("no record request traced")
	}
	tr := rs.trace[len(rs.trace)-1]
	rs.trace = nil
	m := &wire.Message{}
	if err := m.Decode(tr.request); err != nil {
		t.Fatalf("shmkit's decoder refuses the official client's request %x: %v", tr.request, err)
	}
	return tr, m
}

// toWire converts a value as the official client returns it (int,
// map[interface{}]interface{} with [N]byte blob keys, ...) to the Go
// types wire decodes to, for comparison.
func toWire(x any) any {
	switch v := x.(type) {
	case int:
		return int64(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = toWire(e)
		}
		return out
	case map[any]any:
		out := make(map[any]any, len(v))
		for k, e := range v {
			out[toWireKey(k)] = toWire(e)
		}
		return out
	case map[string]any:
		out := make(map[any]any, len(v))
		for k, e := range v {
			out[k] = toWire(e)
		}
		return out
	}
	return x
}

func toWireKey(k any) any {
	rv := reflect.ValueOf(k)
	if rv.Kind() == reflect.Array && rv.Type().Elem().Kind() == reflect.Uint8 {
		b := make([]byte, rv.Len())
		reflect.Copy(reflect.ValueOf(b), rv)
		return wire.BlobKey(b)
	}
	return toWire(k)
}

// particleBins has a bin of every particle type, with nesting, the
// MessagePack size classes and blobs and strings inside collections.
func particleBins() as.BinMap {
	long := strings.Repeat("L", 300)
	var many []any
	for i := range 40 {
		many = append(many, i*1000-20000)
	}
	return as.BinMap{
		"int":   1234,
		"neg":   -70000,
		"big":   int64(1) << 50,
		"float": -1.25,
		"str":   "abcd",
		"long":  long,
		"blob":  []byte{0, 1, 2, 255},
		"bool":  true,
		"list":  []any{1, -1, "x", []byte{9}, 2.5, true, false, nil, []any{"n", 3}, map[any]any{"a": 1}, long},
		"many":  many,
		"map":   map[any]any{"k": "v", 1: 2.5, "nested": []any{1, "two"}, "m": map[any]any{"deep": true}},
		"json":  map[string]any{"x": 1234, "y": "abcd"},
		"empty": []any{},
	}
}

func officialKey(t *testing.T, userKey any) *as.Key {
	t.Helper()
	k, err := as.NewKey("test", "demo", userKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func wireKey(t *testing.T, userKey any) wire.Key {
	t.Helper()
	k, err := wire.NewKey("test", "demo", userKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func resultCodeOf(err error) types.ResultCode {
	if ae, ok := err.(as.Error); ok {
		for _, rc := range []types.ResultCode{types.KEY_NOT_FOUND_ERROR, types.GENERATION_ERROR, types.KEY_EXISTS_ERROR,
			types.BIN_TYPE_ERROR, types.PARAMETER_ERROR, types.TIMEOUT} {
			if ae.Matches(rc) {
				return rc
			}
		}
	}
	return -1
}

// TestOfficialClientRecords drives the simulator with the official Go
// client: every particle type written and read back, generation checks,
// exists, touch, add, delete and their result codes; every request the
// client sent is decoded by package wire and compared with what the
// client was asked to do. With the client's map converged, no request is
// proxied.
func TestOfficialClientRecords(t *testing.T) {
	sim := newRecordSim(t)
	client := newClient(t, sim.Seeds()[0], "")
	waitNodes(t, "records", sim.Cluster, client)
	key := officialKey(t, "myTestKey")
	wk := wireKey(t, "myTestKey")
	if !bytes.Equal(key.Digest(), wk.Digest[:]) {
		t.Fatalf("digest %x, official %x", wk.Digest, key.Digest())
	}

	// Get of a missing record.
	if _, err := client.Get(nil, key); resultCodeOf(err) != types.KEY_NOT_FOUND_ERROR {
		t.Fatalf("get of a missing record: %v", err)
	}
	_, m := sim.last(t)
	if m.Info1 != wire.Info1Read|wire.Info1GetAll || len(m.Ops) != 0 {
		t.Fatalf("official get: info1 %08b, %d ops", m.Info1, len(m.Ops))
	}
	checkKeyFields(t, m, wk)

	// Put every particle type, one bin per request so that each request
	// can be compared byte for byte with shmkit's encoding.
	bins := particleBins()
	names := make([]string, 0, len(bins))
	for name := range bins {
		names = append(names, name)
	}
	sort.Strings(names)
	wp := as.NewWritePolicy(0, 0)
	for _, name := range names {
		if err := client.Put(wp, key, as.BinMap{name: bins[name]}); err != nil {
			t.Fatalf("put %s: %v", name, err)
		}
		tr, m := sim.last(t)
		if m.Info2 != wire.Info2Write || len(m.Ops) != 1 || m.Ops[0].Bin != name || m.Ops[0].Type != wire.OpWrite {
			t.Fatalf("put %s: info2 %08b ops %+v", name, m.Info2, m.Ops)
		}
		checkKeyFields(t, m, wk)
		got, err := m.Ops[0].Value.Any()
		if err != nil {
			t.Fatalf("put %s: shmkit cannot decode the official client's value: %v", name, err)
		}
		if want := toWire(bins[name]); !reflect.DeepEqual(got, want) {
			t.Fatalf("put %s: shmkit decodes %#v, want %#v", name, got, want)
		}
		// shmkit's encoder builds the same request from the decoded one.
		again, err := wire.AppendCommand(nil, &m.Header, &wk, false, m.Ops)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again[wire.ProtoHeaderSize:], tr.request) {
			t.Fatalf("put %s: shmkit encodes\n%x\nthe official client sent\n%x", name, again[wire.ProtoHeaderSize:], tr.request)
		}
		// For single-element lists and maps and scalars the encodings of
		// the value itself agree too (Go map order does not matter there).
		if name != "map" && name != "json" {
			v, err := wire.ValueOf(bins[name])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v.Encoded(), m.Ops[0].Value.Encoded()) || v.Type() != m.Ops[0].Value.Type() {
				t.Fatalf("put %s: shmkit encodes %v %x, official %v %x", name, v.Type(), v.Encoded(), m.Ops[0].Value.Type(), m.Ops[0].Value.Encoded())
			}
		}
	}
	rec, err := client.Get(nil, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if got, want := toWire(rec.Bins[name]), toWire(bins[name]); !reflect.DeepEqual(got, want) {
			t.Errorf("official read of %s: %#v, want %#v", name, got, want)
		}
	}
	if rec.Generation != uint32(len(names)) {
		t.Fatalf("generation %d after %d puts", rec.Generation, len(names))
	}
	// Named bins.
	rec, err = client.Get(nil, key, "str", "nosuch")
	if err != nil || len(rec.Bins) != 1 || rec.Bins["str"] != "abcd" {
		t.Fatalf("named bins: %v %v", rec, err)
	}
	_, m = sim.last(t)
	if m.Info1 != wire.Info1Read || len(m.Ops) != 2 || m.Ops[0].Type != wire.OpRead || m.Ops[1].Bin != "nosuch" {
		t.Fatalf("official named-bin get: info1 %08b ops %+v", m.Info1, m.Ops)
	}

	// Exists.
	if ok, err := client.Exists(nil, key); !ok || err != nil {
		t.Fatalf("exists: %v %v", ok, err)
	}
	_, m = sim.last(t)
	if m.Info1 != wire.Info1Read|wire.Info1NoBinData {
		t.Fatalf("official exists: info1 %08b", m.Info1)
	}
	if ok, err := client.Exists(nil, officialKey(t, "nosuch")); ok || err != nil {
		t.Fatalf("exists of a missing record: %v %v", ok, err)
	}

	// Generation checks.
	gp := as.NewWritePolicy(rec.Generation+5, 0)
	gp.GenerationPolicy = as.EXPECT_GEN_EQUAL
	if err := client.Put(gp, key, as.BinMap{"int": 1}); resultCodeOf(err) != types.GENERATION_ERROR {
		t.Fatalf("wrong generation: %v", err)
	}
	_, m = sim.last(t)
	if m.Info2 != wire.Info2Write|wire.Info2Generation || m.Generation != rec.Generation+5 {
		t.Fatalf("official generation put: info2 %08b generation %d", m.Info2, m.Generation)
	}
	gp.Generation = rec.Generation
	if err := client.Put(gp, key, as.BinMap{"int": 1}); err != nil {
		t.Fatalf("right generation: %v", err)
	}

	// Record exists actions.
	cp := as.NewWritePolicy(0, 0)
	cp.RecordExistsAction = as.CREATE_ONLY
	if err := client.Put(cp, key, as.BinMap{"x": 1}); resultCodeOf(err) != types.KEY_EXISTS_ERROR {
		t.Fatalf("create-only: %v", err)
	}
	_, m = sim.last(t)
	if m.Info2 != wire.Info2Write|wire.Info2CreateOnly {
		t.Fatalf("official create-only: info2 %08b", m.Info2)
	}
	up := as.NewWritePolicy(0, 0)
	up.RecordExistsAction = as.UPDATE_ONLY
	if err := client.Put(up, officialKey(t, "nosuch"), as.BinMap{"x": 1}); resultCodeOf(err) != types.KEY_NOT_FOUND_ERROR {
		t.Fatalf("update-only: %v", err)
	}
	_, m = sim.last(t)
	if m.Info3 != wire.Info3UpdateOnly {
		t.Fatalf("official update-only: info3 %08b", m.Info3)
	}
	rp := as.NewWritePolicy(0, 0)
	rp.RecordExistsAction = as.REPLACE
	other := officialKey(t, "replaced")
	if err := client.Put(nil, other, as.BinMap{"a": 1, "b": 2}); err != nil {
		t.Fatal(err)
	}
	if err := client.Put(rp, other, as.BinMap{"c": 3}); err != nil {
		t.Fatal(err)
	}
	_, m = sim.last(t)
	if m.Info3 != wire.Info3CreateOrReplace {
		t.Fatalf("official replace: info3 %08b", m.Info3)
	}
	if r, err := client.Get(nil, other); err != nil || !reflect.DeepEqual(r.Bins, as.BinMap{"c": 3}) {
		t.Fatalf("after replace: %v %v", r, err)
	}

	// Touch and TTL.
	tp := as.NewWritePolicy(0, 500)
	if err := client.Touch(tp, key); err != nil {
		t.Fatalf("touch: %v", err)
	}
	_, m = sim.last(t)
	if len(m.Ops) != 1 || m.Ops[0].Type != wire.OpTouch || m.Expiration != 500 {
		t.Fatalf("official touch: ops %+v expiration %d", m.Ops, m.Expiration)
	}
	if r, err := client.GetHeader(nil, key); err != nil || r.Expiration < 490 || r.Expiration > 500 {
		t.Fatalf("TTL after touch: %v %v", r, err)
	}
	if err := client.Touch(tp, officialKey(t, "nosuch")); resultCodeOf(err) != types.KEY_NOT_FOUND_ERROR {
		t.Fatalf("touch of a missing record: %v", err)
	}

	// Add.
	if err := client.Add(nil, key, as.BinMap{"int": 10}); err != nil {
		t.Fatalf("add: %v", err)
	}
	_, m = sim.last(t)
	if len(m.Ops) != 1 || m.Ops[0].Type != wire.OpAdd {
		t.Fatalf("official add: ops %+v", m.Ops)
	}
	if r, _ := client.Get(nil, key, "int"); r.Bins["int"] != 11 {
		t.Fatalf("after add: %v", r.Bins)
	}
	if err := client.Add(nil, key, as.BinMap{"str": 1}); resultCodeOf(err) != types.BIN_TYPE_ERROR {
		t.Fatalf("add to a string bin: %v", err)
	}
	// Operate: add and read in one command.
	r, err := client.Operate(nil, key, as.AddOp(as.NewBin("int", 1)), as.GetBinOp("int"))
	if err != nil || r.Bins["int"] != 12 {
		t.Fatalf("operate: %v %v", r, err)
	}

	// Delete.
	if existed, err := client.Delete(nil, key); !existed || err != nil {
		t.Fatalf("delete: %v %v", existed, err)
	}
	_, m = sim.last(t)
	if m.Info2 != wire.Info2Write|wire.Info2Delete {
		t.Fatalf("official delete: info2 %08b", m.Info2)
	}
	if existed, err := client.Delete(nil, key); existed || err != nil {
		t.Fatalf("second delete: %v %v", existed, err)
	}
	if _, err := client.Get(nil, key); resultCodeOf(err) != types.KEY_NOT_FOUND_ERROR {
		t.Fatalf("get after delete: %v", err)
	}

	// SendKey: the user key travels in a key field.
	kp := as.NewWritePolicy(0, 0)
	kp.SendKey = true
	ik := officialKey(t, 42)
	if err := client.Put(kp, ik, as.BinMap{"v": 1}); err != nil {
		t.Fatal(err)
	}
	_, m = sim.last(t)
	k, kerr := m.Key()
	if kerr != nil {
		t.Fatal(kerr)
	}
	if v, err := k.UserKey.AsInt(); err != nil || v != 42 {
		t.Fatalf("user key %v %v", v, err)
	}
	if d, _ := wire.KeyDigest("demo", k.UserKey); !bytes.Equal(d[:], ik.Digest()) {
		t.Fatal("digest of the sent user key differs from the official one")
	}

	if p := sim.TotalProxied(); p != 0 {
		t.Fatalf("%d requests of the official client were proxied", p)
	}
	var served uint64
	for _, n := range sim.Nodes() {
		served += sim.RecordMessages(n.Index)
	}
	t.Logf("the official client's record requests: %d, proxied 0", served)
}

func checkKeyFields(t *testing.T, m *wire.Message, wk wire.Key) {
	t.Helper()
	k, err := m.Key()
	if err != nil {
		t.Fatal(err)
	}
	if k.Namespace != wk.Namespace || k.Set != wk.Set || k.Digest != wk.Digest {
		t.Fatalf("official key fields %s/%s/%x, want %s/%s/%x", k.Namespace, k.Set, k.Digest, wk.Namespace, wk.Set, wk.Digest)
	}
}

// TestShmkitEncodingReadByOfficialClient writes every particle type with
// package wire over a raw connection to the master and reads the record
// with the official client: lists and maps encoded by shmkit are lists and
// maps to another client.
func TestShmkitEncodingReadByOfficialClient(t *testing.T) {
	sim := newRecordSim(t)
	client := newClient(t, sim.Seeds()[0], "")
	waitNodes(t, "records", sim.Cluster, client)
	bins := particleBins()
	wk := wireKey(t, "fromShmkit")
	var ops []wire.Op
	for name, x := range bins {
		v, err := wire.ValueOf(x)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ops = append(ops, wire.Op{Type: wire.OpWrite, Bin: name, Value: v})
	}
	master, err := sim.Master("test", wk.PartitionID())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", sim.Nodes()[nodeIndex(t, sim.Cluster, master)].Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := wire.AppendCommand(nil, &wire.Header{Info2: wire.Info2Write}, &wk, true, ops)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	body, err := wire.ReadMessage(conn, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var reply wire.Message
	if err := reply.Decode(body); err != nil || reply.ResultCode != wire.ResultOK {
		t.Fatalf("put: %v %v", reply.ResultCode, err)
	}
	rec, aerr := client.Get(nil, officialKey(t, "fromShmkit"))
	if aerr != nil {
		t.Fatal(aerr)
	}
	for name, x := range bins {
		if got, want := toWire(rec.Bins[name]), toWire(x); !reflect.DeepEqual(got, want) {
			t.Errorf("official client reads %s as %#v, want %#v", name, got, want)
		}
	}
	// Negative control: the particle byte decides. The same list with the
	// blob byte (4) instead of the string byte (3) before "x" is not read
	// as the string "x" by the official client.
	bad := wire.RawValue(wire.ParticleList, []byte{0x91, 0xa2, byte(wire.ParticleBlob), 'x'})
	req, _ = wire.AppendCommand(nil, &wire.Header{Info2: wire.Info2Write}, &wk, false, []wire.Op{{Type: wire.OpWrite, Bin: "bad", Value: bad}})
	conn.Write(req)
	if _, err := wire.ReadMessage(conn, nil, 0); err != nil {
		t.Fatal(err)
	}
	rec, aerr = client.Get(nil, officialKey(t, "fromShmkit"), "bad")
	if aerr != nil {
		t.Fatal(aerr)
	}
	if got := toWire(rec.Bins["bad"]); reflect.DeepEqual(got, []any{"x"}) || !reflect.DeepEqual(got, []any{[]byte("x")}) {
		t.Fatalf("list with a blob element read as %#v", got)
	}
}

// TestDumpOfficialRequests logs, in hex, one request of each kind as the
// official client encodes it; they seed fuzz/record_wire_fuzz_test.go.
func TestDumpOfficialRequests(t *testing.T) {
	if !testing.Verbose() {
		t.Skip("only with -v")
	}
	sim := newRecordSim(t)
	client := newClient(t, sim.Seeds()[0], "")
	waitNodes(t, "records", sim.Cluster, client)
	key := officialKey(t, "myTestKey")
	dump := func(what string) {
		tr, _ := sim.last(t)
		t.Logf("%s request %s", what, hex.EncodeToString(tr.request))
		t.Logf("%s reply %s", what, hex.EncodeToString(tr.reply[wire.ProtoHeaderSize:]))
	}
	client.Put(nil, key, as.BinMap{"x": 1234, "y": "abcd", "l": []any{1, "a", []byte{2}}, "m": map[any]any{"k": 1.5}, "b": true})
	dump("put")
	client.Get(nil, key)
	dump("get")
	client.Get(nil, key, "x")
	dump("get-bins")
	client.Exists(nil, key)
	dump("exists")
	client.Touch(nil, key)
	dump("touch")
	client.Add(nil, key, as.BinMap{"x": 1})
	dump("add")
	client.Delete(nil, key)
	dump("delete")
}

// TestOfficialClientRecordsThroughMigrations writes records with the
// official client, then adds a node, moves partitions, removes a node and
// stops one: after each change, commands issued before the client has
// caught up still succeed (tendtest answers for the right node and counts
// the proxy), and once the client's map agrees with the simulator every
// record is read back with its value and no request is proxied.
func TestOfficialClientRecordsThroughMigrations(t *testing.T) {
	sim := newRecordSim(t)
	client := newClient(t, sim.Seeds()[0], "")
	waitAgree(t, "start", sim.Cluster, client, shmkit{})
	const records = 200
	keys := make([]*as.Key, records)
	round := 0
	writeAll := func(step string) {
		t.Helper()
		for i, k := range keys {
			if err := client.Put(nil, k, as.BinMap{"v": round*1000 + i}); err != nil {
				t.Fatalf("%s: put %d: %v", step, i, err)
			}
		}
	}
	readAll := func(step string) {
		t.Helper()
		for i, k := range keys {
			r, err := client.Get(nil, k)
			if err != nil {
				t.Fatalf("%s: get %d: %v", step, i, err)
			}
			if r.Bins["v"] != round*1000+i {
				t.Fatalf("%s: record %d holds %v, want %d", step, i, r.Bins["v"], round*1000+i)
			}
		}
	}
	for i := range keys {
		keys[i] = officialKey(t, i)
	}
	writeAll("start")
	readAll("start")
	if p := sim.TotalProxied(); p != 0 {
		t.Fatalf("start: %d requests proxied", p)
	}
	third := func(pid uint32) int {
		owners, _ := sim.Replicas("test", pid)
		for _, n := range sim.Nodes() {
			if n.Member && !slices.Contains(owners, n.Name) {
				return n.Index
			}
		}
		t.Fatal("no third node")
		return -1
	}
	steps := []struct {
		name   string
		change func() error
		// early: commands may be sent before the client catches up (the
		// node they reach is still up).
		early bool
	}{
		{"AddNode", func() error { _, err := sim.AddNode(); return err }, true},
		{"MovePartition", func() error {
			for _, k := range keys[:20] {
				pid := uint32(k.PartitionId())
				if err := sim.MovePartition("test", pid, 0, third(pid)); err != nil {
					return err
				}
			}
			return nil
		}, true},
		{"RemoveNode", func() error { return sim.RemoveNode(0) }, false},
		{"StopNode+Rebalance", func() error {
			if err := sim.StopNode(1); err != nil {
				return err
			}
			return sim.Rebalance()
		}, false},
	}
	for _, st := range steps {
		if err := st.change(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		sim.ResetCounters()
		if st.early {
			readAll(st.name + " (early)")
			t.Logf("%s: %d of %d early reads were proxied", st.name, sim.TotalProxied(), records)
		}
		waitAgree(t, st.name, sim.Cluster, client, shmkit{})
		sim.ResetCounters()
		readAll(st.name)
		round++
		writeAll(st.name)
		readAll(st.name)
		if p := sim.TotalProxied(); p != 0 {
			t.Fatalf("%s: %d requests proxied with the map converged", st.name, p)
		}
		if n, _ := sim.OwnedRecordCount("test"); n != records {
			t.Fatalf("%s: the cluster owns %d records, want %d", st.name, n, records)
		}
	}
}
