package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/procid"
)

// Errors of the parent side. Each is wrapped with details.
var (
	// ErrSpec means the Spec is invalid; fix the caller.
	ErrSpec = errors.New("harness: invalid spec")
	// ErrNoWorker means a worker index is out of range.
	ErrNoWorker = errors.New("harness: no such worker")
	// ErrExited means the worker has already exited, so it cannot be
	// signalled, stopped, or reach a failpoint any more.
	ErrExited = errors.New("harness: worker exited")
	// ErrNotReady means Release gave up before every worker reached the
	// barrier (the error also wraps the context's error).
	ErrNotReady = errors.New("harness: workers not at the barrier")
	// ErrClosed means the group was closed or its context is done.
	ErrClosed = errors.New("harness: group closed")
)

// ioGrace bounds how long pipes are drained after a child has exited (a
// grandchild could hold them open).
const ioGrace = 2 * time.Second

// stderrTail is how much of each child's stderr Result.Stderr keeps.
const stderrTail = 8 << 10

// Spec describes a group of workers.
type Spec struct {
	// Workload names the registered workload each worker runs.
	Workload string
	// N is the number of worker processes (at least 1).
	N int
	// Args is JSON-encoded and given to every worker (Worker.DecodeArgs).
	// It travels in the environment, so keep it well under 128 KiB.
	Args any
	// Env is added to every child's environment ("KEY=value").
	Env []string
	// Failpoints maps a worker index to the failpoint spec armed in that
	// worker (see package failpoint), e.g. {2: "arena.init.mid=kill"}.
	Failpoints map[int]string
	// Stdout and Stderr receive the children's output (interleaved); nil
	// discards it. The last 8 KiB of each child's stderr is also kept in
	// Result.Stderr.
	Stdout, Stderr io.Writer
	// Wrap, when not empty, is a command that runs each worker: the
	// worker's own command line is appended to it, and the wrapper must
	// exec it in the same process (so that signals and the pid still
	// reach the worker), e.g. a shell that mounts a private /proc first:
	// {"sh", "-c", "mount -t proc -o hidepid=2 proc /proc && exec \"$0\" \"$@\""}.
	Wrap []string
	// Cloneflags and Unshareflags are set on each worker's
	// syscall.SysProcAttr: CLONE_NEWPID runs it as pid 1 of a new PID
	// namespace, CLONE_NEWNS (in Unshareflags) gives it a private mount
	// namespace. Group.Pid is the worker's pid in ours either way.
	Cloneflags, Unshareflags uintptr
}

func (s *Spec) validate() error {
	switch {
	case s.Workload == "":
		return fmt.Errorf("%w: empty Workload", ErrSpec)
	case s.N < 1:
		return fmt.Errorf("%w: N = %d, want >= 1", ErrSpec, s.N)
	}
	for i, fp := range s.Failpoints {
		if i < 0 || i >= s.N {
			return fmt.Errorf("%w: Failpoints for worker %d of %d", ErrSpec, i, s.N)
		}
		if _, err := failpoint.Parse(fp); err != nil {
			return fmt.Errorf("%w: Failpoints for worker %d: %w", ErrSpec, i, err)
		}
	}
	return nil
}

// Group is a running set of worker processes. Its methods are safe for
// concurrent use. Always Close it (t.Cleanup(func() { g.Close() })).
type Group struct {
	ctx     context.Context // done: kill everything
	cancel  context.CancelFunc
	workers []*worker

	relMu    sync.Mutex
	released bool

	waitOnce sync.Once
	results  []Result
	waitErr  error

	closeOnce sync.Once

	timerMu sync.Mutex
	timers  []*time.Timer
}

type worker struct {
	index int
	cmd   *exec.Cmd
	pid   int
	watch *procid.Watcher // pidfd-based: Done when the child exits, before reaping
	start *os.File        // write end of the start pipe
	resR  *os.File        // read end of the result pipe
	noteR *os.File        // read end of the failpoint notify pipe
	tail  tailBuffer
	notes lineQueue

	ready    chan struct{} // closed on "ready" or when the result pipe ends
	readOnce sync.Once
	resDone  chan struct{} // result reader finished; msg/got valid
	msg      message
	got      bool
	exited   chan struct{} // reaped; cmd.ProcessState valid

	mu     sync.Mutex
	reaped bool // once set, pid may be reused: signal only via pidfd
}

// OnInterrupt returns a copy of ctx that is cancelled on SIGINT or SIGTERM,
// and a function to stop listening. Give it to [Start] so an interrupted
// parent kills its children before exiting.
func OnInterrupt(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// Start starts spec.N children running spec.Workload. They run until they
// call Worker.Barrier, where they wait for [Group.Release]. When ctx is
// done, all children are killed; Wait then returns.
func Start(ctx context.Context, spec Spec) (*Group, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("harness: start: %w", err)
	}
	args, err := json.Marshal(spec.Args)
	if err != nil {
		return nil, fmt.Errorf("%w: encode Args: %w", ErrSpec, err)
	}
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	var argv []string
	if flag.Lookup("test.run") != nil || strings.HasSuffix(exe, ".test") {
		// A test binary's TestMain calls Dispatch before m.Run, so this
		// is only a safety net: run no tests if it does not.
		argv = []string{"-test.run=^$"}
	}
	env := childEnv(spec.Env)

	g := &Group{}
	g.ctx, g.cancel = context.WithCancel(ctx)
	for i := range spec.N {
		cfg, _ := json.Marshal(childConfig{Workload: spec.Workload, Index: i, N: spec.N, Args: args})
		wenv := append(env[:len(env):len(env)], envConfig+"="+string(cfg))
		if fp, ok := spec.Failpoints[i]; ok {
			wenv = append(wenv, failpoint.EnvVar+"="+fp)
		}
		w, err := startWorker(i, exe, argv, wenv, spec)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.workers = append(g.workers, w)
	}
	go g.supervise()
	return g, nil
}

// childEnv is the environment common to all children.
func childEnv(extra []string) []string {
	drop := map[string]bool{EnvHelper: true, envConfig: true, failpoint.EnvVar: true, failpoint.NotifyFDEnvVar: true}
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	env = append(env, extra...)
	env = append(env, EnvHelper+"=1", failpoint.NotifyFDEnvVar+"="+strconv.Itoa(fdNotify))
	// A race-built child sleeps 1 s at exit unless told otherwise; keep
	// any other GORACE options (the last GORACE wins in os/exec).
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "GORACE="); ok {
			if !strings.Contains(v, "atexit_sleep_ms") {
				env = append(env, "GORACE="+strings.TrimSpace(v+" atexit_sleep_ms=0"))
			}
			return env
		}
	}
	return append(env, "GORACE=atexit_sleep_ms=0")
}

// startWorker starts worker i. On failure it closes the pipes it made.
// (The worker is not a named result: "return nil, err" would clear it
// before the cleanup reads it.)
func startWorker(i int, exe string, argv, env []string, spec Spec) (_ *worker, err error) {
	w := &worker{index: i, ready: make(chan struct{}), resDone: make(chan struct{}), exited: make(chan struct{})}
	w.tail.max = stderrTail
	w.notes.init()
	var childEnds []*os.File // closed in the parent once the child has them
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
		if err != nil {
			for _, f := range []*os.File{w.resR, w.start, w.noteR} {
				if f != nil {
					f.Close()
				}
			}
			err = fmt.Errorf("harness: start worker %d: %w", i, err)
		}
	}()
	var resW, startR, noteW *os.File
	if w.resR, resW, err = os.Pipe(); err != nil {
		return nil, err
	}
	childEnds = append(childEnds, resW)
	if startR, w.start, err = os.Pipe(); err != nil {
		return nil, err
	}
	childEnds = append(childEnds, startR)
	if w.noteR, noteW, err = os.Pipe(); err != nil {
		return nil, err
	}
	childEnds = append(childEnds, noteW)

	cmd := exec.Command(exe, argv...)
	if len(spec.Wrap) > 0 {
		cmd = exec.Command(spec.Wrap[0], append(append(spec.Wrap[1:len(spec.Wrap):len(spec.Wrap)], exe), argv...)...)
	}
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{resW, startR, noteW} // fds 3, 4, 5
	cmd.Stdout = spec.Stdout
	cmd.Stderr = &w.tail
	if spec.Stderr != nil {
		cmd.Stderr = io.MultiWriter(&w.tail, spec.Stderr)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL,
		Cloneflags: spec.Cloneflags, Unshareflags: spec.Unshareflags}
	cmd.WaitDelay = ioGrace
	if err = cmd.Start(); err != nil {
		return nil, err
	}
	w.cmd, w.pid = cmd, cmd.Process.Pid
	// Not reaped until w.reap runs, so the pid still names our child.
	id, err := procid.Of(w.pid)
	if err == nil {
		w.watch, err = procid.Watch(id)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	go w.readResults()
	go w.readNotes()
	go w.reap()
	return w, nil
}

func (w *worker) readResults() {
	defer close(w.resDone)
	defer w.readOnce.Do(func() { close(w.ready) }) // a dead child is "ready" too
	dec := json.NewDecoder(w.resR)
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			return
		}
		switch m.Type {
		case "ready":
			w.readOnce.Do(func() { close(w.ready) })
		case "result":
			w.msg, w.got = m, true
		}
	}
}

func (w *worker) readNotes() {
	defer w.notes.close()
	sc := bufio.NewScanner(w.noteR)
	for sc.Scan() {
		w.notes.push(sc.Text())
	}
}

// reap waits for the child's exit through its pidfd watcher, marks it
// reaped (so its pid is no longer used) and only then reaps it.
func (w *worker) reap() {
	defer close(w.exited)
	<-w.watch.Done()
	w.mu.Lock()
	w.reaped = true
	w.mu.Unlock()
	_ = w.cmd.Wait()
	_ = w.watch.Close()
	// The child is gone; give the readers a bounded time to drain.
	for _, p := range []struct {
		done <-chan struct{}
		f    *os.File
	}{{w.resDone, w.resR}, {w.notes.done(), w.noteR}} {
		select {
		case <-p.done:
		case <-time.After(ioGrace):
			p.f.Close() // unblocks the reader
			<-p.done
		}
	}
	w.resR.Close()
	w.noteR.Close()
}

// kill sends SIGKILL to the worker's process group, while the worker is not
// reaped (so that its pid, which is the group id, cannot have been reused).
func (w *worker) kill() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reaped {
		return fmt.Errorf("%w: worker %d (pid %d)", ErrExited, w.index, w.pid)
	}
	if err := unix.Kill(-w.pid, unix.SIGKILL); err != nil {
		return fmt.Errorf("harness: kill worker %d (pid %d): %w", w.index, w.pid, err)
	}
	return nil
}

func (g *Group) supervise() {
	for _, w := range g.workers {
		select {
		case <-w.exited:
		case <-g.ctx.Done():
			g.killAll()
			return
		}
	}
}

func (g *Group) killAll() {
	for _, w := range g.workers {
		_ = w.kill()
	}
}

func (g *Group) worker(i int) (*worker, error) {
	if i < 0 || i >= len(g.workers) {
		return nil, fmt.Errorf("%w: index %d of %d", ErrNoWorker, i, len(g.workers))
	}
	return g.workers[i], nil
}

// N returns the number of workers.
func (g *Group) N() int { return len(g.workers) }

// Pid returns worker i's process id. It panics if i is out of range.
func (g *Group) Pid(i int) int { return g.workers[i].pid }

// Release waits until every worker has reached Worker.Barrier (or exited),
// then releases them all at once. It fails with [ErrNotReady] (and
// ctx.Err()) if ctx is done first; it may then be called again. Once it
// succeeded, later calls return nil at once.
func (g *Group) Release(ctx context.Context) error {
	g.relMu.Lock()
	defer g.relMu.Unlock()
	if g.released {
		return nil
	}
	for _, w := range g.workers {
		select {
		case <-w.ready:
		case <-ctx.Done():
			return fmt.Errorf("%w: worker %d: %w", ErrNotReady, w.index, ctx.Err())
		case <-g.ctx.Done():
			return fmt.Errorf("%w: worker %d: %w", ErrClosed, w.index, g.ctx.Err())
		}
	}
	for _, w := range g.workers {
		_, _ = w.start.Write([]byte{'g'}) // EPIPE if it exited: fine
		_ = w.start.Close()
	}
	g.released = true
	return nil
}

// Wait waits for all workers to exit and returns their results, indexed
// by worker. If Release has not been called, Wait calls it. Wait is bounded
// by the ctx given to Start (when it is done, workers are killed). The error
// joins a *[WorkerError] for every worker that failed (see Result.Failure)
// and, if the group's ctx ended it, the ctx error. Later calls return the
// same results.
func (g *Group) Wait() ([]Result, error) {
	g.waitOnce.Do(func() {
		_ = g.Release(g.ctx)
		var errs []error
		for _, w := range g.workers {
			<-w.exited
			r := w.result()
			if err := r.Failure(); err != nil {
				errs = append(errs, err)
			}
			g.results = append(g.results, r)
		}
		if err := g.ctx.Err(); err != nil && len(errs) > 0 {
			errs = append(errs, fmt.Errorf("harness: group: %w", context.Cause(g.ctx)))
		}
		g.waitErr = errors.Join(errs...)
		g.cancel() // all exited: release the context
	})
	return g.results, g.waitErr
}

func (w *worker) result() Result {
	r := Result{Index: w.index, Pid: w.pid, ExitCode: -1, Stderr: w.tail.String()}
	<-w.resDone
	if w.got {
		r.Reported, r.Value, r.Err = true, w.msg.Value, w.msg.Err
	}
	if st := w.cmd.ProcessState; st != nil {
		r.ExitCode = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.Signal = ws.Signal()
		}
	}
	return r
}

// Signal sends sig to worker i (not its process group). It fails with
// [ErrExited] if the worker has exited; it is safe against pid reuse.
func (g *Group) Signal(i int, sig os.Signal) error {
	w, err := g.worker(i)
	if err != nil {
		return err
	}
	if err := w.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("%w: worker %d (pid %d)", ErrExited, i, w.pid)
		}
		return fmt.Errorf("harness: signal worker %d (pid %d): %w", i, w.pid, err)
	}
	return nil
}

// Kill sends SIGKILL to worker i's process group (the worker and anything
// it started). It fails with [ErrExited] if the worker has exited.
func (g *Group) Kill(i int) error {
	w, err := g.worker(i)
	if err != nil {
		return err
	}
	return w.kill()
}

// Stop sends SIGSTOP to worker i; see WaitStopped.
func (g *Group) Stop(i int) error { return g.Signal(i, syscall.SIGSTOP) }

// Cont sends SIGCONT to worker i.
func (g *Group) Cont(i int) error { return g.Signal(i, syscall.SIGCONT) }

// WaitStopped waits until worker i is stopped (by Stop or a stop
// failpoint), polling /proc every millisecond. It consumes no wait status.
// It fails with [ErrExited] if the worker exits, or wraps ctx.Err().
func (g *Group) WaitStopped(ctx context.Context, i int) error {
	w, err := g.worker(i)
	if err != nil {
		return err
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		stopped, err := w.stopped()
		if err != nil || stopped {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("harness: wait for worker %d to stop: %w", i, ctx.Err())
		case <-t.C:
		}
	}
}

// stopped reads the child's state from /proc while holding w.mu, so the
// pid cannot be reaped and reused meanwhile.
func (w *worker) stopped() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reaped {
		return false, fmt.Errorf("%w: worker %d (pid %d)", ErrExited, w.index, w.pid)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(w.pid) + "/stat")
	if err != nil {
		return false, fmt.Errorf("harness: worker %d state: %w", w.index, err)
	}
	// The state follows the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'T', nil
}

// WaitFailpoint returns the name of the next failpoint worker i reports
// reaching (in order; each report is returned once). It fails with
// [ErrExited] if the worker exits without reaching another one, or wraps
// ctx.Err().
func (g *Group) WaitFailpoint(ctx context.Context, i int) (string, error) {
	w, err := g.worker(i)
	if err != nil {
		return "", err
	}
	name, ok, err := w.notes.pop(ctx)
	switch {
	case err != nil:
		return "", fmt.Errorf("harness: wait for worker %d failpoint: %w", i, err)
	case !ok:
		return "", fmt.Errorf("%w: worker %d (pid %d) reached no (further) failpoint", ErrExited, i, w.pid)
	}
	return name, nil
}

// KillAt kills worker i's process group after d. The returned function
// cancels the kill and reports whether it did so before it happened.
func (g *Group) KillAt(i int, d time.Duration) (cancel func() bool, err error) {
	w, err := g.worker(i)
	if err != nil {
		return nil, err
	}
	t := time.AfterFunc(d, func() { _ = w.kill() })
	g.timerMu.Lock()
	g.timers = append(g.timers, t)
	g.timerMu.Unlock()
	return t.Stop, nil
}

// KillRandom kills worker i's process group at a moment drawn uniformly
// from [0, within) with rng (seed it to reproduce a run). It returns the
// chosen delay, for logging, and a cancel function as KillAt does.
func (g *Group) KillRandom(i int, within time.Duration, rng *rand.Rand) (time.Duration, func() bool, error) {
	if within <= 0 {
		return 0, nil, fmt.Errorf("%w: KillRandom within %v", ErrSpec, within)
	}
	d := time.Duration(rng.Int64N(int64(within)))
	cancel, err := g.KillAt(i, d)
	return d, cancel, err
}

// Close kills all workers that are still running (their process groups),
// reaps them and releases all resources. It is idempotent and returns nil;
// call it from t.Cleanup.
func (g *Group) Close() error {
	g.closeOnce.Do(func() {
		g.cancel()
		g.timerMu.Lock()
		for _, t := range g.timers {
			t.Stop()
		}
		g.timerMu.Unlock()
		g.killAll()
		for _, w := range g.workers {
			<-w.exited
		}
		g.relMu.Lock()
		for _, w := range g.workers {
			_ = w.start.Close() // may already be closed by Release
		}
		g.relMu.Unlock()
	})
	return nil
}
