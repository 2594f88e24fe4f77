package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/shmkit/shmkit/bench"
)

// tableWidth is the width of the default table, in columns (runes): it
// fits a 120-column terminal.
const tableWidth = 120

// The default table's column gap and the indent of a metric under its
// benchmark's heading.
const (
	tableGap    = 2
	tableIndent = 2
)

// tableRow is one result as the cells of the default table.
type tableRow struct {
	metric, value, baseline, baseValue, ratio string
}

func rowOf(r bench.Result) tableRow {
	row := tableRow{metric: r.Metric, value: number(r.Value) + " " + r.Unit, baseline: "-", baseValue: "-", ratio: "-"}
	if r.Skipped != "" {
		row.value = "skipped"
	}
	if r.BaselineName != "" {
		row.baseline, row.baseValue = r.BaselineName, number(r.BaselineValue)
		if r.Ratio != 0 && r.Skipped == "" {
			row.ratio = fmt.Sprintf("×%.3g", r.Ratio)
		}
	}
	return row
}

// number formats v: whole numbers (counts, round baselines) in full,
// others to 4 significant digits.
func number(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// printTable prints rs as a table at most width columns wide (as long as
// width leaves the metric and baseline names a few columns): results
// grouped under a heading line per benchmark, each with its value and
// unit, its baseline's name and value (in the same unit) and the ratio.
// Names too long for their column wrap onto more lines; Detail and
// BaselineDetail are left to -wide and -json. A skipped result shows
// "skipped" as its value, and why under the table (see printSkipped).
func printTable(w io.Writer, rs []bench.Result, width int) {
	header := tableRow{metric: "BENCH / METRIC", value: "VALUE", baseline: "BASELINE (SAME RUN)", baseValue: "VALUE", ratio: "RATIO"}
	rows := make([]tableRow, len(rs))
	for i, r := range rs {
		rows[i] = rowOf(r)
	}
	// The value, baseline value and ratio columns take what they need;
	// the two names share the rest.
	colW := func(f func(tableRow) string, indent int) int {
		n := runeLen(f(header))
		for _, row := range rows {
			n = max(n, indent+runeLen(f(row)))
		}
		return n
	}
	valueW := colW(func(r tableRow) string { return r.value }, 0)
	baseValueW := colW(func(r tableRow) string { return r.baseValue }, 0)
	ratioW := colW(func(r tableRow) string { return r.ratio }, 0)
	metricW := colW(func(r tableRow) string { return r.metric }, tableIndent)
	baselineW := colW(func(r tableRow) string { return r.baseline }, 0)
	metricW, baselineW = shareWidth(width-valueW-baseValueW-ratioW-4*tableGap, metricW, baselineW, rows)

	line := func(metric string, indent int, row tableRow) {
		ms := wrap(metric, metricW-indent)
		bs := wrap(row.baseline, baselineW)
		for i := range max(len(ms), len(bs)) {
			var b strings.Builder
			cell := func(s string, w int) {
				b.WriteString(s)
				b.WriteString(strings.Repeat(" ", max(w-runeLen(s), 0)+tableGap))
			}
			first := i == 0
			cell(strings.Repeat(" ", indent)+at(ms, i), metricW)
			cell(when(first, row.value), valueW)
			cell(at(bs, i), baselineW)
			cell(when(first, row.baseValue), baseValueW)
			b.WriteString(when(first, row.ratio))
			fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		}
	}
	line(header.metric, 0, header)
	for i, r := range rs {
		if i == 0 || r.Bench != rs[i-1].Bench {
			fmt.Fprintln(w, r.Bench)
		}
		line(rows[i].metric, tableIndent, rows[i])
	}
	printSkipped(w, rs, width)
}

// printSkipped prints, after a blank line, why each skipped result was
// not measured, wrapped to width: one paragraph per benchmark and reason,
// naming its metrics.
func printSkipped(w io.Writer, rs []bench.Result, width int) {
	type note struct {
		bench, why string
		metrics    []string
	}
	var notes []*note
	for _, r := range rs {
		if r.Skipped == "" {
			continue
		}
		i := slices.IndexFunc(notes, func(n *note) bool { return n.bench == r.Bench && n.why == r.Skipped })
		if i < 0 {
			notes = append(notes, &note{bench: r.Bench, why: r.Skipped})
			i = len(notes) - 1
		}
		notes[i].metrics = append(notes[i].metrics, r.Metric)
	}
	for i, n := range notes {
		if i == 0 {
			fmt.Fprintln(w)
		}
		text := fmt.Sprintf("skipped: %s %s: %s", n.bench, joinMetrics(n.metrics), n.why)
		for j, l := range wrap(text, width-tableIndent) {
			if j > 0 {
				l = strings.Repeat(" ", tableIndent) + l
			}
			fmt.Fprintln(w, l)
		}
	}
}

// shareWidth splits avail columns between the metric and the baseline
// columns, which would like a and b: both get what they like if it fits;
// otherwise the split that wraps the fewest rows, then onto the fewest
// lines (the metric column taking the larger share on a tie). Each gets
// at least 8 columns.
func shareWidth(avail, a, b int, rows []tableRow) (int, int) {
	const least = 8
	if a+b <= avail {
		return a, b
	}
	cost := func(mw, bw int) (wrapped, lines int) {
		for _, r := range rows {
			n := max(len(wrap(r.metric, mw-tableIndent)), len(wrap(r.baseline, bw)))
			lines += n
			if n > 1 {
				wrapped++
			}
		}
		return wrapped, lines
	}
	bestM, bestW, bestL := 0, 0, 0
	for mw := max(avail-least, least); mw >= least; mw-- {
		w, l := cost(mw, max(avail-mw, least))
		if bestM == 0 || w < bestW || w == bestW && l < bestL {
			bestM, bestW, bestL = mw, w, l
		}
	}
	return bestM, max(avail-bestM, least)
}

// joinMetrics lists metric names, "; " between them, or as "name p50,
// p99" when they differ only in their last word.
func joinMetrics(ms []string) string {
	i := strings.LastIndexByte(ms[0], ' ')
	if len(ms) < 2 || i < 0 {
		return strings.Join(ms, "; ")
	}
	prefix := ms[0][:i+1]
	lasts := make([]string, len(ms))
	for j, m := range ms {
		rest, ok := strings.CutPrefix(m, prefix)
		if !ok || rest == "" || strings.Contains(rest, " ") {
			return strings.Join(ms, "; ")
		}
		lasts[j] = rest
	}
	return prefix + strings.Join(lasts, ", ")
}

// wrap breaks s into lines of at most width runes, at spaces where it
// can, within words where a word is longer than width.
func wrap(s string, width int) []string {
	width = max(width, 1)
	var lines []string
	cur := ""
	for _, word := range strings.Fields(s) {
		for runeLen(word) > width {
			if cur != "" {
				lines, cur = append(lines, cur), ""
			}
			r := []rune(word)
			lines, word = append(lines, string(r[:width])), string(r[width:])
		}
		switch {
		case cur == "":
			cur = word
		case runeLen(cur)+1+runeLen(word) <= width:
			cur += " " + word
		default:
			lines, cur = append(lines, cur), word
		}
	}
	if cur != "" || len(lines) == 0 {
		lines = append(lines, cur)
	}
	return lines
}

func runeLen(s string) int { return utf8.RuneCountInString(s) }

// at returns ss[i], or "" past its end.
func at(ss []string, i int) string {
	if i < len(ss) {
		return ss[i]
	}
	return ""
}

// when returns s if cond, else "".
func when(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}

// printWide prints rs one line each, with every name in full followed by
// its detail in parentheses, however wide that makes the table; a skipped
// result has "skipped: " and the reason as its value.
func printWide(w io.Writer, rs []bench.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCH\tMETRIC\tVALUE\tUNIT\tBASELINE (SAME RUN)\tBASELINE VALUE\tRATIO")
	full := func(name, detail string) string {
		if detail == "" {
			return name
		}
		return name + " (" + detail + ")"
	}
	for _, r := range rs {
		row := rowOf(r)
		if r.BaselineName != "" {
			row.baseline = full(r.BaselineName, r.BaselineDetail)
		}
		value := fmt.Sprintf("%.4g", r.Value)
		if r.Skipped != "" {
			value = "skipped: " + r.Skipped
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Bench, full(r.Metric, r.Detail), value, r.Unit, row.baseline, row.baseValue, row.ratio)
	}
	tw.Flush()
}
