package partmap_test

import (
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
)

// TestResolvedTableFollowsPublish checks the paths of the lookup fast
// path: a lookup after a publish builds the namespace's table under the
// new publish word; while a batch is open lookups answer from the entries
// (the batch's changes included) and leave the table alone; the next
// publish makes the table stale, and the next lookup answers from the new
// map and rebuilds it. The negative control answers from the table
// without checking the publish word, and returns the old master.
func TestResolvedTableFollowsPublish(t *testing.T) {
	m, loc := heapMap(t, partmap.Config{})
	reader := openMore(t, loc, partmap.Config{})
	_, w := owner(t, m, time.Minute)
	a, err := w.AddOrUpdateNode(info("BB9000000000001", true))
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.AddOrUpdateNode(info("BB9000000000002", true))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := w.EnsureNamespace("test", 2, false)
	if err != nil {
		t.Fatal(err)
	}
	for pid := range uint32(partmap.Partitions) {
		if err := w.SetPartition(ns, pid, a, b, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	rns, ok := reader.Namespace("test")
	if !ok {
		t.Fatal("namespace not found")
	}
	if _, ok := reader.TablePub(rns); ok {
		t.Fatal("a table before any lookup")
	}
	master := func(pid uint32) string {
		t.Helper()
		n, ok := reader.Master(rns, pid)
		if !ok {
			t.Fatalf("partition %d: no master", pid)
		}
		return n.Name
	}
	if got := master(7); got != "BB9000000000001" {
		t.Fatalf("master %s", got)
	}
	p1, ok := reader.TablePub(rns)
	if !ok || p1 != reader.PubWord() || p1&1 != 0 {
		t.Fatalf("table after the first lookup: %#x %v, publish word %#x", p1, ok, reader.PubWord())
	}

	// A batch is open: the entry path answers with the batch's change.
	if err := w.SetPartition(ns, 7, b, a, 0); err != nil {
		t.Fatal(err)
	}
	if reader.PubWord()&1 == 0 {
		t.Fatal("no batch open")
	}
	if got := master(7); got != "BB9000000000002" {
		t.Fatalf("during the batch: master %s, want the batch's BB9000000000002", got)
	}
	if got := master(8); got != "BB9000000000001" {
		t.Fatalf("during the batch: master of 8 %s", got)
	}
	if p, _ := reader.TablePub(rns); p != p1 {
		t.Fatalf("table rebuilt during a batch: %#x, was %#x", p, p1)
	}
	if n, ok := reader.StaleMaster(rns, 7); !ok || n.Name != "BB9000000000001" {
		t.Fatalf("negative control: %v %v, want the old master from the stale table", n, ok)
	}

	// Published: the stale table is not used, and is rebuilt.
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	if got := master(7); got != "BB9000000000002" {
		t.Fatalf("after the publish: master %s", got)
	}
	p2, ok := reader.TablePub(rns)
	if !ok || p2 != reader.PubWord() || p2 == p1 {
		t.Fatalf("table after the publish: %#x %v, publish word %#x, old %#x", p2, ok, reader.PubWord(), p1)
	}
	if n, ok := reader.StaleMaster(rns, 7); !ok || n.Name != "BB9000000000002" {
		t.Fatalf("rebuilt table: %v %v", n, ok)
	}
	// Replicas come from the same table; absent ones from the entry path.
	if n, ok := reader.Replica(rns, 7, 1); !ok || n.Name != "BB9000000000001" {
		t.Fatalf("prole of 7: %v %v", n, ok)
	}
	if n, ok := reader.Replica(rns, 7, 2); ok {
		t.Fatalf("second prole of 7: %v", n)
	}
	if _, ok := reader.Replica(rns, 7, 3); ok {
		t.Fatal("replica 3 resolved")
	}
	if _, ok := reader.Replica(rns, partmap.Partitions, 0); ok {
		t.Fatal("partition 4096 resolved")
	}
	if _, ok := reader.Master(partmap.NS{}, 7); ok {
		t.Fatal("zero NS resolved")
	}
}

// TestPrepare checks that Prepare builds the table of a published map, and
// refuses while a batch is open and for an invalid handle.
func TestPrepare(t *testing.T) {
	m, loc := heapMap(t, partmap.Config{})
	reader := openMore(t, loc, partmap.Config{})
	_, w := owner(t, m, time.Minute)
	a, err := w.AddOrUpdateNode(info("BB9000000000001", true))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := w.EnsureNamespace("test", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetPartition(ns, 1, a, 0, 0); err != nil {
		t.Fatal(err)
	}
	if reader.Prepare(ns) {
		t.Error("Prepare succeeded while a batch is open")
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	if !reader.Prepare(ns) {
		t.Fatal("Prepare failed on a published map")
	}
	if p, ok := reader.TablePub(ns); !ok || p != reader.PubWord() {
		t.Fatalf("table %#x %v, publish word %#x", p, ok, reader.PubWord())
	}
	if n, ok := reader.StaleMaster(ns, 1); !ok || n.Name != "BB9000000000001" {
		t.Fatalf("prepared table: %v %v", n, ok)
	}
	if reader.Prepare(partmap.NS{}) {
		t.Error("Prepare of the zero NS succeeded")
	}
}
