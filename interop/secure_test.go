package interop

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v8"
	"github.com/aerospike/aerospike-client-go/v8/types"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// secureSetup is a production-like simulated cluster: a cluster name,
// mutual TLS (TLS-only nodes), security with a user, and racks.
type secureSetup struct {
	sim    *tendtest.Cluster
	tls    *tls.Config // a client's: the sim's CA and a client certificate
	user   string
	pw     string
	name   string
	prefer []int // the clients' preferred racks, in order
}

const (
	secureUser     = "app"
	securePassword = "app-Pa55word"
	secureCluster  = "prod-a"
	nsRacks3       = "r3" // a namespace with three copies
)

// newSecureSetup starts the cluster; more, when not nil, changes its
// options first.
func newSecureSetup(t *testing.T, more func(*tendtest.Options)) *secureSetup {
	t.Helper()
	opts := tendtest.Options{
		Nodes:       4,
		ClusterName: secureCluster,
		Namespaces: []tendtest.NamespaceSpec{
			{Name: nsAP, ReplicationFactor: 2},
			{Name: nsRacks3, ReplicationFactor: 3},
		},
		TLS:    &tendtest.TLSOptions{RequireClientCert: true},
		Users:  map[string]string{secureUser: securePassword},
		Racks:  []int{1, 2, 1, 1},
		Logger: quietLogger(),
	}
	if more != nil {
		more(&opts)
	}
	sim, err := tendtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	// Node 3 is on rack 3 in namespace nsAP only: each namespace has its
	// own rack layout.
	if err := sim.SetRack(3, nsAP, 3); err != nil {
		t.Fatal(err)
	}
	pool, err := sim.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := sim.ClientCertificate("interop-client")
	if err != nil {
		t.Fatal(err)
	}
	return &secureSetup{sim: sim, tls: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		user: secureUser, pw: securePassword, name: secureCluster, prefer: []int{2, 3}}
}

// clientPolicy is the official client's policy for s.
func (s *secureSetup) clientPolicy() *as.ClientPolicy {
	p := as.NewClientPolicy()
	p.Timeout = 3 * time.Second
	p.TendInterval = tendInterval
	p.ClusterName = s.name
	p.TlsConfig = s.tls.Clone()
	p.User, p.Password = s.user, s.pw
	p.RackAware = true
	p.RackIds = s.prefer
	return p
}

// tlsHost is the official client's host for a "host:tlsname:port" seed.
func tlsHost(t *testing.T, seed string) *as.Host {
	t.Helper()
	parts := strings.Split(seed, ":")
	if len(parts) != 3 {
		t.Fatalf("TLS seed %q", seed)
	}
	port, _ := strconv.Atoi(parts[2])
	h := as.NewHost(parts[0], port)
	h.TLSName = parts[1]
	return h
}

// clientRackNode is the official client's PREFER_RACK choice for a read
// of partition pid, through its exported routing function.
func clientRackNode(client *as.Client, ns string, pid uint32) (string, error) {
	key, err := clientKey(ns, pid)
	if err != nil {
		return "", err
	}
	n, aerr := as.GetNodeBatchRead(client.Cluster(), key, as.PREFER_RACK, as.PREFER_RACK, nil, 0, 0)
	if aerr != nil {
		return "", aerr
	}
	return n.GetName(), nil
}

// awaitAgreement waits (up to agreeTimeout) until the official client,
// shmkit's tender c and the simulator agree (secureDisagreements is
// empty) and returns the prefer-rack counts of the agreeing comparison.
func (s *secureSetup) awaitAgreement(t *testing.T, step string, client *as.Client, c *tend.Cluster) (offMaster, onMaster int) {
	t.Helper()
	deadline := time.Now().Add(agreeTimeout)
	for {
		diffs, off, on := s.secureDisagreements(client, c)
		if len(diffs) == 0 {
			return off, on
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no agreement after %v:\n  %s", step, agreeTimeout, strings.Join(diffs, "\n  "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// secureDisagreements compares, for every partition of every namespace,
// the official client's master and replicas, shmkit's tended view and the
// sim's expected owners, and the official client's PREFER_RACK choice
// with tend.Cluster.RackReplica. It returns the first (at most 10)
// differences, how many rack choices were not the master and how many
// were (no replica on a preferred rack).
func (s *secureSetup) secureDisagreements(client *as.Client, c *tend.Cluster) (diffs []string, offMaster, onMaster int) {
	add := func(format string, args ...any) bool {
		diffs = append(diffs, fmt.Sprintf(format, args...))
		return len(diffs) >= 10
	}
	for _, spec := range s.sim.Namespaces() {
		for pid := range uint32(partmap.Partitions) {
			want, err := s.sim.ClientReplicas(spec.Name, pid)
			if err != nil {
				return []string{err.Error()}, 0, 0
			}
			tended, err := tendReplicas(c, spec.Name, pid, len(want))
			if err != nil {
				return []string{"shmkit tend: " + err.Error()}, 0, 0
			}
			if !slices.Equal(tended, want) {
				if add("%s/%d: shmkit tend %q, sim %q", spec.Name, pid, tended, want) {
					return diffs, 0, 0
				}
			}
			for r := range want {
				var got string
				if r == 0 {
					got, err = clientMaster(client, spec.Name, pid)
				} else {
					got, err = clientReplica(client, spec.Name, pid, r)
				}
				if err != nil || got != want[r] {
					if add("%s/%d: client replica %d = %q (%v), sim %q", spec.Name, pid, r, got, err, want[r]) {
						return diffs, 0, 0
					}
				}
			}
			official, err := clientRackNode(client, spec.Name, pid)
			if err != nil {
				if add("%s/%d: client PREFER_RACK: %v", spec.Name, pid, err) {
					return diffs, 0, 0
				}
				continue
			}
			d, _ := partmap.DigestForPartition(pid)
			ours, err := c.RackReplica(spec.Name, d, s.prefer)
			if err != nil || ours.Name != official {
				if add("%s/%d: RackReplica %q (%v), client PREFER_RACK %q", spec.Name, pid, ours.Name, err, official) {
					return diffs, 0, 0
				}
			}
			if official != want[0] {
				offMaster++
			} else {
				onMaster++
			}
		}
	}
	return diffs, offMaster, onMaster
}

// TestOfficialClientSecureCluster: against a simulated cluster with a
// cluster name, mutual TLS, authentication and racks, the official Go
// client connects, writes and reads records (PREFER_RACK), and shmkit's
// tender with the same settings converges to the same partition map; for
// every partition tend.Cluster.RackReplica picks the node the official
// client's PREFER_RACK picks. Then a node restarts (its sessions gone) and
// both clients log in again and agree again.
func TestOfficialClientSecureCluster(t *testing.T) {
	s := newSecureSetup(t, nil)
	seeds := s.sim.TLSSeeds()
	client, aerr := as.NewClientWithPolicyAndHost(s.clientPolicy(), tlsHost(t, seeds[0]))
	if aerr != nil {
		t.Fatalf("official client could not connect to the secure sim: %v", aerr)
	}
	t.Cleanup(client.Close)

	cfg := tendConfig(testKey(t), seeds[:1], quietLogger())
	cfg.TLS, cfg.User, cfg.Password, cfg.ClusterName, cfg.RackAware = s.tls.Clone(), s.user, s.pw, s.name, true
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	agree := func(step string) {
		t.Helper()
		offMaster, onMaster := s.awaitAgreement(t, step, client, c)
		t.Logf("%s: official client, shmkit tend and sim agree on %d namespaces x %d partitions; PREFER_RACK reads: %d leave the master, %d stay on it",
			step, len(s.sim.Namespaces()), partmap.Partitions, offMaster, onMaster)
		if offMaster == 0 || onMaster == 0 {
			t.Errorf("%s: rack choices all on or all off the master: the comparison covers one case only", step)
		}
	}
	agree("secure cluster")
	if st := c.Stats(); st.AuthError != nil || st.Logins < 4 || st.ClusterName != s.name {
		t.Errorf("shmkit tend: AuthError %v, %d logins, cluster name %q", st.AuthError, st.Logins, st.ClusterName)
	}
	for _, n := range c.Nodes() {
		if n.TLSName == "" {
			t.Errorf("node %s has no TLS name in shmkit's view", n.Name)
		}
	}

	// Records over TLS with authentication: written on the master, read
	// with PREFER_RACK.
	wp := as.NewWritePolicy(0, 0)
	rp := as.NewPolicy()
	rp.ReplicaPolicy = as.PREFER_RACK
	for i := range 50 {
		for _, ns := range []string{nsAP, nsRacks3} {
			key, aerr := as.NewKey(ns, "secure", i)
			if aerr != nil {
				t.Fatal(aerr)
			}
			if aerr := client.Put(wp, key, as.BinMap{"i": i, "ns": ns}); aerr != nil {
				t.Fatalf("put %s/%d over TLS: %v", ns, i, aerr)
			}
			rec, aerr := client.Get(rp, key)
			if aerr != nil {
				t.Fatalf("get %s/%d over TLS: %v", ns, i, aerr)
			}
			if rec.Bins["i"] != i || rec.Bins["ns"] != ns {
				t.Errorf("%s/%d read back %v", ns, i, rec.Bins)
			}
		}
	}
	var unauth, refused uint64
	for _, n := range s.sim.Nodes() {
		st := s.sim.AuthStats(n.Index)
		unauth += st.Unauthenticated
		refused += st.Refused
		if st.Logins == 0 {
			t.Errorf("node %d: no login", n.Index)
		}
	}
	if unauth != 0 || refused != 0 {
		t.Errorf("the nodes saw %d unauthenticated commands and %d refused logins", unauth, refused)
	}

	// A node restart: sessions are gone, both clients log in again.
	before := s.sim.AuthStats(1).Logins
	if err := s.sim.StopNode(1); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both clients log in to the restarted node", func() bool { return s.sim.AuthStats(1).Logins >= before+2 }, func() {})
	agree("after a node restart")
	key, _ := as.NewKey(nsAP, "secure", "after-restart")
	if aerr := client.Put(wp, key, as.BinMap{"v": 1}); aerr != nil {
		t.Errorf("put after the restart: %v", aerr)
	}
}

// TestOfficialClientSecureRefusals: the controls. The official client
// with a wrong password is refused with INVALID_PASSWORD, and without a
// client certificate it finds no node; shmkit's tender with the wrong
// password reports an error naming the user and adds no node.
func TestOfficialClientSecureRefusals(t *testing.T) {
	s := newSecureSetup(t, nil)
	seed := s.sim.TLSSeeds()[0]
	p := s.clientPolicy()
	p.Password = "wrong"
	p.Timeout = time.Second
	if client, aerr := as.NewClientWithPolicyAndHost(p, tlsHost(t, seed)); aerr == nil {
		client.Close()
		t.Error("the official client connected with a wrong password")
	} else if !aerr.Matches(types.INVALID_PASSWORD) {
		t.Errorf("wrong password: %v, want INVALID_PASSWORD", aerr)
	}
	p = s.clientPolicy()
	p.TlsConfig.Certificates = nil
	p.Timeout = time.Second
	if client, aerr := as.NewClientWithPolicyAndHost(p, tlsHost(t, seed)); aerr == nil {
		client.Close()
		t.Error("the official client connected without a client certificate")
	}

	cfg := tendConfig(testKey(t), []string{seed}, quietLogger())
	cfg.TLS, cfg.User, cfg.Password, cfg.ClusterName = s.tls.Clone(), s.user, "wrong", s.name
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "shmkit's refusal", func() bool { return c.Stats().AuthError != nil }, func() {})
	if err := c.Stats().AuthError; !strings.Contains(err.Error(), strconv.Quote(s.user)) || len(c.Nodes()) != 0 {
		t.Errorf("shmkit tend with a wrong password: %v, %d nodes", err, len(c.Nodes()))
	}
}

// TestOfficialClientServicesAlternate: with alternate addresses on the
// TLS service, the official client (UseServicesAlternate) and shmkit's
// tender (UseServicesAlternate), both seeded with node 0's alternate TLS
// address, agree on the map and the rack choices, route every node to its
// alternate TLS address, and never connect to a standard TLS endpoint.
func TestOfficialClientServicesAlternate(t *testing.T) {
	s := newSecureSetup(t, func(o *tendtest.Options) { o.Alternate = true })
	n0 := s.sim.Nodes()[0]
	host, port, _ := net.SplitHostPort(n0.AltTLSAddr)
	seed := host + ":" + n0.TLSName + ":" + port
	p := s.clientPolicy()
	p.UseServicesAlternate = true
	client, aerr := as.NewClientWithPolicyAndHost(p, tlsHost(t, seed))
	if aerr != nil {
		t.Fatalf("official client could not connect to the alternate addresses: %v", aerr)
	}
	t.Cleanup(client.Close)
	cfg := tendConfig(testKey(t), []string{seed}, quietLogger())
	cfg.TLS, cfg.User, cfg.Password, cfg.ClusterName, cfg.RackAware = s.tls.Clone(), s.user, s.pw, s.name, true
	cfg.UseServicesAlternate = true
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s.awaitAgreement(t, "agreement", client, c)
	alt := map[string]string{}
	for _, n := range s.sim.Nodes() {
		alt[n.Name] = n.AltTLSAddr
	}
	for _, n := range client.GetNodes() {
		h := n.GetHost()
		if got := net.JoinHostPort(h.Name, strconv.Itoa(h.Port)); got != alt[n.GetName()] {
			t.Errorf("official client: node %s at %s, want its alternate %s", n.GetName(), got, alt[n.GetName()])
		}
	}
	for _, n := range c.Nodes() {
		if len(n.Addresses) != 1 || n.Addresses[0].String() != alt[n.Name] {
			t.Errorf("shmkit tend: node %s at %v, want its alternate %s", n.Name, n.Addresses, alt[n.Name])
		}
	}
	for _, n := range s.sim.Nodes() {
		std, altConns := s.sim.EndpointConnections(n.Index, tendtest.EndpointTLS), s.sim.EndpointConnections(n.Index, tendtest.EndpointTLSAlt)
		if std != 0 || altConns == 0 {
			t.Errorf("node %d: %d connections on the standard TLS endpoint, %d on the alternate", n.Index, std, altConns)
		}
	}
}

// TestOfficialClientSessionExpiry: with a session TTL of 61 s the
// official client's session is good for one second (it takes a minute
// off); while it writes and reads for two seconds it logs in again on its
// tend connections (a login on an authenticated connection) and no
// command fails. The control, the default TTL of a day, logs in once per
// node.
func TestOfficialClientSessionExpiry(t *testing.T) {
	for _, ttl := range []time.Duration{61 * time.Second, 0} {
		t.Run(fmt.Sprintf("ttl=%v", ttl), func(t *testing.T) {
			s := newSecureSetup(t, func(o *tendtest.Options) { o.SessionTTL = ttl })
			client, aerr := as.NewClientWithPolicyAndHost(s.clientPolicy(), tlsHost(t, s.sim.TLSSeeds()[0]))
			if aerr != nil {
				t.Fatalf("official client could not connect: %v", aerr)
			}
			t.Cleanup(client.Close)
			logins := func() (total uint64) {
				for _, n := range s.sim.Nodes() {
					total += s.sim.AuthStats(n.Index).Logins
				}
				return total
			}
			before := logins()
			rp := as.NewPolicy()
			rp.ReplicaPolicy = as.PREFER_RACK
			ops := 0
			for end := time.Now().Add(2 * time.Second); time.Now().Before(end); ops++ {
				key, _ := as.NewKey(nsAP, "expiry", ops%100)
				if aerr := client.Put(nil, key, as.BinMap{"n": ops}); aerr != nil {
					t.Fatalf("put %d: %v", ops, aerr)
				}
				if rec, aerr := client.Get(rp, key); aerr != nil || rec.Bins["n"] != ops {
					t.Fatalf("get %d: %v %v", ops, rec, aerr)
				}
			}
			after := logins()
			t.Logf("%d writes and reads; logins %d -> %d", ops, before, after)
			nodes := uint64(len(s.sim.Nodes()))
			if ttl > 0 && after < before+nodes {
				t.Errorf("logins %d -> %d over 2 s with 1 s sessions: the client did not log in again on every node", before, after)
			}
			if ttl == 0 && after != before {
				t.Errorf("logins %d -> %d with day-long sessions", before, after)
			}
		})
	}
}

// TestOfficialClientPKI: in PKI mode (the client certificate's common
// name is the user, no password) the official client and shmkit's tender
// both log in to every node, agree on the map and the rack choices, and
// the official client writes and reads over TLS.
func TestOfficialClientPKI(t *testing.T) {
	s := newSecureSetup(t, func(o *tendtest.Options) { o.Users["interop-client"] = "" })
	p := s.clientPolicy()
	p.AuthMode, p.User, p.Password = as.AuthModePKI, "", ""
	client, aerr := as.NewClientWithPolicyAndHost(p, tlsHost(t, s.sim.TLSSeeds()[0]))
	if aerr != nil {
		t.Fatalf("official client could not connect in PKI mode: %v", aerr)
	}
	t.Cleanup(client.Close)
	cfg := tendConfig(testKey(t), s.sim.TLSSeeds()[:1], quietLogger())
	cfg.TLS, cfg.AuthMode, cfg.ClusterName, cfg.RackAware = s.tls.Clone(), admin.ModePKI, s.name, true
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s.awaitAgreement(t, "agreement", client, c)
	key, _ := as.NewKey(nsRacks3, "pki", "k")
	if aerr := client.Put(nil, key, as.BinMap{"v": "pki"}); aerr != nil {
		t.Fatalf("put in PKI mode: %v", aerr)
	}
	if rec, aerr := client.Get(nil, key); aerr != nil || rec.Bins["v"] != "pki" {
		t.Fatalf("get in PKI mode: %v %v", rec, aerr)
	}
	if st := c.Stats(); st.AuthError != nil || st.Logins < 4 {
		t.Errorf("shmkit tend in PKI mode: AuthError %v, %d logins", st.AuthError, st.Logins)
	}
	for _, n := range s.sim.Nodes() {
		if st := s.sim.AuthStats(n.Index); st.Logins < 2 || st.Refused != 0 || st.Unauthenticated != 0 {
			t.Errorf("node %d: %+v, want logins by both clients and no refusal", n.Index, st)
		}
	}
}
