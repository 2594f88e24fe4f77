package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// decodeSVG parses doc as XML to the end and returns the root element's
// name and how many elements of each name it holds.
func decodeSVG(t *testing.T, doc []byte) (string, map[string]int) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	root := ""
	count := map[string]int{}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("malformed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				if se.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q", se.Name.Space)
				}
			}
			count[se.Name.Local]++
		}
	}
	return root, count
}

func sampleResults() []Result {
	var rs []Result
	for _, p := range []int{1, 2, 4, 8, 16} {
		rs = append(rs,
			Result{Bench: BenchTendRequests, Metric: ProcsMetric(p, KindShm), Value: 40, Unit: "req/s"},
			Result{Bench: BenchTendRequests, Metric: ProcsMetric(p, KindPerProcess), Value: 40 * float64(p), Unit: "req/s"},
		)
		if p <= 8 {
			rs = append(rs,
				Result{Bench: BenchLookupProcs, Metric: ProcsMetric(p, KindAtomicMap), Value: 7.1, Unit: "ns/op"},
				Result{Bench: BenchLookupProcs, Metric: ProcsMetric(p, KindAtomicMapResolved), Value: 1.6, Unit: "ns/op"},
				Result{Bench: BenchLookupProcs, Metric: ProcsMetric(p, KindShm), Value: 3.4, Unit: "ns/op"},
			)
		}
	}
	// Not plotted.
	return append(rs, Result{Bench: BenchTendPropagation, Metric: ProcsMetric(2, KindShm) + ", p50", Value: 60, Unit: "ms"})
}

func TestPlotsWellFormed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plots")
	paths, err := WritePlots(dir, sampleResults())
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[0]) != PlotRequests || filepath.Base(paths[1]) != PlotLookupCost {
		t.Fatalf("wrote %v", paths)
	}
	for _, path := range paths {
		doc, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		root, count := decodeSVG(t, doc)
		want := map[string]int{PlotRequests: 2, PlotLookupCost: 3}[filepath.Base(path)]
		if root != "svg" || count["polyline"] != want || count["text"] < 10 {
			t.Errorf("%s: root %q, elements %v, want %d lines", path, root, count, want)
		}
	}
	rp, _ := RequestsPlot(sampleResults())
	if len(rp.Series) != 2 || len(rp.Series[1].X) != 5 || rp.Series[1].Y[4] != 640 || rp.Series[0].X[2] != 4 {
		t.Errorf("requests plot: %+v", rp.Series)
	}
	lp, _ := LookupCostPlot(sampleResults())
	if len(lp.Series) != 3 || len(lp.Series[1].X) != 4 || lp.Series[1].Y[0] != 1.6 || lp.Series[2].Y[3] != 7.1 {
		t.Errorf("lookup-cost plot: %+v", lp.Series)
	}
}

func TestPlotEscapesAndValidates(t *testing.T) {
	p := Plot{Title: `a <b> & "c"`, XLabel: "x & y", YLabel: "<ns>", Series: []Series{
		{Name: "one <1>", X: []float64{0, 1, 2}, Y: []float64{0, 0.25, 0.5}},
		{Name: "flat & zero", X: []float64{1}, Y: []float64{0}},
	}}
	var b bytes.Buffer
	if err := p.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	root, count := decodeSVG(t, b.Bytes())
	if root != "svg" || count["polyline"] != 2 || !strings.Contains(b.String(), "a &lt;b&gt; &amp;") {
		t.Errorf("root %q, elements %v", root, count)
	}
	for name, bad := range map[string]Plot{
		"no series":   {},
		"empty":       {Series: []Series{{Name: "s"}}},
		"uneven":      {Series: []Series{{Name: "s", X: []float64{1, 2}, Y: []float64{1}}}},
		"NaN":         {Series: []Series{{Name: "s", X: []float64{1}, Y: []float64{math.NaN()}}}},
		"log of zero": {LogX: true, Series: []Series{{Name: "s", X: []float64{0}, Y: []float64{1}}}},
	} {
		if err := bad.WriteSVG(io.Discard); !errors.Is(err, ErrPlot) {
			t.Errorf("%s: got %v, want ErrPlot", name, err)
		}
	}
	if _, ok := RequestsPlot(nil); ok {
		t.Error("a requests plot from no results")
	}
	if paths, err := WritePlots(t.TempDir(), nil); err != nil || len(paths) != 0 {
		t.Errorf("WritePlots(no results) = %v, %v", paths, err)
	}
}

func TestProcsMetric(t *testing.T) {
	p, kind, ok := parseProcsMetric(ProcsMetric(16, KindPerProcess))
	if !ok || p != 16 || kind != KindPerProcess {
		t.Errorf("round trip: %d %q %v", p, kind, ok)
	}
	for _, m := range []string{"uncontended", "x procs, a", "0 procs, a", "-1 procs, a"} {
		if _, _, ok := parseProcsMetric(m); ok {
			t.Errorf("parsed %q", m)
		}
	}
}
