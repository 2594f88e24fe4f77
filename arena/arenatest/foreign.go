package arenatest

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
)

// ForeignPrefix is the top byte of the keys ForeignSysV uses: neither
// shmkit's (0x53) nor in a range Aerospike uses.
const ForeignPrefix = 0x54

// ForeignSysV creates a raw SysV segment of size bytes with mode 0600 that
// is not shmkit's (no header, a key of prefix ForeignPrefix), as another
// program on the host would, for tests of tools that must recognize and
// spare such segments. It returns the key and the shmid; the segment is
// removed (IPC_RMID) when the test ends.
func ForeignSysV(t testing.TB, size int) (arena.Key, int) {
	t.Helper()
	h := fnv.New32a()
	for i := range 1000 {
		fmt.Fprintf(h, "%s/%d/%d/%d", t.Name(), os.Getpid(), time.Now().UnixNano(), i)
		k := arena.Key(ForeignPrefix<<24 | h.Sum32()&0xffffff)
		id, err := unix.SysvShmGet(int(k), size, unix.IPC_CREAT|unix.IPC_EXCL|0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			t.Fatalf("arenatest: create a foreign SysV segment: %v", err)
		}
		t.Cleanup(func() {
			if _, err := unix.SysvShmCtl(id, unix.IPC_RMID, nil); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EIDRM) {
				t.Errorf("remove foreign segment %s: %v", k, err)
			}
		})
		return k, id
	}
	t.Fatal("arenatest: no free foreign SysV key")
	return 0, 0
}
