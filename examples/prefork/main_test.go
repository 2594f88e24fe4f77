package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/arena/arenatest"
)

// TestPrefork builds the example, runs it with a simulated cluster and two
// workers, queries both endpoints, then interrupts it and checks that it
// exits cleanly and leaves no segment behind.
func TestPrefork(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a binary")
	}
	pf := startPrefork(t, "-workers", "2")
	stderr, base, client := pf.stderr, pf.base, pf.client

	var route struct {
		NS, Set, Key string
		Digest       []int
		PartitionID  uint32 `json:"partition_id"`
		Master       *struct {
			Name      string
			Addresses []string
		}
		Replicas []struct{ Name string }
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(base + "/route/test/demo/myTestKey")
		if err == nil {
			ok := resp.StatusCode == http.StatusOK
			if ok {
				err = json.NewDecoder(resp.Body).Decode(&route)
			}
			resp.Body.Close()
			if ok && err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no route answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []int{149, 186, 200, 254, 138, 5, 9, 52, 115, 70, 1, 194, 131, 184, 51, 95, 232, 241, 179, 74}
	if !slices.Equal(route.Digest, want) || route.PartitionID != 2709 {
		t.Errorf("route: digest %v partition %d, want %v and 2709", route.Digest, route.PartitionID, want)
	}
	if route.Master == nil || route.Master.Name == "" || len(route.Master.Addresses) == 0 || len(route.Replicas) != 1 {
		t.Errorf("route: %+v", route)
	}

	roles := map[string]bool{}
	for range 20 {
		st, err := getStats(client, base)
		if err != nil || st.OwnerPID == 0 || st.Tends == 0 {
			t.Fatalf("stats: %+v %v", st, err)
		}
		roles[st.Role] = true
	}
	t.Logf("roles seen: %v", roles)

	killOwner(t, client, base, route.Master.Name, stderr)

	out := pf.interrupt(t)
	// The new owner and the restarted worker; the killed one never got to.
	if n := strings.Count(out, "worker exiting"); n != 2 {
		t.Errorf("%d workers exited cleanly, want 2\n%s", n, out)
	}
	if !strings.Contains(out, "tend: released lease") {
		t.Errorf("owner did not release the lease\n%s", out)
	}
}

// interrupt sends SIGINT to the master, waits for a clean exit, checks that
// no segment is left behind and returns the log.
func (pf *prefork) interrupt(t *testing.T) string {
	t.Helper()
	if err := pf.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, pf.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit after SIGINT\n%s", pf.stderr.String())
	}
	if _, err := arena.StatOf(pf.loc); !errors.Is(err, arena.ErrNotFound) {
		t.Errorf("segment left behind: %v", err)
	}
	return pf.stderr.String()
}

// prefork is a running example: the master process, its stderr, the
// base URL and the segment of its view.
type prefork struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	base   string
	client *http.Client
	loc    arena.Location
}

// startPrefork builds the example and runs it with a simulated 3-node
// cluster, a fresh test key and the extra arguments; it waits for the
// address the master prints.
func startPrefork(t *testing.T, args ...string) *prefork {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "prefork")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	key := arenatest.SysVKey(t)
	cmd := exec.Command(bin, append([]string{"-sim", "3", "-addr", "127.0.0.1:0",
		"-shm-key", fmt.Sprintf("%#x", uint32(key)), "-tend-interval", "100ms", "-takeover-threshold", "1s"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("no address: %v\n%s", err, stderr.String())
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	// A new connection per request, so that requests reach every worker.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	return &prefork{cmd: cmd, stderr: stderr, base: "http://" + addr, client: client, loc: arena.SysV(key)}
}

// lockedBuffer is an io.Writer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// stats is the part of a /stats answer the test reads.
type stats struct {
	Pid, Worker int
	Role        string
	OwnerPID    int
	Epoch       uint64
	Tends       uint64
	Takeovers   []struct {
		Epoch  uint64
		Reason string
	}
}

func getStats(client *http.Client, base string) (stats, error) {
	var st stats
	resp, err := client.Get(base + "/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("stats: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// getMaster returns the master /route names for myTestKey.
func getMaster(client *http.Client, base string) (string, error) {
	resp, err := client.Get(base + "/route/test/demo/myTestKey")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("route: %s", resp.Status)
	}
	var r struct{ Master *struct{ Name string } }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", err
	}
	if r.Master == nil {
		return "", errors.New("route: no master")
	}
	return r.Master.Name, nil
}

// logLine returns the index of the first line of out that contains every
// part, or -1.
func logLine(out string, parts ...string) int {
next:
	for i, line := range strings.Split(out, "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		return i
	}
	return -1
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, stderr *lockedBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\n%s", what, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killOwner finds the tending worker through /stats, SIGKILLs it, and
// checks that another worker takes over (role owner, a newer epoch, reason
// "owner dead") while /route keeps answering with the same master, and
// that the master logs the death and restarts the worker.
func killOwner(t *testing.T, client *http.Client, base, master string, stderr *lockedBuffer) {
	t.Helper()
	var owner stats
	waitFor(t, "a /stats answer from the tending worker", stderr, func() bool {
		st, err := getStats(client, base)
		if err == nil && st.Role == "owner" {
			owner = st
			return true
		}
		return false
	})
	if owner.OwnerPID != owner.Pid || owner.Epoch == 0 {
		t.Fatalf("owner's stats: %+v", owner)
	}

	// Readers: /route, over new connections, throughout.
	type result struct {
		at  time.Time
		err error
	}
	var (
		mu      sync.Mutex
		results []result
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			name, err := getMaster(client, base)
			if err == nil && name != master {
				err = fmt.Errorf("master %s, want %s", name, master)
			}
			mu.Lock()
			results = append(results, result{time.Now(), err})
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})

	if err := syscall.Kill(owner.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Gone (reaped by the master): from here on every request must be
	// answered by a live worker.
	waitFor(t, "the killed worker to be reaped", stderr, func() bool {
		return errors.Is(syscall.Kill(owner.Pid, 0), syscall.ESRCH)
	})
	gone := time.Now()

	var next stats
	waitFor(t, "another worker to take over", stderr, func() bool {
		st, err := getStats(client, base)
		if err == nil && st.Role == "owner" && st.Pid != owner.Pid && st.Epoch > owner.Epoch &&
			len(st.Takeovers) > 0 && st.Takeovers[len(st.Takeovers)-1].Reason == "owner dead" {
			next = st
			return true
		}
		return false
	})
	t.Logf("worker %d (pid %d, epoch %d) killed; worker %d (pid %d) took over at epoch %d, reason owner dead",
		owner.Worker, owner.Pid, owner.Epoch, next.Worker, next.Pid, next.Epoch)
	// The master restarts the dead worker under its id; the new process
	// answers as a follower.
	waitFor(t, "the restarted worker to answer", stderr, func() bool {
		st, err := getStats(client, base)
		return err == nil && st.Worker == owner.Worker && st.Pid != owner.Pid && st.Role == "follower" && st.OwnerPID == next.Pid
	})
	out := stderr.String()
	died := logLine(out, `msg="worker died"`, fmt.Sprintf("worker=%d worker_pid=%d", owner.Worker, owner.Pid), `status="signal: killed"`)
	restart := logLine(out, `msg="restarting worker"`, fmt.Sprintf("worker=%d", owner.Worker))
	if died < 0 || restart < died {
		t.Errorf("master log: death at %d, restart at %d; want both, in that order\n%s", died, restart, out)
	}

	// A little more traffic after the takeover, then stop the readers.
	mu.Lock()
	n0 := len(results)
	mu.Unlock()
	waitFor(t, "more /route answers", stderr, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(results) >= n0+10
	})
	close(done)
	wg.Wait()
	before, after := 0, 0
	for _, r := range results {
		switch {
		case r.at.Before(gone):
			// A request the dying worker had accepted may be reset.
			if r.err != nil {
				t.Logf("during the kill: %v", r.err)
			}
		case r.err != nil:
			t.Errorf("/route after the kill: %v", r.err)
		default:
			after++
		}
		if r.at.Before(gone) {
			before++
		}
	}
	if after < 10 {
		t.Errorf("%d /route answers after the kill, want at least 10", after)
	}
	t.Logf("/route: %d requests while the worker died, %d answered after", before, after)
}
