package info

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// fakeServer answers info requests on a loopback listener with handle's
// reply body (or does something nasty when handle returns nil).
type fakeServer struct {
	ln     net.Listener
	handle func(c net.Conn, names []string) bool // false: stop serving this conn
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	accept int
}

func newFakeServer(t *testing.T, handle func(c net.Conn, names []string) bool) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, handle: handle}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.accept++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				for {
					body, err := ReadMessage(c, 0, nil)
					if err != nil {
						return
					}
					if !s.handle(c, ParseRequest(body)) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accept
}

func echoHandler(c net.Conn, names []string) bool {
	var body []byte
	for _, n := range names {
		body = AppendReplyLine(body, n, "v-"+n)
	}
	msg, _ := AppendMessage(nil, body)
	_, err := c.Write(msg)
	return err == nil
}

func TestConnRequest(t *testing.T) {
	s := newFakeServer(t, echoHandler)
	ctx := context.Background()
	c, err := Dial(ctx, s.addr(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		m, err := c.Request(ctx, "node", "build")
		if err != nil {
			t.Fatal(err)
		}
		if m["node"] != "v-node" || m["build"] != "v-build" {
			t.Fatalf("reply %v", m)
		}
		if got := c.RequestsSent(); got != uint64(i+1) {
			t.Fatalf("RequestsSent = %d", got)
		}
	}
	v, err := Value(map[string]string{"a": "1"}, "b")
	if !errors.Is(err, ErrMissing) || v != "" {
		t.Fatalf("Value missing: %q, %v", v, err)
	}
	if _, err := c.Request(ctx, "bad\nname"); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("bad name: %v", err)
	}
	if c.Err() != nil {
		t.Fatal("invalid name must not break the connection")
	}
	if s.accepted() != 1 {
		t.Fatalf("accepted %d connections, want 1 (reuse)", s.accepted())
	}
}

func TestConnReadTimeoutBreaksConn(t *testing.T) {
	s := newFakeServer(t, func(net.Conn, []string) bool { return true }) // never answers
	c, err := Dial(context.Background(), s.addr(), Options{ReadTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Request(context.Background(), "node")
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if _, err := c.Request(context.Background(), "node"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after failure err = %v, want ErrClosed", err)
	}
	if c.Err() == nil {
		t.Fatal("Err() = nil after failure")
	}
}

func TestConnContextCancel(t *testing.T) {
	s := newFakeServer(t, func(net.Conn, []string) bool { return true })
	c, err := Dial(context.Background(), s.addr(), Options{ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	start := time.Now()
	_, err = c.Request(ctx, "node")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("cancel did not interrupt the read")
	}
	// An already-cancelled context fails without touching the network.
	if _, err := c.Request(ctx, "node"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestConnRejectsOversizedReply(t *testing.T) {
	s := newFakeServer(t, func(c net.Conn, _ []string) bool {
		h := Header{Version: 2, Type: 1, Length: 1 << 40}.Encode()
		c.Write(h[:])
		return true
	})
	c, err := Dial(context.Background(), s.addr(), Options{MaxReplySize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Request(context.Background(), "replicas")
	var fe *FrameError
	if !errors.Is(err, ErrTooLarge) || !errors.As(err, &fe) || fe.Length != 1<<40 {
		t.Fatalf("err = %v, want ErrTooLarge with length", err)
	}
	if c.Err() == nil {
		t.Fatal("connection should be closed after an oversized header")
	}
}

func TestConnServerHangsUp(t *testing.T) {
	s := newFakeServer(t, func(net.Conn, []string) bool { return false })
	c, err := Dial(context.Background(), s.addr(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Request(context.Background(), "node"); err == nil {
		t.Fatal("want an error when the server hangs up")
	}
}

func TestConnCloseInterruptsRequest(t *testing.T) {
	s := newFakeServer(t, func(net.Conn, []string) bool { return true })
	c, err := Dial(context.Background(), s.addr(), Options{ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(30*time.Millisecond, func() { c.Close() })
	_, err = c.Request(context.Background(), "node")
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := Dial(context.Background(), addr, Options{ConnectTimeout: time.Second}); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

func TestPool(t *testing.T) {
	var mu sync.Mutex
	failNext := false
	s := newFakeServer(t, func(c net.Conn, names []string) bool {
		mu.Lock()
		f := failNext
		failNext = false
		mu.Unlock()
		if f {
			return false // hang up without answering
		}
		return echoHandler(c, names)
	})
	p := NewPool(PoolOptions{})
	defer p.Close()
	ctx := context.Background()
	for range 3 {
		if _, err := p.Request(ctx, s.addr(), "node"); err != nil {
			t.Fatal(err)
		}
	}
	if p.Dials() != 1 || s.accepted() != 1 {
		t.Fatalf("dials %d accepted %d, want 1 (reuse)", p.Dials(), s.accepted())
	}
	mu.Lock()
	failNext = true
	mu.Unlock()
	if _, err := p.Request(ctx, s.addr(), "node"); err == nil {
		t.Fatal("want error from hang-up")
	}
	if _, err := p.Request(ctx, s.addr(), "node"); err != nil {
		t.Fatalf("redial: %v", err)
	}
	if p.Dials() != 2 {
		t.Fatalf("dials = %d, want 2", p.Dials())
	}
	if p.RequestsSent() != 5 {
		t.Fatalf("RequestsSent = %d, want 5", p.RequestsSent())
	}
	p.CloseAddr(s.addr())
	p.Close()
	if _, err := p.Request(ctx, s.addr(), "node"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close err = %v", err)
	}
}
