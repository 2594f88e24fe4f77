package record_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend"
)

// header returns a proto header of the given version, type and length.
func header(version, typ byte, n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	b[0], b[1] = version, typ
	return b[:]
}

// reply returns a valid reply with result code rc and bins.
func reply(t testing.TB, rc wire.ResultCode, bins ...wire.Op) []byte {
	b, err := wire.AppendReply(nil, &wire.Header{ResultCode: rc, Generation: 7}, bins)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeReply(b []byte) func(net.Conn, []byte) bool {
	return func(c net.Conn, _ []byte) bool { c.Write(b); return true }
}

// hostileClient returns a hostile node and a client on a view of it.
func hostileClient(t testing.TB) (*hostileNode, *record.Client) {
	h := newHostileNode(t)
	c, err := record.NewClient(openView(t, []string{h.addr()}, "test"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return h, c
}

// TestHostileReplies sends commands to a node that answers with damaged,
// truncated, oversized or no replies: every command ends, within its
// policy's time, with a typed error, and no goroutine or connection is
// left behind.
func TestHostileReplies(t *testing.T) {
	checkGoroutines(t)
	h, c := hostileClient(t)
	key, _ := record.NewKey("test", "demo", "k")
	pol := record.NewPolicy()
	pol.SocketTimeout, pol.TotalTimeout = 100*time.Millisecond, 400*time.Millisecond

	closeAfter := func(b []byte) func(net.Conn, []byte) bool {
		return func(c net.Conn, _ []byte) bool { c.Write(b); return false }
	}
	valid := reply(t, wire.ResultOK, wire.Op{Type: wire.OpRead, Bin: "x", Value: wire.IntValue(1)})
	badOps := append([]byte(nil), valid...)
	binary.BigEndian.PutUint16(badOps[8+20:], 9) // 9 ops announced, 1 present
	for _, tc := range []struct {
		name  string
		reply func(net.Conn, []byte) bool
		want  error
	}{
		{"closed", func(net.Conn, []byte) bool { return false }, record.ErrNetwork},
		{"truncated header", closeAfter(header(2, 3, 40)[:3]), record.ErrNetwork},
		{"truncated body", closeAfter(append(header(2, 3, 100), make([]byte, 30)...)), record.ErrNetwork},
		{"info type", writeReply(append(header(2, 1, 22), make([]byte, 22)...)), record.ErrProtocol},
		{"compressed", writeReply(append(header(2, 4, 22), make([]byte, 22)...)), record.ErrProtocol},
		{"version", writeReply(append(header(9, 3, 22), make([]byte, 22)...)), record.ErrProtocol},
		{"huge", writeReply(header(2, 3, 1<<47)), record.ErrProtocol},
		{"short body", writeReply(append(header(2, 3, 5), make([]byte, 5)...)), record.ErrProtocol},
		{"zero message header", writeReply(append(header(2, 3, 22), make([]byte, 22)...)), record.ErrProtocol},
		{"ops beyond the body", writeReply(badOps), record.ErrProtocol},
		{"two replies", writeReply(append(append([]byte(nil), valid...), valid...)), record.ErrProtocol},
		{"no reply", func(net.Conn, []byte) bool { return true }, record.ErrTimeout},
		{"half a reply then silence", writeReply(valid[:len(valid)-3]), record.ErrTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.setReply(tc.reply)
			start := time.Now()
			_, err := c.Get(context.Background(), pol, key)
			took := time.Since(start)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if took > pol.TotalTimeout+time.Second {
				t.Errorf("took %v with TotalTimeout %v", took, pol.TotalTimeout)
			}
			t.Logf("%v in %v", err, took.Round(time.Millisecond))
		})
	}
	// A valid reply on a connection after all that.
	h.setReply(writeReply(valid))
	rec, err := c.Get(context.Background(), pol, key)
	if err != nil || rec.Bins["x"] != int64(1) || rec.Generation != 7 {
		t.Fatalf("valid reply: %+v %v", rec, err)
	}

	// Random bytes after a valid proto header, and random bytes: errors,
	// never a panic.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		b := make([]byte, rng.IntN(64))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if i%2 == 0 {
			b = append(header(2, 3, uint64(len(b))), b...)
		}
		h.setReply(writeReply(b))
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		c.Get(ctx, pol, key)
		cancel()
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Stats().Nodes {
		if n.Open != 0 {
			t.Errorf("node %s: %d connections open after Close", n.Name, n.Open)
		}
	}
	if _, err := c.Get(context.Background(), pol, key); !errors.Is(err, record.ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}

// TestResultCodes answers every result code and checks the error each
// command returns: errors.Is with the code, the named errors for the
// codes that have one, and not-found as a false answer for Exists and
// Delete.
func TestResultCodes(t *testing.T) {
	checkGoroutines(t)
	h, c := hostileClient(t)
	defer c.Close()
	key, _ := record.NewKey("test", "demo", 1)
	ctx := context.Background()
	named := map[wire.ResultCode]error{
		2: record.ErrKeyNotFound, 3: record.ErrGenerationMismatch, 4: record.ErrParameter, 5: record.ErrKeyExists,
		9: record.ErrServerTimeout, 11: record.ErrPartitionUnavailable, 12: record.ErrBinTypeMismatch,
		13: record.ErrRecordTooBig, 14: record.ErrKeyBusy, 20: record.ErrInvalidNamespace, 21: record.ErrBinNameTooLong,
	}
	for code := range 256 {
		rc := wire.ResultCode(code)
		h.setReply(writeReply(reply(t, rc)))
		_, gerr := c.Get(ctx, nil, key)
		perr := c.Put(ctx, nil, key, record.BinMap{"a": 1})
		found, derr := c.Delete(ctx, nil, key)
		exists, eerr := c.Exists(ctx, nil, key)
		if rc == wire.ResultOK {
			if gerr != nil || perr != nil || derr != nil || eerr != nil || !found || !exists {
				t.Fatalf("ok: %v %v %v %v %v %v", gerr, perr, derr, eerr, found, exists)
			}
			continue
		}
		for i, err := range []error{gerr, perr} {
			got, ok := record.ResultCode(err)
			if !errors.Is(err, rc) || !ok || got != rc {
				t.Fatalf("code %d, command %d: %v", code, i, err)
			}
			if want := named[rc]; want != nil && !errors.Is(err, want) {
				t.Fatalf("code %d: %v is not %v", code, err, want)
			}
			for other, e := range named {
				if other != rc && errors.Is(err, e) {
					t.Fatalf("code %d: %v is also %v", code, err, e)
				}
			}
		}
		if rc == wire.ResultKeyNotFound {
			if derr != nil || eerr != nil || found || exists {
				t.Fatalf("not found: delete %v %v, exists %v %v", found, derr, exists, eerr)
			}
		} else if !errors.Is(derr, rc) || !errors.Is(eerr, rc) {
			t.Fatalf("code %d: delete %v, exists %v", code, derr, eerr)
		}
	}
	// A server error is an answer, not a broken connection: one
	// connection served all of them, but for NOT_AUTHENTICATED (80),
	// after which the connection is closed (the four commands dial four
	// new ones; without credentials in the view they are not retried).
	for _, n := range c.Stats().Nodes {
		if n.Dials != 1+4 {
			t.Errorf("node %s: %d dials, want 5", n.Name, n.Dials)
		}
	}
}

// TestNotAuthenticatedRelogin: a node that answers a command with
// NOT_AUTHENTICATED (its session for the connection ended) makes the
// client drop the connection and the node's session, and retry on a new
// connection that logs in again (not with the dropped token); without
// credentials in the view the answer is final (TestResultCodes).
func TestNotAuthenticatedRelogin(t *testing.T) {
	checkGoroutines(t)
	h := newHostileNode(t)
	cl := openConfig(t, tend.Config{Seeds: []string{h.addr()}, User: "u", Password: "p"}, "test")
	c := newClient(t, cl)
	auth := cl.Authenticator()
	var n atomic.Int32
	ok := reply(t, wire.ResultOK, wire.Op{Type: wire.OpRead, Bin: "x", Value: wire.IntValue(1)})
	notAuth := reply(t, wire.ResultNotAuthenticated)
	h.setReply(func(conn net.Conn, _ []byte) bool {
		if n.Add(1) == 1 {
			conn.Write(notAuth)
		} else {
			conn.Write(ok)
		}
		return true
	})
	logins, tokens := auth.Logins(), auth.TokenAuths()
	key, _ := record.NewKey("test", "demo", "k")
	rec, err := c.Get(context.Background(), nil, key)
	if err != nil || rec.Bins["x"] != int64(1) {
		t.Fatalf("get: %v %v", rec, err)
	}
	s := c.Stats()
	if s.Retries != 1 || len(s.Nodes) != 1 || s.Nodes[0].Dials != 2 {
		t.Errorf("stats %+v: want one retry on a second connection", s)
	}
	// The first connection authenticated with the tender's token; the
	// second, after the session was dropped, logged in.
	if auth.TokenAuths()-tokens != 1 || auth.Logins()-logins != 1 || h.admins.Load() < 3 {
		t.Errorf("token authentications %d -> %d, logins %d -> %d, %d admin messages",
			tokens, auth.TokenAuths(), logins, auth.Logins(), h.admins.Load())
	}
}
