package index

import (
	"errors"
	"fmt"
	"strings"
)

// Errors. Every error of the package wraps one of them (errors.Is) and says
// what was wrong and what to do.
var (
	// ErrConfig: the Config is invalid; fix the caller.
	ErrConfig = errors.New("invalid index configuration")
	// ErrCorrupt: the shared structures are damaged (a table handle or
	// size class out of range, entries out of order or displaced, a free
	// list cycle, a count that disagrees). Restart the writer with
	// Config.ForceCold to rebuild.
	ErrCorrupt = errors.New("index structures damaged")
	// ErrContended: a read kept finding its sprig changing (or held odd
	// by a writer that died mid-update) for longer than its retry budget.
	ErrContended = errors.New("sprig kept changing during the read")
	// ErrWriterRunning: another live process holds the index's writer
	// lease.
	ErrWriterRunning = errors.New("another process is the index's writer")
	// ErrClosed: the index or reader was closed.
	ErrClosed = errors.New("index closed")
	// ErrFull: all 256 stages are in use.
	ErrFull = errors.New("index full")
	// ErrLeaseLost: the writer lost its lease (paused past the threshold
	// and replaced); it must stop writing.
	ErrLeaseLost = errors.New("writer lease lost")
	// ErrRecord: a record does not fit the index's configuration (a
	// storage location in a data-in-index namespace or the reverse).
	ErrRecord = errors.New("record does not fit the index configuration")
	// ErrRebuild: the rebuild function of a cold start failed.
	ErrRebuild = errors.New("cold rebuild failed")
	// ErrNotEmpty: a bulk build (Builder, Load) was asked of an index
	// that has handed out entries: it only fills a fresh index, as a cold
	// rebuild has; use Put otherwise.
	ErrNotEmpty = errors.New("index not empty")
	// ErrBuilderDone: the Builder's Finish was already called.
	ErrBuilderDone = errors.New("builder already finished")
)

// corrupt builds an ErrCorrupt error.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("index: %s: %w (restart the writer with Config.ForceCold to rebuild the index)", fmt.Sprintf(format, args...), ErrCorrupt)
}

// CheckError lists every problem Check found. It wraps ErrCorrupt.
type CheckError struct {
	// Problems is the damage found.
	Problems []string
	// Interrupted lists findings that a writer stopped mid-update
	// explains (see InterruptedError), found beside the damage.
	Interrupted []string
}

// Error lists the first problems and how many there are.
func (e *CheckError) Error() string {
	return fmt.Sprintf("index: check found %d problems: %s: %v", len(e.Problems), firstOf(e.Problems, 20), ErrCorrupt)
}

// firstOf joins the first show items of list and says how many more
// there are.
func firstOf(list []string, show int) string {
	if len(list) <= show {
		return strings.Join(list, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(list[:show], "; "), len(list)-show)
}

// Unwrap returns ErrCorrupt.
func (e *CheckError) Unwrap() error { return ErrCorrupt }

// ErrInterrupted: the index's writer stopped (was killed) in the middle
// of an update. The index is not damaged beyond that update, but it is
// unclean: the next Open rebuilds it cold (reason unclean shutdown).
var ErrInterrupted = errors.New("a writer stopped mid-update")

// InterruptedError is Check's answer for an index whose only findings are
// the traces of updates a writer did not finish: sprigs whose version is
// odd; within one entry per such sprig or per update the meta counts as in
// flight, their partitions' counts and the meta's totals; and, while an
// update is in flight, the allocator's (a run taken or given back half
// way). Everything else was checked and is whole. It wraps
// ErrInterrupted, not ErrCorrupt.
type InterruptedError struct {
	// Partitions is how many partitions hold an odd sprig.
	Partitions uint64
	// InFlight is how many updates the meta counts as begun and not
	// finished.
	InFlight uint64
	// Notes are the findings the interrupted updates explain.
	Notes []string
}

// Error names the interrupted updates and what follows from them.
func (e *InterruptedError) Error() string {
	return fmt.Sprintf("index: a writer did not finish %d updates (%d partitions hold an odd sprig: %s): the rest is whole; the next Open rebuilds the index cold: %v",
		max(e.InFlight, e.Partitions), e.Partitions, firstOf(e.Notes, 8), ErrInterrupted)
}

// Unwrap returns ErrInterrupted.
func (e *InterruptedError) Unwrap() error { return ErrInterrupted }
