package seqlock

import (
	"errors"
	"fmt"
	"time"
)

// Errors of this package. Every error returned wraps exactly one of them
// (errors.Is); stalls are also *StalledError values (errors.As).
var (
	// ErrIndex means a record index is outside [0, Records()).
	ErrIndex = errors.New("seqlock: record index out of range")
	// ErrLength means a buffer's length is not the record payload size
	// (Words()), or a snapshot buffer does not have Records() rows.
	ErrLength = errors.New("seqlock: buffer length differs from the table geometry")
	// ErrGeometry means New was asked for an invalid number of records or
	// words (see MaxRecords, MaxWords).
	ErrGeometry = errors.New("seqlock: invalid table geometry")
	// ErrRegion means the table region is misaligned or does not fit in
	// the segment; the error also wraps the arena error, if any.
	ErrRegion = errors.New("seqlock: table region outside the segment")
	// ErrNotTable means the region holds something other than a seqlock
	// table (or a table of an unknown format).
	ErrNotTable = errors.New("seqlock: region does not hold a seqlock table")
	// ErrMismatch means the region holds a table of another geometry.
	ErrMismatch = errors.New("seqlock: table geometry mismatch")
	// ErrWriterStalled means a record stayed busy because its writer died,
	// or made no progress for Options.StallTimeout. Errors wrapping it are
	// *StalledError values.
	ErrWriterStalled = errors.New("seqlock: writer stalled")
	// ErrTorn means the record was left half written by a dead writer and
	// recovered (Recover) but not rewritten since; its payload is not
	// returned. The next successful Write clears the condition.
	ErrTorn = errors.New("seqlock: record torn by a dead writer and not rewritten")
	// ErrStarved means writers kept changing the record(s) for
	// Options.MaxWait, so no attempt could complete (writers were making
	// progress, so this is not a stall).
	ErrStarved = errors.New("seqlock: every attempt overlapped a write")
	// ErrPreempted means another process judged this writer dead while it
	// held the record and took the record over; this writer's payload may
	// be overwritten or marked torn.
	ErrPreempted = errors.New("seqlock: record taken over while this writer held it")
)

// StalledError reports a record that stayed busy: its writer is dead, or
// it is alive (or its liveness is unknowable) but did not finish its write
// within Options.StallTimeout. It wraps ErrWriterStalled.
//
// A reader never changes the table: after a StalledError with Dead set,
// call Table.Recover, or Table.Write a new value, to repair the record.
// A record whose writer is not progressing cannot be taken over safely
// (the writer may resume); retry later.
type StalledError struct {
	// Op is the operation that gave up: "read", "write", "recover" or
	// "snapshot".
	Op string
	// Record is the index of the stalled record.
	Record int
	// PID is the writer's pid as recorded in the record (0 if none is).
	PID uint32
	// Dead is true if the writer is known to be dead, false if it is
	// alive, or its liveness is unknown, and did not make progress.
	Dead bool
	// Reason is the liveness verdict's explanation (package procid).
	Reason string
	// Waited is how long the caller waited for this writer.
	Waited time.Duration
}

// Error implements error.
func (e *StalledError) Error() string {
	state := "alive but not progressing"
	if e.Dead {
		state = "dead"
	}
	return fmt.Sprintf("seqlock: %s record %d: writer pid %d is %s (liveness: %s) after %v: %v",
		e.Op, e.Record, e.PID, state, e.Reason, e.Waited.Round(time.Microsecond), ErrWriterStalled)
}

// Unwrap returns ErrWriterStalled.
func (e *StalledError) Unwrap() error { return ErrWriterStalled }

func indexErr(op string, i, records int) error {
	return fmt.Errorf("seqlock: %s record %d of %d: %w", op, i, records, ErrIndex)
}

func lengthErr(op string, what string, have, want int) error {
	return fmt.Errorf("seqlock: %s: %s has length %d, want %d: %w", op, what, have, want, ErrLength)
}

func tornErr(op string, i int) error {
	return fmt.Errorf("seqlock: %s record %d: %w (write it to repair it)", op, i, ErrTorn)
}

func starvedErr(op string, i int, retries uint64, waited time.Duration) error {
	return fmt.Errorf("seqlock: %s record %d: gave up after %d attempts in %v: %w",
		op, i, retries, waited.Round(time.Microsecond), ErrStarved)
}
