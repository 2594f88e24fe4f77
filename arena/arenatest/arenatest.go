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
	h := fnv.New32a()
	for i := range 1000 {
		fmt.Fprintf(h, "%s/%d/%d/%d", t.Name(), os.Getpid(), time.Now().UnixNano(), i)
		key := arena.MakeKey(arena.ClassTest, uint16(h.Sum32()&0xfff))
		loc := arena.SysV(key)
		if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
			continue
		}
		t.Cleanup(func() {
			err := arena.Remove(loc, arena.RemoveOptions{Force: true})
			if err != nil && !errors.Is(err, arena.ErrNotFound) {
				t.Errorf("remove %s: %v", loc, err)
			}
			if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
				t.Errorf("segment %s left behind: %v", loc, err)
			}
			// Lock files of segments a test removed by IPC_RMID directly.
			arena.SweepLockFiles()
		})
		return key
	}
	t.Fatal("arenatest: no free SysV test key")
	return 0
}
