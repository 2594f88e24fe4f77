package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/index"
)

// binary is the kvstore built once by TestMain; the tests run it as a real
// process.
var kvstoreBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kvstore-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kvstoreBin = filepath.Join(dir, "kvstore")
	args := []string{"build", "-o", kvstoreBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kvstore:", err)
		return 1
	}
	return m.Run()
}

// instance is the data of one kvstore instance: log and index
// directories, both under t.TempDir (nothing in /dev/shm or SysV).
type instance struct {
	t          *testing.T
	dir, shm   string
	extra      []string
	namespaces string
	// argsOverride, if not nil, replaces the arguments args builds.
	argsOverride []string
}

func newInstance(t *testing.T, extra ...string) *instance {
	t.Helper()
	root := t.TempDir()
	return &instance{t: t, dir: filepath.Join(root, "data"), shm: filepath.Join(root, "shm"), extra: extra, namespaces: "test,cnt"}
}

// proc is a running kvstore.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan struct{}
	err    error // of Wait, once done is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// args are the command-line arguments of a server of the instance.
func (in *instance) args(more ...string) []string {
	if in.argsOverride != nil {
		return append(append([]string{}, in.argsOverride...), more...)
	}
	a := []string{"-dir", in.dir, "-shm-dir", in.shm, "-ns", in.namespaces, "-dii", "cnt", "-addr", "127.0.0.1:0",
		"-stage-entries", "4096", "-sprigs", "16", "-log-json", "-defrag-interval", "0"}
	a = append(a, in.extra...)
	return append(a, more...)
}

// start runs a server with the failpoints fps (may be empty) and waits
// until it listens, or returns the error it exited with.
func (in *instance) start(fps string, more ...string) (*proc, error) {
	if in.shm != "" {
		if err := os.MkdirAll(in.shm, 0o700); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(kvstoreBin, in.args(more...)...)
	cmd.Env = append(os.Environ(), failpoint.EnvVar+"="+fps)
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	in.t.Cleanup(func() { p.kill() })
	// The log (stderr) says "serving" with the address after every
	// namespace logged "namespace ready".
	lines := bufio.NewReader(errPipe)
	for {
		line, err := lines.ReadBytes('\n')
		p.stderr.Write(line)
		var l struct{ Msg, Addr string }
		if json.Unmarshal(line, &l) == nil && l.Msg == "serving" {
			p.addr = l.Addr
			break
		}
		if err != nil {
			break
		}
	}
	go func() {
		io.Copy(p.stderr, lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	if p.addr == "" {
		<-p.done
		return p, fmt.Errorf("kvstore exited before listening (%v): %s", p.err, p.stderr)
	}
	return p, nil
}

// mustStart is start that fails the test.
func (in *instance) mustStart(fps string, more ...string) *proc {
	in.t.Helper()
	p, err := in.start(fps, more...)
	if err != nil {
		in.t.Fatal(err)
	}
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	if p.err != nil {
		t.Fatalf("kvstore exited with %v after SIGTERM: %s", p.err, p.stderr)
	}
}

// wait waits for the process to end (killed at a failpoint) and checks it
// died of SIGKILL.
func (p *proc) waitKilled(t *testing.T) {
	t.Helper()
	<-p.done
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("kvstore ended with %v, want SIGKILL: %s", p.err, p.stderr)
	}
}

// checkIndexes runs index.CheckAt (what `shmctl check` runs) on the main
// segment of every namespace's index the instance keeps as files: after a
// kill, wherever it landed, the structure must be whole but for updates
// the kill interrupted (sprigs left odd by the writer, which the next
// start rebuilds cold). It returns how many indexes it checked.
func (in *instance) checkIndexes(t *testing.T) int {
	t.Helper()
	if in.shm == "" {
		return 0
	}
	mains, err := filepath.Glob(filepath.Join(in.shm, "index-i*-n*.b000"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mains {
		// A kill inside an index update leaves that update interrupted
		// (index.InterruptedError); anything else is damage.
		if err := index.CheckAt(context.Background(), arena.File(m)); err != nil && !errors.Is(err, index.ErrInterrupted) {
			t.Errorf("check of %s after the kill: %v", filepath.Base(m), err)
		}
	}
	return len(mains)
}

// waitKilledChecked is waitKilled, then checkIndexes, which must find an
// index.
func (p *proc) waitKilledChecked(t *testing.T, in *instance) {
	t.Helper()
	p.waitKilled(t)
	if in.shm != "" && in.checkIndexes(t) == 0 {
		t.Fatalf("no index segment in %s after the kill", in.shm)
	}
}

// readiness is what the server logged about a namespace's start.
type readiness struct {
	Mode, Reason string
	Records      uint64
}

// ready returns the "namespace ready" log lines by namespace.
func (p *proc) ready(t *testing.T) map[string]readiness {
	t.Helper()
	m := map[string]readiness{}
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		var l struct {
			Msg, NS, Mode, Reason string
			Records               uint64
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "namespace ready" {
			continue
		}
		m[l.NS] = readiness{l.Mode, l.Reason, l.Records}
	}
	return m
}

// expectStart checks every namespace started in mode, with a reason that
// starts with reason when cold.
func (p *proc) expectStart(t *testing.T, mode, reason string) {
	t.Helper()
	r := p.ready(t)
	if len(r) == 0 {
		t.Fatalf("no namespace ready in the log: %s", p.stderr)
	}
	for ns, s := range r {
		if s.Mode != mode || (mode == "cold" && !strings.HasPrefix(s.Reason, reason)) {
			t.Fatalf("namespace %s started %s (%q), want %s (%q)", ns, s.Mode, s.Reason, mode, reason)
		}
	}
}

// expectKilledMidDefrag checks the start after a kill in a defragmentation
// pass: at least one namespace (the one whose pass was killed) is cold,
// either for an unclean shutdown or, if its index was not written since
// the previous clean start (a data-in-index pass changes the log only),
// because its log changed; a namespace not written since then may come
// back warm. What each holds is the model's to check.
func (p *proc) expectKilledMidDefrag(t *testing.T) {
	t.Helper()
	cold := 0
	for ns, s := range p.ready(t) {
		switch {
		case s.Mode == "cold" && (strings.HasPrefix(s.Reason, "unclean shutdown") || strings.HasPrefix(s.Reason, "storage changed")):
			cold++
		case s.Mode != "warm":
			t.Fatalf("namespace %s started %s (%q) after a kill mid-defragmentation", ns, s.Mode, s.Reason)
		}
	}
	if cold == 0 {
		t.Fatalf("every namespace started warm after a kill mid-defragmentation: %s", p.stderr)
	}
}

// expectNS checks namespace ns started in mode (with a reason that starts
// with reason when cold).
func (p *proc) expectNS(t *testing.T, ns, mode, reason string) {
	t.Helper()
	s, ok := p.ready(t)[ns]
	if !ok || s.Mode != mode || (mode == "cold" && !strings.HasPrefix(s.Reason, reason)) {
		t.Fatalf("namespace %s started %+v (logged: %v), want %s (%q)", ns, s, ok, mode, reason)
	}
}

// client talks to a server.
type client struct {
	base string
	hc   *http.Client
}

func (p *proc) client() *client {
	return &client{base: "http://" + p.addr, hc: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
}

func (c *client) do(method, path, body string) (int, string, error) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// state is what a key holds: absent, or a value.
type state struct {
	present bool
	value   string // bins as the server answers them
}

// model tracks what every key must hold: the last acknowledged write, and
// an unacknowledged one (in flight when the server died) that may or may
// not have happened.
type model struct {
	mu       sync.Mutex
	acked    map[string]state // path -> state
	inflight map[string]state
}

func newModel() *model {
	return &model{acked: map[string]state{}, inflight: map[string]state{}}
}

// apply performs a write through c and records it: acknowledged on 200
// (404 for a delete of an absent key), in flight on a transport error.
// It returns the transport error.
func (m *model) apply(c *client, method, path, body string, want state) error {
	m.mu.Lock()
	m.inflight[path] = want
	m.mu.Unlock()
	code, text, err := c.do(method, path, body)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.inflight, path)
	switch {
	case code == 200, method == http.MethodDelete && code == 404:
		m.acked[path] = want
		return nil
	}
	return fmt.Errorf("%s %s: %d %s", method, path, code, text)
}

// verify reads every key the model knows and lists every difference:
// an acknowledged record missing or different, a deleted one back.
func (m *model) verify(c *client) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var problems []string
	for path, want := range m.acked {
		code, body, err := c.do(http.MethodGet, path, "")
		if err != nil {
			problems = append(problems, fmt.Sprintf("GET %s: %v", path, err))
			continue
		}
		got := state{present: code == 200, value: strings.TrimSpace(body)}
		if code != 200 && code != 404 {
			problems = append(problems, fmt.Sprintf("GET %s: %d %s", path, code, body))
			continue
		}
		if !got.present {
			got.value = ""
		}
		if got == want {
			continue
		}
		if alt, ok := m.inflight[path]; ok && got == alt {
			continue
		}
		switch {
		case want.present && !got.present:
			problems = append(problems, fmt.Sprintf("%s: acknowledged write %s is missing", path, want.value))
		case !want.present && got.present:
			problems = append(problems, fmt.Sprintf("%s: deleted record is back: %s", path, got.value))
		default:
			problems = append(problems, fmt.Sprintf("%s: holds %s, acknowledged %s", path, got.value, want.value))
		}
	}
	return problems
}

func (m *model) check(t *testing.T, c *client) {
	t.Helper()
	if problems := m.verify(c); len(problems) > 0 {
		t.Fatalf("%d problems, e.g. %s", len(problems), strings.Join(problems[:min(len(problems), 5)], "; "))
	}
	m.mu.Lock()
	n := len(m.acked)
	m.mu.Unlock()
	if n == 0 {
		t.Fatal("the model holds no key: the check would pass vacuously")
	}
}

// workload writes through c until ops writes were made or one fails:
// puts to both namespaces, overwrites and deletes, on keys prefix-0…
// prefix-(keys-1). onAck, if not nil, is called after each acknowledged
// write.
func workload(m *model, c *client, prefix string, keys, ops int, onAck ...func()) error {
	for i := range ops {
		k := fmt.Sprintf("%s-%d", prefix, (i*7)%keys)
		var err error
		switch i % 5 {
		case 0, 1, 2:
			v := fmt.Sprintf(`{"i":%d,"k":"%s"}`, i, k)
			err = m.apply(c, http.MethodPut, "/test/demo/"+k, v, state{true, v})
		case 3:
			err = m.apply(c, http.MethodDelete, "/test/demo/"+k, "", state{})
		case 4:
			err = m.apply(c, http.MethodPut, "/cnt/demo/"+k, fmt.Sprintf(`{"n":%d}`, i), state{true, fmt.Sprintf(`{"value":%d}`, i)})
		}
		if err != nil {
			return err
		}
		for _, f := range onAck {
			f()
		}
	}
	return nil
}

func TestCleanStopRestartsWarm(t *testing.T) {
	in := newInstance(t)
	p := in.mustStart("")
	p.expectStart(t, "cold", "segments missing")
	m := newModel()
	if err := workload(m, p.client(), "k", 53, 400); err != nil {
		t.Fatal(err)
	}
	m.check(t, p.client())
	p.stop(t)

	p = in.mustStart("")
	p.expectStart(t, "warm", "")
	m.check(t, p.client())
	if err := workload(m, p.client(), "k", 53, 100); err != nil {
		t.Fatal(err)
	}
	p.stop(t)

	p = in.mustStart("", "-check")
	p.expectStart(t, "warm", "")
	m.check(t, p.client())
	p.stop(t)

	p = in.mustStart("", "-coldstart")
	p.expectStart(t, "cold", "forced")
	m.check(t, p.client())
	p.stop(t)

	// Another partition-tree-sprigs: cold, naming both values.
	p = in.mustStart("", "-sprigs", "32")
	p.expectStart(t, "cold", "fingerprint changed: partition-tree-sprigs 16 doesn't match config 32")
	m.check(t, p.client())
	p.stop(t)
}

// TestLogWrittenWithoutTheIndexRestartsCold: records appended to the log
// while no server ran (kvstore -load) change the log's identity, so the
// saved index is not trusted and the rebuild picks them up.
func TestLogWrittenWithoutTheIndexRestartsCold(t *testing.T) {
	in := newInstance(t)
	m := newModel()
	p := in.mustStart("")
	if err := workload(m, p.client(), "k", 23, 100); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	load := exec.Command(kvstoreBin, in.args("-load", "500")...)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("-load: %v: %s", err, out)
	}
	p = in.mustStart("")
	p.expectStart(t, "cold", "storage changed")
	m.check(t, p.client())
	for _, path := range []string{"/test/demo/" + LoadKey(0), "/test/demo/" + LoadKey(499), "/cnt/demo/" + LoadKey(7)} {
		if code, body, err := p.client().do(http.MethodGet, path, ""); err != nil || code != 200 {
			t.Fatalf("GET %s of a loaded record: %d %s %v", path, code, body, err)
		}
	}
	if _, body, _ := p.client().do(http.MethodGet, "/cnt/demo/"+LoadKey(7), ""); strings.TrimSpace(body) != `{"value":7}` {
		t.Fatalf("loaded data-in-index record: %s", body)
	}
	p.stop(t)
}

// TestKilledAtFailpoints kills the server at each named point of a write
// (and of a defragmentation pass) while it serves writes, restarts it and
// checks the start is cold (unclean shutdown), every acknowledged write is
// there and no deleted record is back.
func TestKilledAtFailpoints(t *testing.T) {
	for _, tc := range []struct {
		name  string
		point string
		extra []string
	}{
		{"before log append", FailBeforeAppend, nil},
		{"mid log append", storage.FailAppendMid, nil},
		{"after log append", storage.FailAppendAfter, nil},
		{"after log append with -sync", storage.FailAppendAfter, []string{"-sync"}},
		{"first mutation marks the index dirty", index.FailMarkedDirty, nil},
		{"before index update", FailBeforeIndex, nil},
		{"mid index insert", index.FailInsertMid, nil},
		{"mid index delete", index.FailDeleteMid, nil},
		{"after index update", FailAfterIndex, nil},
		{"mid defragmentation", storage.FailDefragMid, []string{"-file-size", "4096", "-defrag-interval", "20ms", "-defrag-threshold", "0.9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInstance(t, tc.extra...)
			m := newModel()
			p := in.mustStart("")
			if err := workload(m, p.client(), "k", 41, 200); err != nil {
				t.Fatal(err)
			}
			p.stop(t)

			// Arm the point on its 30th hit (a defragmentation pass: its
			// first copy) and write until the server dies.
			spec := tc.point + "=kill@30"
			if tc.point == storage.FailDefragMid || tc.point == index.FailMarkedDirty {
				spec = tc.point + "=kill@1"
			}
			p = in.mustStart(spec)
			err := workload(m, p.client(), "k", 41, 100000)
			if err == nil {
				t.Fatalf("the server never reached %s in 100000 writes", tc.point)
			}
			p.waitKilledChecked(t, in)

			p = in.mustStart("")
			if tc.point == storage.FailDefragMid {
				p.expectKilledMidDefrag(t)
			} else if tc.point == index.FailMarkedDirty {
				// Killed at the first write, to namespace test: cnt was
				// attached and never written, so it stays warm.
				p.expectNS(t, "test", "cold", "unclean shutdown")
				p.expectNS(t, "cnt", "warm", "")
			} else {
				p.expectStart(t, "cold", "unclean shutdown")
			}
			m.check(t, p.client())
			p.stop(t)
			p = in.mustStart("")
			p.expectStart(t, "warm", "")
			m.check(t, p.client())
			p.stop(t)
		})
	}
}

// TestKilledAtRandomPoints kills the server with SIGKILL while three
// clients write and the defragmenter runs, after a random number of
// acknowledged writes (logged), so the kill lands wherever the server's
// goroutines happen to be; then it checks the restart.
func TestKilledAtRandomPoints(t *testing.T) {
	in := newInstance(t, "-file-size", "8192", "-defrag-interval", "5ms", "-defrag-threshold", "0.8")
	m := newModel()
	rounds := []int{20 + rand.IntN(100), 100 + rand.IntN(300), 300 + rand.IntN(500)}
	t.Logf("SIGKILL after %v acknowledged writes", rounds)
	for round, after := range rounds {
		p := in.mustStart("")
		if round > 0 {
			p.expectStart(t, "cold", "unclean shutdown")
			m.check(t, p.client())
		}
		var wg sync.WaitGroup
		acked := make(chan struct{}, 3*100000)
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				workload(m, p.client(), fmt.Sprintf("w%d", w), 31, 1<<30, func() {
					select {
					case acked <- struct{}{}:
					default:
					}
				})
			}()
		}
		for range after {
			<-acked
		}
		p.cmd.Process.Kill()
		wg.Wait()
		p.waitKilledChecked(t, in)
	}
	p := in.mustStart("")
	p.expectStart(t, "cold", "unclean shutdown")
	m.check(t, p.client())
	p.stop(t)
}

// TestFailedStartStaysWarm: a start that attaches and then fails before
// any write (killed, or unable to listen) leaves the index warm.
func TestFailedStartStaysWarm(t *testing.T) {
	in := newInstance(t)
	m := newModel()
	p := in.mustStart("")
	if err := workload(m, p.client(), "k", 23, 50); err != nil {
		t.Fatal(err)
	}
	p.stop(t)

	// Killed once every namespace is attached.
	if p, err := in.start(FailOpened + "=kill"); err == nil {
		t.Fatal("the server started despite the failpoint")
	} else {
		p.waitKilledChecked(t, in)
		p.expectStart(t, "warm", "")
	}
	// A port already in use: the start fails after attaching.
	blocker := in.mustStart("")
	blocker.expectStart(t, "warm", "")
	if _, err := in.start("", "-addr", blocker.addr); err == nil || !strings.Contains(err.Error(), "another kvstore is running") {
		t.Fatalf("second server on the same instance: %v", err)
	}
	blocker.stop(t)
	other := newInstance(t)
	busy := other.mustStart("")
	p, err := in.start("", "-addr", busy.addr)
	if err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("start on a port in use: %v", err)
	}
	p.expectStart(t, "warm", "")
	busy.stop(t)

	p = in.mustStart("")
	p.expectStart(t, "warm", "")
	m.check(t, p.client())
	p.stop(t)
}

// TestSecondServerRefuses: a second kvstore on the same instance and
// namespace refuses, naming the running one's pid: with the same log
// directory (its lock's holder), and with another log directory (the
// index's writer lease).
func TestSecondServerRefuses(t *testing.T) {
	in := newInstance(t)
	first := in.mustStart("")
	pid := first.cmd.Process.Pid
	_, err := in.start("")
	if want := fmt.Sprintf("pid %d holds its log directory", pid); err == nil || !strings.Contains(err.Error(), "another kvstore is running") || !strings.Contains(err.Error(), want) {
		t.Fatalf("second server, same log directory: %v, want a refusal naming %q", err, want)
	}
	other := *in
	other.dir = filepath.Join(t.TempDir(), "other-data")
	_, err = other.start("")
	if want := fmt.Sprintf("writer pid %d", pid); err == nil || !strings.Contains(err.Error(), "another kvstore is running") || !strings.Contains(err.Error(), want) {
		t.Fatalf("second server, same index, other log directory: %v, want a refusal naming %q", err, want)
	}
	// The first one is unharmed and still stops cleanly.
	if code, _, err := first.client().do(http.MethodGet, "/test/demo/x", ""); err != nil || code != 404 {
		t.Fatalf("first server after the refusal: %d %v", code, err)
	}
	first.stop(t)
	p := in.mustStart("")
	p.expectStart(t, "warm", "")
	p.stop(t)
}

func TestDataInIndexRefusesNonIntegers(t *testing.T) {
	in := newInstance(t)
	p := in.mustStart("")
	c := p.client()
	for _, body := range []string{`{"v":"x"}`, `{"v":1.5}`, `{"v":1e3}`, `{"a":1,"b":2}`, `{}`, `7`, `{"v":99999999999999999999}`} {
		code, text, err := c.do(http.MethodPut, "/cnt/demo/k", body)
		if err != nil || code != 400 || !strings.Contains(text, "single integer bin") {
			t.Errorf("PUT %s: %d %q %v, want 400 naming the single integer bin", body, code, text, err)
		}
	}
	if code, _, _ := c.do(http.MethodGet, "/cnt/demo/k", ""); code != 404 {
		t.Fatalf("a refused write left a record: GET %d", code)
	}
	if code, text, err := c.do(http.MethodPost, "/cnt/demo/k", `{"v": -42}`); err != nil || code != 200 {
		t.Fatalf("PUT integer: %d %s %v", code, text, err)
	}
	if code, text, _ := c.do(http.MethodGet, "/cnt/demo/k", ""); code != 200 || strings.TrimSpace(text) != `{"value":-42}` {
		t.Fatalf("GET: %d %s", code, text)
	}
	// A regular namespace takes any JSON object, and nothing else.
	if code, _, _ := c.do(http.MethodPut, "/test/demo/k", `{"v":"x","w":[1,2]}`); code != 200 {
		t.Fatalf("PUT object to a regular namespace: %d", code)
	}
	if code, _, _ := c.do(http.MethodPut, "/test/demo/k", `[1]`); code != 400 {
		t.Fatalf("PUT a non-object: %d, want 400", code)
	}
	if code, _, _ := c.do(http.MethodGet, "/nope/demo/k", ""); code != 404 {
		t.Fatalf("unknown namespace: %d, want 404", code)
	}
	p.stop(t)
}

// TestVerifyCatchesLossAndResurrection is the negative control of the
// model check: a record dropped behind the model's back, and a deleted
// record brought back, are both reported.
func TestVerifyCatchesLossAndResurrection(t *testing.T) {
	in := newInstance(t)
	p := in.mustStart("")
	c := p.client()
	m := newModel()
	if err := workload(m, c, "k", 23, 100); err != nil {
		t.Fatal(err)
	}
	m.check(t, c)
	var present, deleted string
	for path, s := range m.acked {
		if s.present && strings.HasPrefix(path, "/test/") && present == "" {
			present = path
		}
		if !s.present && deleted == "" {
			deleted = path
		}
	}
	if present == "" || deleted == "" {
		t.Fatal("workload made no present or no deleted record")
	}
	c.do(http.MethodDelete, present, "")
	c.do(http.MethodPut, deleted, `{"back":1}`)
	problems := m.verify(c)
	found := map[string]bool{}
	for _, pr := range problems {
		found[strings.SplitN(pr, ":", 2)[0]] = true
	}
	if len(problems) != 2 || !found[present] || !found[deleted] {
		t.Fatalf("verify reported %q, want the dropped %s and the resurrected %s", problems, present, deleted)
	}
	p.stop(t)
}

// logBytes is the size of the log files of namespace ns.
func (in *instance) logBytes(t *testing.T, ns string) (int64, int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(in.dir, ns, "log-*.dat"))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
	}
	return total, len(files)
}

// TestDefragBoundsTheLog: under an overwrite load the log grows; a
// defragmentation pass, wired to the index, brings it back under
// live/threshold plus the head file, and the records survive a warm and
// a cold restart (the rebuild then reads the defragmenter's copies).
func TestDefragBoundsTheLog(t *testing.T) {
	const fileSize, threshold = 8192, 0.5
	in := newInstance(t, "-file-size", fmt.Sprint(fileSize), "-defrag-threshold", fmt.Sprint(threshold))
	in.namespaces = "test"
	in.extra = append(in.extra, "-dii", "")
	p := in.mustStart("")
	c := p.client()
	m := newModel()
	for round := range 40 {
		for k := range 23 {
			v := fmt.Sprintf(`{"round":%d,"pad":"%s"}`, round, strings.Repeat("x", 40))
			if err := m.apply(c, http.MethodPut, fmt.Sprintf("/test/demo/k-%d", k), v, state{true, v}); err != nil {
				t.Fatal(err)
			}
		}
	}
	before, files := in.logBytes(t, "test")
	code, body, err := c.do(http.MethodPost, "/_defrag", "")
	if err != nil || code != 200 {
		t.Fatalf("POST /_defrag: %d %s %v", code, body, err)
	}
	after, filesAfter := in.logBytes(t, "test")
	// 23 live records of about 120 bytes: live/threshold is under one
	// file; allow the head file and the one the copies filled.
	if limit := int64(3 * fileSize); after > limit || after >= before {
		t.Fatalf("log %d bytes in %d files before the pass, %d in %d after (%s); want at most %d", before, files, after, filesAfter, body, limit)
	}
	t.Logf("log %d bytes in %d files before the pass, %d in %d after: %s", before, files, after, filesAfter, body)
	m.check(t, c)
	p = in.restartChecked(t, p, m, "warm", "")
	p = in.restartChecked(t, p, m, "cold", "forced", "-coldstart")
	p.stop(t)
}

// restartChecked stops p cleanly, starts the instance again with args,
// checks the start's mode (and, cold, its reason) and that the server
// holds what the model says, and returns the new server.
func (in *instance) restartChecked(t *testing.T, p *proc, m *model, mode, reason string, args ...string) *proc {
	t.Helper()
	p.stop(t)
	p = in.mustStart("", args...)
	p.expectStart(t, mode, reason)
	m.check(t, p.client())
	return p
}
