package partmap_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{
		"stale":         staleOwnerWorkload,
		"reader":        churnReaderWorkload,
		"waiter":        waiterWorkload,
		"stalled-copy":  partmap.StalledCopyWorkload,
		"adopter":       adopterWorkload,
		"paused-writer": pausedWriterWorkload,
	})
	os.Exit(m.Run())
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// heapMap opens a map on a fresh heap segment (for -race) and returns the
// location, so that more handles can be opened on the same segment.
func heapMap(t testing.TB, cfg partmap.Config) (*partmap.Map, arena.Location) {
	t.Helper()
	hs := arena.NewHeapStore()
	loc := hs.At("partmap")
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	m, err := partmap.Open(context.Background(), loc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		if err := arena.Remove(loc, arena.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove %s: %v", loc, err)
		}
		if hs.Len() != 0 {
			t.Errorf("heap store still holds %d segments", hs.Len())
		}
	})
	return m, loc
}

// waitWaiters waits until n goroutines or processes are blocked in
// WaitChange on m's segment: until one FutexWake on the wake word wakes n
// of them at once. The waiters it wakes see no change and wait again.
func waitWaiters(t testing.TB, m *partmap.Map, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); m.Segment().FutexWake(m.WakeWord(), n) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters not blocked in WaitChange after 30 s", n)
		}
	}
}

// openMore opens another handle on loc, closed at cleanup.
func openMore(t testing.TB, loc arena.Location, cfg partmap.Config) *partmap.Map {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	m, err := partmap.Open(context.Background(), loc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// sysvLoc returns an unused SysV test key, removed at cleanup.
func sysvLoc(t testing.TB) (arena.Key, arena.Location) {
	key := arenatest.SysVKey(t)
	return key, arena.SysV(key)
}

// owner acquires the map's lease (waiting for expiry of a stale owner with
// threshold th) and returns a stamped writer.
func owner(t testing.TB, m *partmap.Map, th time.Duration) (*lease.Lease, *partmap.Writer) {
	t.Helper()
	l, err := lease.New(m.Segment(), m.LeaseOffset(), lease.Config{Threshold: th, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	w := m.Writer(l)
	if err := w.StampAll(); err != nil {
		t.Fatal(err)
	}
	return l, w
}

// info returns a node whose attributes derive from its name, so readers
// can check that a record is whole.
func info(name string, active bool) partmap.NodeInfo {
	h := uint32(0)
	for i := 0; i < len(name); i++ {
		h = h*31 + uint32(name[i])
	}
	return partmap.NodeInfo{
		Name: name,
		Addresses: []netip.AddrPort{
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(h >> 16), byte(h >> 8), byte(h)}), 3000),
			netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)}), 3000),
		},
		TLSName: "tls-" + name,
		Build:   "7.1.0." + fmt.Sprint(h%100),
		Active:  active,
	}
}

// checkNode reports whether n is whole: its attributes match its name.
func checkNode(n *partmap.Node) error {
	want := info(n.Name, n.Active)
	if !want.Addresses[0].Addr().Is4() || len(n.Addresses) != 2 || n.Addresses[0] != want.Addresses[0] ||
		n.Addresses[1] != want.Addresses[1] || n.TLSName != want.TLSName || n.Build != want.Build {
		return fmt.Errorf("node %q in slot %d has attributes of another node: %+v", n.Name, n.Slot, n.NodeInfo)
	}
	return nil
}

// isTyped reports whether err is one of the errors partmap documents.
func isTyped(err error) bool {
	for _, e := range []error{partmap.ErrCorrupt, partmap.ErrNotFound, partmap.ErrUnstable, partmap.ErrInvalid,
		partmap.ErrNoRoom, partmap.ErrInUse, partmap.ErrNotStamped, partmap.ErrExhausted, partmap.ErrPartitionOutOfRange,
		lease.ErrFenced, lease.ErrNotOwner, lease.ErrLost, context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
