package tend_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// TestAuthLogin: a tender with the right credentials logs in to every
// node (once each), tends the cluster, and after a node restart (its
// sessions gone) logs in again and tends on. Nothing of the password,
// its hash or any session token is in the shared segment.
func TestAuthLogin(t *testing.T) {
	const user, password = "tender", "s3cret-Pa55word"
	sim := newSim(t, tendtest.Options{Nodes: 3, Users: map[string]string{user: password}})
	key := testKey(t)
	c, err := openIdentity(t, tend.Config{Seeds: sim.Seeds()[:1], ShmKey: key, User: user, Password: password, KeepSegment: true})
	if err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c, sim, 3)
	if s := c.Stats(); s.AuthError != nil || s.Logins < 3 {
		t.Fatalf("after the first tends: AuthError %v, Logins %d (want nil and 3+)", s.AuthError, s.Logins)
	}
	for i := range 3 {
		if s := sim.AuthStats(i); s.Logins == 0 || s.Unauthenticated != 0 || s.Refused != 0 {
			t.Errorf("node %d: %+v, want logins and no unauthenticated command or refusal", i, s)
		}
	}
	before := c.Stats().Logins
	// A node restart: its connections drop and its sessions are gone.
	if err := sim.StopNode(1); err != nil {
		t.Fatal(err)
	}
	if err := sim.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new login after the node restart", func() bool {
		return sim.AuthStats(1).Logins >= 2 && c.Stats().Logins > before
	})
	g := c.Stats().Tends
	eventually(t, "tends go on", func() bool { s := c.Stats(); return s.Tends > g+2 && s.AuthError == nil })
	eventually(t, "three nodes after the restart", func() bool { return len(c.Nodes()) == 3 })

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
	tokens := sim.SessionTokens()
	if len(tokens) < 4 {
		t.Errorf("the sim issued %d session tokens, want 4+ (3 nodes and a restart)", len(tokens))
	}
	for i, tok := range tokens {
		secrets["token "+strconv.Itoa(i)] = tok
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
	sim := newSim(t, tendtest.Options{Nodes: 1, Users: map[string]string{"tender": "right"}})
	for _, tc := range []struct{ user, password string }{{"tender", "wrong-password"}, {"nobody", "right"}} {
		c, err := openIdentity(t, tend.Config{Seeds: sim.Seeds(), ShmKey: testKey(t), User: tc.user, Password: tc.password})
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
	for _, ttl := range []time.Duration{61 * time.Second, time.Hour} { // the client takes a minute off
		sim := newSim(t, tendtest.Options{Nodes: 1, Users: map[string]string{"u": "p"}, SessionTTL: ttl})
		a, err := admin.NewAuthenticator(admin.Credentials{Mode: admin.ModeInternal, User: "u", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		opts := info.Options{Auth: func(ctx context.Context, nc net.Conn, addr string) error { return a.Auth(ctx, nc, addr, time.Second) }}
		for i := range 2 {
			if i == 1 {
				time.Sleep(1100 * time.Millisecond) // past the 1 s the 61 s TTL leaves
			}
			conn, err := info.Dial(context.Background(), sim.Seeds()[0], opts)
			if err != nil {
				t.Fatal(err)
			}
			if r, err := conn.Request(context.Background(), "node"); err != nil || r["node"] == "" {
				t.Fatalf("request after authentication: %v %v", r, err)
			}
			conn.Close()
		}
		s := sim.AuthStats(0)
		if ttl < time.Hour && (s.Logins != 2 || s.TokenAuths != 0) || ttl == time.Hour && (s.Logins != 1 || s.TokenAuths != 1) {
			t.Errorf("TTL %v: %d logins, %d token authentications", ttl, s.Logins, s.TokenAuths)
		}
	}
}

// TestAuthPKIOverMutualTLS: a tender in PKI mode logs in with its client
// certificate alone (the common name is the user) over mutual TLS, and
// tends the cluster; a certificate naming no user is refused with an
// error naming it.
func TestAuthPKIOverMutualTLS(t *testing.T) {
	sim := newSim(t, tendtest.Options{Nodes: 2, TLS: &tendtest.TLSOptions{RequireClientCert: true},
		Users: map[string]string{"pki-tender": ""}})
	pool := tlsPool(t, sim)
	for _, cn := range []string{"pki-tender", "stranger"} {
		cert, err := sim.ClientCertificate(cn)
		if err != nil {
			t.Fatal(err)
		}
		c, err := openIdentity(t, tend.Config{Seeds: sim.TLSSeeds()[:1], ShmKey: testKey(t), AuthMode: admin.ModePKI, User: cn,
			TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}})
		if err != nil {
			t.Fatal(err)
		}
		if cn == "stranger" {
			eventually(t, "the refusal", func() bool { return c.Stats().AuthError != nil })
			var ae *admin.Error
			if err := c.Stats().AuthError; !errors.As(err, &ae) || ae.Code != admin.ResultInvalidUser || len(c.Nodes()) != 0 {
				t.Errorf("PKI as a certificate naming no user: %v, %d nodes", err, len(c.Nodes()))
			}
			continue
		}
		waitConverged(t, c, sim, 2)
		if s := c.Stats(); s.AuthError != nil || s.Logins < 2 {
			t.Errorf("PKI tender: AuthError %v, Logins %d", s.AuthError, s.Logins)
		}
	}
}

// TestAuthExpiryWhileTending: a tender whose connections drop while it
// tends reconnects with its session token while the session is valid, and
// logs in again once it expired (a 61 s TTL leaves the client one
// second); tending goes on without an authentication error.
func TestAuthExpiryWhileTending(t *testing.T) {
	for _, ttl := range []time.Duration{61 * time.Second, time.Hour} {
		t.Run(fmt.Sprintf("ttl=%v", ttl), func(t *testing.T) {
			sim := newSim(t, tendtest.Options{Nodes: 2, Users: map[string]string{"u": "p"}, SessionTTL: ttl})
			c, err := openIdentity(t, tend.Config{Seeds: sim.Seeds()[:1], ShmKey: testKey(t), User: "u", Password: "p"})
			if err != nil {
				t.Fatal(err)
			}
			waitConverged(t, c, sim, 2)
			time.Sleep(1100 * time.Millisecond) // past a 61 s session's second
			before := [2]tendtest.AuthStats{sim.AuthStats(0), sim.AuthStats(1)}
			for i := range 2 {
				if err := sim.CloseConnections(i); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, "reconnected to both nodes", func() bool {
				for i := range 2 {
					s := sim.AuthStats(i)
					if s.Logins+s.TokenAuths == before[i].Logins+before[i].TokenAuths {
						return false
					}
				}
				return true
			})
			g := c.Stats().Tends
			eventually(t, "tends go on", func() bool { s := c.Stats(); return s.Tends > g+2 && s.AuthError == nil })
			for i := range 2 {
				s := sim.AuthStats(i)
				relogged, tokened := s.Logins > before[i].Logins, s.TokenAuths > before[i].TokenAuths
				if ttl < time.Hour && (!relogged || tokened) || ttl == time.Hour && (relogged || !tokened) {
					t.Errorf("TTL %v node %d: %+v -> %+v", ttl, i, before[i], s)
				}
				if s.Refused != 0 {
					t.Errorf("node %d refused %d authentications", i, s.Refused)
				}
			}
		})
	}
}
