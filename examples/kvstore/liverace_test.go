package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/partmap"
)

// TestDefragWaitsForWriteInFlight: a write whose record is in the log but
// not yet in the index (paused at FailBeforeIndex) while the file holding
// it is sealed and defragmented must not lose the record: Live waits for
// the write's index update (the digest's write lock), then copies the
// record. The negative control skips the lock: the defragmenter judges
// the record dead, removes its file, and the acknowledged write then
// points at nothing (a read fails, a cold rebuild does not find it).
func TestDefragWaitsForWriteInFlight(t *testing.T) {
	for _, tc := range []struct {
		name     string
		unlocked bool
	}{{"locked", false}, {"negative control: unlocked", true}} {
		t.Run(tc.name, func(t *testing.T) {
			const before = 30 // writes before the victim's
			fps, err := failpoint.Parse(fmt.Sprintf("%s=sleep(3s)@%d", FailBeforeIndex, before+1))
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.DiscardHandler)
			// The log on tmpfs: the file rolls' fdatasyncs must not eat the
			// victim's pause on a busy disk.
			dir, err := os.MkdirTemp("/dev/shm", "kvstore-liverace-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			st, err := storage.Open(dir, storage.Options{FileSize: 4096, DefragThreshold: 0.9, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			n := &namespace{name: "test", st: st, fps: fps, log: log, unlockedLiveness: tc.unlocked}
			cfg := index.Config{Store: index.Heap(arena.NewHeapStore(), "t"), Sprigs: 16, StageEntries: 4096, Logger: log}
			ix, _, err := index.Open(context.Background(), cfg, n.rebuild())
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			n.ix = ix
			put := func(key, v string) {
				t.Helper()
				if _, err := n.put("demo", key, []byte(v), 0); err != nil {
					t.Fatal(err)
				}
			}
			for i := range before {
				put(fmt.Sprintf("k%d", i), fmt.Sprintf(`{"v":%d,"pad":"0123456789012345678901234567890123456789"}`, i))
			}
			victim := victimKey(n, before)
			done := make(chan error, 1)
			go func() {
				_, err := n.put("demo", victim, []byte(`{"victim":1}`), 0)
				done <- err
			}()
			// Wait until the victim's record is in the log (its write is
			// paused before the index), then overwrite everything else
			// twice: the victim's file is sealed and all but dead.
			for deadline := time.Now().Add(5 * time.Second); st.Identity().NextSeq < before+2; {
				if time.Now().After(deadline) {
					t.Fatal("the victim's write never reached the log")
				}
				time.Sleep(time.Millisecond)
			}
			for range 2 {
				for i := range before {
					put(fmt.Sprintf("k%d", i), fmt.Sprintf(`{"v":%d,"pad":"0123456789012345678901234567890123456789"}`, -i))
				}
			}
			select {
			case err := <-done:
				t.Fatalf("the victim's write returned (%v) before the defragmentation pass: the pause is too short for this machine", err)
			default:
			}
			stats, err := st.Defrag(context.Background(), n)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			got, err := n.get("demo", victim)
			lost := err != nil || !got.Found
			t.Logf("defrag %+v; victim read: %+v %v", stats, got.Found, err)
			if stats.Files == 0 {
				t.Fatalf("the pass removed no file (%+v): the race was not set up", stats)
			}
			switch {
			case !tc.unlocked && lost:
				t.Fatalf("the acknowledged write is lost: %v", err)
			case tc.unlocked && !lost:
				t.Fatal("negative control: without the lock the write survived; the test does not set the race up")
			}
		})
	}
}

// victimKey returns a key whose write lock is none of k0…k(n-1)'s, so that
// the other writes do not wait for the paused one.
func victimKey(ns *namespace, n int) string {
	for c := 0; ; c++ {
		key := fmt.Sprintf("victim-%d", c)
		d := index.Digest(partmap.StringKeyDigest("demo", key))
		free := true
		for i := range n {
			o := index.Digest(partmap.StringKeyDigest("demo", fmt.Sprintf("k%d", i)))
			free = free && ns.lock(&o) != ns.lock(&d)
		}
		if free {
			return key
		}
	}
}
