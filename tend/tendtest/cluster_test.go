package tendtest

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend/info"
)

func newCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func request(t *testing.T, addr string, names ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := info.Dial(ctx, addr, info.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m, err := conn.Request(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fetchTable asks every up node for "replicas" and merges the answers.
func fetchTable(t *testing.T, c *Cluster) PartitionTable {
	t.Helper()
	var answers []NodeReplicas
	for _, n := range c.Nodes() {
		if !n.Up {
			continue
		}
		m := request(t, n.Addr, "node", "replicas")
		nss, err := info.ParseReplicas(m["replicas"])
		if err != nil {
			t.Fatalf("node %s replicas: %v", n.Name, err)
		}
		answers = append(answers, NodeReplicas{Node: m["node"], Namespaces: nss})
	}
	return MergeReplicas(answers)
}

// checkTable compares the merged answers (the official clients' rule)
// with ClientReplicas for every namespace and partition.
func checkTable(t *testing.T, c *Cluster) {
	t.Helper()
	table := fetchTable(t, c)
	for _, ns := range c.Namespaces() {
		for p := range uint32(partmap.Partitions) {
			want, err := c.ClientReplicas(ns.Name, p)
			if err != nil {
				t.Fatal(err)
			}
			if got := table.Replicas(ns.Name, p); !slices.Equal(got, want) {
				t.Fatalf("%s/%d: merged %v, expected %v", ns.Name, p, got, want)
			}
		}
	}
}

func TestNodeBasics(t *testing.T) {
	c := newCluster(t, Options{Nodes: 3, ClusterName: "sim", Build: "8.0.0.1"})
	nodes := c.Nodes()
	if len(nodes) != 3 || len(c.Seeds()) != 3 {
		t.Fatalf("nodes %v seeds %v", nodes, c.Seeds())
	}
	for _, n := range nodes {
		if len(n.Name) != 15 || strings.ToUpper(n.Name) != n.Name {
			t.Fatalf("node name %q does not look real", n.Name)
		}
		m := request(t, n.Addr, "node", "build", "cluster-name", "partition-generation", "peers-generation",
			"features", "service-clear-std", "no-such-command", "user-agent-set:value=eA==")
		if name, err := info.ParseNode(m["node"]); err != nil || name != n.Name {
			t.Fatalf("node = %q, %v", m["node"], err)
		}
		if v, err := info.ParseBuild(m["build"]); err != nil || !v.AtLeast(8, 0, 0, 1) {
			t.Fatalf("build = %q, %v", m["build"], err)
		}
		if m["cluster-name"] != "sim" || m["user-agent-set:value=eA=="] != "ok" {
			t.Fatalf("reply %v", m)
		}
		if v, ok := m["no-such-command"]; !ok || v != "" {
			t.Fatalf("unknown command answered %q, %v", v, ok)
		}
		if g, err := info.ParseGeneration(info.CmdPartitionGeneration, m["partition-generation"]); err != nil || g < 1 {
			t.Fatalf("partition-generation %q, %v", m["partition-generation"], err)
		}
		svc, err := info.ParseServices(info.CmdServiceClearStd, m["service-clear-std"], 0)
		if err != nil || len(svc) != 1 || svc[0].String() != n.Addr {
			t.Fatalf("service %v, %v", svc, err)
		}
		f, _ := info.ParseFeatures(m["features"])
		if !slices.Contains(f, "replicas") || !slices.Contains(f, "peers") {
			t.Fatalf("features %v", f)
		}
	}
}

func TestPeersListing(t *testing.T) {
	c := newCluster(t, Options{Nodes: 3})
	nodes := c.Nodes()
	for _, n := range nodes {
		m := request(t, n.Addr, "peers-generation", "peers-clear-std", "peers-tls-std")
		p, err := info.ParsePeers(info.CmdPeersClearStd, m["peers-clear-std"])
		if err != nil {
			t.Fatal(err)
		}
		gen, _ := info.ParseGeneration(info.CmdPeersGeneration, m["peers-generation"])
		if p.Generation != gen {
			t.Fatalf("peers list generation %d, peers-generation %d", p.Generation, gen)
		}
		var got []string
		for _, peer := range p.Peers {
			got = append(got, peer.Name+"@"+peer.Hosts[0].String())
		}
		var want []string
		for _, o := range nodes {
			if o.Name != n.Name {
				want = append(want, o.Name+"@"+o.Addr)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s peers %v, want %v", n.Name, got, want)
		}
		tls, err := info.ParsePeers(info.CmdPeersTLSStd, m["peers-tls-std"])
		if err != nil || len(tls.Peers) != 0 {
			t.Fatalf("peers-tls-std %+v, %v", tls, err)
		}
	}
}

func TestReplicasMatchExpectedState(t *testing.T) {
	c := newCluster(t, Options{Nodes: 3, Namespaces: []NamespaceSpec{
		{Name: "test", ReplicationFactor: 2},
		{Name: "sc", ReplicationFactor: 3, SC: true},
		{Name: "big", ReplicationFactor: 5}, // capped at 3 members
	}})
	checkTable(t, c)
	if rf, _ := c.ReplicationFactor("big"); rf != 3 {
		t.Fatalf("effective rf = %d, want 3", rf)
	}
	// Every partition has a distinct owner per replica.
	for p := range uint32(partmap.Partitions) {
		r, _ := c.Replicas("sc", p)
		if len(r) != 3 || r[0] == r[1] || r[1] == r[2] || r[0] == r[2] {
			t.Fatalf("partition %d replicas %v", p, r)
		}
	}
	// SC regime is non-zero, AP regime zero.
	m := request(t, c.Nodes()[0].Addr, "replicas")
	nss, _ := info.ParseReplicas(m["replicas"])
	if nss[0].Regime != 0 || nss[1].Regime == 0 {
		t.Fatalf("regimes %d %d", nss[0].Regime, nss[1].Regime)
	}
}

func TestMovePartitionBumpsGeneration(t *testing.T) {
	c := newCluster(t, Options{Nodes: 3})
	const pid = 2709
	before, _ := c.Replicas("test", pid)
	var to int
	for _, n := range c.Nodes() {
		if !slices.Contains(before, n.Name) {
			to = n.Index
		}
	}
	gens := make([]int64, 3)
	for i := range gens {
		gens[i], _ = c.PartitionGeneration(i)
	}
	if err := c.MovePartition("test", pid, 0, to); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Master("test", pid); m != c.Nodes()[to].Name {
		t.Fatalf("master %q, want %q", m, c.Nodes()[to].Name)
	}
	bumped := 0
	for i := range gens {
		g, _ := c.PartitionGeneration(i)
		if g != gens[i] {
			bumped++
		}
		// The node reports the new generation.
		m := request(t, c.Nodes()[i].Addr, "partition-generation")
		if got, _ := info.ParseGeneration(info.CmdPartitionGeneration, m["partition-generation"]); got != g {
			t.Fatalf("node %d reports %d, want %d", i, got, g)
		}
	}
	if bumped != 2 {
		t.Fatalf("%d generations bumped, want 2 (old and new master)", bumped)
	}
	checkTable(t, c)

	// Moving the master to the current prole swaps the two.
	r, _ := c.Replicas("test", 7)
	var prole int
	for _, n := range c.Nodes() {
		if n.Name == r[1] {
			prole = n.Index
		}
	}
	if err := c.MovePartition("test", 7, 0, prole); err != nil {
		t.Fatal(err)
	}
	if after, _ := c.Replicas("test", 7); after[0] != r[1] || after[1] != r[0] {
		t.Fatalf("swap: %v -> %v", r, after)
	}
	checkTable(t, c)
}

func TestAddAndRemoveNode(t *testing.T) {
	c := newCluster(t, Options{Nodes: 2, Namespaces: []NamespaceSpec{{Name: "test", ReplicationFactor: 3}}})
	if rf, _ := c.ReplicationFactor("test"); rf != 2 {
		t.Fatalf("rf %d", rf)
	}
	g0, _ := c.PeersGeneration(0)
	idx, err := c.AddNode()
	if err != nil || idx != 2 {
		t.Fatalf("AddNode = %d, %v", idx, err)
	}
	if g, _ := c.PeersGeneration(0); g == g0 {
		t.Fatal("peers-generation not bumped by AddNode")
	}
	if rf, _ := c.ReplicationFactor("test"); rf != 3 {
		t.Fatalf("rf after add %d", rf)
	}
	checkTable(t, c)

	removed := c.Nodes()[1]
	g1, _ := c.PeersGeneration(0)
	if err := c.RemoveNode(1); err != nil {
		t.Fatal(err)
	}
	if g, _ := c.PeersGeneration(0); g == g1 {
		t.Fatal("peers-generation not bumped by RemoveNode")
	}
	for _, n := range c.Nodes() {
		if n.Removed {
			continue
		}
		m := request(t, n.Addr, "peers-clear-std")
		if strings.Contains(m["peers-clear-std"], removed.Name) {
			t.Fatalf("%s still lists removed node: %s", n.Name, m["peers-clear-std"])
		}
	}
	for p := range uint32(partmap.Partitions) {
		r, _ := c.Replicas("test", p)
		if slices.Contains(r, removed.Name) {
			t.Fatalf("partition %d still on removed node", p)
		}
	}
	if !c.Nodes()[1].Removed || len(c.Seeds()) != 2 {
		t.Fatalf("nodes %+v", c.Nodes())
	}
	checkTable(t, c)
	if err := c.RestartNode(1); !errors.Is(err, ErrNodeRemoved) {
		t.Fatalf("restart removed node: %v", err)
	}
}

func TestRegimeConflict(t *testing.T) {
	c := newCluster(t, Options{Nodes: 3, Namespaces: []NamespaceSpec{{Name: "sc", ReplicationFactor: 2, SC: true}}})
	const pid = 100
	r, _ := c.Replicas("sc", pid)
	idx := map[string]int{}
	for _, n := range c.Nodes() {
		idx[n.Name] = n.Index
	}
	var outsider int
	for _, n := range c.Nodes() {
		if !slices.Contains(r, n.Name) {
			outsider = n.Index
		}
	}
	master := idx[r[0]]
	base, _ := c.Regime("sc", master)

	// A stale claim with a lower regime loses.
	if err := c.SetRegime("sc", master, base+1); err != nil {
		t.Fatal(err)
	}
	if err := c.ClaimPartition("sc", pid, 0, outsider); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Master("sc", pid); m != r[0] {
		t.Fatalf("master %q, want %q (higher regime)", m, r[0])
	}
	checkTable(t, c)

	// Raising the claimer above wins the partition.
	if err := c.SetRegime("sc", outsider, base+2); err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Master("sc", pid); m != c.Nodes()[outsider].Name {
		t.Fatalf("master %q, want the higher-regime claimer", m)
	}
	checkTable(t, c)
	// The prole's claim is now below the partition's regime: a tender
	// ignores it, the official clients keep it.
	if got, _ := c.Replicas("sc", pid); !slices.Equal(got, []string{c.Nodes()[outsider].Name, ""}) {
		t.Errorf("Replicas %v, want the claimer and no prole", got)
	}
	if got, _ := c.ClientReplicas("sc", pid); !slices.Equal(got, []string{c.Nodes()[outsider].Name, r[1]}) {
		t.Errorf("ClientReplicas %v, want the claimer and prole %s", got, r[1])
	}

	// A rebalance clears stale claims and gives everyone a new, higher regime.
	if err := c.Rebalance(); err != nil {
		t.Fatal(err)
	}
	if g, _ := c.Regime("sc", 0); g != base+3 {
		t.Fatalf("regime after rebalance %d, want %d", g, base+3)
	}
	if m, _ := c.Master("sc", pid); m != r[0] {
		t.Fatalf("master after rebalance %q, want %q", m, r[0])
	}
	checkTable(t, c)
}

func TestFaults(t *testing.T) {
	c := newCluster(t, Options{Nodes: 2})
	addr := c.Nodes()[0].Addr
	ctx := context.Background()

	// Delay beyond the read timeout.
	if err := c.SetDelay(0, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	conn, err := info.Dial(ctx, addr, info.Options{ReadTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Request(ctx, "node"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("delayed request err = %v", err)
	}
	conn.Close()
	c.SetDelay(0, 0)

	// Dropped connections.
	if err := c.DropNextConnections(0, 2); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		conn, err := info.Dial(ctx, addr, info.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Request(ctx, "node"); err == nil {
			t.Fatal("request on a dropped connection succeeded")
		}
		conn.Close()
	}
	request(t, addr, "node") // third connection works

	// Malformed values.
	c.SetMalformed(0, "replicas", "test:0,1,AAAA")
	c.SetMalformed(0, "peers-clear-std", "1,3000,[[")
	m := request(t, addr, "replicas", "peers-clear-std")
	if _, err := info.ParseReplicas(m["replicas"]); !errors.Is(err, info.ErrMalformed) {
		t.Fatalf("malformed replicas parsed: %v", err)
	}
	if _, err := info.ParsePeers(info.CmdPeersClearStd, m["peers-clear-std"]); err == nil {
		t.Fatal("malformed peers parsed")
	}
	c.ClearFaults(0)
	m = request(t, addr, "replicas")
	if _, err := info.ParseReplicas(m["replicas"]); err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}

	// Stop and restart.
	if err := c.StopNode(0); err != nil {
		t.Fatal(err)
	}
	if c.Nodes()[0].Up {
		t.Fatal("stopped node reported up")
	}
	if _, err := info.Dial(ctx, addr, info.Options{ConnectTimeout: time.Second}); err == nil {
		t.Fatal("dial to a stopped node succeeded")
	}
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	if c.Nodes()[0].Addr != addr {
		t.Fatal("restart changed the address")
	}
	request(t, addr, "node")

	// A stopped node that the cluster re-formed without loses its partitions.
	c.StopNode(1)
	if err := c.Rebalance(); err != nil {
		t.Fatal(err)
	}
	if n := c.Nodes()[1]; n.Member {
		t.Fatal("stopped node still a member after Rebalance")
	}
	checkTable(t, c)
}

func TestCounters(t *testing.T) {
	c := newCluster(t, Options{Nodes: 2})
	c.ResetCounters()
	addr := c.Nodes()[1].Addr
	request(t, addr, "node", "partition-generation", "user-agent-set:value=x")
	request(t, addr, "node")
	req := c.Requests(1)
	if req["node"] != 2 || req["partition-generation"] != 1 || req["user-agent-set"] != 1 {
		t.Fatalf("requests %v", req)
	}
	if c.Messages(1) != 2 || c.InfoRequests() != 2 || c.Messages(0) != 0 {
		t.Fatalf("messages %d total %d", c.Messages(1), c.InfoRequests())
	}
	if c.Connections(1) != 2 {
		t.Fatalf("connections %d", c.Connections(1))
	}
	if len(c.Requests(99)) != 0 || c.Messages(-1) != 0 {
		t.Fatal("out-of-range counters not empty")
	}
}

func TestNonInfoMessageClosesConnection(t *testing.T) {
	c := newCluster(t, Options{})
	// Send a data-protocol header by hand through a raw connection.
	raw, err := net.DialTimeout("tcp", c.Nodes()[0].Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h := info.Header{Version: 2, Type: info.TypeMessage, Length: 0}.Encode()
	raw.Write(h[:])
	buf := make([]byte, 1)
	raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := raw.Read(buf); err == nil {
		t.Fatal("connection not closed after a data message")
	}
	raw.Close()
	waitFor(t, func() bool { return c.NonInfoMessages(0) == 1 })
}

func TestInvalidArguments(t *testing.T) {
	for _, o := range []Options{
		{Nodes: -1},
		{Namespaces: []NamespaceSpec{{Name: ""}}},
		{Namespaces: []NamespaceSpec{{Name: strings.Repeat("x", 32)}}},
		{Namespaces: []NamespaceSpec{{Name: "a:b"}}},
		{Namespaces: []NamespaceSpec{{Name: "a"}, {Name: "a"}}},
		{Namespaces: []NamespaceSpec{{Name: "a", ReplicationFactor: -1}}},
		{Build: "not-a-version"},
		{ClusterName: "a\nb"},
	} {
		if _, err := New(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(%+v) err = %v", o, err)
		}
	}
	c := newCluster(t, Options{Nodes: 2})
	checks := []struct {
		err  error
		kind error
	}{
		{c.StopNode(5), ErrNoSuchNode},
		{c.MovePartition("nope", 1, 0, 0), ErrNoSuchNamespace},
		{c.MovePartition("test", 4096, 0, 0), ErrBadPartition},
		{c.MovePartition("test", 1, 2, 0), ErrBadPartition},
		{c.ClaimPartition("test", 1, -1, 0), ErrBadPartition},
		{c.SetRegime("nope", 0, 1), ErrNoSuchNamespace},
		{c.SetDelay(-1, time.Second), ErrNoSuchNode},
	}
	for i, ch := range checks {
		if !errors.Is(ch.err, ch.kind) {
			t.Errorf("check %d: err = %v, want %v", i, ch.err, ch.kind)
		}
	}
	if _, err := c.Master("nope", 0); !errors.Is(err, ErrNoSuchNamespace) {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.AddNode(); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddNode after Close: %v", err)
	}
	if err := c.Rebalance(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rebalance after Close: %v", err)
	}
}

func TestCloseEndsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	c, err := New(Options{Nodes: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Leave a few client connections open so server goroutines exist.
	var conns []*info.Conn
	for _, n := range c.Nodes() {
		conn, err := info.Dial(context.Background(), n.Addr, info.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Request(context.Background(), "node"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	c.SetDelay(0, time.Hour) // a reply stuck in its delay must end too
	sent := c.Messages(0)
	go conns[0].Request(context.Background(), "node")
	waitFor(t, func() bool { return c.Messages(0) > sent }) // answered, now in its delay
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, conn := range conns {
		conn.Close()
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

func TestMergeReplicasRegimeRule(t *testing.T) {
	var a, b info.Bitmap
	a.Set(1)
	b.Set(1)
	b.Set(2)
	answers := []NodeReplicas{
		{Node: "B", Namespaces: []info.NamespaceReplicas{{Namespace: "sc", Regime: 5, ReplicaCount: 1, Bitmaps: []info.Bitmap{b}}}},
		{Node: "A", Namespaces: []info.NamespaceReplicas{{Namespace: "sc", Regime: 3, ReplicaCount: 1, Bitmaps: []info.Bitmap{a}}}},
	}
	table := MergeReplicas(answers)
	if got := table.Replicas("sc", 1); !slices.Equal(got, []string{"B"}) {
		t.Fatalf("partition 1: %v, want B (higher regime)", got)
	}
	if got := table.Replicas("sc", 0); !slices.Equal(got, []string{""}) {
		t.Fatalf("partition 0: %v", got)
	}
	if table.Replicas("nope", 1) != nil || table.Replicas("sc", 5000) != nil {
		t.Fatal("unknown namespace or partition not nil")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
