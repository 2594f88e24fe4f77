package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/failpoint"
)

// EnvHelper is set (to "1") in the environment of harness children. Together
// with the harness's configuration variable it makes [Dispatch] run a
// workload instead of returning.
const EnvHelper = "GO_WANT_HELPER_PROCESS"

// envConfig carries the child's JSON-encoded childConfig.
const envConfig = "SHMKIT_HARNESS_CONFIG"

// File descriptors inherited by children (ExtraFiles start at 3).
const (
	fdResult = 3 // child → parent: JSON messages
	fdStart  = 4 // parent → child: one byte releases the barrier
	fdNotify = 5 // child → parent: failpoint names
)

// Exit codes of a child.
const (
	exitOK    = 0
	exitError = 1
)

// ErrBarrier is wrapped by [Worker.Barrier] errors: the barrier was
// aborted (the parent closed the group) or already passed.
var ErrBarrier = errors.New("harness: barrier")

// Workload is the body of a worker process. Its result is JSON-encoded into
// [Result.Value]; a non-nil error makes the child exit with status 1 and its
// text appear in [Result.Err]. ctx is cancelled on SIGTERM or SIGINT.
type Workload func(ctx context.Context, w *Worker) (any, error)

// Registry maps workload names to workloads. Build it in main or TestMain
// and pass it to [Dispatch].
type Registry map[string]Workload

type childConfig struct {
	Workload string          `json:"workload"`
	Index    int             `json:"index"`
	N        int             `json:"n"`
	Args     json.RawMessage `json:"args,omitempty"`
}

// message is one JSON value on the result pipe.
type message struct {
	Type  string          `json:"type"` // "ready" or "result"
	Value json.RawMessage `json:"value,omitempty"`
	Err   string          `json:"err,omitempty"`
}

// Dispatch runs a workload from reg and exits if this process is a harness
// child; otherwise it returns at once. Call it first thing in TestMain
// (before m.Run) and in main. A process that has [EnvHelper] set without the
// harness's configuration (another helper-process convention) is not a
// harness child and Dispatch returns.
func Dispatch(reg Registry) {
	if os.Getenv(EnvHelper) == "" {
		return
	}
	raw, ok := os.LookupEnv(envConfig)
	if !ok {
		return
	}
	os.Exit(runChild(reg, raw))
}

func runChild(reg Registry, raw string) int {
	for _, fd := range []int{fdResult, fdStart, fdNotify} {
		unix.CloseOnExec(fd) // do not leak our pipes into grandchildren
	}
	w := &Worker{out: os.NewFile(fdResult, "harness-result")}
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return w.report(nil, fmt.Errorf("harness: decode %s: %w", envConfig, err))
	}
	w.Index, w.N, w.Args = cfg.Index, cfg.N, cfg.Args
	w.Log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("worker", cfg.Index)
	fn := reg[cfg.Workload]
	if fn == nil {
		names := slices.Sorted(maps.Keys(reg))
		return w.report(nil, fmt.Errorf("harness: unknown workload %q (registered: %s)", cfg.Workload, strings.Join(names, ", ")))
	}
	fp, err := failpoint.FromEnv()
	if err != nil {
		return w.report(nil, fmt.Errorf("harness: worker %d: %w", cfg.Index, err))
	}
	w.Failpoints = fp
	if err := unix.SetNonblock(fdStart, true); err != nil {
		return w.report(nil, fmt.Errorf("harness: start pipe: %w", err))
	}
	w.start = os.NewFile(fdStart, "harness-start") // non-blocking: pollable, so deadlines work

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return w.report(fn(ctx, w))
}

// Worker is a child's view of its group, passed to its [Workload].
type Worker struct {
	// Index is this worker's index in [0, N).
	Index int
	// N is the number of workers in the group.
	N int
	// Args is Spec.Args as JSON ("null" if none); see DecodeArgs.
	Args json.RawMessage
	// Failpoints is the set armed for this worker (Spec.Failpoints),
	// nil when none is. Hit on a nil Set does nothing.
	Failpoints *failpoint.Set
	// Log writes to stderr with a worker=Index attribute.
	Log *slog.Logger

	mu          sync.Mutex
	out         *os.File // result pipe
	start       *os.File // start pipe
	barrierUsed bool
}

// DecodeArgs decodes Spec.Args into v, which must be a pointer.
func (w *Worker) DecodeArgs(v any) error {
	if err := json.Unmarshal(w.Args, v); err != nil {
		return fmt.Errorf("harness: worker %d: decode args: %w", w.Index, err)
	}
	return nil
}

// Barrier reports this worker ready and blocks until the parent calls
// [Group.Release], which releases all workers at once. It may be called at
// most once. It fails, wrapping ctx.Err(), if ctx is done first, and with
// [ErrBarrier] if the parent aborted.
func (w *Worker) Barrier(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.barrierUsed {
		return fmt.Errorf("%w: worker %d called Barrier twice", ErrBarrier, w.Index)
	}
	w.barrierUsed = true
	if err := w.send(message{Type: "ready"}); err != nil {
		return err
	}
	stopAfter := context.AfterFunc(ctx, func() { _ = w.start.SetReadDeadline(time.Unix(1, 0)) })
	defer stopAfter()
	var b [1]byte
	n, err := w.start.Read(b[:])
	switch {
	case n == 1:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("harness: worker %d: barrier: %w", w.Index, ctx.Err())
	default:
		return fmt.Errorf("%w: worker %d: aborted by the parent: %v", ErrBarrier, w.Index, err)
	}
}

func (w *Worker) send(m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("harness: worker %d: encode %s: %w", w.Index, m.Type, err)
	}
	if _, err := w.out.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("harness: worker %d: write %s to parent: %w", w.Index, m.Type, err)
	}
	return nil
}

// report sends the workload's outcome to the parent and returns the exit
// code.
func (w *Worker) report(v any, err error) int {
	m := message{Type: "result"}
	code := exitOK
	if err == nil {
		if m.Value, err = json.Marshal(v); err != nil {
			err = fmt.Errorf("harness: worker %d: encode result: %w", w.Index, err)
		}
	}
	if err != nil {
		m.Value, m.Err, code = nil, err.Error(), exitError
	}
	if serr := w.send(m); serr != nil {
		fmt.Fprintln(os.Stderr, serr)
		code = exitError
	}
	return code
}
