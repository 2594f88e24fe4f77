package arena_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/layout"
)

// Keys: every SysV key a test uses is MakeKey(ClassTest, instance) with
//
//	instance = pidBits (5 bits, from this process's pid) << 7 | slot (7 bits)
//
// where slot starts at a hash of the test name and is probed until no
// segment exists at the key or any of its stages. TestMain checks at the
// end that no segment is left in this process's partition, and that no
// file named with this process's file prefix is left in /dev/shm.
const (
	slotBits = 7
	pidMask  = 1<<(12-slotBits) - 1
	slotMask = 1<<slotBits - 1
)

func pidBits() uint16 {
	h := fnv.New32a()
	fmt.Fprint(h, os.Getpid())
	return uint16(h.Sum32()) & pidMask
}

// shmFilePrefix is the base-name prefix of this process's /dev/shm files.
func shmFilePrefix() string { return fmt.Sprintf("%sarenatest-%d-", arena.FilePrefix, os.Getpid()) }

func TestMain(m *testing.M) {
	harness.Dispatch(workloads())
	before, err := partitionSegments()
	if err != nil {
		fmt.Fprintln(os.Stderr, "arena tests:", err)
		os.Exit(2)
	}
	code := m.Run()
	after, err := partitionSegments()
	if err != nil {
		fmt.Fprintln(os.Stderr, "arena tests:", err)
		os.Exit(2)
	}
	for k, id := range after {
		if _, ok := before[k]; !ok {
			fmt.Fprintf(os.Stderr, "arena tests: SysV segment left behind: key %s shmid %d\n", k, id)
			code = 1
		}
	}
	left, _ := filepath.Glob(filepath.Join(arena.DefaultDir, shmFilePrefix()+"*"))
	for _, f := range left {
		fmt.Fprintf(os.Stderr, "arena tests: file left behind: %s\n", f)
		code = 1
	}
	os.Exit(code)
}

// partitionSegments returns the SysV segments whose keys lie in this
// process's key partition, from /proc/sysvipc/shm.
func partitionSegments() (map[arena.Key]int, error) {
	f, err := os.Open("/proc/sysvipc/shm")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[arena.Key]int{}
	lo := arena.MakeKey(arena.ClassTest, pidBits()<<slotBits)
	hi := arena.MakeKey(arena.ClassTest, pidBits()<<slotBits|slotMask) | 0xf
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		k, err1 := strconv.ParseInt(fs[0], 10, 64)
		id, err2 := strconv.Atoi(fs[1])
		if err1 != nil || err2 != nil {
			continue
		}
		if key := arena.Key(uint32(k)); key >= lo && key <= hi {
			out[key] = id
		}
	}
	return out, sc.Err()
}

// keyInUse reports whether a SysV segment exists at k or any of its stages.
func keyInUse(k arena.Key) bool {
	for s := range arena.MaxStages {
		if _, err := unix.SysvShmGet(int(k.WithStage(s)), 0, 0); !errors.Is(err, unix.ENOENT) {
			return true
		}
	}
	return false
}

// rmKey removes the segments at k and its stages with IPC_RMID, whatever
// they hold.
func rmKey(k arena.Key) {
	for s := range arena.MaxStages {
		if id, err := unix.SysvShmGet(int(k.WithStage(s)), 0, 0); err == nil {
			_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
	}
	arena.SweepLockFiles()
}

// testKeys returns n distinct free keys for t (stage 0), each removed with
// all its stages when t ends.
func testKeys(t testing.TB, n int) []arena.Key {
	t.Helper()
	h := fnv.New32a()
	fmt.Fprint(h, t.Name())
	start := h.Sum32()
	var keys []arena.Key
	for i := uint32(0); i <= slotMask && len(keys) < n; i++ {
		k := arena.MakeKey(arena.ClassTest, pidBits()<<slotBits|uint16((start+i)&slotMask))
		if keyInUse(k) {
			continue
		}
		keys = append(keys, k)
		t.Cleanup(func() { rmKey(k) })
	}
	if len(keys) < n {
		t.Fatalf("no %d free keys in this process's partition", n)
	}
	return keys
}

func testKey(t testing.TB) arena.Key { return testKeys(t, 1)[0] }

// shmPath returns a /dev/shm path for t, removed (with its stage files)
// when t ends.
func shmPath(t testing.TB, label string) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	p := filepath.Join(arena.DefaultDir, shmFilePrefix()+name+"-"+label)
	rm := func() {
		os.Remove(p)
		for s := 1; s < arena.MaxStages; s++ {
			os.Remove(fmt.Sprintf("%s.s%d", p, s))
		}
	}
	rm()
	t.Cleanup(rm)
	return p
}

// tmpPath returns a path in t's temporary directory (removed by testing).
func tmpPath(t testing.TB, label string) string {
	return filepath.Join(t.TempDir(), "seg-"+label)
}

// backend is one place segments can live, for tests run on all of them.
type backend struct {
	name string
	// locs returns n distinct fresh locations for t, cleaned up when t
	// ends.
	locs func(t testing.TB, n int) []arena.Location
}

func (b backend) loc(t testing.TB) arena.Location { return b.locs(t, 1)[0] }

func backends() []backend {
	return []backend{
		{"sysv", func(t testing.TB, n int) []arena.Location {
			var ls []arena.Location
			for _, k := range testKeys(t, n) {
				ls = append(ls, arena.SysV(k))
			}
			return ls
		}},
		{"tmpfile", func(t testing.TB, n int) []arena.Location {
			var ls []arena.Location
			for i := range n {
				ls = append(ls, arena.File(tmpPath(t, strconv.Itoa(i))))
			}
			return ls
		}},
		{"devshm", func(t testing.TB, n int) []arena.Location {
			var ls []arena.Location
			for i := range n {
				ls = append(ls, arena.File(shmPath(t, strconv.Itoa(i))))
			}
			return ls
		}},
		{"heap", func(t testing.TB, n int) []arena.Location {
			h := arena.NewHeapStore() // garbage collected with the test
			var ls []arena.Location
			for i := range n {
				ls = append(ls, h.At("seg-"+strconv.Itoa(i)))
			}
			return ls
		}},
	}
}

// locArg is a location passed to worker processes.
type locArg struct {
	Kind string // "sysv" or "file"
	Key  uint32
	Path string
}

func sysvArg(k arena.Key) locArg { return locArg{Kind: "sysv", Key: uint32(k)} }
func fileArg(p string) locArg    { return locArg{Kind: "file", Path: p} }

func (l locArg) loc() arena.Location {
	if l.Kind == "sysv" {
		return arena.SysV(arena.Key(l.Key))
	}
	return arena.File(l.Path)
}

// testSpec is the spec of the test segments: a config field and a data
// section whose word 0 the Init callback sets to the initializer's pid.
func testSpec(maxNodes uint64) layout.Spec {
	return layout.Spec{Kind: layout.KindTest,
		Fields:   []layout.Field{{Name: "max_nodes", Value: maxNodes}, {Name: "version", Value: 3}},
		Sections: []layout.SectionSpec{{Name: "data", Size: 4096}, {Name: "more", Size: 100}}}
}

// markInit is an Init callback: data word 0 = pid, word 1 = a marker.
func markInit(ran *bool) func(*arena.Segment) error {
	return func(s *arena.Segment) error {
		*ran = true
		off, _, err := s.Section("data")
		if err != nil {
			return err
		}
		s.Store64(off, uint64(os.Getpid()))
		s.Store64(off+8, 0xfeedface)
		return nil
	}
}

func dataWord(t testing.TB, s *arena.Segment, i int) uint64 {
	t.Helper()
	off, _, err := s.Section("data")
	if err != nil {
		t.Fatal(err)
	}
	return s.Load64(off + arena.Offset(8*i))
}

// recorder is a slog.Handler that keeps the records, to assert which path
// the initialization protocol took.
type recorder struct {
	mu   sync.Mutex
	recs []string // "LEVEL message key=value ..."
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, b.String())
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) records() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.recs...)
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// ctxT returns a context bounded well within the test timeout.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startGroup starts a harness group and closes it when t ends.
func startGroup(t testing.TB, spec harness.Spec) *harness.Group {
	t.Helper()
	g, err := harness.Start(ctxT(t), spec)
	if err != nil {
		t.Fatalf("harness.Start(%s): %v", spec.Workload, err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// asArenaError asserts err is an *arena.Error wrapping want.
func asArenaError(t testing.TB, err, want error) *arena.Error {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	var ae *arena.Error
	if !errors.As(err, &ae) {
		t.Fatalf("err %v (%T) is not an *arena.Error", err, err)
	}
	return ae
}
