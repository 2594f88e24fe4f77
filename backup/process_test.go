package backup

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/bench/harness"
	"github.com/shmkit/shmkit/index"
)

func TestMain(m *testing.M) {
	harness.Dispatch(harness.Registry{
		"backup":  backupWorkload,
		"restore": restoreWorkload,
	})
	os.Exit(m.Run())
}

// pArgs configure the worker processes.
type pArgs struct {
	Base        uint32 // SysV base of the index
	Dir         string
	Compression Compression
}

func (a pArgs) cfg() index.Config { return indexConfig(index.SysVAt(arena.Key(a.Base))) }

func backupWorkload(ctx context.Context, w *harness.Worker) (any, error) {
	var a pArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	_, err := Backup(ctx, Source{Indexes: []index.Config{a.cfg()}}, a.Dir,
		Options{Compression: a.Compression, ChunkSize: MinChunkSize, Failpoints: w.Failpoints, Logger: quiet()})
	return nil, err
}

func restoreWorkload(ctx context.Context, w *harness.Worker) (any, error) {
	var a pArgs
	if err := w.DecodeArgs(&a); err != nil {
		return nil, err
	}
	_, err := Restore(ctx, a.Dir, Options{Failpoints: w.Failpoints, Logger: quiet()})
	return nil, err
}

// savedIndex makes an index of n records, backs it up (64 KiB chunks)
// and removes its segments: the state before a restore.
func savedIndex(t *testing.T, n int) (arena.Key, index.Config, string) {
	t.Helper()
	base := testBase(t)
	cfg := indexConfig(index.SysVAt(base))
	makeIndex(t, cfg, n)
	dir := dirOf(t)
	if _, err := Backup(ctx, Source{Indexes: []index.Config{cfg}}, dir, Options{ChunkSize: MinChunkSize}); err != nil {
		t.Fatal(err)
	}
	blocks, _ := index.SavedBlocks(cfg)
	removeAll(t, blocks...)
	return base, cfg, dir
}

// runKilled runs workload in a process armed with fp=kill and waits until
// it has reached fp and died.
func runKilled(t *testing.T, workload, fp string, a pArgs) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	g, err := harness.Start(c, harness.Spec{Workload: workload, N: 1, Args: a, Failpoints: map[int]string{0: fp + "=kill"}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	name, err := g.WaitFailpoint(c, 0)
	if err != nil || name != fp {
		t.Fatalf("failpoint %q reached: %q %v", fp, name, err)
	}
	res, _ := g.Wait()
	if res[0].ExitCode != -1 {
		t.Fatalf("worker was not killed: %+v", res[0])
	}
}

// TestBackupKilled: a backup killed at each failpoint leaves nothing that
// Verify or Restore accepts, and the index still starts warm (the dead
// backup's writer lease is taken over).
func TestBackupKilled(t *testing.T) {
	for _, fp := range []string{FailBackupChunk, FailBackupSegment, FailBackupManifest} {
		t.Run(fp, func(t *testing.T) {
			base := testBase(t)
			cfg := indexConfig(index.SysVAt(base))
			makeIndex(t, cfg, 700)
			parent := t.TempDir()
			dir := filepath.Join(parent, "bk")
			runKilled(t, "backup", fp, pArgs{Base: uint32(base), Dir: dir, Compression: Zstd})
			ents, _ := os.ReadDir(parent)
			if len(ents) == 0 {
				t.Fatalf("the killed backup left nothing: the failpoint is too early to test anything")
			}
			for _, e := range append(ents, nil) {
				d := dir
				if e != nil {
					d = filepath.Join(parent, e.Name())
				}
				if _, err := Verify(ctx, d, Options{}); err == nil {
					t.Errorf("Verify accepts %s left by a backup killed at %s", d, fp)
				}
				if _, err := Restore(ctx, d, Options{Force: true}); err == nil {
					t.Errorf("Restore accepts %s left by a backup killed at %s", d, fp)
				}
			}
			checkWarm(t, cfg, 700)
			// And a new backup succeeds despite the debris.
			if _, err := Backup(ctx, Source{Indexes: []index.Config{cfg}}, dir, Options{}); err != nil {
				t.Fatalf("backup after the killed one: %v", err)
			}
		})
	}
}

// TestRestoreKilled: a restore killed at each failpoint leaves no index
// that would start warm.
func TestRestoreKilled(t *testing.T) {
	for _, fp := range []string{FailRestoreClaimed, FailRestoreSegment, FailRestoreMain} {
		t.Run(fp, func(t *testing.T) {
			base, cfg, dir := savedIndex(t, 700)
			runKilled(t, "restore", fp, pArgs{Base: uint32(base), Dir: dir})
			main, _ := index.BlockLocation(cfg, 0)
			if _, err := arena.StatOf(main); err != nil {
				t.Fatalf("the killed restore left no main segment: %v", err)
			}
			if mode, reason := startMode(t, cfg); mode != index.Cold {
				t.Errorf("index after a restore killed at %s starts %s (%s), want cold", fp, mode, reason)
			}
		})
	}
	// Negative control: the same check on a completed restore sees warm.
	t.Run("completed", func(t *testing.T) {
		base, cfg, dir := savedIndex(t, 700)
		c, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		g, err := harness.Start(c, harness.Spec{Workload: "restore", N: 1, Args: pArgs{Base: uint32(base), Dir: dir}})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if _, err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		if mode, reason := startMode(t, cfg); mode != index.Warm {
			t.Errorf("after a completed restore: %s (%s), want warm", mode, reason)
		}
	})
}

// TestWriterWaitsForRestore: a writer that starts while a restore is
// under way (stopped at its last failpoint) does not get the index; once
// the restore finishes the index starts warm.
func TestWriterWaitsForRestore(t *testing.T) {
	base, cfg, dir := savedIndex(t, 500)
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	g, err := harness.Start(c, harness.Spec{Workload: "restore", N: 1, Args: pArgs{Base: uint32(base), Dir: dir},
		Failpoints: map[int]string{0: FailRestoreMain + "=stop"}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if name, err := g.WaitFailpoint(c, 0); err != nil || name != FailRestoreMain {
		t.Fatalf("failpoint: %q %v", name, err)
	}
	if err := g.WaitStopped(c, 0); err != nil {
		t.Fatal(err)
	}
	oc, ocancel := context.WithTimeout(ctx, 300*time.Millisecond)
	wcfg := cfg
	wcfg.Storage = testStorage
	ix, info, err := index.Open(oc, wcfg, nil)
	ocancel()
	if err == nil {
		ix.Close()
		t.Fatalf("a writer opened the index during the restore (%s %s)", info.Mode, info.Reason)
	}
	if !errors.Is(err, arena.ErrTimeout) && !errors.Is(err, index.ErrWriterRunning) && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("writer during the restore: %v, want it to wait or refuse", err)
	}
	if err := g.Cont(0); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	checkWarm(t, cfg, 500)
}

// TestWriterRefusedDuringBackup: a writer that starts while a backup
// holds the index (stopped at a failpoint) is refused; the backup then
// completes and verifies.
func TestWriterRefusedDuringBackup(t *testing.T) {
	base := testBase(t)
	cfg := indexConfig(index.SysVAt(base))
	makeIndex(t, cfg, 500)
	dir := dirOf(t)
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	g, err := harness.Start(c, harness.Spec{Workload: "backup", N: 1, Args: pArgs{Base: uint32(base), Dir: dir},
		Failpoints: map[int]string{0: FailBackupSegment + "=stop@1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if name, err := g.WaitFailpoint(c, 0); err != nil || name != FailBackupSegment {
		t.Fatalf("failpoint: %q %v", name, err)
	}
	if err := g.WaitStopped(c, 0); err != nil {
		t.Fatal(err)
	}
	wcfg := cfg
	wcfg.Storage = testStorage
	ix, info, err := index.Open(ctx, wcfg, nil)
	if err == nil {
		ix.Close()
		t.Fatalf("a writer opened the index during its backup (%s %s)", info.Mode, info.Reason)
	}
	if !errors.Is(err, index.ErrWriterRunning) {
		t.Errorf("writer during the backup: %v, want ErrWriterRunning", err)
	}
	if err := g.Cont(0); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	checkWarm(t, cfg, 500)
}

// TestKilledAtRandomPoints: backups and restores killed at random moments.
// A backup leaves nothing Verify accepts unless it finished; a restore
// leaves an index that starts cold, or warm with every record (killed
// after its clean-shutdown state, or finished).
func TestKilledAtRandomPoints(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	const n = 2000 // 8 stages of 256 entries
	for i := range 6 {
		base, cfg, dir := savedIndex(t, n)
		c, cancel := context.WithTimeout(ctx, time.Minute)
		// A restore killed at random.
		g, err := harness.Start(c, harness.Spec{Workload: "restore", N: 1, Args: pArgs{Base: uint32(base), Dir: dir}})
		if err != nil {
			t.Fatal(err)
		}
		d, _, _ := g.KillRandom(0, 30*time.Millisecond, rng)
		res, _ := g.Wait()
		g.Close()
		// Killed before its clean-shutdown state: cold. Killed after it
		// (while releasing the lease or exiting), or finished: warm, and
		// then complete.
		mode, reason := startMode(t, cfg)
		switch {
		case mode == index.Warm:
			checkWarm(t, cfg, n)
		case res[0].ExitCode == 0:
			t.Errorf("round %d: restore finished but the start is %s (%s)", i, mode, reason)
		}
		t.Logf("round %d: restore killed at %v (exit %d): %s", i, d, res[0].ExitCode, mode)
		// A backup killed at random, of a fresh clean index.
		for b := range index.MaxStages {
			l, _ := index.BlockLocation(cfg, b)
			removeAll(t, l)
		}
		makeIndex(t, cfg, n)
		bdir := dirOf(t)
		g, err = harness.Start(c, harness.Spec{Workload: "backup", N: 1, Args: pArgs{Base: uint32(base), Dir: bdir, Compression: Zstd}})
		if err != nil {
			t.Fatal(err)
		}
		d, _, _ = g.KillRandom(0, 30*time.Millisecond, rng)
		res, _ = g.Wait()
		g.Close()
		cancel()
		ents, _ := os.ReadDir(filepath.Dir(bdir))
		for _, e := range ents {
			p := filepath.Join(filepath.Dir(bdir), e.Name())
			_, err := Verify(ctx, p, Options{})
			// Only the final directory can be accepted, and it exists only
			// once complete (the kill may land after the rename, while
			// the process exits).
			if err == nil && p != bdir {
				t.Errorf("round %d: backup killed at %v left %s, which Verify accepts", i, d, p)
			}
			if p == bdir && res[0].ExitCode == 0 && err != nil {
				t.Errorf("round %d: finished backup refused: %v", i, err)
			}
		}
	}
}
