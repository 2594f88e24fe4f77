package tendtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"

	"github.com/shmkit/shmkit/record/wire"
	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
)

// ErrNoTLS reports a TLS accessor called on a cluster started without
// Options.TLS.
var ErrNoTLS = errors.New("tendtest: the cluster has no TLS")

// DefaultSessionTTL is the session TTL a login grants when
// Options.SessionTTL is 0 (Aerospike's default session-ttl, 86400 s).
const DefaultSessionTTL = 24 * time.Hour

// maxSessions bounds the sessions one node keeps; a node that would keep
// more forgets the expired ones, then all (as a restart would).
const maxSessions = 4096

// maxIssuedTokens bounds the tokens SessionTokens remembers.
const maxIssuedTokens = 4096

// handshakeTimeout bounds a TLS handshake a node accepts.
const handshakeTimeout = 5 * time.Second

// resultNotAuthenticated is the record result code for a command on a
// connection that has not logged in (Aerospike's NOT_AUTHENTICATED).
const resultNotAuthenticated = wire.ResultCode(admin.ResultNotAuthenticated)

// TLSOptions configures the nodes' TLS service (Options.TLS). Every node
// gets a TLS listener whose certificate, for the node's TLS name
// (NodeInfo.TLSName), is signed by an authority the simulator generates
// (CertPool); "peers-tls-std" and "service-tls-std" answer the TLS
// endpoints with those names. Info and record messages are served on TLS
// connections exactly as on clear-text ones.
type TLSOptions struct {
	// ClearText keeps the clear-text listeners as well, as a server with
	// both services; without it the nodes are TLS-only and
	// "peers-clear-std" answers an empty list.
	ClearText bool
	// RequireClientCert makes every TLS connection present a client
	// certificate signed by the simulator's authority (ClientCertificate):
	// mutual TLS. Without it a client certificate is verified when
	// offered (PKI logins need one).
	RequireClientCert bool
}

// Endpoint names one of a node's listeners.
type Endpoint uint8

// A node's endpoints.
const (
	// EndpointClear is the clear-text service (peers-clear-std).
	EndpointClear Endpoint = iota
	// EndpointTLS is the TLS service (peers-tls-std).
	EndpointTLS
	// EndpointClearAlt is the alternate clear-text address
	// (peers-clear-alt, Options.Alternate).
	EndpointClearAlt
	// EndpointTLSAlt is the alternate TLS address (peers-tls-alt).
	EndpointTLSAlt

	numEndpoints = 4
)

// String names the endpoint after its peers list.
func (e Endpoint) String() string {
	switch e {
	case EndpointClear:
		return "clear-std"
	case EndpointTLS:
		return "tls-std"
	case EndpointClearAlt:
		return "clear-alt"
	case EndpointTLSAlt:
		return "tls-alt"
	}
	return fmt.Sprintf("endpoint(%d)", uint8(e))
}

// TLS reports whether the endpoint speaks TLS.
func (e Endpoint) TLS() bool { return e == EndpointTLS || e == EndpointTLSAlt }

// AuthStats counts one node's security events.
type AuthStats struct {
	// Logins counts successful logins (each issued a session token).
	Logins uint64
	// TokenAuths counts connections authenticated with a session token.
	TokenAuths uint64
	// Refused counts refused logins and authentications (result codes 60,
	// 62, 65, 66, ...).
	Refused uint64
	// Unauthenticated counts info or record messages received before the
	// connection authenticated (the connection is then closed).
	Unauthenticated uint64
	// HandshakeFailures counts TLS handshakes that failed.
	HandshakeFailures uint64
}

// session is one login's session on a node.
type session struct {
	user    string
	expires time.Time
}

// security is the cluster-wide part of TLS, users, racks and alternate
// addresses; it is set up by New and then guarded by Cluster.mu.
type security struct {
	tls   *TLSOptions
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool

	users     map[string]string // user -> admin.HashPassword; nil: security off
	ttl       time.Duration
	racks     []int
	alternate bool
	issued    [][]byte // the last maxIssuedTokens session tokens
}

func (s *security) init(opts Options) error {
	s.racks = opts.Racks
	s.alternate = opts.Alternate
	for i, r := range opts.Racks {
		if r < 0 {
			return fmt.Errorf("%w: Racks[%d] = %d", ErrInvalidOptions, i, r)
		}
	}
	if opts.SessionTTL < 0 || opts.SessionTTL > 0 && opts.SessionTTL < time.Second || opts.SessionTTL > (1<<32-1)*time.Second {
		return fmt.Errorf("%w: SessionTTL %v (0 or 1 s to 2^32-1 s)", ErrInvalidOptions, opts.SessionTTL)
	}
	s.ttl = opts.SessionTTL.Truncate(time.Second)
	if s.ttl == 0 {
		s.ttl = DefaultSessionTTL
	}
	if opts.Users != nil {
		s.users = make(map[string]string, len(opts.Users))
		for u, p := range opts.Users {
			if u == "" {
				return fmt.Errorf("%w: an empty user name", ErrInvalidOptions)
			}
			h, err := admin.HashPassword(p)
			if err != nil {
				return fmt.Errorf("%w: password of user %q: %w", ErrInvalidOptions, u, err)
			}
			s.users[u] = h
		}
	}
	if opts.TLS == nil {
		return nil
	}
	t := *opts.TLS
	s.tls = &t
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("tendtest: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tendtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("tendtest: CA certificate: %w", err)
	}
	if s.ca, err = x509.ParseCertificate(der); err != nil {
		return fmt.Errorf("tendtest: CA certificate: %w", err)
	}
	s.caKey = key
	s.pool = x509.NewCertPool()
	s.pool.AddCert(s.ca)
	return nil
}

// enabled reports whether nodes have endpoint ep.
func (s *security) enabled(ep Endpoint) bool {
	clear := s.tls == nil || s.tls.ClearText
	switch ep {
	case EndpointClear:
		return clear
	case EndpointTLS:
		return s.tls != nil
	case EndpointClearAlt:
		return s.alternate && clear
	case EndpointTLSAlt:
		return s.alternate && s.tls != nil
	}
	return false
}

// alt maps an alternate endpoint to the one the *-alt commands answer:
// itself with Options.Alternate, the standard one otherwise.
func (s *security) alt(ep Endpoint) Endpoint {
	if s.alternate {
		return ep
	}
	return ep - EndpointClearAlt
}

// issue signs a leaf certificate: a server certificate for DNS name name,
// or a client certificate with common name name.
func (s *security) issue(name string, client bool) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tendtest: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tendtest: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tendtest: certificate for %q: %w", name, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// serverConfig is the TLS configuration of the node named tlsName.
func (s *security) serverConfig(tlsName string) (*tls.Config, error) {
	cert, err := s.issue(tlsName, false)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: s.pool, ClientAuth: tls.VerifyClientCertIfGiven}
	if s.tls.RequireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// nodeTLSName is the TLS name of node idx.
func nodeTLSName(idx int) string { return fmt.Sprintf("node%d.tendtest", idx) }

// connState is the security state of one connection.
type connState struct {
	authed bool   // may send info and record commands
	certCN string // the verified client certificate's common name
}

func (s *security) newConnState(conn net.Conn) connState {
	cs := connState{authed: s.users == nil}
	if tc, ok := conn.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			cs.certCN = certs[0].Subject.CommonName
		}
	}
	return cs
}

// handshake runs the server side of a TLS handshake on raw, bounded by
// handshakeTimeout.
func (c *Cluster) handshake(n *node, raw net.Conn, cfg *tls.Config) (*tls.Conn, bool) {
	tc := tls.Server(raw, cfg)
	_ = raw.SetDeadline(time.Now().Add(handshakeTimeout))
	err := tc.Handshake()
	_ = raw.SetDeadline(time.Time{})
	if err != nil {
		c.mu.Lock()
		n.auth.HandshakeFailures++
		c.mu.Unlock()
		c.log.Debug("tendtest TLS handshake failed", "node", n.name, "err", err)
		return nil, false
	}
	return tc, true
}

// serveAdmin answers one admin message (its header h already read). It
// returns false when the connection must close.
func (c *Cluster) serveAdmin(n *node, conn net.Conn, h info.Header, cs *connState, stop chan struct{}) bool {
	if h.Length > admin.MaxMessage {
		c.countNonInfo(n)
		return false
	}
	hb := h.Encode()
	m, err := admin.ReadMessage(io.MultiReader(bytes.NewReader(hb[:]), conn))
	if err != nil {
		c.countNonInfo(n)
		c.log.Debug("tendtest bad admin message", "node", n.name, "err", err)
		return false
	}
	c.mu.Lock()
	if c.closed || n.stop != stop {
		c.mu.Unlock()
		return false
	}
	reply := c.adminLocked(n, m, cs)
	c.mu.Unlock()
	_, err = conn.Write(reply.Append(nil))
	return err == nil
}

// adminLocked executes one admin command as a server with the cluster's
// security settings does.
func (c *Cluster) adminLocked(n *node, m *admin.Message, cs *connState) *admin.Message {
	reply := &admin.Message{Command: m.Command}
	users := c.sec.users
	now := c.nowLocked()
	switch {
	case users == nil && (m.Command == admin.CmdLogin || m.Command == admin.CmdAuthenticate):
		reply.Result = admin.ResultSecurityNotEnabled
	case m.Command == admin.CmdLogin:
		user, internal := m.Field(admin.FieldUser)
		name := string(user)
		hash, known := users[name]
		switch {
		case !internal && cs.certCN == "":
			reply.Result = admin.ResultInvalidCredential // PKI without a client certificate
		case !internal:
			name = cs.certCN
			if _, known = users[name]; !known {
				reply.Result = admin.ResultInvalidUser
			}
		case !known:
			reply.Result = admin.ResultInvalidUser
		default:
			if cred, _ := m.Field(admin.FieldCredential); string(cred) != hash {
				reply.Result = admin.ResultInvalidPassword
			}
		}
		if reply.Result != admin.ResultOK {
			break
		}
		tok := make([]byte, 32)
		_, _ = rand.Read(tok)
		if len(n.sessions) >= maxSessions {
			for t, s := range n.sessions {
				if !now.Before(s.expires) {
					delete(n.sessions, t)
				}
			}
			if len(n.sessions) >= maxSessions {
				clear(n.sessions)
			}
		}
		n.sessions[string(tok)] = session{user: name, expires: now.Add(c.sec.ttl)}
		if len(c.sec.issued) >= maxIssuedTokens {
			c.sec.issued = c.sec.issued[1:]
		}
		c.sec.issued = append(c.sec.issued, tok)
		n.auth.Logins++
		cs.authed = true
		reply.Fields = []admin.Field{{ID: admin.FieldSessionToken, Data: tok},
			{ID: admin.FieldSessionTTL, Data: binary.BigEndian.AppendUint32(nil, uint32(c.sec.ttl/time.Second))}}
	case m.Command == admin.CmdAuthenticate:
		tok, _ := m.Field(admin.FieldSessionToken)
		s, ok := n.sessions[string(tok)]
		user, named := m.Field(admin.FieldUser)
		switch {
		case !ok || named && string(user) != s.user:
			reply.Result = admin.ResultInvalidCredential
		case !now.Before(s.expires):
			delete(n.sessions, string(tok))
			reply.Result = admin.ResultExpiredSession
		default:
			n.auth.TokenAuths++
			cs.authed = true
		}
	case !cs.authed:
		reply.Result = admin.ResultNotAuthenticated
	default:
		reply.Result = admin.ResultInvalidCommand
	}
	if reply.Result != admin.ResultOK && reply.Result != admin.ResultSecurityNotEnabled {
		n.auth.Refused++
		c.log.Debug("tendtest admin command refused", "node", n.name, "command", m.Command, "result", uint8(reply.Result))
	}
	return reply
}

// refuseUnauthenticated answers a message received before the connection
// authenticated: a record message gets result 80 (not authenticated), an
// info message none; the caller then closes the connection.
func (c *Cluster) refuseUnauthenticated(n *node, conn net.Conn, h info.Header) {
	c.mu.Lock()
	n.auth.Unauthenticated++
	c.mu.Unlock()
	c.log.Debug("tendtest message before authentication", "node", n.name, "type", h.Type)
	if h.Type == info.TypeMessage {
		if reply, err := wire.AppendReply(nil, &wire.Header{ResultCode: resultNotAuthenticated}, nil); err == nil {
			_ = conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
			_, _ = conn.Write(reply)
		}
	}
}

func (c *Cluster) countNonInfo(n *node) {
	c.mu.Lock()
	n.nonInfo++
	c.mu.Unlock()
}

// CertPool returns a pool holding the simulator's certificate authority,
// for clients' tls.Config.RootCAs (ErrNoTLS without Options.TLS).
func (c *Cluster) CertPool() (*x509.CertPool, error) {
	if c.sec.tls == nil {
		return nil, ErrNoTLS
	}
	return c.sec.pool.Clone(), nil
}

// ClientCertificate returns a new client certificate with common name
// commonName, signed by the simulator's authority: for mutual TLS
// (TLSOptions.RequireClientCert) and PKI logins (the common name is the
// user).
func (c *Cluster) ClientCertificate(commonName string) (tls.Certificate, error) {
	if c.sec.tls == nil {
		return tls.Certificate{}, ErrNoTLS
	}
	if commonName == "" {
		return tls.Certificate{}, fmt.Errorf("%w: an empty common name", ErrInvalidOptions)
	}
	return c.sec.issue(commonName, true)
}

// TLSSeeds returns "host:tlsname:port" for the TLS endpoint of every node
// that is up and not removed (none without TLS).
func (c *Cluster) TLSSeeds() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range c.nodes {
		if n.up && !n.removed && n.addrs[EndpointTLS] != "" {
			host, port, _ := net.SplitHostPort(n.addrs[EndpointTLS])
			out = append(out, host+":"+n.tlsName+":"+port)
		}
	}
	return out
}

// EndpointConnections returns how many connections node i accepted on
// endpoint ep (dropped ones included; 0 for an endpoint that is off).
func (c *Cluster) EndpointConnections(i int, ep Endpoint) uint64 {
	if ep >= numEndpoints {
		return 0
	}
	return c.nodeCounter(i, func(n *node) uint64 { return n.epAccepts[ep] })
}

// AuthStats returns node i's security counters (zero for an index out of
// range).
func (c *Cluster) AuthStats(i int) AuthStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		return AuthStats{}
	}
	return c.nodes[i].auth
}

// SessionTokens returns copies of the last session tokens the nodes
// issued (at most 4096), e.g. for a test that scans memory for secrets.
func (c *Cluster) SessionTokens() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([][]byte, len(c.sec.issued))
	for i, t := range c.sec.issued {
		out[i] = bytes.Clone(t)
	}
	return out
}

// SetRack puts node on rack in namespace ns ("" for every namespace):
// its "rack-ids" answer changes at once; partitions move to a rack-aware
// placement at the next rebalance (see Rebalance), as on a server whose
// rack-id changed.
func (c *Cluster) SetRack(node int, ns string, rack int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(node)
	if err != nil {
		return err
	}
	if rack < 0 {
		return fmt.Errorf("%w: rack %d", ErrInvalidOptions, rack)
	}
	if ns == "" {
		for _, st := range c.ns {
			n.racks[st.spec.Name] = rack
		}
		return nil
	}
	_, name, err := c.nodeNSLocked(node, ns)
	if err != nil {
		return err
	}
	n.racks[name] = rack
	return nil
}

// Rack returns the rack node reports for namespace ns.
func (c *Cluster) Rack(node int, ns string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, name, err := c.nodeNSLocked(node, ns)
	if err != nil {
		return 0, err
	}
	return n.racks[name], nil
}

// CloseConnections closes every connection node i has open, as a network
// fault or a proxy timeout would; the node stays up and keeps its
// sessions, so clients reconnect and authenticate with their tokens (or
// log in when theirs expired).
func (c *Cluster) CloseConnections(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.nodeLocked(i)
	if err != nil {
		return err
	}
	for conn := range n.conns {
		_ = conn.Close()
	}
	return nil
}
