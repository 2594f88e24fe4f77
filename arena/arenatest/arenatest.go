// Package arenatest helps tests that use real shared memory: it hands out
// unused SysV keys of the test class and removes their segments when the
// test ends, so that a test suite leaves nothing behind.
package arenatest

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
)

// SysVKey returns a key of class arena.ClassTest that no segment uses now,
// derived from the test's name, the pid and the time. When the test ends,
// the segment at the key (if any) is removed, even if still attached, and
// the test fails if it could not be.
func SysVKey(t testing.TB) arena.Key {
	t.Helper()
	return SysVKeySet(t, 0xfff, 0)
}

// singleHalf is the instance bit that separates single keys (set) from
// key sets (clear). A set's offsets must stay within the instance bits its
// mask leaves clear, below this bit.
const singleHalf = 0x800

// SysVKeySet returns a base key of class arena.ClassTest whose instance
// bits outside instanceMask are zero, such that no segment uses base+off
// for any of offsets (a set of keys a test derives from one base: an
// index's blocks, several namespaces, pool stages). When the test ends,
// every segment at those keys is removed, even if still attached, the
// liveness lock files of removed segments are swept, and the test fails if
// a segment is left behind.
func SysVKeySet(t testing.TB, instanceMask uint16, offsets ...arena.Key) arena.Key {
	t.Helper()
	if len(offsets) == 0 {
		offsets = []arena.Key{0}
	}
	h := fnv.New32a()
	for i := range 1000 {
		fmt.Fprintf(h, "%s/%d/%d/%d", t.Name(), os.Getpid(), time.Now().UnixNano(), i)
		inst := uint16(h.Sum32()) & instanceMask & 0xfff
		// Single keys and key sets come from separate halves of the
		// class: a set is checked free when it is chosen, but its test
		// creates most of its keys later (an index's stages), and a
		// single key chosen meanwhile inside its range would be removed
		// by the set's cleanup under the test that owns it.
		if len(offsets) == 1 && offsets[0] == 0 {
			inst |= singleHalf
		} else {
			inst &^= singleHalf
		}
		base := arena.MakeKey(arena.ClassTest, inst)
		locs := make([]arena.Location, len(offsets))
		free := true
		for j, off := range offsets {
			locs[j] = arena.SysV(base + off)
			if _, err := arena.StatOf(locs[j]); !errors.Is(err, arena.ErrNotFound) {
				free = false
				break
			}
		}
		if !free {
			continue
		}
		t.Cleanup(func() {
			for _, loc := range locs {
				err := arena.Remove(loc, arena.RemoveOptions{Force: true})
				if err != nil && !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("remove %s: %v", loc, err)
				}
				if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("segment %s left behind: %v", loc, err)
				}
			}
			// Lock files of segments a test removed by IPC_RMID directly.
			arena.SweepLockFiles()
		})
		return base
	}
	t.Fatal("arenatest: no free set of SysV test keys")
	return 0
}
