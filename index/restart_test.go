package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
)

var storageA = StorageID{UUID: [16]byte{0xa, 1, 2, 3}, Committed: 4096}

// populated opens a fresh index on cfg, puts n records, closes it cleanly
// with storage id and returns the model.
func populated(t *testing.T, cfg Config, n uint64, id StorageID) model {
	t.Helper()
	ix, info := mustOpen(t, cfg, nil)
	if info.Mode != Cold {
		t.Fatalf("fresh open: mode %v", info.Mode)
	}
	m := model{}
	for k := range n {
		if err := ix.Put(recordOf(k, 2, cfg.DataInIndex)); err != nil {
			t.Fatal(err)
		}
		m[k] = 2
	}
	if err := ix.CloseClean(id); err != nil {
		t.Fatal(err)
	}
	return m
}

// expectStart opens cfg and checks mode, reason kind and that the index
// then holds m (rebuilt from m when cold).
func expectStart(t *testing.T, cfg Config, m model, mode Mode, kind ReasonKind, text string) *Index {
	t.Helper()
	var logs bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	rebuilt := false
	ix, info, err := Open(context.Background(), cfg, func(ctx context.Context, ix *Index) error {
		rebuilt = true
		return rebuildFrom(m, cfg.DataInIndex)(ctx, ix)
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { ix.Close() })
	t.Logf("%v start: %v (records %d, %v)", info.Mode, info.Reason, info.Records, info.Duration)
	if info.Mode != mode || info.Reason.Kind != kind {
		t.Fatalf("Open: %v (%v), want %v (%v)", info.Mode, info.Reason, mode, kind)
	}
	if text != "" && !strings.Contains(info.Reason.String(), text) {
		t.Fatalf("reason %q does not say %q", info.Reason, text)
	}
	if rebuilt != (mode == Cold) {
		t.Fatalf("rebuild called: %v in a %v start", rebuilt, mode)
	}
	if info.Records != uint64(len(m)) {
		t.Fatalf("RestartInfo.Records = %d, want %d", info.Records, len(m))
	}
	want := "beginning warm restart"
	if mode == Cold {
		want = "beginning cold start: " + info.Reason.String()
	}
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, logs.String())
	}
	verify(t, ix, m, cfg.DataInIndex)
	return ix
}

func TestRestartTriggers(t *testing.T) {
	for _, b := range backends() {
		t.Run(string(b), func(t *testing.T) {
			t.Run("missing", func(t *testing.T) {
				cfg := testConfig(t, b)
				expectStart(t, cfg, model{1: 1, 2: 1}, Cold, ReasonSegmentsMissing, "not found")
			})
			t.Run("clean-warm", func(t *testing.T) {
				cfg := testConfig(t, b)
				cfg.Storage = storageA
				m := populated(t, cfg, 700, storageA) // three stages
				ix := expectStart(t, cfg, m, Warm, ReasonNone, "")
				// The warm index is writable, and a second clean cycle is warm.
				if err := ix.Put(recordOf(9999, 1, false)); err != nil {
					t.Fatal(err)
				}
				m[9999] = 1
				if err := ix.CloseClean(storageA); err != nil {
					t.Fatal(err)
				}
				expectStart(t, cfg, m, Warm, ReasonNone, "")
			})
			t.Run("sprigs-changed", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 100, StorageID{})
				cfg.Sprigs = 2
				expectStart(t, cfg, m, Cold, ReasonFingerprint, "partition-tree-sprigs 1 doesn't match config 2")
			})
			t.Run("data-in-index-changed", func(t *testing.T) {
				cfg := testConfig(t, b)
				populated(t, cfg, 100, StorageID{})
				cfg.DataInIndex = true
				expectStart(t, cfg, model{5: 1}, Cold, ReasonFingerprint, "data-in-index 0 doesn't match config 1")
			})
			t.Run("stage-size-changed", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 300, StorageID{})
				cfg.StageEntries = 512
				expectStart(t, cfg, m, Cold, ReasonFingerprint, "index-stage-entries 256 doesn't match config 512")
			})
			t.Run("unclean", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 100, StorageID{})
				ix := expectStart(t, cfg, m, Warm, ReasonNone, "")
				if _, err := ix.Delete(digestOf(7)); err != nil {
					t.Fatal(err)
				}
				delete(m, 7)
				ix.Close() // no clean marker: a crash
				expectStart(t, cfg, m, Cold, ReasonUnclean, "not clean-shutdown")
			})
			t.Run("failed-start-stays-warm", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 100, StorageID{})
				ix := expectStart(t, cfg, m, Warm, ReasonNone, "")
				ix.Close() // attached, read, never wrote
				expectStart(t, cfg, m, Warm, ReasonNone, "")
			})
			t.Run("storage-wiped", func(t *testing.T) {
				cfg := testConfig(t, b)
				populated(t, cfg, 100, storageA)
				cfg.Storage = StorageID{UUID: [16]byte{0xb}}
				expectStart(t, cfg, model{}, Cold, ReasonStorageChanged, "storage-uuid 0a010203")
			})
			t.Run("storage-length-changed", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 100, storageA)
				cfg.Storage = storageA
				cfg.Storage.Committed += 100
				expectStart(t, cfg, m, Cold, ReasonStorageChanged, "storage-committed-length 4096 doesn't match config 4196")
			})
			t.Run("storage-seq-changed", func(t *testing.T) {
				cfg := testConfig(t, b)
				id := storageA
				id.Seq = 77
				m := populated(t, cfg, 100, id)
				cfg.Storage = id
				cfg.Storage.Seq = 78
				expectStart(t, cfg, m, Cold, ReasonStorageChanged, "storage-seq 77 doesn't match config 78")
			})
			t.Run("forced", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 100, StorageID{})
				cfg.ForceCold = true
				expectStart(t, cfg, m, Cold, ReasonForced, "")
			})
			t.Run("stage-missing", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 600, StorageID{}) // stages 0, 1, 2
				if err := removeBlock(cfg, 2); err != nil {
					t.Fatal(err)
				}
				expectStart(t, cfg, m, Cold, ReasonSegmentsMissing, "stage 2 segment")
			})
			t.Run("seal-damaged", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 100, StorageID{})
				ix := expectStart(t, cfg, m, Warm, ReasonNone, "")
				ix.v.meta.Store(mFreeCount, 3) // not a mutation: stays clean
				ix.Close()
				expectStart(t, cfg, m, Cold, ReasonDamaged, "seal")
			})
			t.Run("layout-version", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 100, StorageID{})
				if err := setMajor(cfg, layout.Major+1); err != nil {
					t.Fatal(err)
				}
				expectStart(t, cfg, m, Cold, ReasonFingerprint, fmt.Sprintf("layout-version %d.0 doesn't match config %d.0", layout.Major+1, layout.Major))
			})
			t.Run("check-on-warm", func(t *testing.T) {
				cfg := testConfig(t, b)
				m := populated(t, cfg, 100, StorageID{})
				ix := expectStart(t, cfg, m, Warm, ReasonNone, "")
				// A partition byte count that disagrees, under an intact
				// seal (the quick check only sums the entry counts).
				d := digestOf(3)
				ix.v.parts.Store(uint64(d.Partition())*partWords+pBytes, 5)
				ix.Close()
				cfg.CheckOnWarm = true
				expectStart(t, cfg, m, Cold, ReasonDamaged, "bytes 5")
			})
		})
	}
}

func removeBlock(cfg Config, b int) error {
	if err := cfg.normalize(); err != nil {
		return err
	}
	return removeLoc(cfg.Store.block(&cfg, b))
}

func TestSecondWriterRefused(t *testing.T) {
	cfg := testConfig(t, bHeap)
	ix, _ := mustOpen(t, cfg, nil)
	defer ix.Close()
	if _, _, err := Open(context.Background(), cfg, nil); !errors.Is(err, ErrWriterRunning) {
		t.Fatalf("second writer: %v, want ErrWriterRunning", err)
	}
	// The refused start changed nothing.
	if err := ix.Put(recordOf(1, 1, false)); err != nil {
		t.Fatal(err)
	}
	verify(t, ix, model{1: 1}, false)
}

func TestRebuildError(t *testing.T) {
	cfg := testConfig(t, bHeap)
	boom := errors.New("log unreadable")
	_, _, err := Open(context.Background(), cfg, func(context.Context, *Index) error { return boom })
	if !errors.Is(err, ErrRebuild) || !errors.Is(err, boom) {
		t.Fatalf("Open with a failing rebuild: %v", err)
	}
	// The half-built index is not trusted next time.
	expectStart(t, cfg, model{}, Cold, ReasonUnclean, "")
}

// TestReaderSeesDiscard: a reader attached to an index that a cold start
// discards learns it (Stale) and reads the new index after reopening.
func TestReaderSeesDiscard(t *testing.T) {
	for _, b := range backends() {
		t.Run(string(b), func(t *testing.T) {
			cfg := testConfig(t, b)
			ix, _ := mustOpen(t, cfg, nil)
			if err := ix.Put(recordOf(1, 1, false)); err != nil {
				t.Fatal(err)
			}
			r, err := OpenReader(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Stale() {
				t.Fatal("a fresh reader is stale")
			}
			if _, ok, err := r.Get(digestOf(1)); !ok || err != nil {
				t.Fatalf("reader Get: %v %v", ok, err)
			}
			d1 := digestOf(1)
			if n, ps := r.Count(), r.Partition(d1.Partition()); n != 1 || ps.Count != 1 || ps.Bytes != uint64(recordOf(1, 1, false).Size) {
				t.Fatalf("reader Count %d, partition stats %+v", n, ps)
			}
			ix.Close() // dirty: the next start is cold and discards
			ix2 := expectStart(t, cfg, model{2: 1}, Cold, ReasonUnclean, "")
			_ = ix2
			if !r.Stale() {
				t.Fatal("the reader of a discarded index is not stale")
			}
			r2, err := OpenReader(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer r2.Close()
			if _, ok, _ := r2.Get(digestOf(2)); !ok {
				t.Fatal("the reopened reader does not see the new index")
			}
			if _, ok, _ := r2.Get(digestOf(1)); ok {
				t.Fatal("the reopened reader sees the discarded index")
			}
		})
	}
}

// setMajor rewrites the format major of the main segment's header (with a
// valid checksum), as a segment written by another shmkit version.
func setMajor(cfg Config, major uint16) error {
	if err := cfg.normalize(); err != nil {
		return err
	}
	seg, err := arena.Inspect(cfg.Store.block(&cfg, 0))
	if err != nil {
		return err
	}
	defer seg.Close()
	words := make([]uint64, layout.HeaderSize/8)
	seg.LoadWords(0, words)
	w := layout.OffMajor / 8
	words[w] = words[w]&^0xffff | uint64(major)
	hdr := make([]byte, layout.HeaderSize)
	for i, v := range words {
		binary.NativeEndian.PutUint64(hdr[8*i:], v)
	}
	seg.Store64(layout.OffMajor, words[w])
	seg.Store64(layout.OffChecksum, layout.Checksum(hdr))
	return nil
}

func TestSysVKeyScheme(t *testing.T) {
	cases := []struct {
		inst, ns uint8
		block    int
		want     arena.Key
	}{
		{0, 0, 0, 0x53020000},
		{3, 5, 0, 0x53023500},
		{3, 5, 7, 0x53023507},
		{15, 15, 255, 0x5302ffff},
	}
	for _, c := range cases {
		k := SysVKey(c.inst, c.ns, c.block)
		if k != c.want {
			t.Errorf("SysVKey(%d, %d, %d) = %s, want %s", c.inst, c.ns, c.block, k, c.want)
		}
		if top := uint32(k) >> 24; top != arena.KeyPrefix || (uint32(k)>>16)&0xff != arena.ClassIndex {
			t.Errorf("key %s is not shmkit's index class", k)
		}
	}
	cfg := Config{Store: SysV(), Instance: 2, Namespace: 9}
	if err := cfg.normalize(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Store.block(&cfg, 4).String(); got != "SysV key 0x53022904" {
		t.Errorf("block 4 of instance 2 namespace 9 at %s", got)
	}
}

// TestLiveWriterOfOtherConfigKept: a start with another fingerprint does
// not discard an index whose writer is alive.
func TestLiveWriterOfOtherConfigKept(t *testing.T) {
	for _, b := range backends() {
		t.Run(string(b), func(t *testing.T) {
			cfg := testConfig(t, b)
			ix, _ := mustOpen(t, cfg, nil)
			defer ix.Close()
			if err := ix.Put(recordOf(1, 1, false)); err != nil {
				t.Fatal(err)
			}
			other := cfg
			other.Sprigs = 4
			if _, _, err := Open(context.Background(), other, nil); !errors.Is(err, ErrWriterRunning) {
				t.Fatalf("Open with other sprigs while a writer runs: %v, want ErrWriterRunning", err)
			}
			verify(t, ix, model{1: 1}, false)
			if err := ix.Put(recordOf(2, 1, false)); err != nil {
				t.Fatalf("the running writer was disturbed: %v", err)
			}
		})
	}
}
