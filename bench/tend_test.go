package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTendBenchTiny(t *testing.T) {
	before := ourSegments(t)
	rs, err := TendBench(context.Background(), TendConfig{Procs: []int{2, 1}, Nodes: 2,
		TendInterval: 50 * time.Millisecond, Window: 200 * time.Millisecond, Moves: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rs)
	checkNoLeak(t, before)
	for _, p := range []int{1, 2} {
		shm := find(rs, BenchTendRequests, ProcsMetric(p, KindShm))
		per := find(rs, BenchTendRequests, ProcsMetric(p, KindPerProcess))
		if len(shm) != 1 || len(per) != 1 {
			t.Fatalf("P=%d: %d and %d request results, want 1 and 1", p, len(shm), len(per))
		}
		if shm[0].Value <= 0 || per[0].Value <= 0 || shm[0].BaselineName != per[0].Metric || shm[0].Unit != "req/s" {
			t.Errorf("P=%d: %v, %v", p, shm[0], per[0])
		}
		for _, kind := range []string{KindShm, KindPerProcess} {
			for _, q := range []string{"p50", "p99"} {
				m := fmt.Sprintf("%s, %s", ProcsMetric(p, kind), q)
				got := find(rs, BenchTendPropagation, m)
				if len(got) != 1 || got[0].Unit != "ms" || got[0].Value <= 0 || got[0].BaselineValue != 55 || got[0].Detail != "2 moves" {
					t.Errorf("%s: %v", m, got)
				}
			}
		}
	}
	if _, ok := RequestsPlot(rs); !ok {
		t.Error("no requests plot from the results")
	}
}

func TestTakeoverBenchTiny(t *testing.T) {
	before := ourSegments(t)
	rs, err := TakeoverBench(context.Background(), TakeoverConfig{Trials: 2, Procs: 2, Nodes: 2, TendInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rs)
	checkNoLeak(t, before)
	if len(rs) != 8 {
		t.Fatalf("%d results, want 8", len(rs))
	}
	// A close is compared with the C client's hand-over at its next tend
	// (1 s), a kill with its 30 s threshold.
	for i, r := range rs {
		want := 1e3
		if i >= 4 {
			want = 30e3
		}
		if r.Bench != BenchTakeover || r.Unit != "ms" || r.BaselineValue != want || r.Value <= 0 ||
			strings.HasPrefix(r.Metric, "close") != (i < 4) || r.Detail == "" {
			t.Errorf("unexpected result %d: %+v", i, r)
		}
	}
	// The first tend of a new owner comes after the lease was taken.
	for _, i := range []int{0, 4} {
		if rs[i+2].Value < rs[i].Value {
			t.Errorf("%s %v ms before %s %v ms", rs[i+2].Metric, rs[i+2].Value, rs[i].Metric, rs[i].Value)
		}
	}
}
