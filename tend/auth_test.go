package tend_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// authFront stands before a clear-text node as a server with security
// enabled: a connection must log in (or authenticate with a token it
// issued) before anything is relayed to the node.
type authFront struct {
	ln     net.Listener
	target string
	hashes map[string]string // user -> HashPassword(password)
	ttl    uint32            // session TTL it grants, in seconds

	mu         sync.Mutex
	tokens     map[string]time.Time // token -> server-side expiry
	issued     [][]byte
	conns      map[net.Conn]bool
	logins     int
	tokenAuths int
	refused    int
}

// hashUsers maps users to their password hashes (bcrypt is slow: hash
// once per test).
func hashUsers(t testing.TB, users map[string]string) map[string]string {
	t.Helper()
	hashes := map[string]string{}
	for u, p := range users {
		h, err := admin.HashPassword(p)
		if err != nil {
			t.Fatal(err)
		}
		hashes[u] = h
	}
	return hashes
}

func startAuthFront(t testing.TB, target string, hashes map[string]string, ttl uint32) *authFront {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &authFront{ln: ln, target: target, hashes: hashes, ttl: ttl,
		tokens: map[string]time.Time{}, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); f.restart(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns[c] = true
			f.mu.Unlock()
			wg.Go(func() {
				defer func() {
					c.Close()
					f.mu.Lock()
					delete(f.conns, c)
					f.mu.Unlock()
				}()
				if f.admit(c) {
					relay(c, f.target)
				}
			})
		}
	})
	return f
}

func (f *authFront) addr() string { return f.ln.Addr().String() }

// restart is a node restart as clients see it: every connection drops and
// every session it issued is forgotten.
func (f *authFront) restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
	clear(f.tokens)
}

// admit runs the admin exchange at the start of a connection.
func (f *authFront) admit(c net.Conn) bool {
	for {
		m, err := admin.ReadMessage(c)
		if err != nil {
			return false // an info request before login: not authenticated
		}
		user, _ := m.Field(admin.FieldUser)
		reply := &admin.Message{Command: m.Command}
		f.mu.Lock()
		switch m.Command {
		case admin.CmdLogin:
			cred, _ := m.Field(admin.FieldCredential)
			h, ok := f.hashes[string(user)]
			switch {
			case !ok:
				reply.Result = admin.ResultInvalidUser
			case string(cred) != h:
				reply.Result = admin.ResultInvalidPassword
			default:
				tok := make([]byte, 16)
				rand.Read(tok)
				f.tokens[string(tok)] = time.Now().Add(time.Duration(f.ttl) * time.Second)
				f.issued = append(f.issued, tok)
				f.logins++
				reply.Fields = []admin.Field{{ID: admin.FieldSessionToken, Data: tok},
					{ID: admin.FieldSessionTTL, Data: binary.BigEndian.AppendUint32(nil, f.ttl)}}
			}
		case admin.CmdAuthenticate:
			tok, _ := m.Field(admin.FieldSessionToken)
			exp, ok := f.tokens[string(tok)]
			switch {
			case !ok:
				reply.Result = admin.ResultInvalidCredential
			case time.Now().After(exp):
				reply.Result = admin.ResultExpiredSession
			default:
				f.tokenAuths++
			}
		default:
			reply.Result = admin.ResultInvalidCommand
		}
		if reply.Result != admin.ResultOK {
			f.refused++
		}
		f.mu.Unlock()
		if _, err := c.Write(reply.Append(nil)); err != nil {
			return false
		}
		if reply.Result == admin.ResultOK {
			return true
		}
	}
}

func (f *authFront) counts() (logins, tokenAuths, refused int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins, f.tokenAuths, f.refused
}

// relay copies between c and a new connection to target until either ends.
func relay(c net.Conn, target string) {
	b, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite(); close(done) }()
	io.Copy(c, b)
	c.Close()
	<-done
}

// securedCluster puts an auth front before every node of sim and has the
// nodes list the fronts as their peers.
func securedCluster(t testing.TB, sim *tendtest.Cluster, users map[string]string, ttl uint32) []*authFront {
	t.Helper()
	nodes := sim.Nodes()
	fronts := make([]*authFront, len(nodes))
	hashes := hashUsers(t, users)
	for i, n := range nodes {
		fronts[i] = startAuthFront(t, n.Addr, hashes, ttl)
	}
	for i := range nodes {
		gen, err := sim.PeersGeneration(i)
		if err != nil {
			t.Fatal(err)
		}
		p := info.Peers{Generation: gen}
		for j, f := range fronts {
			if j != i {
				_, port, _ := net.SplitHostPort(f.addr())
				pn, _ := strconv.Atoi(port)
				p.Peers = append(p.Peers, info.Peer{Name: nodes[j].Name, Hosts: []info.HostPort{{Host: "127.0.0.1", Port: pn}}})
			}
		}
		if err := sim.SetMalformed(i, info.CmdPeersClearStd, info.FormatPeers(p)); err != nil {
			t.Fatal(err)
		}
	}
	return fronts
}

// TestAuthLogin: a tender with the right credentials logs in to every
// node (once each), tends the cluster, and after a node restart (its
// sessions gone) logs in again and tends on. Nothing of the password,
// its hash or any session token is in the shared segment.
func TestAuthLogin(t *testing.T) {
	const user, password = "tender", "s3cret-Pa55word"
	sim := newSim(t, tendtest.Options{Nodes: 3})
	fronts := securedCluster(t, sim, map[string]string{user: password}, 3600)
	key := testKey(t)
	c, err := openIdentity(t, tend.Config{Seeds: []string{fronts[0].addr()}, ShmKey: key, User: user, Password: password, KeepSegment: true})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "three nodes through their fronts", func() bool { return len(c.Nodes()) == 3 })
	eventually(t, "the map converged", func() bool {
		return viewHash(c, tendtest.DefaultNamespace) == simHash(t, sim, tendtest.DefaultNamespace)
	})
	if s := c.Stats(); s.AuthError != nil || s.Logins < 3 {
		t.Fatalf("after the first tends: AuthError %v, Logins %d (want nil and 3+)", s.AuthError, s.Logins)
	}
	before := c.Stats().Logins
	fronts[1].restart()
	eventually(t, "a new login after the node restart", func() bool {
		l, _, _ := fronts[1].counts()
		return l >= 2 && c.Stats().Logins > before
	})
	g := c.Stats().Tends
	eventually(t, "tends go on", func() bool { s := c.Stats(); return s.Tends > g+2 && s.AuthError == nil })
	if len(c.Nodes()) != 3 {
		t.Errorf("%d nodes after the restart", len(c.Nodes()))
	}

	// Scan every byte of the segment for the secrets.
	seg, err := arena.Inspect(arena.SysV(key))
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	raw := make([]byte, 0, seg.Len())
	for off := uint64(0); off+8 <= seg.Len(); off += 8 {
		raw = binary.LittleEndian.AppendUint64(raw, seg.Load64(arena.Offset(off)))
	}
	hash, _ := admin.HashPassword(password)
	secrets := map[string][]byte{"password": []byte(password), "password hash": []byte(hash), "hash without salt": []byte(hash[29:])}
	for _, f := range fronts {
		f.mu.Lock()
		for i, tok := range f.issued {
			secrets["token "+strconv.Itoa(i)] = tok
		}
		f.mu.Unlock()
	}
	for what, b := range secrets {
		if bytes.Contains(raw, b) {
			t.Errorf("the segment contains the %s", what)
		}
	}
	// The control: the scan finds what is there (the user name is not a
	// secret, and the node names are in the node table).
	if !bytes.Contains(raw, []byte(sim.Nodes()[0].Name)) {
		t.Error("the scan does not find a node name the segment holds: it cannot find anything")
	}
}

// TestAuthWrongCredentials: a wrong password or an unknown user is
// refused with an error naming the user, never the password, and no node
// enters the map.
func TestAuthWrongCredentials(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 1})
	fronts := securedCluster(t, sim, map[string]string{"tender": "right"}, 3600)
	for _, tc := range []struct{ user, password string }{{"tender", "wrong-password"}, {"nobody", "right"}} {
		c, err := openIdentity(t, tend.Config{Seeds: []string{fronts[0].addr()}, ShmKey: testKey(t), User: tc.user, Password: tc.password})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the refusal", func() bool { return c.Stats().AuthError != nil })
		err = c.Stats().AuthError
		var ae *admin.Error
		if !errors.Is(err, admin.ErrBadCredentials) || !errors.As(err, &ae) || ae.User != tc.user {
			t.Errorf("%s: %v, want an *admin.Error for the user wrapping ErrBadCredentials", tc.user, err)
		}
		if !strings.Contains(err.Error(), strconv.Quote(tc.user)) || strings.Contains(err.Error(), tc.password) {
			t.Errorf("the error must name the user and not the password: %v", err)
		}
		if n := len(c.Nodes()); n != 0 {
			t.Errorf("%d nodes in the map with refused credentials", n)
		}
		c.Close()
	}
}

// TestAuthSessionExpiry: a session whose TTL ran out is not offered
// again: the next connection logs in instead of authenticating with the
// token, while a fresh session's token is reused.
func TestAuthSessionExpiry(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 1})
	hashes := hashUsers(t, map[string]string{"u": "p"})
	for _, ttl := range []uint32{61, 3600} { // the client takes a minute off
		f := startAuthFront(t, sim.Nodes()[0].Addr, hashes, ttl)
		a, err := admin.NewAuthenticator(admin.Credentials{Mode: admin.ModeInternal, User: "u", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		opts := info.Options{Auth: func(ctx context.Context, nc net.Conn, addr string) error { return a.Auth(ctx, nc, addr, time.Second) }}
		for i := range 2 {
			if i == 1 {
				time.Sleep(1100 * time.Millisecond) // past the 1 s the 61 s TTL leaves
			}
			conn, err := info.Dial(context.Background(), f.addr(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if r, err := conn.Request(context.Background(), "node"); err != nil || r["node"] == "" {
				t.Fatalf("request after authentication: %v %v", r, err)
			}
			conn.Close()
		}
		logins, tokenAuths, _ := f.counts()
		if ttl == 61 && (logins != 2 || tokenAuths != 0) || ttl == 3600 && (logins != 1 || tokenAuths != 1) {
			t.Errorf("TTL %d: %d logins, %d token authentications", ttl, logins, tokenAuths)
		}
	}
}
