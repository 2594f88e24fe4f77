package record_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// secureSim starts a simulated cluster of n nodes with namespace test at
// RF 2 and opts' TLS, users and racks.
func secureSim(t testing.TB, n int, opts tendtest.Options) *tendtest.Cluster {
	t.Helper()
	opts.Nodes = n
	opts.Namespaces = []tendtest.NamespaceSpec{{Name: "test", ReplicationFactor: 2}}
	sim, err := tendtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// sharedLocation returns a heap segment location that several views in
// this process share, as processes share a SysV segment: the first to
// open tends, the others follow with their own TLS configuration and
// credentials.
func sharedLocation(t testing.TB) arena.Location {
	t.Helper()
	store := arena.NewHeapStore()
	loc := store.At("records")
	t.Cleanup(func() { arena.Remove(loc, arena.RemoveOptions{Force: true}) })
	return loc
}

// openOnLoc opens a view on loc with cfg and waits until the map has a
// master for every partition of namespace test.
func openOnLoc(t testing.TB, loc arena.Location, cfg tend.Config) *tend.Cluster {
	t.Helper()
	cfg.UseShm, cfg.Location = true, loc
	return openConfig(t, cfg, "test")
}

// tenderAndProcess opens, on a new shared location, a view with cfg that
// tends, and a second view with cfg standing for another process (a
// follower: its Authenticator serves its record connections only). It
// returns the second view and the location.
func tenderAndProcess(t testing.TB, cfg tend.Config) (*tend.Cluster, arena.Location) {
	t.Helper()
	loc := sharedLocation(t)
	openOnLoc(t, loc, cfg)
	return openOnLoc(t, loc, cfg), loc
}

// tlsConfig is a client configuration trusting sim's authority, with a
// client certificate for cn when cn is not empty.
func tlsConfig(t testing.TB, sim *tendtest.Cluster, cn string) *tls.Config {
	t.Helper()
	pool, err := sim.CertPool()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool}
	if cn != "" {
		cert, err := sim.ClientCertificate(cn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// writeRead puts and gets n keys (every node serves some) and fails t on
// any error.
func writeRead(t testing.TB, c *record.Client, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		k := mustKey(t, fmt.Sprintf("%s-%d", prefix, i))
		if err := c.Put(ctx, nil, k, record.BinMap{"i": i}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		rec, err := c.Get(ctx, nil, k)
		if err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		if rec.Bins["i"] != int64(i) {
			t.Fatalf("get %d: %v", i, rec.Bins)
		}
	}
}

// TestRecordsOverTLS: on a TLS-only cluster, records go over TLS, each
// node verified against its own TLS name from the view (every node's
// certificate is for its name only, so a client verifying any other name,
// such as the address's host, would fail). A process whose configuration
// does not trust the servers' authority, or names another server, is
// refused with an error wrapping info.ErrTLS and the certificate error,
// at once (no retry).
func TestRecordsOverTLS(t *testing.T) {
	checkGoroutines(t)
	sim := secureSim(t, 3, tendtest.Options{TLS: &tendtest.TLSOptions{}})
	loc := sharedLocation(t)
	cl := openOnLoc(t, loc, tend.Config{Seeds: sim.TLSSeeds(), TLS: tlsConfig(t, sim, "")})
	c := newClient(t, cl)
	writeRead(t, c, "tls", 60)
	for i, n := range sim.Nodes() {
		if sim.RecordMessages(i) == 0 {
			t.Errorf("node %d got no record message", i)
		}
		if got := sim.AuthStats(i).HandshakeFailures; got != 0 {
			t.Errorf("node %d: %d failed handshakes", i, got)
		}
		var vn *partmap.Node
		for _, m := range cl.Nodes() {
			if m.Name == n.Name {
				vn = m
			}
		}
		if vn == nil || vn.TLSName != n.TLSName || vn.Addresses[0].String() != n.TLSAddr {
			t.Errorf("node %d in the view: %+v, want TLS name %s at %s", i, vn, n.TLSName, n.TLSAddr)
		}
	}

	ctx := context.Background()
	key := mustKey(t, "tls-0")
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		as   func(error) bool
	}{
		{"untrusted authority", &tls.Config{RootCAs: x509.NewCertPool()}, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{"another server name", &tls.Config{RootCAs: tlsConfig(t, sim, "").RootCAs, ServerName: "elsewhere.tendtest"}, func(err error) bool {
			var he x509.HostnameError
			return errors.As(err, &he)
		}},
	} {
		other := openOnLoc(t, loc, tend.Config{Seeds: sim.TLSSeeds(), TLS: tc.cfg})
		oc := newClient(t, other)
		_, err := oc.Get(ctx, nil, key)
		if !errors.Is(err, info.ErrTLS) || !tc.as(err) || errors.Is(err, record.ErrNetwork) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if s := oc.Stats(); s.Retries != 0 {
			t.Errorf("%s: %d retries of a refused certificate", tc.name, s.Retries)
		}
	}
}

// TestRecordsMutualTLS: with servers that require a client certificate,
// records go through with the view's client certificate; a process
// without one is refused (the server's alert), and is not served.
func TestRecordsMutualTLS(t *testing.T) {
	checkGoroutines(t)
	sim := secureSim(t, 3, tendtest.Options{TLS: &tendtest.TLSOptions{RequireClientCert: true}})
	loc := sharedLocation(t)
	cl := openOnLoc(t, loc, tend.Config{Seeds: sim.TLSSeeds(), TLS: tlsConfig(t, sim, "app")})
	writeRead(t, newClient(t, cl), "mtls", 60)
	served := uint64(0)
	for i := range sim.Nodes() {
		served += sim.RecordMessages(i)
	}

	other := openOnLoc(t, loc, tend.Config{Seeds: sim.TLSSeeds(), TLS: tlsConfig(t, sim, "")})
	oc := newClient(t, other)
	pol := record.NewPolicy()
	pol.MaxRetries = 0
	_, err := oc.Get(context.Background(), pol, mustKey(t, "mtls-0"))
	// Under TLS 1.3 the client learns of the refusal at its first read:
	// the server's alert (info.ErrTLS), or, when the server's close
	// overtook it, a reset connection.
	if err == nil || !errors.Is(err, info.ErrTLS) && !errors.Is(err, record.ErrNetwork) {
		t.Errorf("without a client certificate: %v", err)
	}
	t.Logf("without a client certificate: %v", err)
	after := uint64(0)
	for i := range sim.Nodes() {
		after += sim.RecordMessages(i)
	}
	if after != served {
		t.Errorf("%d record messages served to a client without a certificate", after-served)
	}
}

// fakeClock is a settable clock for the simulator's session expiry.
type fakeClock struct{ off atomic.Int64 }

func (f *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(f.off.Load())) }
func (f *fakeClock) advance(d time.Duration) { f.off.Add(int64(d)) }
func authStats(sim *tendtest.Cluster) (s tendtest.AuthStats) {
	for i := range sim.Nodes() {
		a := sim.AuthStats(i)
		s.Logins += a.Logins
		s.TokenAuths += a.TokenAuths
		s.Refused += a.Refused
		s.Unauthenticated += a.Unauthenticated
	}
	return s
}

// TestRecordsAuthenticated: with security on, record connections log in
// through the view's Authenticator (later connections present the kept
// session token); a token the servers let expire makes new connections
// log in again; and a process with a wrong password or an unknown user
// gets ErrAuth naming the user, never the password, and no retry.
func TestRecordsAuthenticated(t *testing.T) {
	checkGoroutines(t)
	clock := &fakeClock{}
	const password = "pw-Wq8tZ3"
	sim := secureSim(t, 3, tendtest.Options{Users: map[string]string{"app": password}, SessionTTL: 2 * time.Hour,
		Clock: clock.now, TLS: &tendtest.TLSOptions{}})
	cfg := tend.Config{Seeds: sim.TLSSeeds(), TLS: tlsConfig(t, sim, ""), User: "app", Password: password}
	// A second process: its record connections are its own, and so are
	// its logins (the tender's are the first view's).
	proc, loc := tenderAndProcess(t, cfg)
	auth := proc.Authenticator()
	before := authStats(sim)
	c := newClient(t, proc)
	writeRead(t, c, "auth", 60)
	s := authStats(sim)
	if auth.Logins() != 3 || s.Logins-before.Logins != 3 || s.Unauthenticated != 0 {
		t.Errorf("%d logins (servers counted %d), %d unauthenticated messages: want one login per node",
			auth.Logins(), s.Logins-before.Logins, s.Unauthenticated)
	}

	// Expiry: the servers' clock passes the sessions' TTL; a new client's
	// connections present the kept tokens, are refused, and log in again.
	clock.advance(3 * time.Hour)
	before = authStats(sim)
	writeRead(t, newClient(t, proc), "expired", 30)
	s = authStats(sim)
	if auth.Logins() != 6 || s.Refused-before.Refused < 3 || s.Logins-before.Logins < 3 {
		t.Errorf("after expiry: %d logins by the process, servers %+v then %+v", auth.Logins(), before, s)
	}

	// Wrong credentials: a process with a wrong password, or an unknown
	// user, reads the shared map but its connections are refused.
	for _, creds := range [][2]string{{"app", "not-" + password}, {"nobody", password}} {
		wcfg := cfg
		wcfg.User, wcfg.Password = creds[0], creds[1]
		wc := newClient(t, openOnLoc(t, loc, wcfg))
		_, err := wc.Get(context.Background(), nil, mustKey(t, "auth-0"))
		var ae *admin.Error
		if !errors.Is(err, record.ErrAuth) || !errors.Is(err, admin.ErrBadCredentials) || !errors.As(err, &ae) || ae.User != creds[0] {
			t.Errorf("user %q with a wrong credential: %v", creds[0], err)
		}
		if err != nil && (!strings.Contains(err.Error(), creds[0]) || strings.Contains(err.Error(), creds[1])) {
			t.Errorf("error %q: want the user named and the password not", err)
		}
		if st := wc.Stats(); st.Retries != 0 {
			t.Errorf("user %q: %d retries of refused credentials", creds[0], st.Retries)
		}
	}
}

// TestRecordsReconnectWithToken: connections dropped by a network fault
// (the nodes keep their sessions) are replaced by connections that
// authenticate with the kept tokens: reads go on succeeding, and nothing
// logs in again.
func TestRecordsReconnectWithToken(t *testing.T) {
	checkGoroutines(t)
	sim := secureSim(t, 3, tendtest.Options{Users: map[string]string{"app": "pw"}})
	proc, _ := tenderAndProcess(t, tend.Config{Seeds: sim.Seeds(), User: "app", Password: "pw"})
	auth := proc.Authenticator()
	c := newClient(t, proc)
	writeRead(t, c, "drop", 60)
	logins, tokens := auth.Logins(), auth.TokenAuths()
	var dials uint64
	for _, n := range c.Stats().Nodes {
		dials += n.Dials
	}
	for i := range sim.Nodes() {
		if err := sim.CloseConnections(i); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for i := range 60 {
		if _, err := c.Get(ctx, nil, mustKey(t, fmt.Sprintf("drop-%d", i))); err != nil {
			t.Fatalf("get %d after the connections dropped: %v", i, err)
		}
	}
	var redials uint64
	for _, n := range c.Stats().Nodes {
		redials += n.Dials
	}
	redials -= dials
	if redials == 0 || auth.Logins() != logins || auth.TokenAuths()-tokens != redials {
		t.Errorf("%d new connections, logins %d -> %d, token authentications %d -> %d: want one token authentication per new connection and no login",
			redials, logins, auth.Logins(), tokens, auth.TokenAuths())
	}
}

// TestRecordsPKI: with PKI authentication the record connections log in
// with the TLS client certificate alone (its common name is the user); a
// certificate of a user the servers do not know is refused with ErrAuth.
func TestRecordsPKI(t *testing.T) {
	checkGoroutines(t)
	sim := secureSim(t, 3, tendtest.Options{TLS: &tendtest.TLSOptions{RequireClientCert: true},
		Users: map[string]string{"pki-app": "unused"}})
	cfg := tend.Config{Seeds: sim.TLSSeeds(), TLS: tlsConfig(t, sim, "pki-app"), AuthMode: admin.ModePKI}
	proc, loc := tenderAndProcess(t, cfg)
	writeRead(t, newClient(t, proc), "pki", 30)
	if n := proc.Authenticator().Logins(); n != 3 {
		t.Errorf("%d PKI logins, want one per node", n)
	}
	cfg.TLS = tlsConfig(t, sim, "stranger")
	c := newClient(t, openOnLoc(t, loc, cfg))
	if _, err := c.Get(context.Background(), nil, mustKey(t, "pki-0")); !errors.Is(err, record.ErrAuth) || !errors.Is(err, admin.ErrBadCredentials) {
		t.Errorf("a certificate of an unknown user: %v", err)
	}
}

// TestRecordsNodeRestartRelogin: a node restarts (forgetting every
// session) while a process reads; reads go on succeeding (retried on the
// replica while the node is down), and once it is back the process's new
// connections to it present the kept token, are refused, log in again,
// and serve reads and writes.
func TestRecordsNodeRestartRelogin(t *testing.T) {
	checkGoroutines(t)
	sim := secureSim(t, 3, tendtest.Options{Users: map[string]string{"app": "pw"}})
	proc, _ := tenderAndProcess(t, tend.Config{Seeds: sim.Seeds(), User: "app", Password: "pw"})
	auth := proc.Authenticator()
	c := newClient(t, proc)
	const keys = 90
	writeRead(t, c, "restart", keys)
	logins := auth.Logins()

	rpol := record.NewPolicy()
	rpol.MaxRetries, rpol.TotalTimeout, rpol.SleepBetweenRetries = 6, 10*time.Second, 10*time.Millisecond
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads, failed atomic.Uint64
	var firstErr atomic.Pointer[error]
	for g := range 4 {
		wg.Go(func() {
			for i := g; !stop.Load(); i = (i + 1) % keys {
				_, err := c.Get(context.Background(), rpol, mustKey(t, fmt.Sprintf("restart-%d", i)))
				reads.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	waitUntil(t, "reads to run", func() bool { return reads.Load() > 100 })
	if err := sim.StopNode(1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	refusedBefore := sim.AuthStats(1).Refused
	if err := sim.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	mark := reads.Load()
	waitUntil(t, "reads after the restart", func() bool { return reads.Load() > mark+300 })
	stop.Store(true)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d reads failed across the restart, first: %v", n, reads.Load(), *firstErr.Load())
	}

	// Every key, node 1's included, is written and read once the view
	// has node 1 active again (the tender may have marked it inactive
	// while it was down): the process re-logs in to node 1.
	name1 := sim.Nodes()[1].Name
	waitUntil(t, "node 1 active in the view", func() bool {
		for _, n := range proc.Nodes() {
			if n.Name == name1 {
				return n.Active
			}
		}
		return false
	})
	served := sim.RecordMessages(1)
	wpol := record.NewWritePolicy(0, 0)
	wpol.MaxRetries, wpol.TotalTimeout, wpol.SleepBetweenRetries = 6, 10*time.Second, 10*time.Millisecond
	for i := range keys {
		k := mustKey(t, fmt.Sprintf("restart-%d", i))
		if err := c.Put(context.Background(), wpol, k, record.BinMap{"after": 1}); err != nil {
			t.Fatalf("put %d after the restart: %v", i, err)
		}
		if _, err := c.Get(context.Background(), rpol, k); err != nil {
			t.Fatalf("get %d after the restart: %v", i, err)
		}
	}
	if sim.RecordMessages(1) == served {
		t.Fatal("node 1 served no command after its restart")
	}
	if auth.Logins() <= logins || sim.AuthStats(1).Refused <= refusedBefore {
		t.Errorf("logins %d -> %d, node 1 refusals %d -> %d: want the kept token refused and a new login",
			logins, auth.Logins(), refusedBefore, sim.AuthStats(1).Refused)
	}
	if n := sim.AuthStats(1).Unauthenticated; n != 0 {
		t.Errorf("node 1 got %d messages on unauthenticated connections", n)
	}
}

// rackClient opens a rack-aware view of sim, waits until it has every
// node with its racks and every partition of namespaces with a master,
// and returns it with a client preferring rack 1 and a PREFER_RACK read
// policy.
func rackClient(t *testing.T, sim *tendtest.Cluster, namespaces ...string) (*tend.Cluster, *record.Client, *record.Policy) {
	t.Helper()
	cl := openConfig(t, tend.Config{Seeds: sim.Seeds(), RackAware: true}, namespaces[0])
	waitUntil(t, "every node with its racks, and the namespaces, in the view", func() bool {
		for _, ns := range namespaces[1:] {
			d, _ := partmap.DigestForPartition(partmap.Partitions - 1)
			if _, err := cl.Master(ns, d); err != nil {
				return false
			}
		}
		for _, n := range cl.Nodes() {
			if _, ok := n.Rack(namespaces[0]); !ok {
				return false
			}
		}
		return len(cl.Nodes()) == len(sim.Nodes())
	})
	cp := record.NewClientPolicy()
	cp.RackIds = []int{1}
	c, err := record.NewClient(cl, cp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pol := record.NewPolicy()
	pol.ReplicaPolicy = record.PREFER_RACK
	return cl, c, pol
}

// TestPreferRack: with racks in the view (RackAware), PREFER_RACK reads
// go, for every partition, to the replica on the client's rack when the
// partition has one there, otherwise to the master — the node
// tend.Cluster.RackReplica names — while writes stay on the master. The
// rack is on a prole for some partitions, so routing by SEQUENCE would
// fail the check.
func TestPreferRack(t *testing.T) {
	checkGoroutines(t)
	sim := secureSim(t, 4, tendtest.Options{Racks: []int{1, 2, 2, 2}})
	cl, c, pol := rackClient(t, sim, "test")
	nodes := sim.Nodes()
	index := map[string]int{}
	for i, n := range nodes {
		index[n.Name] = i
	}
	wpol := record.NewWritePolicy(0, 0)
	wpol.ReplicaPolicy = record.PREFER_RACK
	ctx := context.Background()
	counts := func() (out [4]uint64) {
		for i := range out {
			out[i] = sim.RecordMessages(i)
		}
		return out
	}
	served := func(before [4]uint64) int {
		after, who := counts(), -1
		for i := range after {
			if after[i] != before[i] {
				if who >= 0 {
					return -2
				}
				who = i
			}
		}
		return who
	}
	prole := 0
	for pid := range uint32(partmap.Partitions) {
		d, _ := partmap.DigestForPartition(pid)
		reps, err := sim.Replicas("test", pid)
		if err != nil {
			t.Fatal(err)
		}
		want := index[reps[0]]
		if reps[1] == nodes[0].Name {
			want = 0
			prole++
		}
		rr, err := cl.RackReplica("test", d, []int{1})
		if err != nil || index[rr.Name] != want {
			t.Fatalf("partition %d: RackReplica %v %v, want node %d", pid, rr, err, want)
		}
		k, err := record.NewKeyWithDigest("test", "s", d)
		if err != nil {
			t.Fatal(err)
		}
		before := counts()
		if _, err := c.Exists(ctx, pol, k); err != nil {
			t.Fatalf("partition %d: %v", pid, err)
		}
		if got := served(before); got != want {
			t.Fatalf("partition %d (replicas %v): read served by node %d, want %d", pid, reps, got, want)
		}
		if pid%64 == 0 {
			before := counts()
			if err := c.Put(ctx, wpol, k, record.BinMap{"v": 1}); err != nil {
				t.Fatal(err)
			}
			if got := served(before); got != index[reps[0]] {
				t.Fatalf("partition %d: write served by node %d, want the master %d", pid, got, index[reps[0]])
			}
		}
	}
	if prole == 0 {
		t.Fatal("the local rack is never a prole: the test cannot tell PREFER_RACK from SEQUENCE")
	}
	t.Logf("%d partitions read from the local rack's prole", prole)
}

// TestPreferRackStrongConsistency: in a strong-consistency namespace
// PREFER_RACK reads go to the master, as the official clients' session
// consistency reads (their PartitionForRead), even when a prole is on the
// preferred rack; an AP namespace on the same nodes is the control.
func TestPreferRackStrongConsistency(t *testing.T) {
	checkGoroutines(t)
	sim, err := tendtest.New(tendtest.Options{Nodes: 3, Racks: []int{1, 2, 2}, Namespaces: []tendtest.NamespaceSpec{
		{Name: "sc", ReplicationFactor: 2, SC: true}, {Name: "test", ReplicationFactor: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	_, c, pol := rackClient(t, sim, "sc", "test")
	node0 := sim.Nodes()[0].Name
	offMaster := map[string]int{}
	for pid := uint32(0); pid < partmap.Partitions; pid += 4 {
		d, _ := partmap.DigestForPartition(pid)
		for _, ns := range []string{"sc", "test"} {
			reps, err := sim.Replicas(ns, pid)
			if err != nil {
				t.Fatal(err)
			}
			if reps[1] != node0 {
				continue // node 0 (rack 1) is not the prole: both policies read the master
			}
			k, _ := record.NewKeyWithDigest(ns, "", d)
			before := sim.RecordMessages(0)
			if _, err := c.Exists(context.Background(), pol, k); err != nil {
				t.Fatalf("%s/%d: %v", ns, pid, err)
			}
			if sim.RecordMessages(0) != before {
				offMaster[ns]++
			}
		}
	}
	if offMaster["sc"] != 0 || offMaster["test"] == 0 {
		t.Errorf("reads from the rack-1 prole: %v; want none in the SC namespace, some in the AP one", offMaster)
	}
}

// TestRackIdsValidated: a rack id out of Aerospike's range is refused.
func TestRackIdsValidated(t *testing.T) {
	sim := newSim(t, 1)
	cl := openView(t, sim.Seeds(), "test")
	for _, r := range []int{-1, partmap.MaxRackID + 1} {
		cp := record.NewClientPolicy()
		cp.RackIds = []int{1, r}
		if _, err := record.NewClient(cl, cp); !errors.Is(err, record.ErrInvalid) {
			t.Errorf("rack %d: %v", r, err)
		}
	}
	pol := record.NewPolicy()
	pol.ReplicaPolicy = record.PREFER_RACK + 1
	c := newClient(t, cl)
	if _, err := c.Get(context.Background(), pol, mustKey(t, 1)); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("replica policy %v: %v", pol.ReplicaPolicy, err)
	}
	if s := record.PREFER_RACK.String(); s != "PREFER_RACK" {
		t.Errorf("PREFER_RACK names itself %q", s)
	}
}
