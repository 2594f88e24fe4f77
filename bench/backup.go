package bench

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/backup"
	"github.com/shmkit/shmkit/index"
)

// BenchBackup names the figures of BackupBench.
const BenchBackup = "backup"

// BackupConfig configures BackupBench.
type BackupConfig struct {
	// Size is the index arena's size in bytes, rounded to whole stages
	// (default 4 GiB; quick mode 256 MiB).
	Size uint64
	// Rounds is how many times each operation is timed (default 3); the
	// median is reported and the range in the detail.
	Rounds int
	// Dir is where backups and the cp baseline are written (default a
	// temporary directory under os.TempDir(), removed afterwards): the
	// disk under test.
	Dir string
	// Stderr receives progress lines (nil: none).
	Stderr io.Writer
}

// BackupBench backs up, verifies and restores an index arena kept as
// files in /dev/shm (index.Dir), and in the same run copies the same
// files with cp to the same disk followed by sync of those files (the
// backup baseline) and back from that disk with its pages dropped from
// the page cache (the restore baseline). Verify and restore read backups
// whose pages were dropped (posix_fadvise DONTNEED after fsync).
// Throughputs are of segment bytes, checksums (XXH3-128) always on; the
// zstd figures are reported separately with the stored size.
func BackupBench(ctx context.Context, cfg BackupConfig) ([]Result, error) {
	if cfg.Size == 0 {
		cfg.Size = 4 << 30
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 3
	}
	logf := func(format string, args ...any) {
		if cfg.Stderr != nil {
			fmt.Fprintf(cfg.Stderr, "backup: "+format+"\n", args...)
		}
	}
	root := cfg.Dir
	if root == "" {
		d, err := os.MkdirTemp("", "shmbench-backup-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		root = d
	}
	shm, err := os.MkdirTemp("/dev/shm", "shmbench-backup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(shm)

	// Stages of Size/16 bytes (a power of two entries), filled with
	// records but for the last sixteenth: the index creates stages as it
	// needs them, so the arena is about Size (plus the sprig table).
	stage := uint64(1) << 12
	for stage*index.EntrySize*16 < cfg.Size && stage < 1<<28 {
		stage <<= 1
	}
	records := int(cfg.Size / index.EntrySize * 15 / 16)
	icfg := index.Config{Store: index.Dir(shm), StageEntries: int(stage), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	logf("building an index of %d records in stages of %d entries under %s", records, stage, shm)
	if err := buildArena(ctx, icfg, records); err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(shm, "index-*"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("bench: backup: no index files in %s (%v)", shm, err)
	}
	var total uint64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		total += uint64(fi.Size())
	}
	src := backup.Source{Indexes: []index.Config{icfg}}
	type series struct{ cpSync, cpBack, bk, verify, restore, bkZ, verifyZ, restoreZ []float64 }
	var s series
	var stored uint64
	mibps := func(d time.Duration) float64 { return float64(total) / (1 << 20) / d.Seconds() }
	for r := range cfg.Rounds {
		// Baseline: cp to the disk, then sync of the copies.
		cpDir := filepath.Join(root, fmt.Sprintf("cp-%d", r))
		if err := os.Mkdir(cpDir, 0o700); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if out, err := exec.CommandContext(ctx, "cp", append(slices.Clone(files), cpDir)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("bench: cp: %v: %s", err, out)
		}
		copies, _ := filepath.Glob(filepath.Join(cpDir, "*"))
		if out, err := exec.CommandContext(ctx, "sync", append(copies, cpDir)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("bench: sync: %v: %s", err, out)
		}
		s.cpSync = append(s.cpSync, mibps(time.Since(t0)))
		// Restore baseline: cp back from the disk, pages dropped.
		if err := dropCache(copies); err != nil {
			return nil, err
		}
		back := filepath.Join(shm, "cp-back")
		os.Mkdir(back, 0o700)
		t0 = time.Now()
		if out, err := exec.CommandContext(ctx, "cp", append(copies, back)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("bench: cp back: %v: %s", err, out)
		}
		s.cpBack = append(s.cpBack, mibps(time.Since(t0)))
		os.RemoveAll(back)
		os.RemoveAll(cpDir)

		for _, c := range []backup.Compression{backup.None, backup.Zstd} {
			dir := filepath.Join(root, fmt.Sprintf("bk-%d-%s", r, c))
			t0 = time.Now()
			res, err := backup.Backup(ctx, src, dir, backup.Options{Compression: c, Logger: icfg.Logger})
			if err != nil {
				return nil, err
			}
			bk := mibps(time.Since(t0))
			data, _ := filepath.Glob(filepath.Join(dir, "*"))
			if err := dropCache(data); err != nil {
				return nil, err
			}
			t0 = time.Now()
			if _, err := backup.Verify(ctx, dir, backup.Options{}); err != nil {
				return nil, err
			}
			vf := mibps(time.Since(t0))
			if err := dropCache(data); err != nil {
				return nil, err
			}
			// The restore replaces the index files (their pages in
			// /dev/shm are freed by the removal, not measured).
			for _, f := range files {
				if err := os.Remove(f); err != nil {
					return nil, err
				}
			}
			t0 = time.Now()
			if _, err := backup.Restore(ctx, dir, backup.Options{Logger: icfg.Logger}); err != nil {
				return nil, err
			}
			rs := mibps(time.Since(t0))
			os.RemoveAll(dir)
			if c == backup.None {
				s.bk, s.verify, s.restore = append(s.bk, bk), append(s.verify, vf), append(s.restore, rs)
			} else {
				s.bkZ, s.verifyZ, s.restoreZ = append(s.bkZ, bk), append(s.verifyZ, vf), append(s.restoreZ, rs)
				stored = res.Stored
			}
			logf("round %d %s: backup %.0f MiB/s, verify %.0f MiB/s, restore %.0f MiB/s (cp+sync %.0f, cp back %.0f)",
				r, c, bk, vf, rs, s.cpSync[r], s.cpBack[r])
		}
	}
	size := fmt.Sprintf("%s index arena (%d files, %d records)", humanSize(total), len(files), records)
	cpName, backName := "cp + sync to the same disk", "cp back from the disk, cache dropped"
	res := func(metric string, v []float64, baseName string, base []float64) Result {
		r := Result{Bench: BenchBackup, Metric: metric, Value: median(v), Unit: "MiB/s",
			Detail: fmt.Sprintf("%s; %d rounds, range %.0f–%.0f", size, len(v), slices.Min(v), slices.Max(v))}
		if base != nil {
			r = r.WithBaseline(baseName, median(base)).WithBaselineDetail(fmt.Sprintf("range %.0f–%.0f", slices.Min(base), slices.Max(base)))
		}
		return r
	}
	return []Result{
		res("backup, XXH3-128 chunks", s.bk, cpName, s.cpSync),
		res("verify, cache dropped", s.verify, backName, s.cpBack),
		res("restore, cache dropped", s.restore, backName, s.cpBack),
		res("restore vs cp+sync", s.restore, cpName, s.cpSync),
		res("backup zstd", s.bkZ, cpName, s.cpSync),
		res("verify zstd, cache dropped", s.verifyZ, backName, s.cpBack),
		res("restore zstd, cache dropped", s.restoreZ, backName, s.cpBack),
		{Bench: BenchBackup, Metric: "zstd stored size", Value: 100 * float64(stored) / float64(total), Unit: "%",
			Detail: fmt.Sprintf("%s stored as %s", humanSize(total), humanSize(stored))},
	}, nil
}

// buildArena creates the index of cfg with records records (bulk build)
// and shuts it down cleanly.
func buildArena(ctx context.Context, cfg index.Config, records int) error {
	ix, _, err := index.Open(ctx, cfg, nil)
	if err != nil {
		return err
	}
	b, err := ix.NewBuilder(index.BuildOptions{SizeHint: records})
	if err != nil {
		ix.Close()
		return err
	}
	var k [8]byte
	for i := range records {
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		if err := b.Add(uint64(i), index.Record{Digest: index.Digest(sha1.Sum(k[:])), Generation: uint16(i), LastUpdate: 1_700_000_000_000 + uint64(i),
			FileID: uint16(i >> 20), Offset: uint64(i) * 128, Size: 128}); err != nil {
			ix.Close()
			return err
		}
	}
	if _, err := b.Finish(ctx); err != nil {
		ix.Close()
		return err
	}
	return ix.CloseClean(index.StorageID{})
}

// dropCache syncs the files and drops their pages from the page cache.
func dropCache(paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		fi, _ := f.Stat()
		if fi.Mode().IsRegular() {
			f.Sync()
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				f.Close()
				return fmt.Errorf("bench: fadvise %s: %w", p, err)
			}
		}
		f.Close()
	}
	return nil
}

func humanSize(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}
