package fuzz

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

// partmapSections are the sections a hostile process (or a bit flip) may
// damage; the lease record is not partmap's to validate.
var partmapSections = [...]string{"meta", "node_recs", "ns_recs", "stats_recs", "partitions"}

// damage overwrites the bytes of seg at off with data, through atomic word
// loads and stores (as another process would write them: a segment has no
// byte accessors).
func damage(seg *arena.Segment, off arena.Offset, data []byte) error {
	var w [8]byte
	for i, b := range data {
		at := off + arena.Offset(i)
		word := at &^ 7
		if err := seg.CheckWord(word); err != nil {
			return err
		}
		binary.NativeEndian.PutUint64(w[:], seg.Load64(word))
		w[at-word] = b
		seg.Store64(word, binary.NativeEndian.Uint64(w[:]))
	}
	return nil
}

// publishCluster makes this process the tend owner of m and publishes
// three nodes, namespace "test" (every partition: master and one prole)
// and one tend report. It returns the namespace and the node names.
func publishCluster(tb testing.TB, m *partmap.Map, log *slog.Logger) (partmap.NS, map[string]bool) {
	tb.Helper()
	l, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Threshold: time.Minute, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := l.TryAcquire(); err != nil {
		tb.Fatal(err)
	}
	w := m.Writer(l)
	if err := w.StampAll(); err != nil {
		tb.Fatal(err)
	}
	names := map[string]bool{}
	var slots []int
	for k := range 3 {
		name := fmt.Sprintf("BB90%011d", k)
		s, err := w.AddOrUpdateNode(partmap.NodeInfo{Name: name, Active: true,
			Addresses: []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(k)}), 3000)}})
		if err != nil {
			tb.Fatal(err)
		}
		names[name] = true
		slots = append(slots, s)
	}
	ns, err := w.EnsureNamespace("test", 2, false)
	if err != nil {
		tb.Fatal(err)
	}
	for pid := range uint32(partmap.Partitions) {
		if err := w.SetPartition(ns, pid, slots[pid%3], slots[(pid+1)%3], 0); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.RecordTend(partmap.TendReport{InfoRequests: 1}); err != nil {
		tb.Fatal(err)
	}
	if err := w.Publish(); err != nil {
		tb.Fatal(err)
	}
	return ns, names
}

// FuzzPartmapHostileSegment publishes a valid map on a heap segment, writes
// fuzzed bytes at a fuzzed place of one of its sections, and then calls every
// reader (the lookups' fast and entry paths, and Prepare): nothing may
// panic or hang, errors must be typed, and a node a lookup returns must be
// one of the nodes the owner published.
func FuzzPartmapHostileSegment(f *testing.F) {
	f.Add(uint8(0), uint32(0), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(1), uint32(8), []byte("\x03\x00\x00\x00\x00\x00\x00\x00garbage!"))
	f.Add(uint8(2), uint32(64), make([]byte, 64))
	f.Add(uint8(3), uint32(0), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add(uint8(4), uint32(8*2709), []byte{0x01, 0x02, 0x03, 0, 0, 0, 0, 0x01})
	f.Add(uint8(4), uint32(8*4095), []byte{0xff, 0xff, 0xff, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, which uint8, at uint32, data []byte) {
		store := arena.NewHeapStore()
		loc := store.At("hostile")
		cfg := partmap.Config{MaxNodes: 4, MaxNamespaces: 2, StallTimeout: time.Millisecond, Timeout: 20 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		m, err := partmap.Open(context.Background(), loc, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			m.Close()
			arena.Remove(loc, arena.RemoveOptions{Force: true})
		}()
		ns, names := publishCluster(t, m, cfg.Logger)

		// The old handle holds a resolved table of the undamaged map.
		if _, ok := m.Master(ns, 0); !ok {
			t.Fatal("no master before the damage")
		}

		// The damage.
		seg := m.Segment()
		off, size, err := seg.Section(partmapSections[int(which)%len(partmapSections)])
		if err != nil {
			t.Fatal(err)
		}
		if size > 0 {
			start := uint64(at) % size
			if err := damage(seg, off+arena.Offset(start), data[:min(uint64(len(data)), size-start)]); err != nil {
				t.Fatal(err)
			}
		}

		// Every reader, on a fresh handle (no cached records) and the old one.
		fresh, err := partmap.Open(context.Background(), loc, cfg)
		if err != nil {
			return // a damaged meta section may be refused at open: fine, it was typed
		}
		defer fresh.Close()
		for _, r := range []*partmap.Map{m, fresh} {
			for _, n := range r.Nodes() {
				if n == nil || !names[n.Name] {
					t.Fatalf("Nodes returned a node the owner never published: %+v", n)
				}
			}
			h, ok := r.Namespace("test")
			if !ok {
				continue
			}
			r.Prepare(h)
			for _, pid := range []uint32{0, 1, 2709, 4095} {
				for rep := range 3 {
					if n, ok := r.Replica(h, pid, rep); ok && (n == nil || !names[n.Name]) {
						t.Fatalf("Replica returned a node the owner never published: %+v", n)
					}
					n, err := r.Lookup(h, pid, rep)
					if err != nil {
						if !errors.Is(err, partmap.ErrNotFound) && !errors.Is(err, partmap.ErrCorrupt) &&
							!errors.Is(err, partmap.ErrInvalid) && !errors.Is(err, partmap.ErrUnstable) {
							t.Fatalf("untyped lookup error: %v", err)
						}
						continue
					}
					if n == nil || !names[n.Name] {
						t.Fatalf("lookup returned a node the owner never published: %+v", n)
					}
				}
			}
			if _, err := r.Snapshot(h); err != nil && !errors.Is(err, partmap.ErrCorrupt) &&
				!errors.Is(err, partmap.ErrUnstable) && !errors.Is(err, partmap.ErrNotFound) {
				t.Fatalf("untyped snapshot error: %v", err)
			}
			_ = r.Stats()
		}
	})
}
