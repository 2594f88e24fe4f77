package bench

import "testing"

func TestRecordsMetricRoundTrip(t *testing.T) {
	for _, n := range []int{100_000, 1_000_000, 10_000_000, 12345} {
		for _, kind := range []string{KindWarm, KindCold, KindWarmChecked} {
			k, got, ok := parseRecordsMetric(RecordsMetric(kind, n))
			if !ok || k != kind || got != n {
				t.Errorf("%q: parsed %q %d %v", RecordsMetric(kind, n), k, got, ok)
			}
		}
	}
	if _, _, ok := parseRecordsMetric("cold rebuild rate, 1M records"); ok {
		t.Error("a rate metric parsed as a restart time")
	}
}

func TestRestartPlot(t *testing.T) {
	rs := []Result{
		{Bench: BenchRestart, Metric: RecordsMetric(KindWarm, 1_000_000), Value: 5},
		{Bench: BenchRestart, Metric: RecordsMetric(KindWarm, 100_000), Value: 4},
		{Bench: BenchRestart, Metric: RecordsMetric(KindCold, 100_000), Value: 100},
		{Bench: BenchRestart, Metric: "cold rebuild rate, 100k records", Value: 1e6},
	}
	p, ok := RestartPlot(rs)
	if !ok || len(p.Series) != 2 {
		t.Fatalf("plot %+v %v, want 2 series", p, ok)
	}
	for _, s := range p.Series {
		if s.Name[:4] == "warm" && (len(s.X) != 2 || s.X[0] != 100_000 || s.Y[1] != 5) {
			t.Fatalf("warm series %+v", s)
		}
	}
	if _, ok := RestartPlot(nil); ok {
		t.Fatal("a plot without figures")
	}
}
