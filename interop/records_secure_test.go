package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v8"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/tend"
)

// secureRecordClient opens shmkit's view of s with its TLS, credentials,
// cluster name and racks (tending every interval), and a record client on
// it preferring s's racks.
func (s *secureSetup) secureRecordClient(t *testing.T, interval time.Duration) (*tend.Cluster, *record.Client) {
	t.Helper()
	cfg := tendConfig(testKey(t), s.sim.TLSSeeds()[:1], quietLogger())
	cfg.TLS, cfg.User, cfg.Password, cfg.ClusterName, cfg.RackAware = s.tls.Clone(), s.user, s.pw, s.name, true
	if interval > 0 {
		cfg.TendInterval, cfg.TakeoverThreshold = interval, 2*interval
	}
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	for _, spec := range s.sim.Namespaces() {
		recordsConverged(t, c, spec.Name)
	}
	for _, n := range c.Nodes() {
		if len(n.Racks) == 0 {
			t.Fatalf("node %s has no racks in shmkit's view", n.Name)
		}
	}
	cp := record.NewClientPolicy()
	cp.RackIds = s.prefer
	rc, err := record.NewClient(c, cp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return c, rc
}

// officialSecureClient connects the official client to s.
func (s *secureSetup) officialSecureClient(t *testing.T) *as.Client {
	t.Helper()
	client, aerr := as.NewClientWithPolicyAndHost(s.clientPolicy(), tlsHost(t, s.sim.TLSSeeds()[0]))
	if aerr != nil {
		t.Fatalf("official client could not connect to the secure sim: %v", aerr)
	}
	t.Cleanup(client.Close)
	return client
}

// TestRecordsSecureInterop: on a cluster with a cluster name, mutual TLS,
// authentication and racks, records of every particle type written by
// the official client are read by shmkit's record client (PREFER_RACK)
// and the other way round, in a namespace of two copies and one of
// three.
func TestRecordsSecureInterop(t *testing.T) {
	s := newSecureSetup(t, nil)
	official := s.officialSecureClient(t)
	_, rc := s.secureRecordClient(t, 0)
	ctx := context.Background()
	rp := record.NewPolicy()
	rp.ReplicaPolicy = record.PREFER_RACK
	arp := as.NewPolicy()
	arp.ReplicaPolicy = as.PREFER_RACK
	for _, ns := range []string{nsAP, nsRacks3} {
		for i, tc := range particleCases() {
			// Official client to shmkit.
			name := fmt.Sprintf("official-%d", i)
			ak, aerr := as.NewKey(ns, "secure", name)
			if aerr != nil {
				t.Fatal(aerr)
			}
			if aerr := official.Put(nil, ak, as.BinMap{"v": tc.v, "n": i}); aerr != nil {
				t.Fatalf("%s %s: official put: %v", ns, tc.name, aerr)
			}
			k, err := record.NewKey(ns, "secure", name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k.Digest[:], ak.Digest()) {
				t.Fatalf("digest %x, official %x", k.Digest, ak.Digest())
			}
			rec, err := rc.Get(ctx, rp, k)
			if err != nil {
				t.Fatalf("%s %s: shmkit get: %v", ns, tc.name, err)
			}
			if !equalValues(rec.Bins["v"], tc.v) || rec.Bins["n"] != int64(i) || len(rec.Bins) != 2 {
				t.Fatalf("%s %s: shmkit read %#v, official wrote %#v", ns, tc.name, rec.Bins, tc.v)
			}

			// shmkit to the official client.
			name = fmt.Sprintf("shmkit-%d", i)
			k, _ = record.NewKey(ns, "secure", name)
			if err := rc.Put(ctx, nil, k, record.BinMap{"v": tc.v, "n": i}); err != nil {
				t.Fatalf("%s %s: shmkit put: %v", ns, tc.name, err)
			}
			ak, _ = as.NewKey(ns, "secure", name)
			arec, aerr := official.Get(arp, ak)
			if aerr != nil {
				t.Fatalf("%s %s: official get: %v", ns, tc.name, aerr)
			}
			if !equalValues(arec.Bins["v"], tc.v) || !equalValues(arec.Bins["n"], i) || len(arec.Bins) != 2 || arec.Generation != 1 {
				t.Fatalf("%s %s: official read %#v (generation %d), shmkit wrote %#v", ns, tc.name, arec.Bins, arec.Generation, tc.v)
			}
		}
	}
	var unauth, refused uint64
	for _, n := range s.sim.Nodes() {
		st := s.sim.AuthStats(n.Index)
		unauth += st.Unauthenticated
		refused += st.Refused
	}
	if unauth != 0 || refused != 0 {
		t.Errorf("the nodes saw %d unauthenticated commands and %d refused logins", unauth, refused)
	}
}

// officialRackChain is the official client's PREFER_RACK node for each of
// the first n attempts of a read of partition pid (its Partition, retried
// with PrepareRetryRead as its command loop does after a network error).
func officialRackChain(client *as.Client, ns string, pid uint32, n int) ([]string, error) {
	key, err := clientKey(ns, pid)
	if err != nil {
		return nil, err
	}
	pol := as.NewPolicy()
	pol.ReplicaPolicy = as.PREFER_RACK
	ptn, aerr := as.PartitionForRead(client.Cluster(), pol, key)
	if aerr != nil {
		return nil, aerr
	}
	var chain []string
	for range n {
		node, aerr := ptn.GetNodeRead(client.Cluster())
		if aerr != nil {
			return nil, aerr
		}
		chain = append(chain, node.GetName())
		ptn.PrepareRetryRead(false)
	}
	return chain, nil
}

// TestPreferRackMatchesOfficialClient: shmkit's PREFER_RACK reads go
// where the official client's go, on the first attempt and on retries.
// First, for every partition of both namespaces, the node that serves
// shmkit's read is the official client's choice. Then two nodes stop
// while shmkit's view still lists them (it is not tended meanwhile): each
// read fails over along its retry sequence, and the node that serves it
// is the first running node of the official client's retry sequence for
// the partition, computed before the stop (the official client's
// Partition.GetNodeRead and PrepareRetryRead), after as many failed
// attempts as the sequence has stopped nodes before it.
func TestPreferRackMatchesOfficialClient(t *testing.T) {
	s := newSecureSetup(t, nil)
	official := s.officialSecureClient(t)
	// One tend (in Open), then none for the test's duration.
	_, rc := s.secureRecordClient(t, time.Hour)
	names := map[string]int{}
	for _, n := range s.sim.Nodes() {
		names[n.Name] = n.Index
	}
	type part struct {
		ns    string
		pid   uint32
		chain []string
	}
	var parts []part
	deadline := time.Now().Add(agreeTimeout)
	for _, spec := range s.sim.Namespaces() {
		for pid := range uint32(partmap.Partitions) {
			for {
				chain, err := officialRackChain(official, spec.Name, pid, 6)
				if err == nil {
					parts = append(parts, part{spec.Name, pid, chain})
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s/%d: official client: %v", spec.Name, pid, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	counts := func() []uint64 {
		out := make([]uint64, len(names))
		for i := range out {
			out[i] = s.sim.RecordMessages(i)
		}
		return out
	}
	// served returns the node whose record message count moved, -1 for
	// none and -2 for several.
	served := func(before []uint64) int {
		who := -1
		for i, n := range counts() {
			if n != before[i] {
				if who >= 0 {
					return -2
				}
				who = i
			}
		}
		return who
	}
	ctx := context.Background()
	pol := record.NewPolicy()
	pol.ReplicaPolicy = record.PREFER_RACK
	pol.MaxRetries, pol.SleepBetweenRetries = 5, 0
	// read returns the node that served a read of partition p and how
	// many attempts failed before.
	read := func(p part) (node, failed int, err error) {
		d, _ := partmap.DigestForPartition(p.pid)
		k, err := record.NewKeyWithDigest(p.ns, "", d)
		if err != nil {
			return 0, 0, err
		}
		before, retries := counts(), rc.Stats().Retries
		_, err = rc.Exists(ctx, pol, k)
		return served(before), int(rc.Stats().Retries - retries), err
	}

	offMaster := 0
	for _, p := range parts {
		got, failed, err := read(p)
		if err != nil {
			t.Fatalf("%s/%d: %v", p.ns, p.pid, err)
		}
		if want := names[p.chain[0]]; got != want || failed != 0 {
			t.Fatalf("%s/%d: read served by node %d after %d failed attempts, the official client's PREFER_RACK node is %d",
				p.ns, p.pid, got, failed, want)
		}
		if m, _ := clientMaster(official, p.ns, p.pid); m != p.chain[0] {
			offMaster++
		}
	}
	if offMaster == 0 || offMaster == len(parts) {
		t.Fatalf("%d of %d first choices leave the master: the comparison covers one case only", offMaster, len(parts))
	}

	// Retries: nodes 0 and 1 (racks 1 and 2) stop.
	stopped := map[string]bool{}
	for _, i := range []int{0, 1} {
		if err := s.sim.StopNode(i); err != nil {
			t.Fatal(err)
		}
		stopped[s.sim.Nodes()[i].Name] = true
	}
	retried := map[int]int{} // attempts -> partitions
	for _, p := range parts {
		attempt := 0
		for attempt < len(p.chain) && stopped[p.chain[attempt]] {
			attempt++
		}
		got, failed, err := read(p)
		if attempt == len(p.chain) {
			// Both copies of a two-copy partition are on stopped nodes.
			if !errors.Is(err, record.ErrNetwork) {
				t.Fatalf("%s/%d on stopped nodes only (%v): %v", p.ns, p.pid, p.chain, err)
			}
			retried[-1]++
			continue
		}
		if err != nil {
			t.Fatalf("%s/%d: %v", p.ns, p.pid, err)
		}
		if want := names[p.chain[attempt]]; got != want || failed != attempt {
			t.Fatalf("%s/%d: read served by node %d after %d failed attempts; the official sequence is %v (node %d after %d)",
				p.ns, p.pid, got, failed, p.chain, want, attempt)
		}
		retried[attempt]++
	}
	t.Logf("partitions served after 0, 1, 2, ... failed attempts (-1: none running): %v; %d of %d first choices off the master",
		retried, offMaster, len(parts))
	if retried[1] == 0 || retried[2] == 0 {
		t.Errorf("served after one failed attempt %d times, after two %d: the retries are not all covered", retried[1], retried[2])
	}
}
