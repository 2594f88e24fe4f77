package partmap

import (
	"fmt"

	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/seqlock"
)

// Segment layout: the one definition of every offset in this package.
//
// A cluster segment (layout.KindCluster) has the shmkit header and six
// sections, each starting on a 64-byte boundary (layout.SectionAlign); N is
// Config.MaxNodes and S is Config.MaxNamespaces:
//
//	+-----------+-------+------+-----------+---------+------------+---------------------+
//	| header    | lease | meta | node_recs | ns_recs | stats_recs | partitions          |
//	| 1024      | 128   | M    | seqlock   | seqlock | seqlock    | S x 4096 x 8 bytes  |
//	+-----------+-------+------+-----------+---------+------------+---------------------+
//
// lease is the tend owner's lease record (package lease). meta is drawn
// below. node_recs, ns_recs and stats_recs are seqlock tables with two
// records (copy 0 and copy 1) per node slot, per namespace slot and for the
// owner's statistics; record 2*i+c is copy c of slot i. partitions holds,
// for namespace slot j, 4096 fenced words at partitions + j*32768 + pid*8.
//
// The size is therefore
//
//	1024 + 128 + align64(136 + 8N + 8S)
//	     + seqlock.SizeOf(2N, 48) + seqlock.SizeOf(2S, 7) + seqlock.SizeOf(2, 18)
//	     + 32768*S
//	= 1024 + 128 + align64(136+8N+8S) + (64 + 896N) + (64 + 256S) + 448 + 32768S
//
// which at the defaults (N=16, S=8) is 280,640 bytes (274.1 KiB; measured
// by TestSegmentSize), against 531,576 bytes for the C client's
// as_shm_cluster at the same settings. Every term but the partitions is
// small: the partition words are 95% of it.
//
// # Meta section
//
//	 0        8        12       16         24         32         40         48        64
//	+--------+--------+--------+----------+----------+----------+----------+---------+
//	| pub    | futex  | pad    | node     | namespace| conflicts| repairs  | reserved|
//	|        | u32    | u32    | overflow | overflow |          |          |         |
//	+--------+--------+--------+----------+----------+----------+----------+---------+
//	64                                                                     128
//	+----------------------------------------------------------------------+
//	| reserved (zero)                                                      |
//	+----------------------------------------------------------------------+
//	128                   128+8N                128+8N+8S      136+8N+8S
//	+---------------------+---------------------+--------------+
//	| node ctl [N]        | namespace ctl [S]   | stats ctl    |
//	+---------------------+---------------------+--------------+
//
//	pub       publish word, a fenced word: the owner's epoch over a 24-bit
//	          counter, incremented when a batch opens (odd: open) and when
//	          it is published (even). The generation is the word >> 1, so
//	          it grows by one with each publish and jumps at each change of
//	          owner (StampAll stamps the word to (epoch, 1)).
//	futex     wake word: incremented, then FUTEX_WAKE, after every publish.
//	          Anyone may increment it to wake waiters; it carries no data.
//	overflow  how many nodes and namespaces the owner has refused for lack
//	          of a slot (ErrNoRoom) and not stored since: distinct names,
//	          not attempts. Plain words, set by the owner.
//	conflicts partition rows in which the tender found one node at two
//	          replica ranks and dropped the older claim (TendReport.Conflicts).
//	          A plain counter, over all owners.
//	repairs   shared words the owner found damaged (an epoch or payload it
//	          did not write) and rewrote. A plain counter, over all owners.
//	ctl       fenced control words (package lease): see "Records" below.
//
// # Records
//
// A control word is a fenced word whose 24-bit payload is
//
//	 23      22                    0
//	+-------+-----------------------+
//	| copy  | seq (23 bits)         |      payload 0 = never published
//	+-------+-----------------------+
//
// naming which copy holds the published record and a publication number
// that grows with every publication of the slot in an epoch (the owner
// never lets it wrap for node and namespace slots: a control word value is
// never written twice). The owner
// writes the copy that is not published, then moves the control word to it
// with one fenced CAS. Word 0 of every record copy is the exact control
// word the copy was written for (its tag) and word 1 a checksum of the
// rest, so a reader accepts a copy only if its tag equals the control word
// it loaded: a copy rewritten by anyone after publication (a stray write)
// carries another epoch or seq and is rejected.
//
// Node record (48 words; record words, not bytes):
//
//	 0 tag | 1 checksum | 2 gen | 3 meta | 4..7 name (32 bytes)
//	 8..19 addresses: 4 x { ip bytes 0-7, ip bytes 8-15, port | family<<16 }
//	20..27 TLS name (64 bytes) | 28..31 build (32 bytes)
//	32..47 racks (128 bytes): "ns:rack;ns:rack", sorted by namespace
//	meta: flags (bits 0-7: 1 used, 2 active) | name length (8-15)
//	      | TLS name length (16-23) | build length (24-31) | addresses (32-39)
//	      | racks length (40-47)
//
// Namespace record (7 words):
//
//	0 tag | 1 checksum | 2 meta | 3..6 name (32 bytes)
//	meta: name length (bits 0-7) | replica count (8-15) | SC (bit 16)
//
// Stats record (18 words):
//
//	0 tag | 1 checksum | 2 owner pid | 3 tends | 4 info requests
//	5 last tend (unix ns) | 6 last tend duration (ns) | 7 tend errors
//	8 nodes refused for another cluster name | 9 cluster name length
//	10..17 cluster name (64 bytes)
//
// The cluster name is the segment's identity: set by the first owner
// (its configured name, or the name its first node answered) and adopted
// by every later owner, it never changes while the segment lives.
//
// # Partition entries
//
//	 63                          24 23        16 15         8 7          0
//	+------------------------------+------------+------------+------------+
//	| epoch (40 bits)              | prole 2    | prole 1    | master     |
//	+------------------------------+------------+------------+------------+
//
// Node slots in entries are 1-based; 0 means no node.
const (
	// Section names.
	secLease = "lease"
	secMeta  = "meta"
	secNodes = "node_recs"
	secNS    = "ns_recs"
	secStats = "stats_recs"
	secParts = "partitions"

	// Meta section offsets.
	offPub          = 0
	offFutex        = 8
	offNodeOverflow = 16
	offNSOverflow   = 24
	offConflicts    = 32
	offRepairs      = 40
	offNodeCtl      = 128 // then namespace ctl, then stats ctl

	// Control word payload.
	ctlCopyShift = 23
	ctlSeqMask   = 1<<ctlCopyShift - 1

	// Record words common to every record.
	wTag = 0
	wSum = 1

	// Node record.
	nodeGen      = 2
	nodeMeta     = 3
	nodeName     = 4
	nodeAddrs    = 8
	nodeAddrSize = 3
	nodeTLS      = 20
	nodeBuild    = 28
	nodeRacks    = 32
	nodeWords    = 48

	nodeUsed   = 1
	nodeActive = 2

	// Namespace record.
	nsMeta  = 2
	nsName  = 3
	nsWords = 7

	// Stats record.
	stPID      = 2
	stTends    = 3
	stInfo     = 4
	stLast     = 5
	stDuration = 6
	stErrors   = 7
	stRefused  = 8
	stNameLen  = 9
	stName     = 10
	statsWords = 18

	// Partition entries.
	partShift = 15 // log2(Partitions*8): bytes per namespace table
	nsBytes   = Partitions * 8

	// formatVersion is stored as the config field partmap_format: code of
	// another record format refuses the segment (a *layout.MismatchError).
	formatVersion = 2
)

// Limits of what a segment stores.
const (
	// MaxNodeName is the longest node name, in bytes.
	MaxNodeName = 32
	// MaxAddresses is how many service addresses a node record holds.
	MaxAddresses = 4
	// MaxTLSName is the longest TLS name, in bytes.
	MaxTLSName = 64
	// MaxBuild is the longest build string, in bytes.
	MaxBuild = 32
	// MaxRacks is the longest encoding of a node's racks
	// ("ns:rack;ns:rack" in namespace order), in bytes.
	MaxRacks = 128
	// MaxRackID is the largest rack id (Aerospike's rack-id range is
	// 0..1000000).
	MaxRackID = 1_000_000
	// MaxClusterName is the longest cluster name, in bytes (Aerospike's
	// cluster-name allows 64 characters).
	MaxClusterName = 64
	// MaxNamespaceName is the longest namespace name, in bytes (Aerospike
	// allows 31).
	MaxNamespaceName = 31
	// StoredReplicas is how many replicas a partition entry holds: the
	// master and two proles. Namespaces with a higher replication factor
	// are stored with their first three replicas.
	StoredReplicas = 3
	// MaxNodesLimit is the largest Config.MaxNodes: node slots are 8 bits
	// in a partition entry, and 0 means none.
	MaxNodesLimit = 255
	// MaxNamespacesLimit is the largest Config.MaxNamespaces (the
	// Aerospike server's own limit).
	MaxNamespacesLimit = 32
	// DefaultMaxNodes and DefaultMaxNamespaces are used for zero Config
	// fields, as the C client's shm_max_nodes and shm_max_namespaces.
	DefaultMaxNodes      = 16
	DefaultMaxNamespaces = 8
)

var (
	_ [nodeWords - nodeRacks - MaxRacks/8]struct{}
	_ [nodeRacks - nodeBuild - MaxBuild/8]struct{}
	_ [nodeBuild - nodeTLS - MaxTLSName/8]struct{}
	_ [nodeTLS - nodeAddrs - MaxAddresses*nodeAddrSize]struct{}
	_ [nodeAddrs - nodeName - MaxNodeName/8]struct{}
	_ [nsWords - nsName - (MaxNamespaceName+1)/8]struct{}
	_ [1<<partShift - nsBytes]struct{}
	_ [nsBytes - 1<<partShift]struct{}
)

// metaSize is the size of the meta section.
func metaSize(nodes, namespaces int) uint64 {
	return (offNodeCtl + 8*uint64(nodes+namespaces+1) + 63) &^ 63
}

// normalize applies the defaults and validates the geometry.
func (c Config) normalize() (Config, error) {
	if c.MaxNodes == 0 {
		c.MaxNodes = DefaultMaxNodes
	}
	if c.MaxNamespaces == 0 {
		c.MaxNamespaces = DefaultMaxNamespaces
	}
	if c.MaxNodes < 1 || c.MaxNodes > MaxNodesLimit {
		return c, fmt.Errorf("partmap: MaxNodes %d: want 1..%d (node slots are 8 bits in a partition entry): %w",
			c.MaxNodes, MaxNodesLimit, ErrConfig)
	}
	if c.MaxNamespaces < 1 || c.MaxNamespaces > MaxNamespacesLimit {
		return c, fmt.Errorf("partmap: MaxNamespaces %d: want 1..%d: %w", c.MaxNamespaces, MaxNamespacesLimit, ErrConfig)
	}
	return c, nil
}

// SegmentSpec returns the segment a Map with cfg uses: kind cluster, the
// config fields max_nodes, max_namespaces and partmap_format (two processes
// share a segment only if all three agree) and the sections drawn above.
// Zero fields of cfg take their defaults; out-of-range ones are an
// ErrConfig error.
func SegmentSpec(cfg Config) (layout.Spec, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return layout.Spec{}, err
	}
	n, s := cfg.MaxNodes, cfg.MaxNamespaces
	return layout.Spec{
		Kind: layout.KindCluster,
		Fields: []layout.Field{
			{Name: "max_nodes", Value: uint64(n)},
			{Name: "max_namespaces", Value: uint64(s)},
			{Name: "partmap_format", Value: formatVersion},
		},
		Sections: []layout.SectionSpec{
			{Name: secLease, Size: lease.Size},
			{Name: secMeta, Size: metaSize(n, s)},
			{Name: secNodes, Size: seqlock.SizeOf(2*n, nodeWords)},
			{Name: secNS, Size: seqlock.SizeOf(2*s, nsWords)},
			{Name: secStats, Size: seqlock.SizeOf(2, statsWords)},
			{Name: secParts, Size: uint64(s) * nsBytes},
		},
	}, nil
}

// SegmentSize returns the size in bytes of the segment for cfg, header
// included (see the formula above).
func SegmentSize(cfg Config) (uint64, error) {
	spec, err := SegmentSpec(cfg)
	if err != nil {
		return 0, err
	}
	plan, err := spec.Plan()
	if err != nil {
		return 0, fmt.Errorf("partmap: %w", err)
	}
	return plan.TotalSize, nil
}
