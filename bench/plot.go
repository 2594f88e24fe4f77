package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrPlot means a Plot cannot be drawn: no series, or a series whose X and
// Y differ in length, are empty, or hold values that are not finite (or
// not positive on a logarithmic axis).
var ErrPlot = errors.New("bench: invalid plot")

// ProcsMetric is the Metric of a figure measured with p processes, of the
// given kind (KindShm, KindAtomicMap, KindPerProcess), e.g. "4 procs,
// shared memory". The plots find their points by it.
func ProcsMetric(p int, kind string) string { return fmt.Sprintf("%d procs, %s", p, kind) }

// parseProcsMetric splits a metric made by ProcsMetric.
func parseProcsMetric(m string) (p int, kind string, ok bool) {
	n, kind, ok := strings.Cut(m, " procs, ")
	if !ok {
		return 0, "", false
	}
	p, err := strconv.Atoi(n)
	if err != nil || p <= 0 {
		return 0, "", false
	}
	return p, kind, true
}

// Series is one line of a Plot: points (X[i], Y[i]).
type Series struct {
	// Name is the legend entry.
	Name string
	// X and Y are the coordinates, of equal length.
	X, Y []float64
}

// Plot is a line chart with axes, ticks, labels and a legend.
type Plot struct {
	// Title is drawn above the chart.
	Title string
	// XLabel and YLabel name the axes (with units).
	XLabel, YLabel string
	// LogX draws the x axis in log2 scale, with a tick at every x value
	// of the data (process counts 1, 2, 4, …).
	LogX bool
	// Series are the lines, drawn in order, each in its own color.
	Series []Series
}

// Plot file names written by WritePlots.
const (
	// PlotRequests is the file of RequestsPlot.
	PlotRequests = "requests-per-second.svg"
	// PlotLookupCost is the file of LookupCostPlot.
	PlotLookupCost = "lookup-cost.svg"
	// PlotRestart is the file of RestartPlot.
	PlotRestart = "restart-time.svg"
)

// seriesOf collects the results of bench whose metric is
// ProcsMetric(p, kind), ordered by p.
func seriesOf(rs []Result, bench, kind, name string) Series {
	type pt struct{ x, y float64 }
	var pts []pt
	for _, r := range rs {
		if r.Bench != bench {
			continue
		}
		if p, k, ok := parseProcsMetric(r.Metric); ok && k == kind {
			pts = append(pts, pt{float64(p), r.Value})
		}
	}
	slices.SortFunc(pts, func(a, b pt) int { return int(a.x - b.x) })
	s := Series{Name: name}
	for _, p := range pts {
		s.X, s.Y = append(s.X, p.x), append(s.Y, p.y)
	}
	return s
}

// RequestsPlot builds the chart of TendBench's info requests per second
// against the number of processes, shared memory and per-process
// tending; false if rs holds no such figures.
func RequestsPlot(rs []Result) (Plot, bool) {
	p := Plot{
		Title:  "Info requests per second at the cluster nodes",
		XLabel: "processes using the cluster (P)",
		YLabel: "info requests / s",
		LogX:   true,
	}
	return withSeries(p,
		seriesOf(rs, BenchTendRequests, KindShm, "shared memory (one tender)"),
		seriesOf(rs, BenchTendRequests, KindPerProcess, "per-process tending (UseShm=false)"))
}

// LookupCostPlot builds the chart of LookupBench's per-process lookup
// cost against the number of reader processes, shared memory and the
// atomic-pointer map (namespace resolved, and by name); false if rs holds
// no such figures.
func LookupCostPlot(rs []Result) (Plot, bool) {
	p := Plot{
		Title:  "Master lookup cost per process, P processes looking up at once",
		XLabel: "reader processes (P)",
		YLabel: "ns per lookup (thread CPU time)",
		LogX:   true,
	}
	return withSeries(p,
		seriesOf(rs, BenchLookupProcs, KindShm, "shared memory: partmap.Map.Master, namespace handle"),
		seriesOf(rs, BenchLookupProcs, KindAtomicMapResolved, "atomic-pointer map, namespace resolved beforehand"),
		seriesOf(rs, BenchLookupProcs, KindAtomicMap, "atomic-pointer map by namespace name (official Go client's shape)"))
}

// withSeries returns p with the non-empty ones of ss added, and false if
// there are none.
func withSeries(p Plot, ss ...Series) (Plot, bool) {
	for _, s := range ss {
		if len(s.X) > 0 {
			p.Series = append(p.Series, s)
		}
	}
	return p, len(p.Series) > 0
}

// WritePlots writes, into dir (created if needed), every plot for which
// rs holds figures — PlotRequests, PlotLookupCost and PlotRestart — and returns the
// paths written.
func WritePlots(dir string, rs []Result) ([]string, error) {
	var paths []string
	for _, pl := range []struct {
		file string
		make func([]Result) (Plot, bool)
	}{{PlotRequests, RequestsPlot}, {PlotLookupCost, LookupCostPlot}, {PlotRestart, RestartPlot}} {
		p, ok := pl.make(rs)
		if !ok {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return paths, fmt.Errorf("bench: plot directory: %w", err)
		}
		var b bytes.Buffer
		if err := p.WriteSVG(&b); err != nil {
			return paths, err
		}
		path := filepath.Join(dir, pl.file)
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			return paths, fmt.Errorf("bench: write plot: %w", err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// Geometry of the chart, in SVG user units (pixels). The height grows
// with the legend's rows.
const (
	svgW          = 720
	plotL, plotR  = 80, 700 // plot area, x
	plotT, plotB  = 50, 370 // plot area, y
	legendTop     = plotB + 58
	legendRow     = 20
	svgFont       = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
	svgTickLength = 5
)

// seriesColor returns the color of series i.
func seriesColor(i int) string {
	colors := [...]string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"}
	return colors[i%len(colors)]
}

func (p Plot) validate() error {
	if len(p.Series) == 0 {
		return fmt.Errorf("%w: no series", ErrPlot)
	}
	for _, s := range p.Series {
		if len(s.X) == 0 || len(s.X) != len(s.Y) {
			return fmt.Errorf("%w: series %q has %d x and %d y values", ErrPlot, s.Name, len(s.X), len(s.Y))
		}
		for i := range s.X {
			x, y := s.X[i], s.Y[i]
			if math.IsNaN(x) || math.IsInf(x, 0) || math.IsNaN(y) || math.IsInf(y, 0) || (p.LogX && x <= 0) {
				return fmt.Errorf("%w: series %q point (%v, %v)", ErrPlot, s.Name, x, y)
			}
		}
	}
	return nil
}

// niceStep returns a tick step of 1, 2 or 5 × 10^k giving about n ticks
// over [0, hi].
func niceStep(hi float64, n int) float64 {
	if hi <= 0 {
		return 1
	}
	raw := hi / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

// tickLabel formats tick value v of a scale with the given step.
func tickLabel(v, step float64) string {
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails
	return b.String()
}

// WriteSVG writes p as a standalone SVG 1.1 document: the y axis from 0
// to a round value above the largest y, the x axis linear over the data
// or in log2 scale (LogX), grid lines, tick labels, axis labels, a title,
// each series as a line with point markers, and a legend.
func (p Plot) WriteSVG(w io.Writer) error {
	if err := p.validate(); err != nil {
		return err
	}
	var xs []float64
	ymax := 0.0
	for _, s := range p.Series {
		xs = append(xs, s.X...)
		for _, y := range s.Y {
			ymax = max(ymax, y)
		}
	}
	slices.Sort(xs)
	xs = slices.Compact(xs)
	fx := func(x float64) float64 { return x }
	if p.LogX {
		fx = math.Log2
	}
	x0, x1 := fx(xs[0]), fx(xs[len(xs)-1])
	if x1 == x0 {
		x0, x1 = x0-1, x1+1
	}
	// Leave a little room left and right of the extreme points.
	pad := (x1 - x0) * 0.04
	x0, x1 = x0-pad, x1+pad
	step := niceStep(ymax*1.08, 5)
	ytop := step * math.Ceil(ymax*1.08/step)
	if ytop <= 0 {
		ytop = step
	}
	px := func(x float64) float64 { return plotL + (fx(x)-x0)/(x1-x0)*(plotR-plotL) }
	py := func(y float64) float64 { return plotB - y/ytop*(plotB-plotT) }

	var b strings.Builder
	f := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	f("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	svgH := legendTop + legendRow*len(p.Series) + 6
	f("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", svgW, svgH, svgW, svgH)
	f("<title>%s</title>\n", esc(p.Title))
	f("<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", svgW, svgH)
	f("<text x=\"%d\" y=\"28\" text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\" %s>%s</text>\n", svgW/2, svgFont, esc(p.Title))

	// Grid and y ticks.
	f("<g stroke=\"#dddddd\" stroke-width=\"1\">\n")
	for v := 0.0; v <= ytop+step/2; v += step {
		f("<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", plotL, py(v), plotR, py(v))
	}
	for _, x := range xs {
		f("<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", px(x), plotT, px(x), plotB)
	}
	f("</g>\n")
	f("<g font-size=\"12\" fill=\"#222222\" %s>\n", svgFont)
	for v := 0.0; v <= ytop+step/2; v += step {
		f("<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#222222\"/>\n", plotL-svgTickLength, py(v), plotL, py(v))
		f("<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", plotL-svgTickLength-3, py(v)+4, tickLabel(v, step))
	}
	for _, x := range xs {
		f("<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#222222\"/>\n", px(x), plotB, px(x), plotB+svgTickLength)
		f("<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", px(x), plotB+svgTickLength+14, strconv.FormatFloat(x, 'g', 4, 64))
	}
	f("</g>\n")

	// Axes and their labels.
	f("<g stroke=\"#222222\" stroke-width=\"1.5\">\n")
	f("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n", plotL, plotB, plotR, plotB)
	f("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n", plotL, plotB, plotL, plotT)
	f("</g>\n")
	f("<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"14\" %s>%s</text>\n", (plotL+plotR)/2, plotB+40, svgFont, esc(p.XLabel))
	f("<text x=\"0\" y=\"0\" transform=\"translate(22 %d) rotate(-90)\" text-anchor=\"middle\" font-size=\"14\" %s>%s</text>\n", (plotT+plotB)/2, svgFont, esc(p.YLabel))

	// Series.
	for i, s := range p.Series {
		c := seriesColor(i)
		var pts []string
		for j := range s.X {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.X[j]), py(s.Y[j])))
		}
		f("<g>\n<title>%s</title>\n", esc(s.Name))
		f("<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"/>\n", strings.Join(pts, " "), c)
		for j := range s.X {
			f("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>%s: %s</title></circle>\n",
				px(s.X[j]), py(s.Y[j]), c, esc(s.Name), esc(strconv.FormatFloat(s.Y[j], 'g', 4, 64)))
		}
		f("</g>\n")
	}

	// Legend, below the x axis label, so that it hides no data.
	f("<g %s font-size=\"12\">\n", svgFont)
	for i, s := range p.Series {
		c := seriesColor(i)
		y := legendTop + 10 + legendRow*i
		f("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2.5\"/>\n", plotL, y, plotL+24, y, c)
		f("<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/>\n", plotL+12, y, c)
		f("<text x=\"%d\" y=\"%d\">%s</text>\n", plotL+32, y+4, esc(s.Name))
	}
	f("</g>\n</svg>\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("bench: write svg: %w", err)
	}
	return nil
}
