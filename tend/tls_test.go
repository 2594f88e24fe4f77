package tend_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/info"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// testCA is a certificate authority for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shmkit test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a certificate for name (a server name, or a client's
// common name), signed by the CA.
func (ca *testCA) issue(t testing.TB, name string, client bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsFront terminates TLS in front of a clear-text node: every accepted
// connection that completes its handshake is relayed to target.
type tlsFront struct {
	ln net.Listener
}

func startFront(t testing.TB, target string, cfg *tls.Config) *tlsFront {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &tlsFront{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				b, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{})
				go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite(); close(done) }()
				io.Copy(c, b)
				<-done
			})
		}
	})
	return f
}

func (f *tlsFront) addr() string { return f.ln.Addr().String() }

// tlsCluster puts a TLS front with a certificate for "n<i>.sim" before
// each node of sim and makes every node answer peers-tls-std with the
// fronts: a TLS cluster as the tender sees it.
func tlsCluster(t testing.TB, sim *tendtest.Cluster, ca *testCA, clientCAs *x509.CertPool) []*tlsFront {
	t.Helper()
	nodes := sim.Nodes()
	fronts := make([]*tlsFront, len(nodes))
	for i, n := range nodes {
		cfg := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, fmt.Sprintf("n%d.sim", i), false)}}
		if clientCAs != nil {
			cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
		}
		fronts[i] = startFront(t, n.Addr, cfg)
	}
	for i := range nodes {
		gen, err := sim.PeersGeneration(i)
		if err != nil {
			t.Fatal(err)
		}
		p := info.Peers{Generation: gen}
		for j, f := range fronts {
			if j == i {
				continue
			}
			_, port, _ := net.SplitHostPort(f.addr())
			pn, _ := strconv.Atoi(port)
			p.Peers = append(p.Peers, info.Peer{Name: nodes[j].Name, TLSName: fmt.Sprintf("n%d.sim", j),
				Hosts: []info.HostPort{{Host: "127.0.0.1", Port: pn}}})
		}
		if err := sim.SetMalformed(i, info.CmdPeersTLSStd, info.FormatPeers(p)); err != nil {
			t.Fatal(err)
		}
	}
	return fronts
}

// TestTLSCluster: a tender with TLS learns a 3-node TLS cluster from one
// "host:tlsname:port" seed, verifies every node against its TLS name from
// peers-tls-std, keeps the TLS names in the view, and never connects to
// the clear-text ports (only the fronts carry traffic). Mutual TLS works
// with a client certificate and is refused without one.
func TestTLSCluster(t *testing.T) {
	ca := newCA(t)
	clientCA := newCA(t)
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("mutual=%v", mutual), func(t *testing.T) {
			sim := newSim(t, tendtest.Options{Nodes: 3})
			var clientCAs *x509.CertPool
			if mutual {
				clientCAs = clientCA.pool
			}
			fronts := tlsCluster(t, sim, ca, clientCAs)
			_, port, _ := net.SplitHostPort(fronts[0].addr())
			cfg := &tls.Config{RootCAs: ca.pool}
			if mutual {
				cfg.Certificates = []tls.Certificate{clientCA.issue(t, "shmkit-client", true)}
			}
			c, err := openIdentity(t, tend.Config{Seeds: []string{"127.0.0.1:n0.sim:" + port}, ShmKey: testKey(t), TLS: cfg})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "three TLS nodes", func() bool { return len(c.Nodes()) == 3 })
			eventually(t, "the map converged", func() bool {
				return viewHash(c, tendtest.DefaultNamespace) == simHash(t, sim, tendtest.DefaultNamespace)
			})
			byName := map[string]int{}
			for i, n := range sim.Nodes() {
				byName[n.Name] = i
			}
			for _, n := range c.Nodes() {
				i := byName[n.Name]
				if n.TLSName != fmt.Sprintf("n%d.sim", i) || len(n.Addresses) != 1 || n.Addresses[0].String() != fronts[i].addr() {
					t.Errorf("node %s: TLS name %q, addresses %v; want n%d.sim at %s", n.Name, n.TLSName, n.Addresses, i, fronts[i].addr())
				}
			}
			for i := range 3 {
				if got := sim.Requests(i)[info.CmdPeersClearStd]; got != 0 {
					t.Errorf("node %d was asked for clear-text peers %d times", i, got)
				}
			}
			if mutual {
				// The control: the same cluster without a client certificate.
				conn, err := info.DialTLS(context.Background(), fronts[0].addr(), "n0.sim", info.Options{TLS: &tls.Config{RootCAs: ca.pool}})
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

// TestTLSRefusals: a certificate for another name, or from an untrusted
// authority, or a clear-text server, is refused with an error wrapping
// info.ErrTLS and the crypto error; the right name and root connect.
func TestTLSRefusals(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	sim := newSim(t, tendtest.Options{Nodes: 1})
	front := startFront(t, sim.Nodes()[0].Addr, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "n0.sim", false)}})
	ctx := context.Background()
	good := info.Options{TLS: &tls.Config{RootCAs: ca.pool}}
	c, err := info.DialTLS(ctx, front.addr(), "n0.sim", good)
	if err != nil {
		t.Fatalf("the right name and root: %v", err)
	}
	if r, err := c.Request(ctx, "node"); err != nil || r["node"] != sim.Nodes()[0].Name {
		t.Errorf("request over TLS: %v %v", r, err)
	}
	c.Close()

	_, err = info.DialTLS(ctx, front.addr(), "n1.sim", good)
	var he x509.HostnameError
	if !errors.Is(err, info.ErrTLS) || !errors.As(err, &he) {
		t.Errorf("wrong server name: %v, want ErrTLS wrapping an x509.HostnameError", err)
	}
	_, err = info.DialTLS(ctx, front.addr(), "n0.sim", info.Options{TLS: &tls.Config{RootCAs: other.pool}})
	var ua x509.UnknownAuthorityError
	if !errors.Is(err, info.ErrTLS) || !errors.As(err, &ua) {
		t.Errorf("untrusted certificate: %v, want ErrTLS wrapping an x509.UnknownAuthorityError", err)
	}
	_, err = info.DialTLS(ctx, sim.Nodes()[0].Addr, "n0.sim", info.Options{TLS: &tls.Config{RootCAs: ca.pool}, ConnectTimeout: time.Second})
	if !errors.Is(err, info.ErrTLS) {
		t.Errorf("TLS to a clear-text port: %v, want ErrTLS", err)
	}
	// A tender seeded with the wrong name never adds the node.
	_, port, _ := net.SplitHostPort(front.addr())
	tc, err := openIdentity(t, tend.Config{Seeds: []string{"127.0.0.1:n9.sim:" + port}, ShmKey: testKey(t), TLS: &tls.Config{RootCAs: ca.pool}})
	if err != nil {
		t.Fatal(err)
	}
	g := tc.Stats().Tends
	eventually(t, "two more tends", func() bool { return tc.Stats().Tends >= g+2 })
	if n := len(tc.Nodes()); n != 0 {
		t.Errorf("a node whose certificate does not match its seed's TLS name entered the map (%d nodes)", n)
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
