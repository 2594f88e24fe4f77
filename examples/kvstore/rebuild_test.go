package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/partmap"
)

// lyingLiveness claims the locations in live are live and refuses every
// move: the defragmenter then copies a record that was rewritten or
// deleted meanwhile, and its copy lands after the newer version, as when
// the server rewrites a key while the defragmenter copies it.
type lyingLiveness map[storage.Location]bool

func (l lyingLiveness) Live(_ *storage.Record, loc storage.Location) bool { return l[loc] }
func (l lyingLiveness) Moved(_ *storage.Record, _, _ storage.Location) bool {
	return false
}

// TestRebuildSeqRuleForDefragCopies: a defragmenter's copy of an old
// version, lying in the log after a newer version (or after the delete)
// of its key, must not win in a cold rebuild. The negative control
// rebuilds the same log without the Seq rule and gets the old version
// back, so the check is not vacuous.
func TestRebuildSeqRuleForDefragCopies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete bool
	}{{"copy after overwrite", false}, {"copy after delete", true}} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := storage.Open(t.TempDir(), storage.Options{FileSize: 4096, DefragThreshold: 0.9, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			key := index.Digest(partmap.StringKeyDigest("demo", "a"))
			rec := func(k string, bins string, tomb bool) storage.Record {
				return storage.Record{Namespace: []byte("test"), Digest: partmap.StringKeyDigest("demo", k), Set: []byte("demo"),
					Key: []byte(k), Generation: 1, Bins: []byte(bins), Tombstone: tomb}
			}
			v1, err := st.Append(rec("a", `{"v":1}`, false))
			if err != nil {
				t.Fatal(err)
			}
			// Fill the first file so that it is sealed, every record in
			// it dead (released) but v1, which the liveness claims.
			for i := 0; st.Identity().File == v1.File; i++ {
				loc, err := st.Append(rec("filler-"+string(rune('a'+i%26))+string(rune('a'+i/26)), `{"f":0}`, false))
				if err != nil {
					t.Fatal(err)
				}
				st.Release(loc)
			}
			st.Release(v1)
			if _, err := st.Append(rec("a", `{"v":2}`, false)); tc.delete {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Append(rec("a", "", true)); err != nil {
					t.Fatal(err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			stats, err := st.Defrag(context.Background(), lyingLiveness{v1: true})
			if err != nil || stats.Copied != 1 || stats.Lost != 1 {
				t.Fatalf("defrag: %+v %v, want one copy whose move failed", stats, err)
			}

			rebuild := func(ignoreSeq bool) (index.Record, bool) {
				n := &namespace{name: "test", st: st, log: slog.New(slog.DiscardHandler), ignoreSeq: ignoreSeq}
				ix, info, err := index.Open(context.Background(), index.Config{Store: index.Heap(arena.NewHeapStore(), "t"),
					Sprigs: 16, StageEntries: 4096, Logger: n.log}, n.rebuild())
				if err != nil || info.Mode != index.Cold {
					t.Fatalf("rebuild: %v %+v", err, info)
				}
				defer ix.Close()
				r, found, err := ix.Get(key)
				if err != nil {
					t.Fatal(err)
				}
				if found {
					got, err := st.Read(location(&r))
					if err != nil {
						t.Fatal(err)
					}
					r.Value = int64(got.Bins[len(got.Bins)-2] - '0') // {"v":N}
				}
				return r, found
			}
			r, found := rebuild(false)
			switch {
			case tc.delete && found:
				t.Fatalf("the deleted record is back (version %d) from the defragmenter's copy", r.Value)
			case !tc.delete && (!found || r.Value != 2):
				t.Fatalf("found %v, version %d; want version 2", found, r.Value)
			}
			// Negative control: without the Seq rule the copy wins.
			if r, found := rebuild(true); !found || r.Value != 1 {
				t.Fatalf("negative control: without the Seq rule the rebuild gives %v version %d, want the stale copy (1)", found, r.Value)
			}
		})
	}
}
