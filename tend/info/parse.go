package info

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Info command names used by cluster tending.
const (
	// CmdNode answers the node name.
	CmdNode = "node"
	// CmdBuild answers the server version, e.g. "8.1.0.0".
	CmdBuild = "build"
	// CmdFeatures answers the ';'-separated feature list.
	CmdFeatures = "features"
	// CmdClusterName answers the configured cluster name ("null" if none).
	CmdClusterName = "cluster-name"
	// CmdPartitionGeneration answers the partition map generation.
	CmdPartitionGeneration = "partition-generation"
	// CmdPeersGeneration answers the peers list generation.
	CmdPeersGeneration = "peers-generation"
	// CmdRebalanceGeneration answers how many rebalances the node did.
	CmdRebalanceGeneration = "rebalance-generation"
	// CmdPeersClearStd answers the peers list, clear-text standard addresses.
	CmdPeersClearStd = "peers-clear-std"
	// CmdPeersClearAlt answers the peers list, clear-text alternate addresses.
	CmdPeersClearAlt = "peers-clear-alt"
	// CmdPeersTLSStd answers the peers list, TLS standard addresses.
	CmdPeersTLSStd = "peers-tls-std"
	// CmdPeersTLSAlt answers the peers list, TLS alternate addresses.
	CmdPeersTLSAlt = "peers-tls-alt"
	// CmdServiceClearStd answers the node's own clear-text address(es).
	CmdServiceClearStd = "service-clear-std"
	// CmdServiceClearAlt answers the node's own clear-text alternate address(es).
	CmdServiceClearAlt = "service-clear-alt"
	// CmdServiceTLSStd answers the node's own TLS address(es).
	CmdServiceTLSStd = "service-tls-std"
	// CmdServiceTLSAlt answers the node's own TLS alternate address(es).
	CmdServiceTLSAlt = "service-tls-alt"
	// CmdReplicas answers the node's partition ownership with regimes.
	CmdReplicas = "replicas"
	// CmdReplicasAll answers the node's partition ownership without regimes.
	CmdReplicasAll = "replicas-all"
	// CmdRackIDs answers the node's rack id per namespace.
	CmdRackIDs = "rack-ids"
)

// MaxNodeNameLen is the longest node name accepted: node ids are 64-bit
// values printed as (usually 15) hex digits.
const MaxNodeNameLen = 16

// GenerationUnknown is the generation a node reports before it is fully
// initialized; clients must not trust its other values yet.
const GenerationUnknown = -1

// ParseNode validates the value of the "node" command and returns the node
// name: 1 to MaxNodeNameLen hex digits, e.g. "BB9020011AC4202".
func ParseNode(v string) (string, error) {
	if err := validateNodeName(CmdNode, "node name", 0, v); err != nil {
		return "", err
	}
	return v, nil
}

func validateNodeName(command, field string, off int, v string) error {
	if err := CheckServerError(command, v); err != nil {
		return err
	}
	if v == "" {
		return parseErr(ErrMalformed, command, field, off, "empty node name")
	}
	if len(v) > MaxNodeNameLen {
		return parseErr(ErrMalformed, command, field, off, "node name %q is %d characters, at most %d allowed", truncate(v, 40), len(v), MaxNodeNameLen)
	}
	for i := 0; i < len(v); i++ {
		if !isHex(v[i]) {
			return parseErr(ErrMalformed, command, field, off+i, "node name %q has non-hex character %q", truncate(v, 40), v[i])
		}
	}
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f'
}

// ParseGeneration parses a generation counter (the value of
// "partition-generation", "peers-generation" or "rebalance-generation";
// command names which one for error messages). The result is >= 0, or
// GenerationUnknown for a node that is not yet initialized.
func ParseGeneration(command, v string) (int64, error) {
	if err := CheckServerError(command, v); err != nil {
		return 0, err
	}
	if v == "-1" {
		return GenerationUnknown, nil
	}
	return parseUint(command, "generation", 0, v, math.MaxInt64)
}

// parseUint parses a non-empty string of decimal digits no greater than max.
func parseUint(command, field string, off int, v string, max uint64) (int64, error) {
	if v == "" {
		return 0, parseErr(ErrMalformed, command, field, off, "empty number")
	}
	var n uint64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, parseErr(ErrMalformed, command, field, off+i, "%q is not a decimal number", truncate(v, 40))
		}
		d := uint64(c - '0')
		if n > (max-d)/10 {
			return 0, parseErr(ErrOutOfRange, command, field, off, "%q exceeds %d", truncate(v, 40), max)
		}
		n = n*10 + d
	}
	return int64(n), nil
}

// Version is a server build version such as 8.1.0.2.
type Version struct {
	// Major, Minor, Patch and Build are the four numeric components;
	// missing trailing components are zero.
	Major, Minor, Patch, Build int
	// Suffix is whatever follows the numbers (e.g. "-rc1"), verbatim.
	Suffix string
}

// String formats the version as "major.minor.patch.build" plus suffix.
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d.%d%s", v.Major, v.Minor, v.Patch, v.Build, v.Suffix)
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than o.
// Suffixes are ignored.
func (v Version) Compare(o Version) int {
	a := [4]int{v.Major, v.Minor, v.Patch, v.Build}
	b := [4]int{o.Major, o.Minor, o.Patch, o.Build}
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// AtLeast reports whether v is the given version or newer.
func (v Version) AtLeast(major, minor, patch, build int) bool {
	return v.Compare(Version{Major: major, Minor: minor, Patch: patch, Build: build}) >= 0
}

// ParseBuild parses the value of the "build" command: one to four
// dot-separated decimal numbers, optionally followed by a suffix that
// starts with '-', '_', '~' or '+'.
func ParseBuild(v string) (Version, error) {
	if err := CheckServerError(CmdBuild, v); err != nil {
		return Version{}, err
	}
	var parts [4]int
	pos := 0
	n := 0
	for n < 4 {
		start := pos
		for pos < len(v) && v[pos] >= '0' && v[pos] <= '9' {
			pos++
		}
		x, err := parseUint(CmdBuild, "version component", start, v[start:pos], math.MaxInt32)
		if err != nil {
			return Version{}, err
		}
		parts[n] = int(x)
		n++
		if pos < len(v) && v[pos] == '.' && n < 4 {
			pos++
			continue
		}
		break
	}
	suffix := v[pos:]
	if suffix != "" && !strings.ContainsRune("-_~+", rune(suffix[0])) {
		return Version{}, parseErr(ErrMalformed, CmdBuild, "version suffix", pos, "unexpected %q after the version numbers", truncate(suffix, 40))
	}
	return Version{Major: parts[0], Minor: parts[1], Patch: parts[2], Build: parts[3], Suffix: suffix}, nil
}

// ParseClusterName validates the value of "cluster-name". A server without
// a configured name answers "null"; it is returned as is.
func ParseClusterName(v string) (string, error) {
	if err := CheckServerError(CmdClusterName, v); err != nil {
		return "", err
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return "", parseErr(ErrMalformed, CmdClusterName, "cluster name", i, "control character %q", v[i])
		}
	}
	return v, nil
}

// ParseFeatures splits the value of "features" (names separated by ';').
func ParseFeatures(v string) ([]string, error) {
	if err := CheckServerError(CmdFeatures, v); err != nil {
		return nil, err
	}
	var out []string
	for f := range strings.SplitSeq(v, ";") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out, nil
}

// ParseRackIDs parses the value of "rack-ids": "ns:rack;ns2:rack2".
func ParseRackIDs(v string) (map[string]int, error) {
	if err := CheckServerError(CmdRackIDs, v); err != nil {
		return nil, err
	}
	out := make(map[string]int)
	off := 0
	for pair := range strings.SplitSeq(v, ";") {
		if pair != "" {
			i := strings.LastIndexByte(pair, ':')
			if i <= 0 {
				return nil, parseErr(ErrMalformed, CmdRackIDs, "namespace", off, "%q is not ns:rack", truncate(pair, 60))
			}
			rack, err := parseUint(CmdRackIDs, "rack id", off+i+1, pair[i+1:], math.MaxInt32)
			if err != nil {
				return nil, err
			}
			out[pair[:i]] = int(rack)
		}
		off += len(pair) + 1
	}
	return out, nil
}

// HostPort is one network endpoint of a node.
type HostPort struct {
	// Host is an IP address (IPv6 without brackets) or a host name.
	Host string
	// Port is the TCP port, 1..65535.
	Port int
}

// String formats the endpoint as host:port, bracketing IPv6 addresses.
func (h HostPort) String() string {
	return netJoin(h.Host, h.Port)
}

func netJoin(host string, port int) string {
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// ParseServices parses a "service-clear-std"-style value: endpoints
// separated by ',' (or ';', as the legacy "services" command does), each
// "host[:port]" or "[ipv6][:port]". Endpoints without a port take
// defaultPort; with defaultPort 0 they are an error.
func ParseServices(command, v string, defaultPort int) ([]HostPort, error) {
	if err := CheckServerError(command, v); err != nil {
		return nil, err
	}
	sc := scanner{cmd: command, s: v}
	var out []HostPort
	for !sc.eof() {
		h, err := sc.host(defaultPort, ",;")
		if err != nil {
			return nil, err
		}
		out = append(out, h)
		if sc.eof() {
			break
		}
		sc.pos++ // separator
		if sc.eof() {
			return nil, parseErr(ErrTruncated, command, "endpoint", sc.pos, "separator at end of value")
		}
	}
	return out, nil
}

// scanner walks a value for the hand-written parsers.
type scanner struct {
	cmd string
	s   string
	pos int
}

func (sc *scanner) eof() bool { return sc.pos >= len(sc.s) }

// until returns the text from pos up to (not including) the first byte in
// stops, or to the end, and advances past it.
func (sc *scanner) until(stops string) string {
	start := sc.pos
	for sc.pos < len(sc.s) && strings.IndexByte(stops, sc.s[sc.pos]) < 0 {
		sc.pos++
	}
	return sc.s[start:sc.pos]
}

// expect consumes ch or reports what was found instead.
func (sc *scanner) expect(ch byte, field string) error {
	if sc.eof() {
		return parseErr(ErrTruncated, sc.cmd, field, sc.pos, "value ends where %q was expected", ch)
	}
	if sc.s[sc.pos] != ch {
		return parseErr(ErrMalformed, sc.cmd, field, sc.pos, "found %q where %q was expected", sc.s[sc.pos], ch)
	}
	sc.pos++
	return nil
}

// host parses "name[:port]" or "[ipv6][:port]" ending before a byte in
// stops or at the end of the value.
func (sc *scanner) host(defaultPort int, stops string) (HostPort, error) {
	start := sc.pos
	var host string
	if !sc.eof() && sc.s[sc.pos] == '[' {
		end := strings.IndexByte(sc.s[sc.pos:], ']')
		if end < 0 {
			return HostPort{}, parseErr(ErrTruncated, sc.cmd, "host", start, "IPv6 address without closing ']'")
		}
		host = sc.s[sc.pos+1 : sc.pos+end]
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is6() {
			return HostPort{}, parseErr(ErrMalformed, sc.cmd, "host", start+1, "%q is not an IPv6 address", truncate(host, 60))
		}
		sc.pos += end + 1
		if sc.eof() || strings.IndexByte(stops, sc.s[sc.pos]) >= 0 {
			return sc.withDefaultPort(host, defaultPort, start)
		}
		if err := sc.expect(':', "port"); err != nil {
			return HostPort{}, err
		}
		return sc.port(host, stops)
	}
	tok := sc.until(stops)
	if tok == "" {
		return HostPort{}, parseErr(ErrMalformed, sc.cmd, "host", start, "empty host")
	}
	switch strings.Count(tok, ":") {
	case 0:
		host = tok
		if err := sc.validHostName(host, start); err != nil {
			return HostPort{}, err
		}
		return sc.withDefaultPort(host, defaultPort, start)
	case 1:
		i := strings.IndexByte(tok, ':')
		host = tok[:i]
		if err := sc.validHostName(host, start); err != nil {
			return HostPort{}, err
		}
		p, err := parsePort(sc.cmd, "port", start+i+1, tok[i+1:])
		if err != nil {
			return HostPort{}, err
		}
		return HostPort{Host: host, Port: p}, nil
	default:
		return HostPort{}, parseErr(ErrMalformed, sc.cmd, "host", start, "%q: IPv6 addresses must be in brackets", truncate(tok, 60))
	}
}

func (sc *scanner) port(host string, stops string) (HostPort, error) {
	start := sc.pos
	p, err := parsePort(sc.cmd, "port", start, sc.until(stops))
	if err != nil {
		return HostPort{}, err
	}
	return HostPort{Host: host, Port: p}, nil
}

// parsePort parses a TCP port, 1..65535, found at offset off of the value.
func parsePort(command, field string, off int, v string) (int, error) {
	p, err := parseUint(command, field, off, v, 65535)
	if err != nil {
		return 0, err
	}
	if p == 0 {
		return 0, parseErr(ErrOutOfRange, command, field, off, "port 0")
	}
	return int(p), nil
}

func (sc *scanner) withDefaultPort(host string, defaultPort, off int) (HostPort, error) {
	if defaultPort <= 0 || defaultPort > 65535 {
		return HostPort{}, parseErr(ErrMalformed, sc.cmd, "port", off, "host %q has no port and there is no default port", truncate(host, 60))
	}
	return HostPort{Host: host, Port: defaultPort}, nil
}

// validHostName accepts IPv4 addresses and DNS names.
func (sc *scanner) validHostName(h string, off int) error {
	if h == "" {
		return parseErr(ErrMalformed, sc.cmd, "host", off, "empty host")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return parseErr(ErrMalformed, sc.cmd, "host", off+i, "host %q has invalid character %q", truncate(h, 60), c)
		}
	}
	return nil
}
