package info

import (
	"math"
	"strconv"
	"strings"
)

// Peers is the parsed value of "peers-clear-std" and its siblings
// ("peers-clear-alt", "peers-tls-std", "peers-tls-alt"): the node's view of
// the other cluster members.
type Peers struct {
	// Generation changes whenever the peer list changes; it equals the
	// node's "peers-generation".
	Generation int64
	// DefaultPort is the port of hosts listed without one; 0 when the
	// server left it empty.
	DefaultPort int
	// Peers lists the other nodes (not the answering node itself).
	Peers []Peer
}

// Peer is one entry of a peers list.
type Peer struct {
	// Name is the peer's node name.
	Name string
	// TLSName is the name to verify the peer's TLS certificate against;
	// empty for clear-text lists.
	TLSName string
	// Hosts are the peer's endpoints of the requested kind; the list may be
	// empty.
	Hosts []HostPort
}

// ParsePeers parses a peers list value; command names the info command it
// came from (for error messages). The grammar, as the official clients read
// it, is
//
//	value := generation "," [default-port] "," "[" [peer {"," peer}] "]"
//	peer  := "[" node-name "," [tls-name] "," "[" [host {"," host}] "]" "]"
//	host  := name-or-ipv4 [":" port] | "[" ipv6 "]" [":" port]
//
// for example "10,3000,[[BB9050011AC4202,,[172.17.0.5]],[BB9070011AC4202,,[[2001:db8::7]:3100]]]".
// Hosts without a port take the default port. Like the official clients,
// a value that stops right after the default port's comma is an empty list.
func ParsePeers(command, v string) (Peers, error) {
	if err := CheckServerError(command, v); err != nil {
		return Peers{}, err
	}
	sc := scanner{cmd: command, s: v}
	gen, err := parseUint(command, "generation", 0, sc.until(","), math.MaxInt64)
	if err != nil {
		return Peers{}, err
	}
	if err := sc.expect(',', "generation"); err != nil {
		return Peers{}, err
	}
	out := Peers{Generation: gen}
	portStart := sc.pos
	if tok := sc.until(","); tok != "" {
		p, err := parsePort(command, "default port", portStart, tok)
		if err != nil {
			return Peers{}, err
		}
		out.DefaultPort = p
	}
	if err := sc.expect(',', "default port"); err != nil {
		return Peers{}, err
	}
	if sc.eof() {
		return out, nil
	}
	if err := sc.expect('[', "peer list"); err != nil {
		return Peers{}, err
	}
	if !sc.eof() && sc.s[sc.pos] == ']' {
		sc.pos++
	} else {
		for {
			p, err := sc.peer(out.DefaultPort)
			if err != nil {
				return Peers{}, err
			}
			out.Peers = append(out.Peers, p)
			if sc.eof() {
				return Peers{}, parseErr(ErrTruncated, command, "peer list", sc.pos, "value ends inside the peer list")
			}
			c := sc.s[sc.pos]
			sc.pos++
			if c == ']' {
				break
			}
			if c != ',' {
				return Peers{}, parseErr(ErrMalformed, command, "peer list", sc.pos-1, "found %q between peers", c)
			}
		}
	}
	if !sc.eof() {
		return Peers{}, parseErr(ErrMalformed, command, "peer list", sc.pos, "unexpected %q after the peer list", truncate(sc.s[sc.pos:], 40))
	}
	return out, nil
}

func (sc *scanner) peer(defaultPort int) (Peer, error) {
	if err := sc.expect('[', "peer"); err != nil {
		return Peer{}, err
	}
	nameStart := sc.pos
	name := sc.until(",]")
	if err := validateNodeName(sc.cmd, "peer name", nameStart, name); err != nil {
		return Peer{}, err
	}
	if err := sc.expect(',', "peer name"); err != nil {
		return Peer{}, err
	}
	tlsStart := sc.pos
	tls := sc.until(",]")
	if i := strings.IndexAny(tls, "[\t\n;"); i >= 0 {
		return Peer{}, parseErr(ErrMalformed, sc.cmd, "TLS name", tlsStart+i, "TLS name %q has invalid character %q", truncate(tls, 60), tls[i])
	}
	if err := sc.expect(',', "TLS name"); err != nil {
		return Peer{}, err
	}
	hosts, err := sc.hostList(defaultPort)
	if err != nil {
		return Peer{}, err
	}
	if err := sc.expect(']', "peer"); err != nil {
		return Peer{}, err
	}
	return Peer{Name: name, TLSName: tls, Hosts: hosts}, nil
}

func (sc *scanner) hostList(defaultPort int) ([]HostPort, error) {
	if err := sc.expect('[', "host list"); err != nil {
		return nil, err
	}
	hosts := []HostPort{}
	if !sc.eof() && sc.s[sc.pos] == ']' {
		sc.pos++
		return hosts, nil
	}
	for {
		h, err := sc.host(defaultPort, ",]")
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
		if sc.eof() {
			return nil, parseErr(ErrTruncated, sc.cmd, "host list", sc.pos, "value ends inside a host list")
		}
		c := sc.s[sc.pos]
		sc.pos++
		if c == ']' {
			return hosts, nil
		}
		// c is ',' since host stops only at ',' or ']'.
	}
}

// FormatPeers renders p in the server's peers-list format (the inverse of
// ParsePeers). Hosts whose port equals DefaultPort are written without it;
// a zero DefaultPort is written as an empty field.
func FormatPeers(p Peers) string {
	var b strings.Builder
	b.WriteString(strconv.FormatInt(p.Generation, 10))
	b.WriteByte(',')
	if p.DefaultPort != 0 {
		b.WriteString(strconv.Itoa(p.DefaultPort))
	}
	b.WriteString(",[")
	for i, peer := range p.Peers {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		b.WriteString(peer.Name)
		b.WriteByte(',')
		b.WriteString(peer.TLSName)
		b.WriteString(",[")
		for j, h := range peer.Hosts {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(formatHost(h, p.DefaultPort))
		}
		b.WriteString("]]")
	}
	b.WriteByte(']')
	return b.String()
}

// FormatServices renders endpoints the way "service-clear-std" does:
// host:port separated by ','.
func FormatServices(hosts []HostPort) string {
	parts := make([]string, len(hosts))
	for i, h := range hosts {
		parts[i] = h.String()
	}
	return strings.Join(parts, ",")
}

func formatHost(h HostPort, defaultPort int) string {
	if h.Port == defaultPort && defaultPort != 0 {
		if strings.IndexByte(h.Host, ':') >= 0 {
			return "[" + h.Host + "]"
		}
		return h.Host
	}
	return h.String()
}
