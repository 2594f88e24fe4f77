package partmap

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shmkit/shmkit/lease"
)

// NodeInfo is what the tend owner knows about a server node and publishes.
type NodeInfo struct {
	// Name is the node's name (Aerospike names are 15 hex digits), 1 to
	// MaxNodeName bytes.
	Name string
	// Addresses are the node's service addresses (IPv4 or IPv6, no zone),
	// at most MaxAddresses, in order of preference.
	Addresses []netip.AddrPort
	// TLSName is the name to verify the node's certificate against (at
	// most MaxTLSName bytes; empty without TLS).
	TLSName string
	// Build is the server's build string, e.g. "7.1.0.3" (at most
	// MaxBuild bytes).
	Build string
	// Active is false for a node that is known but should not get
	// traffic (it left the cluster, or failed its last tends).
	Active bool
	// Racks maps namespace names to the node's rack id in them (its
	// "rack-ids" answer; nil when the tender is not rack-aware). Its
	// encoding, "ns:rack;…" in name order, is at most MaxRacks bytes.
	Racks map[string]int
}

// Rack returns the node's rack id in namespace ns, and whether it has one.
func (n *NodeInfo) Rack(ns string) (int, bool) {
	r, ok := n.Racks[ns]
	return r, ok
}

// encodeRacks is the stored form of racks: "ns:rack;ns:rack" in name order.
func encodeRacks(racks map[string]int) string {
	names := slices.Sorted(maps.Keys(racks))
	var b strings.Builder
	for i, ns := range names {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(ns)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(racks[ns]))
	}
	return b.String()
}

// decodeRacks parses encodeRacks's form, checking every name and id.
func decodeRacks(s string) (map[string]int, error) {
	if s == "" {
		return nil, nil
	}
	racks := map[string]int{}
	prev := ""
	for item := range strings.SplitSeq(s, ";") {
		ns, id, ok := strings.Cut(item, ":")
		r, err := strconv.Atoi(id)
		switch {
		case !ok || err != nil || r < 0 || r > MaxRackID:
			return nil, fmt.Errorf("rack entry %q: want namespace:rack-id with a rack id in 0..%d", item, MaxRackID)
		case validNamespace(ns, 1) != nil:
			return nil, fmt.Errorf("rack entry %q: bad namespace name", item)
		case ns <= prev:
			return nil, fmt.Errorf("rack entries not in strictly increasing namespace order at %q", item)
		}
		racks[ns], prev = r, ns
	}
	return racks, nil
}

// Node is a node as read from the segment: a process-local copy that a
// Map caches and returns by pointer. It is immutable: do not modify it or
// its Addresses.
type Node struct {
	// Slot is the node's 1-based slot number (what partition entries hold).
	Slot int
	// Gen is the slot's generation: it changes whenever the slot is given
	// to another node (or emptied), never while it holds the same node.
	Gen uint64
	NodeInfo
}

func (n *NodeInfo) validate() error {
	switch {
	case n.Name == "" || len(n.Name) > MaxNodeName:
		return fmt.Errorf("partmap: node name %q: want 1..%d bytes: %w", n.Name, MaxNodeName, ErrInvalid)
	case strings.IndexByte(n.Name, 0) >= 0:
		return fmt.Errorf("partmap: node name %q contains a NUL byte: %w", n.Name, ErrInvalid)
	case len(n.Addresses) > MaxAddresses:
		return fmt.Errorf("partmap: node %s has %d addresses, at most %d are stored: %w", n.Name, len(n.Addresses), MaxAddresses, ErrInvalid)
	case len(n.TLSName) > MaxTLSName:
		return fmt.Errorf("partmap: node %s: TLS name of %d bytes, at most %d: %w", n.Name, len(n.TLSName), MaxTLSName, ErrInvalid)
	case len(n.Build) > MaxBuild:
		return fmt.Errorf("partmap: node %s: build string of %d bytes, at most %d: %w", n.Name, len(n.Build), MaxBuild, ErrInvalid)
	}
	if enc := encodeRacks(n.Racks); len(enc) > MaxRacks {
		return fmt.Errorf("partmap: node %s: racks take %d bytes, at most %d are stored: %w", n.Name, len(enc), MaxRacks, ErrInvalid)
	} else if _, err := decodeRacks(enc); err != nil {
		return fmt.Errorf("partmap: node %s: %v: %w", n.Name, err, ErrInvalid)
	}
	for _, a := range n.Addresses {
		if !a.IsValid() || a.Addr().Zone() != "" {
			return fmt.Errorf("partmap: node %s: address %v: want a valid IPv4 or IPv6 address and port without zone: %w", n.Name, a, ErrInvalid)
		}
	}
	return nil
}

func (n *NodeInfo) equal(o *NodeInfo) bool {
	return n.Name == o.Name && n.TLSName == o.TLSName && n.Build == o.Build && n.Active == o.Active &&
		slices.Equal(n.Addresses, o.Addresses) && maps.Equal(n.Racks, o.Racks)
}

func (n NodeInfo) clone() NodeInfo {
	n.Addresses = slices.Clone(n.Addresses)
	n.Racks = maps.Clone(n.Racks)
	return n
}

// checksum hashes every word of a record but the checksum word itself.
// It is a multiply-xorshift chain: not cryptographic, but every bit of
// every word reaches every bit of the result.
func checksum(rec []uint64) uint64 {
	h := 0x9e3779b97f4a7c15 ^ uint64(len(rec))
	for i, w := range rec {
		if i == wSum {
			continue
		}
		h ^= w
		h *= 0xbf58476d1ce4e5b9
		h ^= h >> 31
	}
	h *= 0x94d049bb133111eb
	return h ^ h>>29
}

// putString stores s (len(s) <= 8*len(dst)) little-endian into dst,
// zero-padded.
func putString(dst []uint64, s string) {
	for i := range dst {
		var w uint64
		for j := 0; j < 8; j++ {
			if k := 8*i + j; k < len(s) {
				w |= uint64(s[k]) << (8 * j)
			}
		}
		dst[i] = w
	}
}

// getString reads n bytes from src; the caller has checked n <= 8*len(src).
func getString(src []uint64, n int) string {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(src[k/8] >> (8 * (k % 8)))
	}
	return string(b)
}

// encodeNode fills rec (nodeWords) except the tag and checksum.
func encodeNode(rec []uint64, gen uint64, info *NodeInfo, used bool) {
	clear(rec)
	rec[nodeGen] = gen
	if !used {
		return
	}
	flags := uint64(nodeUsed)
	if info.Active {
		flags |= nodeActive
	}
	racks := encodeRacks(info.Racks)
	rec[nodeMeta] = flags | uint64(len(info.Name))<<8 | uint64(len(info.TLSName))<<16 |
		uint64(len(info.Build))<<24 | uint64(len(info.Addresses))<<32 | uint64(len(racks))<<40
	putString(rec[nodeName:nodeAddrs], info.Name)
	for i, a := range info.Addresses {
		ip := a.Addr()
		fam := uint64(6)
		if ip.Is4() {
			fam = 4
		}
		b := ip.As16()
		w := rec[nodeAddrs+i*nodeAddrSize:]
		w[0], w[1], w[2] = binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:]), uint64(a.Port())|fam<<16
	}
	putString(rec[nodeTLS:nodeBuild], info.TLSName)
	putString(rec[nodeBuild:nodeRacks], info.Build)
	putString(rec[nodeRacks:nodeWords], racks)
}

// decodeNode decodes a verified node record of slot (1-based). It returns
// nil for an empty slot; every length and family is checked.
func decodeNode(slot int, rec []uint64) (*Node, error) {
	meta := rec[nodeMeta]
	flags := meta & 0xff
	if flags&nodeUsed == 0 {
		if meta != 0 {
			return nil, corrupt("node slot", slot, nil, "empty record with meta word %#x", meta)
		}
		return nil, nil
	}
	nameLen, tlsLen, buildLen, naddr := int(meta>>8&0xff), int(meta>>16&0xff), int(meta>>24&0xff), int(meta>>32&0xff)
	racksLen := int(meta >> 40 & 0xff)
	switch {
	case flags&^(nodeUsed|nodeActive) != 0 || meta>>48 != 0:
		return nil, corrupt("node slot", slot, nil, "meta word %#x has unknown bits", meta)
	case nameLen == 0 || nameLen > MaxNodeName || tlsLen > MaxTLSName || buildLen > MaxBuild || naddr > MaxAddresses || racksLen > MaxRacks:
		return nil, corrupt("node slot", slot, nil, "lengths out of range: name %d, TLS name %d, build %d, addresses %d, racks %d",
			nameLen, tlsLen, buildLen, naddr, racksLen)
	}
	n := &Node{Slot: slot, Gen: rec[nodeGen]}
	n.Name = getString(rec[nodeName:nodeAddrs], nameLen)
	n.TLSName = getString(rec[nodeTLS:nodeBuild], tlsLen)
	n.Build = getString(rec[nodeBuild:nodeRacks], buildLen)
	racks, err := decodeRacks(getString(rec[nodeRacks:nodeWords], racksLen))
	if err != nil {
		return nil, corrupt("node slot", slot, nil, "racks: %v", err)
	}
	n.Racks = racks
	n.Active = flags&nodeActive != 0
	if naddr > 0 {
		n.Addresses = make([]netip.AddrPort, naddr)
	}
	for i := range naddr {
		w := rec[nodeAddrs+i*nodeAddrSize:]
		var b [16]byte
		binary.LittleEndian.PutUint64(b[:8], w[0])
		binary.LittleEndian.PutUint64(b[8:], w[1])
		ip := netip.AddrFrom16(b)
		switch w[2] >> 16 {
		case 4:
			if !ip.Is4In6() {
				return nil, corrupt("node slot", slot, nil, "address %d marked IPv4 is %v", i, ip)
			}
			ip = ip.Unmap()
		case 6:
		default:
			return nil, corrupt("node slot", slot, nil, "address %d has family %d", i, w[2]>>16)
		}
		n.Addresses[i] = netip.AddrPortFrom(ip, uint16(w[2]))
	}
	if err := n.NodeInfo.validate(); err != nil {
		return nil, corrupt("node slot", slot, nil, "the record holds a node the owner could not have written (%v)", err)
	}
	return n, nil
}

// NamespaceInfo describes a namespace as registered by the owner.
type NamespaceInfo struct {
	// Name is the namespace name (1 to MaxNamespaceName bytes).
	Name string
	// ReplicaCount is the namespace's replication factor as the server
	// reports it (1..255). At most StoredReplicas replicas are stored.
	ReplicaCount int
	// SC is true for a strong-consistency namespace.
	SC bool
}

func validNamespace(name string, replicas int) error {
	switch {
	case name == "" || len(name) > MaxNamespaceName:
		return fmt.Errorf("partmap: namespace name %q: want 1..%d bytes: %w", name, MaxNamespaceName, ErrInvalid)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("partmap: namespace name %q contains a NUL byte: %w", name, ErrInvalid)
	case replicas < 1 || replicas > 255:
		return fmt.Errorf("partmap: namespace %s: replica count %d, want 1..255: %w", name, replicas, ErrInvalid)
	}
	return nil
}

func encodeNamespace(rec []uint64, ns *NamespaceInfo) {
	clear(rec)
	meta := uint64(len(ns.Name)) | uint64(ns.ReplicaCount)<<8
	if ns.SC {
		meta |= 1 << 16
	}
	rec[nsMeta] = meta
	putString(rec[nsName:nsWords], ns.Name)
}

func decodeNamespace(idx int, rec []uint64) (NamespaceInfo, error) {
	meta := rec[nsMeta]
	n, r := int(meta&0xff), int(meta>>8&0xff)
	if n == 0 || n > MaxNamespaceName || r == 0 || meta>>17 != 0 {
		return NamespaceInfo{}, corrupt("namespace slot", idx, nil, "meta word %#x out of range", meta)
	}
	info := NamespaceInfo{Name: getString(rec[nsName:nsWords], n), ReplicaCount: r, SC: meta&(1<<16) != 0}
	if err := validNamespace(info.Name, info.ReplicaCount); err != nil {
		return NamespaceInfo{}, corrupt("namespace slot", idx, nil, "the record holds a namespace the owner could not have written (%v)", err)
	}
	return info, nil
}

// OwnerStats are the tend owner's statistics, published for followers to
// display, and the cluster's name.
type OwnerStats struct {
	// PID is the owner's process id (in its PID namespace).
	PID int
	// Epoch is the lease epoch the statistics were published under.
	Epoch uint64
	// Tends counts tend rounds, InfoRequests the info requests they sent,
	// TendErrors the rounds that failed. They carry over across owners.
	Tends, InfoRequests, TendErrors uint64
	// LastTend is when the last tend round finished (zero: none yet).
	LastTend time.Time
	// LastTendDuration is how long it took.
	LastTendDuration time.Duration
	// ClusterName is the cluster's name as the first owner configured or
	// observed it (empty: none recorded yet). Later owners adopt it, and
	// it never changes while the segment lives (see Writer.RecordTend).
	ClusterName string
	// ForeignNodes counts the nodes owners refused because they answered
	// another cluster name, over all owners: each once per owner, however
	// often it was seen.
	ForeignNodes uint64
}

func encodeStats(rec []uint64, s *OwnerStats) {
	clear(rec)
	rec[stPID] = uint64(s.PID)
	rec[stTends] = s.Tends
	rec[stInfo] = s.InfoRequests
	if !s.LastTend.IsZero() {
		rec[stLast] = uint64(s.LastTend.UnixNano())
	}
	rec[stDuration] = uint64(s.LastTendDuration)
	rec[stErrors] = s.TendErrors
	rec[stRefused] = s.ForeignNodes
	rec[stNameLen] = uint64(len(s.ClusterName))
	putString(rec[stName:statsWords], s.ClusterName)
}

// decodeStats decodes a stats record whose tag and checksum were verified;
// a cluster name of impossible length is an error (ErrCorrupt).
func decodeStats(rec []uint64) (OwnerStats, error) {
	s := OwnerStats{
		PID: int(uint32(rec[stPID])), Tends: rec[stTends], InfoRequests: rec[stInfo],
		LastTendDuration: time.Duration(rec[stDuration] & (1<<63 - 1)), TendErrors: rec[stErrors],
		ForeignNodes: rec[stRefused],
	}
	s.Epoch, _ = lease.SplitFenced(rec[wTag])
	if rec[stLast] != 0 {
		s.LastTend = time.Unix(0, int64(rec[stLast]&(1<<63-1)))
	}
	if n := rec[stNameLen]; n > MaxClusterName {
		return OwnerStats{}, fmt.Errorf("partmap: stats record: cluster name of %d bytes, at most %d: %w", n, MaxClusterName, ErrCorrupt)
	}
	s.ClusterName = getString(rec[stName:statsWords], int(rec[stNameLen]))
	return s, nil
}

// copyOf returns the copy index named by a control word payload.
func copyOf(payload uint64) int { return int(payload>>ctlCopyShift) & 1 }
