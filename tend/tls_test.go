package tend_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/info"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// tlsPool returns the sim's certificate authority as a pool.
func tlsPool(t testing.TB, sim *tendtest.Cluster) *x509.CertPool {
	t.Helper()
	pool, err := sim.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// waitConverged waits until c has nodes nodes and its map of the default
// namespace is the sim's.
func waitConverged(t testing.TB, c *tend.Cluster, sim *tendtest.Cluster, nodes int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d nodes", nodes), func() bool { return len(c.Nodes()) == nodes })
	eventually(t, "the map converged", func() bool {
		return viewHash(c, tendtest.DefaultNamespace) == simHash(t, sim, tendtest.DefaultNamespace)
	})
}

// checkEndpoints checks that every node of c's view is at the address
// addr gives for its sim node, and that every sim node accepted
// connections on endpoint used and none on unused.
func checkEndpoints(t testing.TB, c *tend.Cluster, sim *tendtest.Cluster, addr func(tendtest.NodeInfo) string, used, unused tendtest.Endpoint) {
	t.Helper()
	byName := map[string]tendtest.NodeInfo{}
	for _, n := range sim.Nodes() {
		byName[n.Name] = n
	}
	for _, n := range c.Nodes() {
		if want := addr(byName[n.Name]); len(n.Addresses) != 1 || n.Addresses[0].String() != want {
			t.Errorf("node %s at %v, want %s", n.Name, n.Addresses, want)
		}
	}
	for _, n := range sim.Nodes() {
		if got := sim.EndpointConnections(n.Index, unused); got != 0 {
			t.Errorf("node %d: %d connections on its %v endpoint", n.Index, got, unused)
		}
		if sim.EndpointConnections(n.Index, used) == 0 {
			t.Errorf("node %d: no connection on its %v endpoint (the control)", n.Index, used)
		}
	}
}

// TestTLSCluster: a tender with TLS learns a 3-node TLS cluster from one
// "host:tlsname:port" seed, verifies every node against its TLS name from
// peers-tls-std, keeps the TLS names and TLS addresses in the view, and
// never asks for the clear-text peers. Mutual TLS works with a client
// certificate and is refused without one.
func TestTLSCluster(t *testing.T) {
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("mutual=%v", mutual), func(t *testing.T) {
			sim := newSim(t, tendtest.Options{Nodes: 3, TLS: &tendtest.TLSOptions{RequireClientCert: mutual}})
			pool := tlsPool(t, sim)
			cfg := &tls.Config{RootCAs: pool}
			if mutual {
				cert, err := sim.ClientCertificate("shmkit-client")
				if err != nil {
					t.Fatal(err)
				}
				cfg.Certificates = []tls.Certificate{cert}
			}
			c, err := openIdentity(t, tend.Config{Seeds: sim.TLSSeeds()[:1], ShmKey: testKey(t), TLS: cfg})
			if err != nil {
				t.Fatal(err)
			}
			waitConverged(t, c, sim, 3)
			checkEndpoints(t, c, sim, func(n tendtest.NodeInfo) string { return n.TLSAddr }, tendtest.EndpointTLS, tendtest.EndpointClear)
			byName := map[string]tendtest.NodeInfo{}
			for _, n := range sim.Nodes() {
				byName[n.Name] = n
			}
			for _, n := range c.Nodes() {
				if want := byName[n.Name]; n.TLSName != want.TLSName {
					t.Errorf("node %s: TLS name %q, want %s", n.Name, n.TLSName, want.TLSName)
				}
			}
			for i := range 3 {
				if got := sim.Requests(i)[info.CmdPeersClearStd]; got != 0 {
					t.Errorf("node %d was asked for clear-text peers %d times", i, got)
				}
				if sim.AuthStats(i).HandshakeFailures != 0 {
					t.Errorf("node %d: %d failed handshakes with the tender", i, sim.AuthStats(i).HandshakeFailures)
				}
			}
			if mutual {
				// The control: the same cluster without a client certificate.
				n := sim.Nodes()[0]
				conn, err := info.DialTLS(context.Background(), n.TLSAddr, n.TLSName, info.Options{TLS: &tls.Config{RootCAs: pool}})
				if err == nil {
					// A TLS 1.3 server refuses the client after the
					// handshake: the first request fails.
					_, err = conn.Request(context.Background(), "node")
					conn.Close()
				}
				if err == nil {
					t.Error("a node requiring a client certificate answered a client without one")
				}
			}
		})
	}
}

// TestTLSNotMixed: on nodes serving both clear text and TLS, a TLS tender
// seeded with a TLS seed connects to TLS endpoints only, and a clear-text
// tender to clear-text endpoints only: the two kinds are never mixed.
func TestTLSNotMixed(t *testing.T) {
	for _, useTLS := range []bool{true, false} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			sim := newSim(t, tendtest.Options{Nodes: 3, TLS: &tendtest.TLSOptions{ClearText: true}})
			cfg := tend.Config{Seeds: sim.Seeds()[:1], ShmKey: testKey(t)}
			used, unused := tendtest.EndpointClear, tendtest.EndpointTLS
			if useTLS {
				cfg.Seeds, cfg.TLS = sim.TLSSeeds()[:1], &tls.Config{RootCAs: tlsPool(t, sim)}
				used, unused = unused, used
			}
			c, err := openIdentity(t, cfg)
			if err != nil {
				t.Fatal(err)
			}
			waitConverged(t, c, sim, 3)
			checkEndpoints(t, c, sim, func(n tendtest.NodeInfo) string {
				if useTLS {
					return n.TLSAddr
				}
				return n.Addr
			}, used, unused)
		})
	}
}

// TestTLSRefusals: a certificate for another name, or from an untrusted
// authority, or a clear-text server, is refused with an error wrapping
// info.ErrTLS and the crypto error; the right name and root connect.
func TestTLSRefusals(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 1, TLS: &tendtest.TLSOptions{ClearText: true}})
	other := newSim(t, tendtest.Options{Nodes: 1, TLS: &tendtest.TLSOptions{}})
	n := sim.Nodes()[0]
	ctx := context.Background()
	good := info.Options{TLS: &tls.Config{RootCAs: tlsPool(t, sim)}}
	c, err := info.DialTLS(ctx, n.TLSAddr, n.TLSName, good)
	if err != nil {
		t.Fatalf("the right name and root: %v", err)
	}
	if r, err := c.Request(ctx, "node"); err != nil || r["node"] != n.Name {
		t.Errorf("request over TLS: %v %v", r, err)
	}
	c.Close()

	_, err = info.DialTLS(ctx, n.TLSAddr, "node1.tendtest", good)
	var he x509.HostnameError
	if !errors.Is(err, info.ErrTLS) || !errors.As(err, &he) {
		t.Errorf("wrong server name: %v, want ErrTLS wrapping an x509.HostnameError", err)
	}
	_, err = info.DialTLS(ctx, n.TLSAddr, n.TLSName, info.Options{TLS: &tls.Config{RootCAs: tlsPool(t, other)}})
	var ua x509.UnknownAuthorityError
	if !errors.Is(err, info.ErrTLS) || !errors.As(err, &ua) {
		t.Errorf("untrusted certificate: %v, want ErrTLS wrapping an x509.UnknownAuthorityError", err)
	}
	_, err = info.DialTLS(ctx, n.Addr, n.TLSName, info.Options{TLS: &tls.Config{RootCAs: tlsPool(t, sim)}, ConnectTimeout: time.Second})
	if !errors.Is(err, info.ErrTLS) {
		t.Errorf("TLS to a clear-text port: %v, want ErrTLS", err)
	}
	// A tender seeded with the wrong name never adds the node.
	_, port, _ := net.SplitHostPort(n.TLSAddr)
	tc, err := openIdentity(t, tend.Config{Seeds: []string{"127.0.0.1:n9.sim:" + port}, ShmKey: testKey(t), TLS: &tls.Config{RootCAs: tlsPool(t, sim)}})
	if err != nil {
		t.Fatal(err)
	}
	g := tc.Stats().Tends
	eventually(t, "two more tends", func() bool { return tc.Stats().Tends >= g+2 })
	if n := len(tc.Nodes()); n != 0 {
		t.Errorf("a node whose certificate does not match its seed's TLS name entered the map (%d nodes)", n)
	}
	if sim.AuthStats(0).HandshakeFailures == 0 {
		t.Error("the node saw no failed handshake")
	}
}

// TestSeedSyntax: seeds with and without TLS names, IPv4, IPv6 and host
// names are accepted; malformed ones are refused by Open with ErrConfig.
func TestSeedSyntax(t *testing.T) {
	for _, s := range []string{"127.0.0.1:1", "localhost:1", "localhost:tls1:1", "[::1]:1", "[::1]:tls1:1"} {
		c, err := tend.Open(context.Background(), tend.Config{Seeds: []string{s}, Logger: quiet(),
			TendInterval: 10 * time.Millisecond, TakeoverThreshold: 100 * time.Millisecond, InfoTimeout: 20 * time.Millisecond})
		if err != nil {
			t.Errorf("seed %q refused: %v", s, err)
			continue
		}
		c.Close()
	}
	for _, s := range []string{"db1", "db1:", "db1::3000", "db1:tls:0", "db1:tls:99999", "[::1]", "[::1]3000", ":3000", "db1:a:b:3000"} {
		if _, err := tend.Open(context.Background(), tend.Config{Seeds: []string{s}}); !errors.Is(err, tend.ErrConfig) {
			t.Errorf("seed %q: %v, want ErrConfig", s, err)
		}
	}
}
