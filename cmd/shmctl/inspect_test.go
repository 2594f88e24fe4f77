package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

// shmctl runs the command in-process and returns its exit code and output.
func shmctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

var quiet = slog.New(slog.DiscardHandler)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// clusterView creates a cluster segment at a test key whose owner (this
// process) published nodes in slots 1 and 2 and namespace "test" with
// every partition on them; it stays attached until the test ends.
func clusterView(t *testing.T) (arena.Key, *partmap.Map, *lease.Lease) {
	t.Helper()
	ctx := ctxT(t)
	k := arenatest.SysVKey(t)
	m, err := partmap.Open(ctx, arena.SysV(k), partmap.Config{MaxNodes: 4, MaxNamespaces: 2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	l, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	w := m.Writer(l)
	if err := w.StampAll(); err != nil {
		t.Fatal(err)
	}
	a, _ := w.AddOrUpdateNode(partmap.NodeInfo{Name: "BB9020011AC4202", Active: true, Addresses: []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:3000")}})
	b, _ := w.AddOrUpdateNode(partmap.NodeInfo{Name: "BB9030011AC4202", Active: true, Build: "8.1.0.1"})
	ns, err := w.EnsureNamespace("test", 2, false)
	if err != nil {
		t.Fatal(err)
	}
	for pid := range uint32(partmap.Partitions) {
		if err := w.SetPartition(ns, pid, a, b, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.RecordTend(partmap.TendReport{InfoRequests: 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.Publish(); err != nil {
		t.Fatal(err)
	}
	return k, m, l
}

// filePool creates a pool in dir with a linked, a claimed and a free
// element; it stays open until the test ends.
func filePool(t *testing.T, dir string) (string, *arena.Pool) {
	t.Helper()
	ctx := ctxT(t)
	path := filepath.Join(dir, "shmkit.pool")
	p, err := arena.OpenPool(ctx, arena.File(path), arena.PoolConfig{ElemSize: 16, StageElems: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); arena.RemovePool(arena.File(path), arena.RemoveOptions{Force: true}) })
	for i := range 3 {
		h, err := p.Alloc(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 0:
			err = p.Commit(h)
		case 2:
			err = p.Free(h)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return path, p
}

func TestLs(t *testing.T) {
	k, _, l := clusterView(t)
	dir := t.TempDir()
	ppath, _ := filePool(t, dir)
	fk, _ := arenatest.ForeignSysV(t, 8192)

	code, out, errs := shmctl(t, "ls", "-json", "--dir", dir)
	if code != exitOK {
		t.Fatalf("ls: exit %d, %s", code, errs)
	}
	var rows []lsEntry
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("ls -json: %v\n%s", err, out)
	}
	find := func(rows []lsEntry, loc string) *lsEntry {
		for i := range rows {
			if rows[i].Location == loc {
				return &rows[i]
			}
		}
		return nil
	}
	c := find(rows, arena.SysV(k).String())
	if c == nil || c.Kind != "cluster-view" || c.State != "ready" || c.Attached != 1 || c.Key != k.String() || c.Mode != "0600" ||
		c.Cluster == nil || c.Cluster.OwnerPID != uint32(os.Getpid()) || c.Cluster.Epoch != l.Epoch() || !c.Cluster.Held || c.Cluster.Generation == 0 {
		t.Errorf("cluster row %+v (cluster %+v)", c, c.Cluster)
	}
	if p := find(rows, arena.File(ppath).String()); p == nil || p.Kind != "pool" || p.Attached != 1 || p.Path != ppath {
		t.Errorf("pool row %+v", p)
	}
	if f := find(rows, arena.SysV(fk).String()); f != nil {
		t.Errorf("foreign segment listed without --all: %+v", f)
	}
	code, out, _ = shmctl(t, "ls", "--dir", dir, "--all")
	if code != exitOK || !strings.Contains(out, fk.String()) || !strings.Contains(out, "foreign") || !strings.Contains(out, ppath) ||
		!strings.Contains(out, "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("ls --all: exit %d\n%s", code, out)
	}
	if code, _, _ := shmctl(t, "ls", "--dir", filepath.Join(dir, "absent")); code != exitFailed {
		t.Errorf("ls of a missing directory: exit %d", code)
	}
	if code, _, _ := shmctl(t, "ls", "extra"); code != exitUsage {
		t.Errorf("ls with an argument: exit %d", code)
	}
}

func TestInspect(t *testing.T) {
	k, _, _ := clusterView(t)
	code, out, errs := shmctl(t, "inspect", k.String())
	for _, want := range []string{"cluster-view", "max_nodes", "partitions", "BB9020011AC4202", "10.0.0.1:3000", "8.1.0.1", "slot 0: test, replication factor 2", "held by pid"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if code != exitOK {
		t.Errorf("inspect: exit %d %s", code, errs)
	}
	// Flags after the argument, JSON.
	code, out, _ = shmctl(t, "inspect", k.String(), "-json")
	var o struct {
		Kind    string
		Cluster struct {
			Nodes []struct{ Name string }
			Refs  []int
		}
	}
	if err := json.Unmarshal([]byte(out), &o); err != nil || code != exitOK || o.Kind != "cluster-view" || len(o.Cluster.Nodes) != 2 || o.Cluster.Refs[1] != partmap.Partitions {
		t.Errorf("inspect -json: exit %d, %v, %+v", code, err, o)
	}

	// Not shmkit's, damaged, missing: a diagnosis, never a crash.
	fk, _ := arenatest.ForeignSysV(t, 4096)
	if code, out, _ := shmctl(t, "inspect", fk.String()); code != exitProblems || !strings.Contains(out, "not shmkit's") {
		t.Errorf("inspect foreign: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, bytes.Repeat([]byte{0xA5}, 4096), 0o600)
	if code, out, _ := shmctl(t, "inspect", junk); code != exitProblems || !strings.Contains(out, "not a shmkit segment") {
		t.Errorf("inspect junk: exit %d\n%s", code, out)
	}
	ppath, _ := filePool(t, dir)
	if code, out, _ := shmctl(t, "inspect", ppath); code != exitOK || !strings.Contains(out, "pool: 1 stages, capacity 4: 1 linked, 1 claimed (Reclaim frees those of dead owners), 1 free, 1 never used") {
		t.Errorf("inspect pool: exit %d\n%s", code, out)
	}
	b, _ := os.ReadFile(ppath)
	b[300] ^= 0x10 // inside the checksummed header
	damaged := filepath.Join(dir, "damaged")
	os.WriteFile(damaged, b, 0o600)
	if code, out, _ := shmctl(t, "inspect", damaged); code != exitProblems || !strings.Contains(out, "damaged") {
		t.Errorf("inspect damaged: exit %d\n%s", code, out)
	}
	if code, _, errs := shmctl(t, "inspect", filepath.Join(dir, "absent")); code != exitFailed || !strings.Contains(errs, "no such segment") {
		t.Errorf("inspect missing: exit %d %s", code, errs)
	}
	if code, _, _ := shmctl(t, "inspect", "0xAE000100"); code != exitRefused {
		t.Errorf("inspect of an Aerospike key: exit %d", code)
	}
	if code, _, _ := shmctl(t, "inspect"); code != exitUsage {
		t.Errorf("inspect without argument: exit %d", code)
	}
}

// TestInspectIndex inspects an index kept in files by its main block.
func TestInspectIndex(t *testing.T) {
	dir := t.TempDir()
	fileIndex(t, dir, 100)
	main := filepath.Join(dir, "index-i2-n1.b000")
	code, out, errs := shmctl(t, "inspect", main)
	if code != exitOK || !strings.Contains(out, "entries 100") || !strings.Contains(out, "index-main") {
		t.Errorf("inspect index: exit %d %s\n%s", code, errs, out)
	}
}

// fileIndex opens an index in dir (instance 2, namespace 1, 64-entry
// stages) holding n records.
func fileIndex(t *testing.T, dir string, n int) *index.Index {
	t.Helper()
	ix, _, err := index.Open(ctxT(t), index.Config{Store: index.Dir(dir), Instance: 2, Namespace: 1, Sprigs: 2, StageEntries: 64, Logger: quiet}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	for i := range n {
		d := index.Digest{byte(i), byte(i >> 8), 7, byte(i * 13)}
		if err := ix.Put(index.Record{Digest: d, Generation: 1, FileID: 1, Offset: uint64(i) * 128, Size: 128}); err != nil {
			t.Fatal(err)
		}
	}
	return ix
}

// testSpec is a small segment of kind test.
func testSpec() layout.Spec {
	return layout.Spec{Kind: layout.KindTest, Sections: []layout.SectionSpec{{Name: "data", Size: 256}}}
}
