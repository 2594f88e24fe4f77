package bench

import (
	"context"
	"path/filepath"
	"testing"
)

// TestBackupBenchSmall runs BackupBench on an 8 MiB arena: every figure
// is measured, with its baseline, and its directory in /dev/shm is gone.
func TestBackupBenchSmall(t *testing.T) {
	ours := func() int { // the benchmark's own directories in /dev/shm
		m, _ := filepath.Glob("/dev/shm/shmbench-backup-*")
		return len(m)
	}
	before := ours()
	rs, err := BackupBench(context.Background(), BackupConfig{Size: 8 << 20, Rounds: 2, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 8 {
		t.Fatalf("%d results, want 8", len(rs))
	}
	for _, r := range rs {
		if r.Value <= 0 || (r.Unit == "MiB/s" && (r.BaselineValue <= 0 || r.Ratio <= 0)) {
			t.Errorf("figure without a value or baseline: %+v", r)
		}
	}
	if z := rs[len(rs)-1]; z.Value >= 100 {
		t.Errorf("zstd stored %.0f%% of a full index", z.Value)
	}
	if after := ours(); after > before {
		t.Errorf("/dev/shm: %d benchmark directories before, %d after", before, after)
	}
}
