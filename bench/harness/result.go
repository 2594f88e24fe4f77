package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
)

// ErrNoValue means a Result carries no value to decode (the worker failed
// or did not report).
var ErrNoValue = errors.New("harness: result has no value")

// Result is the outcome of one worker.
type Result struct {
	// Index and Pid identify the worker.
	Index, Pid int
	// ExitCode is the exit status, or -1 if the worker was killed by a
	// signal.
	ExitCode int
	// Signal is the signal that killed the worker, or 0.
	Signal syscall.Signal
	// Reported is true if the worker delivered its result message (it
	// returned from its workload rather than dying).
	Reported bool
	// Value is the JSON-encoded value the workload returned.
	Value json.RawMessage
	// Err is the text of the error the workload returned.
	Err string
	// Stderr is the tail (last 8 KiB) of the worker's stderr.
	Stderr string
}

// Decode decodes Value into v, which must be a pointer.
func (r Result) Decode(v any) error {
	if len(r.Value) == 0 {
		return fmt.Errorf("%w: worker %d", ErrNoValue, r.Index)
	}
	if err := json.Unmarshal(r.Value, v); err != nil {
		return fmt.Errorf("harness: worker %d: decode result: %w", r.Index, err)
	}
	return nil
}

// Failure returns nil if the worker exited with status 0 after reporting a
// result, and a *[WorkerError] otherwise.
func (r Result) Failure() error {
	if r.ExitCode == 0 && r.Reported && r.Err == "" {
		return nil
	}
	return &WorkerError{Result: r}
}

// WorkerError describes a worker that failed: killed, non-zero exit, error
// returned, or no result reported.
type WorkerError struct {
	Result Result
}

// Error implements error. It includes the end of the worker's stderr when
// the worker did not report an error itself.
func (e *WorkerError) Error() string {
	r := e.Result
	var b strings.Builder
	fmt.Fprintf(&b, "harness: worker %d (pid %d) ", r.Index, r.Pid)
	switch {
	case r.Signal != 0:
		fmt.Fprintf(&b, "killed by signal %d (%v)", int(r.Signal), r.Signal)
	case r.Err != "":
		fmt.Fprintf(&b, "failed (exit %d): %s", r.ExitCode, r.Err)
		return b.String()
	case !r.Reported:
		fmt.Fprintf(&b, "exited with status %d without reporting a result "+
			"(does main/TestMain call harness.Dispatch first?)", r.ExitCode)
	default:
		fmt.Fprintf(&b, "exited with status %d", r.ExitCode)
	}
	if tail := lastLines(r.Stderr, 10); tail != "" {
		b.WriteString("; stderr ends:\n" + tail)
	}
	return b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// tailBuffer is an io.Writer keeping the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lineQueue is an unbounded FIFO of lines with a blocking, cancellable pop,
// so that a child is never blocked writing failpoint notifications.
type lineQueue struct {
	mu     sync.Mutex
	lines  []string
	closed bool
	signal chan struct{} // capacity 1: "something changed"
	end    chan struct{} // closed by close
}

func (q *lineQueue) init() {
	q.signal = make(chan struct{}, 1)
	q.end = make(chan struct{})
}

func (q *lineQueue) push(s string) {
	q.mu.Lock()
	q.lines = append(q.lines, s)
	q.mu.Unlock()
	q.wake()
}

func (q *lineQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	close(q.end)
	q.wake()
}

func (q *lineQueue) done() <-chan struct{} { return q.end }

func (q *lineQueue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// pop returns the next line; ok is false once the queue is closed and
// empty.
func (q *lineQueue) pop(ctx context.Context) (line string, ok bool, err error) {
	for {
		q.mu.Lock()
		if len(q.lines) > 0 {
			line = q.lines[0]
			q.lines = q.lines[1:]
			q.mu.Unlock()
			q.wake() // let another waiter look too
			return line, true, nil
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			q.wake()
			return "", false, nil
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			return "", false, ctx.Err()
		}
	}
}
