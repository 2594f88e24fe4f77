package bench

import (
	"context"
	"os"
	"testing"
)

// TestBackupBenchSmall runs BackupBench on an 8 MiB arena: every figure
// is measured, with its baseline, and nothing is left in /dev/shm.
func TestBackupBenchSmall(t *testing.T) {
	before, _ := os.ReadDir("/dev/shm")
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
	after, _ := os.ReadDir("/dev/shm")
	if len(after) > len(before) {
		t.Errorf("/dev/shm: %d entries before, %d after", len(before), len(after))
	}
}
