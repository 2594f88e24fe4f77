package bench

import (
	"strings"
	"testing"
)

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

// TestRestartBenchSmall runs the restart benchmark end to end on a small
// log with -sprigs: the kvstore built, loaded, started warm and cold (the
// benchmark checks each start's mode), and the figures name the setting.
func TestRestartBenchSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the kvstore")
	}
	rs, err := RestartBench(t.Context(), RestartConfig{Records: []int{2000}, Trials: 1, Sprigs: 16, FileSegments: true, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 5 {
		t.Fatalf("%d figures, want 5", len(rs))
	}
	for _, r := range rs {
		if r.Value <= 0 {
			t.Errorf("%s: %v", r.Metric, r.Value)
		}
		if (r.Metric == RecordsMetric(KindWarm, 2000) || r.Metric == RecordsMetric(KindCold, 2000)) && !strings.Contains(r.Detail, "-sprigs 16") {
			t.Errorf("%s: detail %q does not name -sprigs 16", r.Metric, r.Detail)
		}
	}
}
