package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
)

// diiWorkload writes ops times to the data-in-index namespace cnt, on keys
// prefix-0…prefix-(keys-1), as operations from…from+ops-1 of a sequence
// where each key is deleted once after three puts of an integer.
func diiWorkload(m *model, c *client, prefix string, keys, from, ops int) error {
	for i := from; i < from+ops; i++ {
		k := fmt.Sprintf("%s-%d", prefix, (i*7)%keys)
		var err error
		if (i/keys)%4 == 3 {
			err = m.apply(c, http.MethodDelete, "/cnt/demo/"+k, "", state{})
		} else {
			err = m.apply(c, http.MethodPut, "/cnt/demo/"+k, fmt.Sprintf(`{"n":%d}`, i), state{true, fmt.Sprintf(`{"value":%d}`, i)})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// defragPass runs POST /_defrag and returns what it did in namespace ns.
func defragPass(t *testing.T, c *client, ns string) storage.DefragStats {
	t.Helper()
	code, body, err := c.do(http.MethodPost, "/_defrag", "")
	if err != nil || code != 200 {
		t.Fatalf("POST /_defrag: %d %s %v", code, body, err)
	}
	var out map[string]storage.DefragStats
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("POST /_defrag answered %q: %v", body, err)
	}
	st, ok := out[ns]
	if !ok {
		t.Fatalf("POST /_defrag did not run on namespace %s: %s", ns, body)
	}
	return st
}

// overwriteDII runs a steady overwrite load on a data-in-index namespace
// (keys overwritten round after round, some deleted and written again),
// with a defragmentation pass after every round if passes is set, and
// returns the largest log (bytes and files) seen after a round and the
// model of what it wrote.
func overwriteDII(t *testing.T, in *instance, rounds int, passes bool) (int64, int, *model, *proc) {
	t.Helper()
	p := in.mustStart("")
	c := p.client()
	m := newModel()
	var maxBytes int64
	maxFiles := 0
	var total storage.DefragStats
	for round := range rounds {
		if err := diiWorkload(m, c, fmt.Sprintf("r%d", round%3), 40, round*40, 40); err != nil {
			t.Fatal(err)
		}
		var st storage.DefragStats
		if passes {
			st = defragPass(t, c, "cnt")
		}
		total.Files += st.Files
		total.Copied += st.Copied
		total.TombstonesKept += st.TombstonesKept
		total.TombstonesDropped += st.TombstonesDropped
		total.Surveyed += st.Surveyed
		b, f := in.logBytes(t, "cnt")
		maxBytes, maxFiles = max(maxBytes, b), max(maxFiles, f)
	}
	t.Logf("%d rounds of 40 writes (passes %v): largest log after a round %d bytes in %d files; passes surveyed %d files, removed %d, copied %d records, kept %d tombstones, dropped %d",
		rounds, passes, maxBytes, maxFiles, total.Surveyed, total.Files, total.Copied, total.TombstonesKept, total.TombstonesDropped)
	return maxBytes, maxFiles, m, p
}

// TestDataInIndexDefragBoundsTheLog: under a steady overwrite load a
// data-in-index namespace's log stays within a fixed number of files
// (live/threshold plus the head and the copies), although its index keeps
// no record offsets; the contents survive a warm and a cold restart (the
// rebuild then reads defragmenter copies of data-in-index records). The
// negative control runs the same load without the passes: the log then
// grows past the bound.
func TestDataInIndexDefragBoundsTheLog(t *testing.T) {
	const fileSize, rounds = 4096, 150
	// 120 keys of about 90-byte frames live at most: about 11 KB, so
	// live/threshold is under 6 files of 4 KiB; add the head file and
	// the one the copies go to.
	const boundFiles = 8
	args := []string{"-file-size", fmt.Sprint(fileSize), "-defrag-threshold", "0.5"}

	in := newInstance(t, args...)
	in.namespaces = "cnt"
	maxBytes, maxFiles, m, p := overwriteDII(t, in, rounds, true)
	if maxFiles > boundFiles || maxBytes > boundFiles*fileSize {
		t.Fatalf("the log reached %d bytes in %d files under a steady load; want at most %d files", maxBytes, maxFiles, boundFiles)
	}
	m.check(t, p.client())
	p = in.restartChecked(t, p, m, "warm", "")
	p = in.restartChecked(t, p, m, "cold", "forced", "-coldstart")
	// The cold rebuild's accounting lets the next pass go on bounding it.
	if err := diiWorkload(m, p.client(), "r0", 40, 0, 400); err != nil {
		t.Fatal(err)
	}
	defragPass(t, p.client(), "cnt")
	if b, f := in.logBytes(t, "cnt"); f > boundFiles {
		t.Fatalf("after a cold rebuild and 400 more writes the log holds %d bytes in %d files; want at most %d files", b, f, boundFiles)
	}
	m.check(t, p.client())
	p.stop(t)

	ctl := newInstance(t, args...)
	ctl.namespaces = "cnt"
	_, ctlFiles, _, p := overwriteDII(t, ctl, rounds, false)
	p.stop(t)
	if ctlFiles <= boundFiles {
		t.Fatalf("negative control: without defragmentation the log grew to only %d files, within the bound of %d: the bound checks nothing", ctlFiles, boundFiles)
	}
}

// TestDataInIndexKilledMidDefrag kills a server with a data-in-index
// namespace in the middle of a defragmentation pass (at its first, and at
// a later, copy) while clients write and delete, restarts it and checks
// the start is cold (see expectKilledMidDefrag), every acknowledged write
// is there and no deleted record is back; then a clean stop restarts warm.
func TestDataInIndexKilledMidDefrag(t *testing.T) {
	for _, hit := range []int{1, 7} {
		t.Run(fmt.Sprintf("copy %d", hit), func(t *testing.T) {
			in := newInstance(t, "-file-size", "4096", "-defrag-threshold", "0.9")
			in.namespaces = "cnt"
			m := newModel()
			p := in.mustStart("")
			if err := diiWorkload(m, p.client(), "k", 41, 0, 300); err != nil {
				t.Fatal(err)
			}
			p.stop(t)

			p = in.mustStart(fmt.Sprintf("%s=kill@%d", storage.FailDefragMid, hit), "-defrag-interval", "20ms")
			if err := diiWorkload(m, p.client(), "k", 41, 300, 100000); err == nil {
				t.Fatalf("the server never reached %s in 100000 writes", storage.FailDefragMid)
			}
			p.waitKilledChecked(t, in)

			p = in.mustStart("")
			p.expectKilledMidDefrag(t)
			m.check(t, p.client())
			if err := diiWorkload(m, p.client(), "k", 41, 0, 200); err != nil {
				t.Fatal(err)
			}
			defragPass(t, p.client(), "cnt")
			m.check(t, p.client())
			in.restartChecked(t, p, m, "warm", "").stop(t)
		})
	}
}
