package bench

import (
	"context"
	"fmt"
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
	if len(rs) != 4 {
		t.Fatalf("%d results, want 4", len(rs))
	}
	for _, r := range rs {
		if r.Bench != BenchTakeover || r.Unit != "ms" || r.BaselineValue != 30e3 {
			t.Errorf("unexpected result %v", r)
		}
	}
	// The first tend of a new owner comes after the lease was taken.
	if rs[2].Value < rs[0].Value {
		t.Errorf("first tend p50 %v ms before the takeover p50 %v ms", rs[2].Value, rs[0].Value)
	}
}
