package partmap

import (
	"fmt"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/procid"
	"github.com/shmkit/shmkit/seqlock"
)

// Report is what Examine read from a cluster segment: the owner's lease,
// the publish state, the node and namespace tables, per node slot how many
// partition entries name it, and every problem found.
type Report struct {
	Config     Config // MaxNodes and MaxNamespaces from the header
	Lease      LeaseState
	Generation uint64 // generation of the last completed publish
	Publishing bool   // a batch is open (or its owner died with one open)
	Nodes      []*Node
	Namespaces []NamespaceInfo
	// NamespaceSlots[i] is the slot index of Namespaces[i].
	NamespaceSlots []int
	// Refs[s] counts the partition entries (replicas of all namespaces)
	// that name node slot s (1-based; Refs[0] is unused).
	Refs  []int
	Owner OwnerStats // the owner's last published statistics
	// Problems lists every problem found (at most arena.MaxProblems),
	// Dropped how many more there were.
	Problems []string
	Dropped  int
}

// LeaseState is the tend owner's lease as recorded in the segment.
type LeaseState struct {
	Held     bool
	Epoch    uint64
	Slot     procid.Slot
	Identity procid.Identity // the owner's identity, when recorded for this epoch
}

// Check reports, in an *arena.CheckError, every problem Examine finds in
// the map's segment.
func (m *Map) Check() error {
	r, err := Examine(m.seg)
	if err != nil {
		return err
	}
	return r.err(m.seg.Location())
}

func (r *Report) err(loc arena.Location) error {
	if len(r.Problems)+r.Dropped == 0 {
		return nil
	}
	return &arena.CheckError{Structure: "cluster segment " + loc.String(), Problems: r.Problems, Dropped: r.Dropped}
}

// CheckSegment is Check for a segment attached without a Map (e.g. by
// arena.Inspect).
func CheckSegment(seg *arena.Segment) error {
	r, err := Examine(seg)
	if err != nil {
		return err
	}
	return r.err(seg.Location())
}

// examineAttempts bounds Examine's retries while the owner publishes.
const examineAttempts = 5

// Examine reads a cluster segment without changing it (no lease handle,
// no seqlock table handle, no liveness slot: it may run on any segment
// arena.Inspect attached) and checks it deeply:
//
//   - the header describes a cluster segment of this record format, with
//     the sections SegmentSpec gives for its max_nodes and max_namespaces;
//   - the lease record (lease.CheckRecord) and the three seqlock tables
//     (seqlock.CheckRegion) are sound, the meta section's reserved words
//     are zero;
//   - the publish word and every control word carry an epoch no later
//     than the lease's (the owner writes only under its own epoch);
//   - every published node, namespace and statistics record carries the
//     tag of its control word and a valid checksum, and decodes;
//   - every partition entry carries an epoch no later than the lease's,
//     names node slots within max_nodes, no slot twice, and only slots
//     whose node is published (a slot is emptied only when no entry names
//     it, so the per-slot reference counts of empty slots are zero).
//
// Run it on a quiescent segment: the walk is not a snapshot. While a
// batch is open or the generation moves, it is repeated (at most 5 times,
// a millisecond apart) so that a publish in progress is not taken for
// damage; an owner that died with a batch open leaves it open for good,
// which is no problem (the last walk's result is returned). A header that is not a cluster segment's is
// an error; everything else is a problem in the Report.
func Examine(seg *arena.Segment) (*Report, error) {
	h := seg.Header()
	if h == nil || h.Kind != layout.KindCluster {
		return nil, fmt.Errorf("partmap: %s is not a cluster segment: %w", seg.Location(), ErrCorrupt)
	}
	nodes, ok1 := h.Field("max_nodes")
	nss, ok2 := h.Field("max_namespaces")
	format, ok3 := h.Field("partmap_format")
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("partmap: %s: header lacks max_nodes, max_namespaces or partmap_format: %w", seg.Location(), ErrCorrupt)
	}
	if format != formatVersion {
		return nil, fmt.Errorf("partmap: %s: record format %d, this code reads %d: %w", seg.Location(), format, formatVersion, ErrCorrupt)
	}
	cfg := Config{MaxNodes: int(min(nodes, 1<<16)), MaxNamespaces: int(min(nss, 1<<16))}
	spec, err := SegmentSpec(cfg)
	if err != nil {
		return nil, fmt.Errorf("partmap: %s: header: %w", seg.Location(), err)
	}
	if err := h.Match(spec); err != nil {
		return nil, fmt.Errorf("partmap: %s: header: %w: %w", seg.Location(), err, ErrCorrupt)
	}
	offs := map[string]arena.Offset{}
	for _, s := range spec.Sections {
		off, _, err := seg.Section(s.Name)
		if err != nil {
			return nil, err
		}
		offs[s.Name] = off
	}
	var r *Report
	for range examineAttempts {
		before := seg.Load64(offs[secMeta] + offPub)
		r = examine(seg, cfg, offs)
		if after := seg.Load64(offs[secMeta] + offPub); after == before && after&1 == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return r, nil
}

func examine(seg *arena.Segment, cfg Config, offs map[string]arena.Offset) *Report {
	var probs arena.Problems
	r := &Report{Config: cfg, Refs: make([]int, cfg.MaxNodes+1)}
	n, s := cfg.MaxNodes, cfg.MaxNamespaces

	lo := offs[secLease]
	lease.CheckRecord(seg, lo, &probs)
	ctl := seg.Load64(lo) // lease.go: epoch (40) | slot (16) | state (8)
	r.Lease = LeaseState{Held: uint8(ctl) == 1, Epoch: ctl >> 24, Slot: procid.Slot(ctl >> 8)}
	const offIDEpoch, offIdentity = 24, 32
	if seg.Load64(lo+offIDEpoch) == r.Lease.Epoch {
		var w [procid.Words]uint64
		seg.LoadWords(lo+offIdentity, w[:])
		r.Lease.Identity = procid.Unpack(w)
	}
	epoch := r.Lease.Epoch

	meta := offs[secMeta]
	for o := arena.Offset(offRepairs + 8); o < offNodeCtl; o += 8 {
		if v := seg.Load64(meta + o); v != 0 {
			probs.Addf("meta: reserved word at %d is %#x, want 0", o, v)
		}
	}
	if pad := seg.Load32(meta + offFutex + 4); pad != 0 {
		probs.Addf("meta: padding after the futex word is %#x, want 0", pad)
	}
	pub := seg.Load64(meta + offPub)
	if e, _ := lease.SplitFenced(pub); e > epoch {
		probs.Addf("publish word %#x carries epoch %d, after the lease's %d", pub, e, epoch)
	}
	_, p := lease.SplitFenced(pub)
	r.Generation, r.Publishing = p>>1, p&1 != 0

	tables := []struct {
		sec            string
		records, words int
	}{{secNodes, 2 * n, nodeWords}, {secNS, 2 * s, nsWords}, {secStats, 2, statsWords}}
	for _, t := range tables {
		var tp arena.Problems
		seqlock.CheckRegion(seg, offs[t.sec], t.records, t.words, &tp)
		probs.Merge(t.sec, tp.Err(t.sec))
	}

	// read returns the verified published record of slot idx, nil if the
	// slot was never published; shown numbers the slot in problems.
	read := func(sec string, records, words int, ctlOff arena.Offset, idx int, what string, shown int) []uint64 {
		c := seg.Load64(ctlOff)
		e, p := lease.SplitFenced(c)
		if e > epoch {
			probs.Addf("%s %d: control word %#x carries epoch %d, after the lease's %d", what, shown, c, e, epoch)
		}
		if p == 0 {
			return nil
		}
		rec := make([]uint64, words)
		cp := copyOf(p)
		switch err := seqlock.ReadRegion(seg, offs[sec], records, words, 2*idx+cp, rec); {
		case err != nil:
			probs.Addf("%s %d: published copy %d cannot be read: %v", what, shown, cp, err)
		case rec[wTag] != c:
			probs.Addf("%s %d: published copy %d carries tag %#x, the control word is %#x", what, shown, cp, rec[wTag], c)
		case rec[wSum] != checksum(rec):
			probs.Addf("%s %d: published copy %d checksum %#x, computed %#x", what, shown, cp, rec[wSum], checksum(rec))
		default:
			return rec
		}
		return nil
	}
	nodeCtl := meta + offNodeCtl
	published := make([]bool, n+1)
	for i := range n {
		rec := read(secNodes, 2*n, nodeWords, nodeCtl+arena.Offset(8*i), i, "node slot", i+1)
		if rec == nil {
			continue
		}
		node, err := decodeNode(i+1, rec)
		if err != nil {
			probs.Addf("node slot %d: %v", i+1, err)
			continue
		}
		if node != nil {
			published[i+1] = true
			r.Nodes = append(r.Nodes, node)
		}
	}
	nsCtl := nodeCtl + arena.Offset(8*n)
	for i := range s {
		rec := read(secNS, 2*s, nsWords, nsCtl+arena.Offset(8*i), i, "namespace slot", i)
		if rec == nil {
			continue
		}
		info, err := decodeNamespace(i, rec)
		if err != nil {
			probs.Addf("namespace slot %d: %v", i, err)
			continue
		}
		r.Namespaces = append(r.Namespaces, info)
		r.NamespaceSlots = append(r.NamespaceSlots, i)
	}
	statsCtl := nsCtl + arena.Offset(8*s)
	if rec := read(secStats, 2, statsWords, statsCtl, 0, "stats", 0); rec != nil {
		owner, err := decodeStats(rec)
		if err != nil {
			probs.Addf("stats record: %v", err)
		}
		r.Owner = owner
	}
	_, msize, _ := seg.Section(secMeta)
	for o := statsCtl + 8; o < meta+arena.Offset(msize); o += 8 {
		if v := seg.Load64(o); v != 0 {
			probs.Addf("meta: word at %d after the control words is %#x, want 0", o-meta, v)
		}
	}

	parts := offs[secParts]
	for j := range s {
		for pid := range uint32(Partitions) {
			w := seg.Load64(parts + arena.Offset(j)*nsBytes + arena.Offset(8*pid))
			if w == 0 {
				continue
			}
			e, payload := lease.SplitFenced(w)
			if e > epoch {
				probs.Addf("namespace slot %d partition %d: entry %#x carries epoch %d, after the lease's %d", j, pid, w, e, epoch)
			}
			var seen [StoredReplicas]int
			for k := range StoredReplicas {
				slot := int(payload >> (8 * k) & 0xff)
				seen[k] = slot
				if slot == 0 {
					continue
				}
				if slot > n {
					probs.Addf("namespace slot %d partition %d: replica %d names node slot %d, max_nodes is %d", j, pid, k, slot, n)
					continue
				}
				r.Refs[slot]++
				if !published[slot] {
					probs.Addf("namespace slot %d partition %d: replica %d names node slot %d, which holds no published node", j, pid, k, slot)
				}
				for q := range k {
					if seen[q] == slot {
						probs.Addf("namespace slot %d partition %d: node slot %d at replicas %d and %d", j, pid, slot, q, k)
					}
				}
			}
		}
	}
	r.Problems, r.Dropped = probs.List()
	return r
}
