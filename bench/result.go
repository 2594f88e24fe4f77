// Package bench holds shmkit's benchmark workloads as plain functions, so
// that the shmbench command and the packages' own tests run the same
// measurements. Each function returns a list of Results; multi-process
// workloads run their workers through package bench/harness, so a program
// calling them must pass their workloads (e.g. SeqlockWorkloads, or all of
// them: Workloads) to harness.Dispatch first thing in main.
package bench

import (
	"fmt"
	"maps"

	"github.com/shmkit/shmkit/bench/harness"
)

// Workloads returns the worker workloads of every benchmark of the
// package; pass them to harness.Dispatch first thing in main.
func Workloads() harness.Registry {
	reg := harness.Registry{}
	for _, r := range []harness.Registry{SeqlockWorkloads(), PoolWorkloads(), LeaseWorkloads(), LookupWorkloads(), TendWorkloads(), IndexWorkloads(), RecordsWorkloads()} {
		maps.Copy(reg, r)
	}
	return reg
}

// Result is one measured figure, optionally compared with a baseline
// measured in the same run.
type Result struct {
	// Bench names the benchmark, e.g. "seqlock.read".
	Bench string `json:"bench"`
	// Metric names what was measured, briefly, e.g. "uncontended read of
	// 64 bytes"; with Bench it identifies the figure.
	Metric string `json:"metric"`
	// Detail says more about what was measured (empty: nothing to add),
	// e.g. the API called or the process counts. shmbench shows it with
	// -wide and -json.
	Detail string `json:"detail,omitempty"`
	// Value is the measurement, in Unit.
	Value float64 `json:"value"`
	// Unit is e.g. "ns/op", "ops/s", "count", "%".
	Unit string `json:"unit"`
	// BaselineName describes the baseline (empty: none), e.g. "plain
	// 64-byte copy".
	BaselineName string `json:"baseline_name,omitempty"`
	// BaselineDetail says more about the baseline, like Detail.
	BaselineDetail string `json:"baseline_detail,omitempty"`
	// BaselineValue is the baseline's measurement, in Unit.
	BaselineValue float64 `json:"baseline,omitempty"`
	// Ratio is Value / BaselineValue (0 without a baseline).
	Ratio float64 `json:"ratio,omitempty"`
	// Skipped, when not empty, says why the figure was not measured on
	// this machine (e.g. it may not create a PID namespace); Value and
	// Ratio are then 0, the baseline is the one it would have had.
	Skipped string `json:"skipped,omitempty"`
}

// WithBaseline returns r compared with a baseline: name, value and the
// ratio r.Value / value (0 if value is 0); BaselineDetail is cleared.
func (r Result) WithBaseline(name string, value float64) Result {
	r.BaselineName, r.BaselineDetail, r.BaselineValue, r.Ratio = name, "", value, 0
	if value != 0 {
		r.Ratio = r.Value / value
	}
	return r
}

// WithDetail returns r with Detail set to detail.
func (r Result) WithDetail(detail string) Result {
	r.Detail = detail
	return r
}

// WithBaselineDetail returns r with BaselineDetail set to detail.
func (r Result) WithBaselineDetail(detail string) Result {
	r.BaselineDetail = detail
	return r
}

// WithSkipped returns r marked as not measured, for the reason why: its
// Value and Ratio are 0.
func (r Result) WithSkipped(why string) Result {
	r.Skipped, r.Value, r.Ratio = why, 0, 0
	return r
}

// String formats r on one line, e.g. "seqlock.read uncontended: 2.1 ns/op
// (plain 64-byte copy 1.2 ns/op, x1.75)".
func (r Result) String() string {
	if r.Skipped != "" {
		return fmt.Sprintf("%s %s: skipped: %s", r.Bench, r.Metric, r.Skipped)
	}
	s := fmt.Sprintf("%s %s: %.4g %s", r.Bench, r.Metric, r.Value, r.Unit)
	if r.BaselineName != "" {
		s += fmt.Sprintf(" (%s %.4g %s, x%.3g)", r.BaselineName, r.BaselineValue, r.Unit, r.Ratio)
	}
	return s
}
