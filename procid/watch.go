package procid

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Method says how a [Watcher] detects death.
type Method string

// Watch methods.
const (
	// MethodPidfd waits for the process's pidfd to become readable,
	// through the Go netpoller (no polling, no thread blocked).
	MethodPidfd Method = "pidfd"
	// MethodProcPoll polls /proc/<pid>/stat every PollInterval; used when
	// pidfd_open is unavailable (Linux < 5.3) or forced.
	MethodProcPoll Method = "proc-poll"
	// MethodNone is used when the process was already dead when Watch was
	// called: Done is closed from the start and nothing is watched.
	MethodNone Method = "none"
)

// DefaultPollInterval is the /proc polling period of [MethodProcPoll] when
// [WatchOptions.PollInterval] is zero.
const DefaultPollInterval = 2 * time.Millisecond

// WatchOptions tune [WatchWith]. The zero value is the default.
type WatchOptions struct {
	// ForcePoll selects MethodProcPoll even where pidfd_open works.
	ForcePoll bool
	// PollInterval is the MethodProcPoll period (default DefaultPollInterval).
	PollInterval time.Duration
	// Logger receives the one notice a Watcher logs when it falls back to
	// polling because pidfd_open is unsupported (default slog.Default()).
	Logger *slog.Logger
}

// Watcher reports the death of one process. Create it with [Watch] or
// [WatchWith]; always [Watcher.Close] it to release its pidfd and goroutine.
type Watcher struct {
	id     Identity
	method Method
	done   chan struct{} // closed when the process is dead
	reason Reason        // written before done is closed
	stop   chan struct{} // closed by Close
	exited chan struct{} // closed when the watching goroutine has returned
	file   *os.File      // the pidfd, for MethodPidfd
	every  time.Duration // /proc polling period

	closeOnce sync.Once
	closeErr  error
}

// Watch is [WatchWith] with default options.
func Watch(id Identity) (*Watcher, error) { return WatchWith(id, WatchOptions{}) }

// WatchWith starts watching the process named by id. The returned
// Watcher's Done channel is closed as soon as the process exits (including
// when it becomes an unreaped zombie), or at once if it is already dead:
// gone, its pid reused (checked again after the pidfd is opened, closing
// the race with reuse) or from another boot.
//
// It fails with an error wrapping [ErrUnknowable] for an identity from
// another PID namespace, and [ErrInvalid] for a zero pid.
func WatchWith(id Identity, opts WatchOptions) (*Watcher, error) {
	if id.PID == 0 {
		return nil, fmt.Errorf("procid: watch %v: %w", id, ErrInvalid)
	}
	self, err := Self()
	if err != nil {
		return nil, err
	}
	if id.BootID != self.BootID {
		return deadWatcher(id, ReasonOtherBoot), nil
	}
	if id.PIDNS != 0 && self.PIDNS != 0 && id.PIDNS != self.PIDNS {
		return nil, fmt.Errorf("procid: watch %v: %w", id, ErrUnknowable)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if !opts.ForcePoll {
		fd, err := unix.PidfdOpen(int(id.PID), unix.PIDFD_NONBLOCK)
		switch {
		case err == nil:
			return watchPidfd(id, fd, opts.PollInterval)
		case errors.Is(err, unix.ESRCH):
			return deadWatcher(id, ReasonGone), nil
		case errors.Is(err, unix.ENOSYS):
			logger := opts.Logger
			if logger == nil {
				logger = slog.Default()
			}
			logger.Info("procid: pidfd_open unsupported; watching by polling /proc",
				"pid", id.PID, "interval", opts.PollInterval)
		default:
			return nil, fmt.Errorf("procid: watch %v: pidfd_open: %w", id, err)
		}
	}
	w := newWatcher(id, MethodProcPoll, opts.PollInterval)
	go func() {
		defer close(w.exited)
		w.poll()
	}()
	return w, nil
}

func newWatcher(id Identity, m Method, every time.Duration) *Watcher {
	return &Watcher{
		id: id, method: m, every: every,
		done: make(chan struct{}), stop: make(chan struct{}), exited: make(chan struct{}),
	}
}

func deadWatcher(id Identity, r Reason) *Watcher {
	w := newWatcher(id, MethodNone, 0)
	w.finish(r)
	close(w.exited)
	return w
}

func watchPidfd(id Identity, fd int, every time.Duration) (*Watcher, error) {
	// The pid may have been reused between reading id and pidfd_open:
	// only if the start time still matches does fd refer to our process.
	if dead, r, err := probe(id); err != nil || dead {
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("procid: watch %v: %w", id, err)
		}
		return deadWatcher(id, r), nil
	}
	w := newWatcher(id, MethodPidfd, every)
	// fd is non-blocking, so os.NewFile registers it with the netpoller.
	w.file = os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(int(id.PID)))
	go w.waitPidfd()
	return w, nil
}

// waitPidfd blocks (in the netpoller) until the pidfd is readable or the
// file is closed by Close.
func (w *Watcher) waitPidfd() {
	defer close(w.exited)
	rc, err := w.file.SyscallConn()
	if err != nil {
		return
	}
	// The callback runs with the fd held; when it returns false the
	// runtime parks until the netpoller reports read readiness, then
	// calls it again. Closing the file makes Read return an error.
	err = rc.Read(func(fd uintptr) bool {
		exited, _ := pidfdExited(int(fd))
		return exited
	})
	if err == nil {
		w.finish(ReasonExited)
		return
	}
	select {
	case <-w.stop: // closed by Close
	default:
		// Not closed, yet the netpoller cannot wait on this fd: keep
		// watching by polling rather than never reporting death.
		w.poll()
	}
}

// poll probes /proc every w.every until the process is dead or Close.
func (w *Watcher) poll() {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		if dead, r, _ := probe(w.id); dead {
			w.finish(r)
			return
		}
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

// probe reads /proc once. err is set only when /proc is unreadable for a
// reason other than the process being gone.
func probe(id Identity) (dead bool, r Reason, err error) {
	st, err := readStat(strconv.Itoa(int(id.PID)))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true, ReasonGone, nil
	case err != nil:
		return false, "", err
	case st.startTime != id.StartTime:
		return true, ReasonPIDReused, nil
	case st.state == 'Z':
		return true, ReasonZombie, nil
	case st.state == 'X':
		return true, ReasonDeadState, nil
	}
	return false, "", nil
}

func (w *Watcher) finish(r Reason) {
	w.reason = r
	close(w.done)
}

// Done returns a channel that is closed when the process is dead. Close
// does not close it.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Reason says why Done was closed, or "" while the process is alive.
func (w *Watcher) Reason() Reason {
	select {
	case <-w.done:
		return w.reason
	default:
		return ""
	}
}

// Method reports how this Watcher detects death.
func (w *Watcher) Method() Method { return w.method }

// Identity returns the watched identity.
func (w *Watcher) Identity() Identity { return w.id }

// Close stops watching and releases the pidfd. When it returns, the
// Watcher's goroutine has exited. It is idempotent and safe to call
// concurrently with Done.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.stop)
		if w.file != nil {
			w.closeErr = w.file.Close()
		}
		<-w.exited
	})
	return w.closeErr
}
