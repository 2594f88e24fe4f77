package tend_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/procid"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

const (
	interval  = 50 * time.Millisecond
	threshold = 300 * time.Millisecond
	waitLimit = 20 * time.Second
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{"member": member})
	os.Exit(m.Run())
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// memberArgs configures one worker process.
type memberArgs struct {
	Key        uint32
	Seeds      []string
	Namespaces []string
	Dir, Tag   string
	FlipPIDNS  bool
}

// status is what a worker reports, in a file, every few milliseconds.
type status struct {
	Pid          int
	Role         string
	OwnerPID     int
	Takeovers    []tend.Takeover
	Generation   uint64
	Hash         map[string]string
	Lookups      int
	LookupErrors int
	Closed       bool
}

// masterHash summarizes the master of every partition of a namespace.
func masterHash(master func(pid uint32) string) string {
	h := sha256.New()
	for pid := range uint32(partmap.Partitions) {
		fmt.Fprintf(h, "%s;", master(pid))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func viewHash(c *tend.Cluster, ns string) string {
	s, err := c.Snapshot(ns)
	if err != nil {
		return ""
	}
	return masterHash(func(pid uint32) string {
		if n := s.Node(pid, 0); n != nil {
			return n.Name
		}
		return ""
	})
}

func simHash(t testing.TB, sim *tendtest.Cluster, ns string) string {
	t.Helper()
	return masterHash(func(pid uint32) string {
		m, err := sim.Master(ns, pid)
		if err != nil {
			t.Fatal(err)
		}
		return m
	})
}

func member(ctx context.Context, w *harness.Worker) (any, error) {
	var a memberArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	cfg := tend.Config{
		Seeds: a.Seeds, UseShm: true, ShmKey: arena.Key(a.Key),
		TendInterval: interval, TakeoverThreshold: threshold,
		Logger: w.Log, Failpoints: w.Failpoints,
	}
	if a.FlipPIDNS {
		self, err := procid.Self()
		if err != nil {
			return nil, err
		}
		self.PIDNS ^= 1 // a PID namespace nobody else can see into
		cfg.Self = self
	}
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	if err := w.Barrier(ctx); err != nil {
		c.Close()
		return nil, err
	}
	st := status{Pid: os.Getpid()}
	path := filepath.Join(a.Dir, fmt.Sprintf("%s-%d.json", a.Tag, w.Index))
	d := partmap.StringKeyDigest("demo", "myTestKey")
	ready := false
	for {
		s := c.Stats()
		st.Role, st.OwnerPID, st.Takeovers, st.Generation = s.Role, s.OwnerPID, s.Takeovers, s.MapGeneration
		st.Hash = map[string]string{}
		for _, ns := range a.Namespaces {
			st.Hash[ns] = viewHash(c, ns)
		}
		_, err := c.Master(a.Namespaces[0], d)
		if err == nil {
			ready = true
		}
		if ready {
			st.Lookups++
			if err != nil {
				st.LookupErrors++
				w.Log.Error("lookup failed", "err", err)
			}
		}
		if ctx.Err() != nil {
			err := c.Close()
			st.Closed = err == nil
			writeStatus(path, st)
			return st, err
		}
		writeStatus(path, st)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func writeStatus(path string, st status) {
	b, _ := json.Marshal(st)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, path)
	}
}

func readStatus(dir, tag string, i int) (status, bool) {
	var st status
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s-%d.json", tag, i)))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, true
}

// testKey returns an unused SysV test key; the segment is removed at cleanup.
func testKey(t testing.TB) arena.Key {
	t.Helper()
	h := fnv.New32a()
	for i := range 1000 {
		fmt.Fprintf(h, "%s/%d/%d/%d", t.Name(), os.Getpid(), time.Now().UnixNano(), i)
		key := arena.MakeKey(arena.ClassTest, uint16(h.Sum32()&0xfff))
		loc := arena.SysV(key)
		if _, err := arena.StatOf(loc); errors.Is(err, arena.ErrNotFound) {
			t.Cleanup(func() {
				err := arena.Remove(loc, arena.RemoveOptions{Force: true})
				if err != nil && !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("remove %s: %v", loc, err)
				}
				if _, err := arena.StatOf(loc); !errors.Is(err, arena.ErrNotFound) {
					t.Errorf("segment %s left behind: %v", loc, err)
				}
			})
			return key
		}
	}
	t.Fatal("no free SysV test key")
	return 0
}

func newSim(t testing.TB, opts tendtest.Options) *tendtest.Cluster {
	t.Helper()
	sim, err := tendtest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startGroup(t testing.TB, n int, a memberArgs) *harness.Group {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	var stderr io.Writer
	if testing.Verbose() {
		stderr = os.Stderr
	}
	g, err := harness.Start(ctx, harness.Spec{Workload: "member", N: n, Args: a, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}
