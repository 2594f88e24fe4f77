package backup

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
	"github.com/shmkit/shmkit/index"
)

// kvServer is a running examples/kvstore.
type kvServer struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex // guards log
	log  strings.Builder
	done chan error
}

func (s *kvServer) logged() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func startKV(t *testing.T, bin string, args ...string) *kvServer {
	t.Helper()
	s := &kvServer{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill() })
	r := bufio.NewReader(pipe)
	for {
		line, err := r.ReadString('\n')
		s.log.WriteString(line)
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
			s.addr = l.Addr
			break
		}
		if err != nil {
			t.Fatalf("kvstore did not start: %s", s.log.String())
		}
	}
	go func() {
		b, _ := io.ReadAll(r)
		s.mu.Lock()
		s.log.Write(b)
		s.mu.Unlock()
		s.done <- s.cmd.Wait()
	}()
	return s
}

func (s *kvServer) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-s.done; err != nil {
		t.Fatalf("kvstore stopped with %v: %s", err, s.logged())
	}
}

// modes returns the start mode logged for each namespace.
func (s *kvServer) modes() map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s.logged(), "\n") {
		var l struct{ Msg, NS, Mode, Reason string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "namespace ready" {
			m[l.NS] = l.Mode + " " + l.Reason
		}
	}
	return m
}

func (s *kvServer) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.addr+path, strings.NewReader(body))
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestKVStoreWarmAfterRestore: a kvstore's index (two namespaces, SysV) is
// backed up after a clean stop, wiped, restored, and the server then
// starts warm in both namespaces with the same records. The negative
// control is the start before the restore: cold, segments missing.
func TestKVStoreWarmAfterRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs examples/kvstore")
	}
	bin := filepath.Join(t.TempDir(), "kvstore")
	build := exec.Command("go", "build", "-o", bin, "../examples/kvstore")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build kvstore: %v: %s", err, out)
	}
	var offs []arena.Key
	for ns := range arena.Key(2) {
		for b := range arena.Key(index.MaxStages) {
			offs = append(offs, ns<<8|b)
		}
	}
	base := arenatest.SysVKeySet(t, 0xe00, offs...)
	data := t.TempDir()
	args := []string{"-dir", data, "-sysv-base", fmt.Sprint(uint32(base)), "-ns", "test,cnt", "-dii", "cnt",
		"-addr", "127.0.0.1:0", "-stage-entries", "256", "-sprigs", "16", "-log-json", "-defrag-interval", "0"}

	s := startKV(t, bin, args...)
	want := map[string]string{}
	for i := range 700 { // 700 records: three stages of 256 entries
		k := fmt.Sprintf("/test/demo/k%d", i)
		v := fmt.Sprintf(`{"i":%d}`, i)
		if code, body := s.do(t, http.MethodPut, k, v); code/100 != 2 {
			t.Fatalf("put %s: %d %s", k, code, body)
		}
		want[k] = v
		if i%3 == 0 {
			k := fmt.Sprintf("/cnt/demo/c%d", i)
			if code, body := s.do(t, http.MethodPut, k, fmt.Sprintf(`{"value":%d}`, i)); code/100 != 2 {
				t.Fatalf("put %s: %d %s", k, code, body)
			}
			want[k] = fmt.Sprintf(`{"value":%d}`, i)
		}
	}
	s.stop(t)

	src := Source{Indexes: []index.Config{
		{Store: index.SysVAt(base), Namespace: 0},
		{Store: index.SysVAt(base + 1<<8), Namespace: 1},
	}}
	dir := dirOf(t)
	if _, err := Backup(ctx, src, dir, Options{Compression: Zstd, Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	// The reboot: every segment gone.
	var all []arena.Location
	for _, o := range offs {
		all = append(all, arena.SysV(base+o))
	}
	removeAll(t, all...)
	if _, err := Restore(ctx, dir, Options{Logger: quiet()}); err != nil {
		t.Fatal(err)
	}
	s = startKV(t, bin, args...)
	for ns, m := range s.modes() {
		if !strings.HasPrefix(m, "warm") {
			t.Errorf("namespace %s started %s after the restore, want warm", ns, m)
		}
	}
	if len(s.modes()) != 2 {
		t.Errorf("namespaces ready: %v", s.modes())
	}
	for k, v := range want {
		code, body := s.do(t, http.MethodGet, k, "")
		if code != http.StatusOK || strings.TrimSpace(body) != v {
			t.Fatalf("get %s after the restore: %d %q, want %q", k, code, body, v)
		}
	}
	s.stop(t)

	// Negative control: without the restore the start is cold.
	removeAll(t, all...)
	s = startKV(t, bin, args...)
	for ns, m := range s.modes() {
		if !strings.HasPrefix(m, "cold") {
			t.Errorf("namespace %s started %s without its segments, want cold", ns, m)
		}
	}
	s.stop(t)
	removeAll(t, all...)
	os.RemoveAll(dir)
}
