package tendtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
)

// tlsRequest sends one info request over TLS to addr, verifying tlsName.
func tlsRequest(addr, tlsName string, cfg *tls.Config, names ...string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := info.DialTLS(ctx, addr, tlsName, info.Options{TLS: cfg})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.Request(ctx, names...)
}

// TestTLSNodes: a TLS-only cluster answers info and record messages over
// TLS, verified against each node's TLS name; peers-tls-std lists the
// other nodes' TLS endpoints with their names, the clear-text lists are
// empty. A wrong name, an untrusted pool, or clear text to a TLS port are
// refused.
func TestTLSNodes(t *testing.T) {
	c := newCluster(t, Options{Nodes: 2, TLS: &TLSOptions{}})
	pool, err := c.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool}
	nodes := c.Nodes()
	if nodes[0].Addr != "" || nodes[0].TLSAddr == "" || nodes[0].TLSName != "node0.tendtest" || len(c.Seeds()) != 0 {
		t.Fatalf("TLS-only node: %+v, seeds %v", nodes[0], c.Seeds())
	}
	if got := c.TLSSeeds(); len(got) != 2 || !strings.Contains(got[1], ":node1.tendtest:") {
		t.Errorf("TLS seeds %v", got)
	}
	r, err := tlsRequest(nodes[0].TLSAddr, nodes[0].TLSName, cfg, "node", info.CmdPeersTLSStd, info.CmdPeersClearStd, info.CmdServiceTLSStd)
	if err != nil {
		t.Fatal(err)
	}
	if r["node"] != nodes[0].Name || r[info.CmdServiceTLSStd] != nodes[0].TLSAddr {
		t.Errorf("answers over TLS: %v", r)
	}
	p, err := info.ParsePeers(info.CmdPeersTLSStd, r[info.CmdPeersTLSStd])
	if err != nil || len(p.Peers) != 1 || p.Peers[0].TLSName != nodes[1].TLSName || p.Peers[0].Name != nodes[1].Name ||
		len(p.Peers[0].Hosts) != 1 || p.Peers[0].Hosts[0].String() != nodes[1].TLSAddr {
		t.Errorf("peers-tls-std %q: %+v %v", r[info.CmdPeersTLSStd], p, err)
	}
	if p, err := info.ParsePeers(info.CmdPeersClearStd, r[info.CmdPeersClearStd]); err != nil || len(p.Peers) != 0 {
		t.Errorf("peers-clear-std of a TLS-only node: %q", r[info.CmdPeersClearStd])
	}

	// A record write and read over TLS, on the partition's master.
	k := mustKey(t, DefaultNamespace, "s", "tls-key")
	master, _ := c.Master(DefaultNamespace, k.Digest.PartitionID())
	mi := nodeIndexByName(t, c, master)
	tc, err := tls.Dial("tcp", nodes[mi].TLSAddr, &tls.Config{RootCAs: pool, ServerName: nodes[mi].TLSName})
	if err != nil {
		t.Fatal(err)
	}
	rc := &rconn{t: t, conn: tc}
	t.Cleanup(func() { tc.Close() })
	if code := rc.put(k, wire.Header{}, w("b", int64(7))); code != wire.ResultOK {
		t.Fatalf("put over TLS: %v", code)
	}
	if _, bins := rc.get(k); bins["b"] != int64(7) {
		t.Errorf("get over TLS: %v", bins)
	}

	var he x509.HostnameError
	if _, err := tlsRequest(nodes[0].TLSAddr, "node1.tendtest", cfg, "node"); !errors.Is(err, info.ErrTLS) || !errors.As(err, &he) {
		t.Errorf("wrong name: %v", err)
	}
	var ua x509.UnknownAuthorityError
	if _, err := tlsRequest(nodes[0].TLSAddr, nodes[0].TLSName, &tls.Config{RootCAs: x509.NewCertPool()}, "node"); !errors.Is(err, info.ErrTLS) || !errors.As(err, &ua) {
		t.Errorf("untrusted: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, err := info.Dial(ctx, nodes[0].TLSAddr, info.Options{ReadTimeout: time.Second}); err == nil {
		_, err = conn.Request(ctx, "node")
		conn.Close()
		if err == nil {
			t.Error("a clear-text request on a TLS port was answered")
		}
	}
	waitFor(t, func() bool { return c.AuthStats(0).HandshakeFailures >= 3 })
}

// TestMutualTLS: with RequireClientCert a client needs a certificate from
// ClientCertificate; without one its first request fails.
func TestMutualTLS(t *testing.T) {
	c := newCluster(t, Options{TLS: &TLSOptions{RequireClientCert: true}})
	pool, _ := c.CertPool()
	n := c.Nodes()[0]
	if _, err := tlsRequest(n.TLSAddr, n.TLSName, &tls.Config{RootCAs: pool}, "node"); err == nil {
		t.Error("answered a client without a certificate")
	}
	cert, err := c.ClientCertificate("client")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := tlsRequest(n.TLSAddr, n.TLSName, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}, "node"); err != nil || r["node"] != n.Name {
		t.Errorf("with a client certificate: %v %v", r, err)
	}
	if _, err := (&Cluster{}).CertPool(); !errors.Is(err, ErrNoTLS) {
		t.Errorf("CertPool without TLS: %v", err)
	}
}

// TestClearAndTLS: with ClearText both services run; each peers list
// names only its own kind of endpoint, and connections are counted per
// endpoint.
func TestClearAndTLS(t *testing.T) {
	c := newCluster(t, Options{Nodes: 2, TLS: &TLSOptions{ClearText: true}})
	nodes := c.Nodes()
	r := request(t, nodes[0].Addr, info.CmdPeersClearStd, info.CmdPeersTLSStd)
	clear, _ := info.ParsePeers(info.CmdPeersClearStd, r[info.CmdPeersClearStd])
	tlsp, _ := info.ParsePeers(info.CmdPeersTLSStd, r[info.CmdPeersTLSStd])
	if len(clear.Peers) != 1 || clear.Peers[0].Hosts[0].String() != nodes[1].Addr || clear.Peers[0].TLSName != "" {
		t.Errorf("peers-clear-std %q", r[info.CmdPeersClearStd])
	}
	if len(tlsp.Peers) != 1 || tlsp.Peers[0].Hosts[0].String() != nodes[1].TLSAddr || tlsp.Peers[0].TLSName != nodes[1].TLSName {
		t.Errorf("peers-tls-std %q", r[info.CmdPeersTLSStd])
	}
	if c.EndpointConnections(0, EndpointClear) != 1 || c.EndpointConnections(0, EndpointTLS) != 0 {
		t.Errorf("connections: clear %d, TLS %d", c.EndpointConnections(0, EndpointClear), c.EndpointConnections(0, EndpointTLS))
	}
}

// authConn dials addr and authenticates with a.
func authConn(addr string, a *admin.Authenticator, opts info.Options) (*info.Conn, error) {
	opts.Auth = func(ctx context.Context, nc net.Conn, key string) error { return a.Auth(ctx, nc, key, 2*time.Second) }
	return info.Dial(context.Background(), addr, opts)
}

// TestSecurity: with Users a connection that has not logged in gets no
// info answer and result 80 for a record command; a login answers a
// session token that later connections authenticate with; wrong
// credentials get 60 and 62; after RestartNode or past the session TTL
// the token is refused (65, 66) and the client logs in again.
func TestSecurity(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := newCluster(t, Options{Users: map[string]string{"u": "pw"}, SessionTTL: time.Hour, Clock: clock})
	addr := c.Nodes()[0].Addr

	// Not logged in: the info request fails, a record command gets 80.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if conn, err := info.Dial(ctx, addr, info.Options{}); err == nil {
		if _, err := conn.Request(ctx, "node"); err == nil {
			t.Error("an info request was answered before login")
		}
		conn.Close()
	}
	rc := dialRecord(t, addr)
	if m := rc.do(wire.Header{Info1: wire.Info1Read | wire.Info1GetAll}, mustKey(t, DefaultNamespace, "", 1)); m.ResultCode != resultNotAuthenticated {
		t.Errorf("record command before login: result %v, want 80", m.ResultCode)
	}
	if s := c.AuthStats(0); s.Unauthenticated != 2 {
		t.Errorf("unauthenticated messages: %+v", s)
	}

	for _, tc := range []struct {
		user, pw string
		code     admin.ResultCode
	}{{"u", "wrong", admin.ResultInvalidPassword}, {"nobody", "pw", admin.ResultInvalidUser}} {
		a, err := admin.NewAuthenticator(admin.Credentials{Mode: admin.ModeInternal, User: tc.user, Password: tc.pw})
		if err != nil {
			t.Fatal(err)
		}
		_, err = authConn(addr, a, info.Options{})
		var ae *admin.Error
		if !errors.As(err, &ae) || ae.Code != tc.code || ae.User != tc.user {
			t.Errorf("%s/%s: %v, want result %d", tc.user, tc.pw, err, tc.code)
		}
	}

	a, err := admin.NewAuthenticator(admin.Credentials{Mode: admin.ModeInternal, User: "u", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	dial := func(step string) {
		t.Helper()
		conn, err := authConn(addr, a, info.Options{})
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		defer conn.Close()
		if r, err := conn.Request(context.Background(), "node"); err != nil || r["node"] == "" {
			t.Fatalf("%s: request after authentication: %v %v", step, r, err)
		}
	}
	dial("login")
	dial("token")
	if s := c.AuthStats(0); s.Logins != 1 || s.TokenAuths != 1 || len(c.SessionTokens()) != 1 {
		t.Errorf("after a login and a token: %+v, %d tokens", s, len(c.SessionTokens()))
	}
	// A restart forgets the session: the token is refused, the client logs in.
	if err := c.StopNode(0); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	dial("after restart")
	if s := c.AuthStats(0); s.Logins != 2 || s.Refused != 3 {
		t.Errorf("after the restart: %+v, want 2 logins, 3 refusals", s)
	}
	// Past the TTL (by the cluster's clock) the token is expired.
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	dial("after expiry")
	if s := c.AuthStats(0); s.Logins != 3 || s.Refused != 4 || s.TokenAuths != 1 {
		t.Errorf("after expiry: %+v, want 3 logins, 4 refusals", s)
	}

	// Security off: a login is answered "security not enabled".
	open := newCluster(t, Options{})
	if conn, err := authConn(open.Nodes()[0].Addr, a, info.Options{}); err != nil {
		t.Errorf("login to a cluster without security: %v", err)
	} else {
		conn.Close()
	}
	if s := open.AuthStats(0); s.Logins != 0 || s.Refused != 0 {
		t.Errorf("security off: %+v", s)
	}
}

// TestPKILogin: in PKI mode the client certificate's common name is the
// user; a name that is no user is refused with 60.
func TestPKILogin(t *testing.T) {
	c := newCluster(t, Options{TLS: &TLSOptions{}, Users: map[string]string{"pki-user": ""}})
	pool, _ := c.CertPool()
	n := c.Nodes()[0]
	for _, cn := range []string{"pki-user", "stranger"} {
		a, err := admin.NewAuthenticator(admin.Credentials{Mode: admin.ModePKI})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := c.ClientCertificate(cn)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := authConn(n.TLSAddr, a, info.Options{TLS: &tls.Config{RootCAs: pool, ServerName: n.TLSName, Certificates: []tls.Certificate{cert}}})
		var ae *admin.Error
		switch {
		case cn == "pki-user" && err != nil:
			t.Errorf("PKI login as %s: %v", cn, err)
		case cn == "stranger" && (!errors.As(err, &ae) || ae.Code != admin.ResultInvalidUser):
			t.Errorf("PKI login as %s: %v, want result 60", cn, err)
		}
		if conn != nil {
			conn.Close()
		}
	}
}

// TestRacksAndAlternate: rack-ids answers Options.Racks and SetRack per
// namespace; with Alternate the *-alt commands answer second listeners,
// distinct from the standard ones, that serve the same node.
func TestRacksAndAlternate(t *testing.T) {
	c := newCluster(t, Options{Nodes: 2, Racks: []int{3}, Alternate: true,
		Namespaces: []NamespaceSpec{{Name: "a"}, {Name: "b"}}})
	nodes := c.Nodes()
	if err := c.SetRack(1, "b", 7); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"a:3;b:3", "a:0;b:7"} {
		if got := request(t, nodes[i].Addr, info.CmdRackIDs)[info.CmdRackIDs]; got != want {
			t.Errorf("node %d rack-ids %q, want %q", i, got, want)
		}
	}
	if r, err := c.Rack(1, "b"); err != nil || r != 7 {
		t.Errorf("Rack(1, b) = %d %v", r, err)
	}
	if nodes[0].AltAddr == "" || nodes[0].AltAddr == nodes[0].Addr {
		t.Fatalf("alternate address %q (std %q)", nodes[0].AltAddr, nodes[0].Addr)
	}
	r := request(t, nodes[0].AltAddr, "node", info.CmdPeersClearAlt, info.CmdPeersClearStd, info.CmdServiceClearAlt)
	alt, _ := info.ParsePeers(info.CmdPeersClearAlt, r[info.CmdPeersClearAlt])
	std, _ := info.ParsePeers(info.CmdPeersClearStd, r[info.CmdPeersClearStd])
	if r["node"] != nodes[0].Name || r[info.CmdServiceClearAlt] != nodes[0].AltAddr ||
		len(alt.Peers) != 1 || alt.Peers[0].Hosts[0].String() != nodes[1].AltAddr ||
		len(std.Peers) != 1 || std.Peers[0].Hosts[0].String() != nodes[1].Addr {
		t.Errorf("alternate answers %v", r)
	}
	if c.EndpointConnections(0, EndpointClearAlt) != 1 || c.EndpointConnections(0, EndpointClear) != 1 {
		t.Errorf("connections: std %d, alt %d", c.EndpointConnections(0, EndpointClear), c.EndpointConnections(0, EndpointClearAlt))
	}
	// Without Alternate the alternate lists answer the standard addresses.
	plain := newCluster(t, Options{Nodes: 2})
	pn := plain.Nodes()
	r = request(t, pn[0].Addr, info.CmdPeersClearAlt)
	if p, _ := info.ParsePeers(info.CmdPeersClearAlt, r[info.CmdPeersClearAlt]); len(p.Peers) != 1 || p.Peers[0].Hosts[0].String() != pn[1].Addr || pn[0].AltAddr != "" {
		t.Errorf("peers-clear-alt without Alternate: %q", r[info.CmdPeersClearAlt])
	}
}

// TestRackAwarePlacement: with racks, the two copies of every partition
// are on different racks and the master is member p mod n; without racks
// (the control) the round-robin placement puts both copies of some
// partitions on nodes that the racks would share.
func TestRackAwarePlacement(t *testing.T) {
	racks := []int{1, 1, 2, 2}
	for _, aware := range []bool{true, false} {
		opts := Options{Nodes: 4}
		if aware {
			opts.Racks = racks
		}
		c := newCluster(t, opts)
		idx := map[string]int{}
		for _, n := range c.Nodes() {
			idx[n.Name] = n.Index
		}
		sameRack := 0
		for p := range uint32(4096) {
			reps, err := c.Replicas(DefaultNamespace, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(reps) != 2 || idx[reps[0]] != int(p)%4 {
				t.Fatalf("aware=%v partition %d: replicas %v", aware, p, reps)
			}
			if racks[idx[reps[0]]] == racks[idx[reps[1]]] {
				sameRack++
			}
		}
		if aware && sameRack != 0 || !aware && sameRack == 0 {
			t.Errorf("aware=%v: %d partitions with both copies on one rack", aware, sameRack)
		}
		if aware {
			checkTable(t, c)
		}
	}
}

// TestCloseConnections: open connections fail after CloseConnections; the
// node stays up, so a new connection is answered.
func TestCloseConnections(t *testing.T) {
	c := newCluster(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := info.Dial(ctx, c.Nodes()[0].Addr, info.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Request(ctx, "node"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseConnections(0); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Request(ctx, "node"); err == nil {
		t.Error("a request on a closed connection was answered")
	}
	if r := request(t, c.Nodes()[0].Addr, "node"); r["node"] != c.Nodes()[0].Name {
		t.Errorf("new connection: %v", r)
	}
	if err := c.CloseConnections(9); !errors.Is(err, ErrNoSuchNode) {
		t.Errorf("CloseConnections(9): %v", err)
	}
}
