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
	Problems []string
}

// Error lists the first problems and how many there are.
func (e *CheckError) Error() string {
	const show = 20
	p := e.Problems
	more := ""
	if len(p) > show {
		more = fmt.Sprintf("; and %d more", len(p)-show)
		p = p[:show]
	}
	return fmt.Sprintf("index: check found %d problems: %s%s: %v", len(e.Problems), strings.Join(p, "; "), more, ErrCorrupt)
}

// Unwrap returns ErrCorrupt.
func (e *CheckError) Unwrap() error { return ErrCorrupt }
