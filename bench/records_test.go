package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRecordsBenchTiny(t *testing.T) {
	before := ourSegments(t)
	rs, err := RecordsBench(context.Background(), RecordsConfig{Procs: []int{2, 1}, Keys: 50, Duration: 200 * time.Millisecond, TendInterval: 50 * time.Millisecond, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rs)
	checkNoLeak(t, before)
	for _, p := range []int{1, 2} {
		for _, bench := range []string{BenchRecordsGet, BenchRecordsPut} {
			for _, what := range []string{"ops/s", "p50", "p99", "allocs/op", "client CPU/op"} {
				m := ProcsMetric(p, KindRecordClient) + ", " + what
				got := find(rs, bench, m)
				if len(got) != 1 || got[0].Value <= 0 || got[0].BaselineValue <= 0 || got[0].BaselineName != ProcsMetric(p, KindOfficialClient)+", "+what {
					t.Errorf("%s %s: %v", bench, m, got)
				} else if !strings.Contains(got[0].Detail, "errors 0 (official 0)") {
					t.Errorf("%s %s: commands failed: %s", bench, m, got[0].Detail)
				}
			}
		}
		info := find(rs, BenchRecordsInfo, ProcsMetric(p, KindRecordClient))
		if len(info) != 1 || info[0].Value <= 0 || info[0].BaselineValue <= 0 {
			t.Errorf("P=%d info requests: %v", p, info)
		}
	}
}

func TestPreforkBenchTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the prefork example")
	}
	before := ourSegments(t)
	rs, err := PreforkBench(context.Background(), PreforkConfig{Workers: 2, Clients: 4, Duration: 200 * time.Millisecond, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rs)
	checkNoLeak(t, before)
	if len(rs) != 6 {
		t.Fatalf("%d results, want 6", len(rs))
	}
	for _, r := range rs {
		if r.Value <= 0 || r.BaselineValue <= 0 || !strings.Contains(r.Detail, "errors 0 (baseline 0)") {
			t.Errorf("%v: %s", r, r.Detail)
		}
	}
}
