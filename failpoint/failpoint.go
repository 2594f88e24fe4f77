// Package failpoint lets tests stop or kill a process at a named point in
// library code.
//
// Library code calls Hit at interesting points:
//
//	fp.Hit("arena.init.mid") // fp is a *failpoint.Set from options; may be nil
//
// A nil *Set is disarmed and Hit on it is an inlined nil check, so
// failpoints cost nothing in production. There is no package-level state:
// the armed set is a value, built with [Parse] or [FromEnv] (which reads
// [EnvVar]) and handed to library code through its options.
//
// # Spec syntax
//
// A spec is a comma-separated list of name=action[@n] entries:
//
//	arena.init.mid=kill,seqlock.write.mid=stop@3,lease.renew=sleep(50ms)
//
// Actions are kill (SIGKILL self), stop (SIGSTOP self; execution resumes
// after SIGCONT), exit or exit(N) (os.Exit(N), default [DefaultExitCode]),
// and sleep(DURATION). With @n the action runs on the n-th hit only; without
// it, on every hit. Names consist of letters, digits and . _ - /.
//
// # Notification
//
// If the environment variable [NotifyFDEnvVar] names an inherited file
// descriptor (typically a pipe), [FromEnv] captures it and Hit writes the
// failpoint's name and "\n" to it just before acting, so a parent process
// knows exactly which point was reached (see the bench/harness package's
// Group.WaitFailpoint). Nothing is ever written to stdout or stderr.
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Environment variables read by [FromEnv].
const (
	// EnvVar holds the spec of the armed failpoints.
	EnvVar = "SHMKIT_FAILPOINTS"
	// NotifyFDEnvVar holds the number of an inherited, writable file
	// descriptor to which reached failpoint names are written.
	NotifyFDEnvVar = "SHMKIT_FAILPOINT_NOTIFY_FD"
)

// DefaultExitCode is the exit status of the exit action without a code.
const DefaultExitCode = 3

var (
	// ErrSyntax is wrapped by every spec parsing error (see [ParseError]).
	ErrSyntax = errors.New("failpoint: invalid spec")
	// ErrNotifyFD means NotifyFDEnvVar does not name an open descriptor.
	ErrNotifyFD = errors.New("failpoint: invalid notify fd")
)

// ParseError describes an invalid entry of a spec. It wraps [ErrSyntax].
type ParseError struct {
	Entry string // the offending entry
	Msg   string // what is wrong with it
}

// Error implements error.
func (e *ParseError) Error() string {
	return fmt.Sprintf("failpoint: invalid spec entry %q: %s", e.Entry, e.Msg)
}

// Unwrap returns [ErrSyntax].
func (e *ParseError) Unwrap() error { return ErrSyntax }

// Action is what a failpoint does when hit.
type Action int

// Actions.
const (
	// Kill sends SIGKILL to the process itself.
	Kill Action = iota + 1
	// Stop sends SIGSTOP to the process itself; Hit returns after SIGCONT.
	Stop
	// Exit calls os.Exit (deferred functions do not run).
	Exit
	// Sleep pauses the calling goroutine.
	Sleep
)

// String returns the action's spec keyword.
func (a Action) String() string {
	switch a {
	case Kill:
		return "kill"
	case Stop:
		return "stop"
	case Exit:
		return "exit"
	case Sleep:
		return "sleep"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

type point struct {
	action Action
	arg    int64  // Sleep: duration in ns; Exit: exit code
	at     uint64 // act on this hit only; 0: every hit
	hits   atomic.Uint64
}

// Set is an immutable set of armed failpoints. A nil *Set is valid and
// disarmed. A Set may be used by many goroutines at once; hit counts for
// @n are kept per Set.
type Set struct {
	points   map[string]*point
	notifyFD int // -1: none
}

// Parse parses a spec (see the package documentation). An empty or
// all-blank spec yields an empty, disarmed Set. Errors are *[ParseError].
func Parse(spec string) (*Set, error) {
	s := &Set{points: map[string]*point{}, notifyFD: -1}
	if strings.TrimSpace(spec) == "" {
		return s, nil
	}
	for entry := range strings.SplitSeq(spec, ",") {
		entry = strings.TrimSpace(entry)
		name, p, err := parseEntry(entry)
		if err != nil {
			return nil, err
		}
		if _, dup := s.points[name]; dup {
			return nil, &ParseError{entry, "failpoint " + strconv.Quote(name) + " armed twice"}
		}
		s.points[name] = p
	}
	return s, nil
}

func parseEntry(entry string) (string, *point, error) {
	bad := func(format string, a ...any) (string, *point, error) {
		return "", nil, &ParseError{entry, fmt.Sprintf(format, a...)}
	}
	name, act, ok := strings.Cut(entry, "=")
	if !ok {
		return bad("want name=action")
	}
	if !validName(name) {
		return bad("name must be non-empty letters, digits and . _ - /")
	}
	p := &point{}
	if a, n, ok := strings.Cut(act, "@"); ok {
		at, err := strconv.ParseUint(n, 10, 64)
		if err != nil || at == 0 {
			return bad("hit count %q must be a positive integer", n)
		}
		act, p.at = a, at
	}
	word, arg, hasArg := strings.Cut(act, "(")
	if hasArg {
		var ok bool
		if arg, ok = strings.CutSuffix(arg, ")"); !ok {
			return bad("missing ')'")
		}
	}
	switch {
	case word == "kill" && !hasArg:
		p.action = Kill
	case word == "stop" && !hasArg:
		p.action = Stop
	case word == "exit":
		p.action, p.arg = Exit, DefaultExitCode
		if hasArg {
			code, err := strconv.ParseUint(arg, 10, 8)
			if err != nil {
				return bad("exit code %q must be 0..255", arg)
			}
			p.arg = int64(code)
		}
	case word == "sleep" && hasArg:
		d, err := time.ParseDuration(arg)
		if err != nil || d < 0 {
			return bad("sleep duration %q: want e.g. 50ms", arg)
		}
		p.action, p.arg = Sleep, int64(d)
	default:
		return bad("unknown action %q: want kill, stop, exit, exit(N) or sleep(DURATION)", act)
	}
	return name, p, nil
}

func validName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '-', c == '/':
		default:
			return false
		}
	}
	return true
}

// FromEnv parses the spec in [EnvVar]. It returns nil (disarmed) when the
// variable is unset or blank. If [NotifyFDEnvVar] is set, the descriptor
// it names must be open; FromEnv marks it close-on-exec and the Set writes
// reached failpoint names to it.
func FromEnv() (*Set, error) {
	spec := os.Getenv(EnvVar)
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	s, err := Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvVar, err)
	}
	if v := os.Getenv(NotifyFDEnvVar); v != "" {
		fd, err := strconv.Atoi(v)
		if err != nil || fd < 0 {
			return nil, fmt.Errorf("%s=%q: %w", NotifyFDEnvVar, v, ErrNotifyFD)
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return nil, fmt.Errorf("%s=%d: %w: %w", NotifyFDEnvVar, fd, ErrNotifyFD, err)
		}
		s.notifyFD = fd
	}
	return s, nil
}

// Hit runs the action of failpoint name if it is armed in s. It does
// nothing if s is nil or name is not armed.
func (s *Set) Hit(name string) {
	if s != nil {
		s.hit(name)
	}
}

//go:noinline
func (s *Set) hit(name string) {
	p := s.points[name]
	if p == nil {
		return
	}
	if n := p.hits.Add(1); p.at != 0 && n != p.at {
		return
	}
	s.notify(name)
	switch p.action {
	case Kill:
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
		for { // SIGKILL is delivered on return from kill(2); never resume
			time.Sleep(time.Hour)
		}
	case Stop:
		stopSelf()
	case Exit:
		os.Exit(int(p.arg))
	case Sleep:
		time.Sleep(time.Duration(p.arg))
	}
}

// stopSelf stops the process and returns after SIGCONT. The signal is sent
// to the calling thread, so that this thread, which runs the code at the
// failpoint, is the one that dequeues it and stops before running on; a
// process-directed SIGSTOP could let it run a little before the group stop.
func stopSelf() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Tgkill(os.Getpid(), unix.Gettid(), unix.SIGSTOP)
}

// notify writes "name\n" to the notify fd, if any, in one write(2), which
// is atomic on a pipe. Errors are ignored: the action runs regardless.
func (s *Set) notify(name string) {
	if s.notifyFD < 0 {
		return
	}
	b := []byte(name + "\n")
	for {
		_, err := unix.Write(s.notifyFD, b)
		if err != unix.EINTR {
			return
		}
	}
}

// Armed reports whether failpoint name is armed in s (whatever its @n).
func (s *Set) Armed(name string) bool {
	return s != nil && s.points[name] != nil
}

// String returns the spec of s, entries sorted by name; [Parse] accepts it
// and yields an equivalent Set (without hit counts or notify fd). A nil
// Set formats as "".
func (s *Set) String() string {
	if s == nil {
		return ""
	}
	names := make([]string, 0, len(s.points))
	for name := range s.points {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, name := range names {
		p := s.points[name]
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name + "=" + p.action.String())
		switch {
		case p.action == Sleep:
			b.WriteString("(" + time.Duration(p.arg).String() + ")")
		case p.action == Exit && p.arg != DefaultExitCode:
			b.WriteString("(" + strconv.FormatInt(p.arg, 10) + ")")
		}
		if p.at != 0 {
			b.WriteString("@" + strconv.FormatUint(p.at, 10))
		}
	}
	return b.String()
}
