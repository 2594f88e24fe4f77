package index

import (
	"context"
	"errors"
	"testing"

	"github.com/shmkit/shmkit/arena"
)

// TestInspectAndCheckAt finds an index by the location of its main
// segment alone (SysV and file), summarizes and checks it, then finds a
// planted partition count that disagrees with the entries.
func TestInspectAndCheckAt(t *testing.T) {
	for _, b := range []backend{bSysV, bDir} {
		t.Run(string(b), func(t *testing.T) {
			if raceEnabled {
				t.Skip("real segments: not under the race detector")
			}
			ctx := context.Background()
			cfg := testConfig(t, b)
			ix, _ := mustOpen(t, cfg, nil)
			defer ix.Close()
			for k := range uint64(600) { // 3 stages of 256
				if err := ix.Put(recordOf(k, 1, false)); err != nil {
					t.Fatal(err)
				}
			}
			loc := cfg.Store.block(&cfg, 0)
			s, err := InspectAt(ctx, loc)
			if err != nil {
				t.Fatal(err)
			}
			if s.Count != 600 || s.Live != 600 || s.Stages != 3 || s.HandedOut != s.TableLines+s.Free || s.TableLines < 600 || s.Config.Instance != 3 ||
				s.Config.Namespace != 5 || s.Config.Sprigs != 1 || s.StageEntries != 256 || s.Partitions == 0 || s.MaxPartition == 0 {
				t.Errorf("summary %+v", s)
			}
			if err := CheckAt(ctx, loc); err != nil {
				t.Fatalf("CheckAt of an undamaged index: %v", err)
			}
			stages, err := StageLocations(s.Config)
			if err != nil || len(stages) != 2 || stages[0].String() != cfg.Store.block(&cfg, 1).String() || stages[1].String() != cfg.Store.block(&cfg, 2).String() {
				t.Errorf("StageLocations = %v, %v; want blocks 1 and 2", stages, err)
			}
			if _, err := ConfigAt(cfg.Store.block(&cfg, 1)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("ConfigAt of stage block 1 = %v", err)
			}
			seg, err := arena.Inspect(loc)
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Close()
			off, _, err := seg.Section(secParts)
			if err != nil {
				t.Fatal(err)
			}
			p := digestOf(0).Partition()
			seg.Add64(off+arena.Offset(8*(p*partWords+pCount)), 5)
			var ce *CheckError
			if err := CheckAt(ctx, loc); !errors.As(err, &ce) {
				t.Fatalf("CheckAt after damage = %v, want a *CheckError", err)
			}
		})
	}
}
