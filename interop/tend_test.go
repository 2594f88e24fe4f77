package interop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

const (
	// tendInterval matches the official client's TendInterval in newClient.
	tendInterval      = 20 * time.Millisecond
	takeoverThreshold = 2 * time.Second
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{"follower": follower})
	os.Exit(m.Run())
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testKey returns an unused SysV test key; the segment is removed (and
// checked gone) at cleanup.
func testKey(t testing.TB) arena.Key { return arenatest.SysVKey(t) }

func tendConfig(key arena.Key, seeds []string, log *slog.Logger) tend.Config {
	return tend.Config{Seeds: seeds, UseShm: true, ShmKey: key,
		TendInterval: tendInterval, TakeoverThreshold: takeoverThreshold, Logger: log}
}

// openTend opens shmkit's cluster view on key, seeded like the official
// client with one node only. Being first on the key, it tends.
func openTend(t *testing.T, key arena.Key, seed string) *tend.Cluster {
	t.Helper()
	c, err := tend.Open(context.Background(), tendConfig(key, []string{seed}, quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if s := c.Stats(); s.Role != tend.RoleOwner {
		t.Fatalf("shmkit tend role %s, want owner of a fresh key", s.Role)
	}
	return c
}

// tendReplicas returns the node names c routes replicas 0..n-1 of a
// partition to ("" for none).
func tendReplicas(c *tend.Cluster, ns string, pid uint32, n int) ([]string, error) {
	d, err := partmap.DigestForPartition(pid)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for r := range out {
		node, err := c.Replica(ns, d, r)
		switch {
		case errors.Is(err, partmap.ErrNotFound) || errors.Is(err, tend.ErrNamespace):
		case err != nil:
			return nil, err
		default:
			out[r] = node.Name
		}
	}
	return out, nil
}

// tableHash summarizes a full replica table: for every partition, the
// owners of replicas 0..partmap.StoredReplicas-1.
func tableHash(owners func(pid uint32) ([]string, error)) (string, error) {
	h := sha256.New()
	for pid := range uint32(partmap.Partitions) {
		o, err := owners(pid)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%q;", o)
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// simHash is tableHash of the sim's expected table for ns.
func simHash(sim *tendtest.Cluster, ns string) (string, error) {
	return tableHash(func(pid uint32) ([]string, error) {
		want, err := sim.Replicas(ns, pid)
		if err != nil {
			return nil, err
		}
		out := make([]string, partmap.StoredReplicas)
		copy(out, want)
		return out, nil
	})
}

// followerArgs configures the follower process.
type followerArgs struct {
	Key        uint32
	Seeds      []string
	Namespaces []string
	Path       string
}

// followerStatus is what the follower process reports, in a file, every
// few milliseconds.
type followerStatus struct {
	Pid      int
	Role     tend.Role
	OwnerPID int
	Hash     map[string]string
	Err      string
	Closed   bool
}

// follower is a second tend.Cluster, in its own process, on the test's
// key: it reports its role and a hash of its replica tables until it is
// told to stop.
func follower(ctx context.Context, w *harness.Worker) (any, error) {
	var a followerArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	c, err := tend.Open(context.Background(), tendConfig(arena.Key(a.Key), a.Seeds, w.Log))
	if err != nil {
		return nil, err
	}
	if err := w.Barrier(ctx); err != nil {
		c.Close()
		return nil, err
	}
	st := followerStatus{Pid: os.Getpid()}
	for {
		s := c.Stats()
		st.Role, st.OwnerPID, st.Hash, st.Err = s.Role, s.OwnerPID, map[string]string{}, ""
		for _, ns := range a.Namespaces {
			h, err := tableHash(func(pid uint32) ([]string, error) {
				return tendReplicas(c, ns, pid, partmap.StoredReplicas)
			})
			if err != nil {
				st.Err = err.Error()
			}
			st.Hash[ns] = h
		}
		if ctx.Err() != nil {
			err := c.Close()
			st.Closed = err == nil
			writeStatus(a.Path, st)
			return st, err
		}
		writeStatus(a.Path, st)
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func writeStatus(path string, st followerStatus) {
	b, _ := json.Marshal(st)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, path)
	}
}

// followerProc is the follower process, seen from the test.
type followerProc struct {
	g    *harness.Group
	path string
}

// startFollower starts the follower process on key.
func startFollower(t *testing.T, key arena.Key, sim *tendtest.Cluster) *followerProc {
	t.Helper()
	var nss []string
	for _, spec := range sim.Namespaces() {
		nss = append(nss, spec.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	var stderr io.Writer
	if testing.Verbose() {
		stderr = os.Stderr
	}
	path := filepath.Join(t.TempDir(), "follower.json")
	g, err := harness.Start(ctx, harness.Spec{Workload: "follower", N: 1, Stderr: stderr,
		Args: followerArgs{Key: uint32(key), Seeds: sim.Seeds()[:1], Namespaces: nss, Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	return &followerProc{g: g, path: path}
}

// status reads the follower's last report.
func (f *followerProc) status() (followerStatus, error) {
	var st followerStatus
	b, err := os.ReadFile(f.path)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// disagreement describes how the follower's view differs from the sim's
// ("" when it agrees): it must be a follower of this process, and its
// replica tables must equal the sim's expected ones.
func (f *followerProc) disagreement(sim *tendtest.Cluster) string {
	st, err := f.status()
	switch {
	case err != nil:
		return "follower: no status yet: " + err.Error()
	case st.Err != "":
		return "follower: " + st.Err
	case st.Role != tend.RoleFollower || st.OwnerPID != os.Getpid():
		return fmt.Sprintf("follower process: role %s, owner pid %d; want follower of pid %d", st.Role, st.OwnerPID, os.Getpid())
	}
	for _, spec := range sim.Namespaces() {
		want, err := simHash(sim, spec.Name)
		if err != nil {
			return err.Error()
		}
		if st.Hash[spec.Name] != want {
			return fmt.Sprintf("follower process: %s table hash %s, sim %s", spec.Name, st.Hash[spec.Name], want)
		}
	}
	return ""
}

// stop stops the follower and checks that it closed its view cleanly.
func (f *followerProc) stop(t *testing.T) {
	t.Helper()
	if err := f.g.Signal(0, os.Interrupt); err != nil {
		t.Fatal(err)
	}
	res, err := f.g.Wait()
	if err != nil {
		t.Fatalf("follower: %v", err)
	}
	var st followerStatus
	if err := res[0].Decode(&st); err != nil {
		t.Fatal(err)
	}
	if !st.Closed || st.Role != tend.RoleFollower {
		t.Errorf("follower ended as %s, closed cleanly: %v", st.Role, st.Closed)
	}
}
