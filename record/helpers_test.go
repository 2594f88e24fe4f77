package record_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/tendtest"
)

const waitLimit = 20 * time.Second

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openView opens a process-private view of the cluster at seeds and waits
// until every partition of namespace ns has a master.
func openView(t testing.TB, seeds []string, ns string) *tend.Cluster {
	t.Helper()
	return openConfig(t, tend.Config{Seeds: seeds}, ns)
}

// openConfig opens a view with cfg (a 20 ms tend interval, a quiet logger)
// and waits until every partition of namespace ns has a master.
func openConfig(t testing.TB, cfg tend.Config, ns string) *tend.Cluster {
	t.Helper()
	cfg.TendInterval, cfg.Logger = 20*time.Millisecond, quiet()
	c, err := tend.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitUntil(t, "the view to converge", func() bool {
		for pid := range uint32(partmap.Partitions) {
			d, _ := partmap.DigestForPartition(pid)
			if _, err := c.Master(ns, d); err != nil {
				return false
			}
		}
		return true
	})
	return c
}

// waitUntil polls cond until it holds or waitLimit passes.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkGoroutines fails t if, after cleanup, more goroutines run than
// before it (a leak), allowing a few seconds for exits in progress.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines, %d before the test:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// hostileNode is a one-node cluster whose info messages are forwarded to a
// tendtest node and whose record messages are answered by the current
// reply function, which writes whatever it likes to the connection and
// returns false to close it.
type hostileNode struct {
	ln      net.Listener
	backend string
	reply   atomic.Pointer[func(c net.Conn, body []byte) bool]
	records atomic.Uint64 // record messages received
	admins  atomic.Uint64 // admin (login) messages received

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newHostileNode(t testing.TB) *hostileNode {
	t.Helper()
	sim, err := tendtest.New(tendtest.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileNode{ln: ln, backend: sim.Seeds()[0], conns: map[net.Conn]struct{}{}}
	h.wg.Go(h.accept)
	t.Cleanup(h.close)
	return h
}

func (h *hostileNode) addr() string { return h.ln.Addr().String() }

func (h *hostileNode) setReply(f func(c net.Conn, body []byte) bool) { h.reply.Store(&f) }

func (h *hostileNode) close() {
	h.ln.Close()
	h.mu.Lock()
	for c := range h.conns {
		c.Close()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hostileNode) accept() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns[c] = struct{}{}
		h.mu.Unlock()
		h.wg.Go(func() {
			defer func() {
				c.Close()
				h.mu.Lock()
				delete(h.conns, c)
				h.mu.Unlock()
			}()
			h.serve(c)
		})
	}
}

func (h *hostileNode) serve(c net.Conn) {
	var back net.Conn
	var buf []byte // reused: the node allocates nothing per record message
	defer func() {
		if back != nil {
			back.Close()
		}
	}()
	for {
		var hd [8]byte
		if _, err := io.ReadFull(c, hd[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint64(hd[:]) & (1<<48 - 1)
		if n > 1<<20 {
			return
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		body := buf[:n]
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if hd[1] == 2 { // an admin message: every login and authentication succeeds
			h.admins.Add(1)
			if !answerAdmin(c, hd, body) {
				return
			}
			continue
		}
		if hd[1] != 1 { // a record message
			h.records.Add(1)
			if !(*h.reply.Load())(c, body) {
				return
			}
			continue
		}
		if back == nil {
			var err error
			if back, err = net.Dial("tcp", h.backend); err != nil {
				return
			}
		}
		if _, err := back.Write(append(hd[:], body...)); err != nil {
			return
		}
		if _, err := io.ReadFull(back, hd[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(hd[:]) & (1<<48 - 1)
		body = make([]byte, n)
		if _, err := io.ReadFull(back, body); err != nil {
			return
		}
		if _, err := c.Write(append(hd[:], body...)); err != nil {
			return
		}
	}
}

// answerAdmin answers an admin message as a server with security on that
// accepts every credential: a login gets a new session token valid for an
// hour, an authentication succeeds.
func answerAdmin(c net.Conn, hd [8]byte, body []byte) bool {
	m, err := admin.ReadMessage(io.MultiReader(bytes.NewReader(hd[:]), bytes.NewReader(body)))
	if err != nil {
		return false
	}
	rep := &admin.Message{Command: m.Command}
	if m.Command == admin.CmdLogin {
		tok := make([]byte, 16)
		rand.Read(tok)
		rep.Fields = []admin.Field{{ID: admin.FieldSessionToken, Data: tok},
			{ID: admin.FieldSessionTTL, Data: binary.BigEndian.AppendUint32(nil, 3600)}}
	}
	_, err = c.Write(rep.Append(nil))
	return err == nil
}
