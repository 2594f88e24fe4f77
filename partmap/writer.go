package partmap

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/seqlock"
)

// FailPublishMid is the failpoint hit by SetPartition (and SetPartitions)
// before every entry CAS of a publish batch except the batch's first, so
// that a test can stop or kill the owner between two entries of one
// publish: arm it as "partmap.publish.mid=stop@100" to stop after 100
// entries of the process's batches.
const FailPublishMid = "partmap.publish.mid"

// FailAdoptRead is the failpoint hit by StampAll after it has read and
// verified a published node, namespace or stats record of an older epoch
// and before it writes anything for that record, so that a test can stop
// the new owner there while the old owner publishes the record again:
// arm it as "partmap.adopt.read=stop@3" to stop at the third such record.
const FailAdoptRead = "partmap.adopt.read"

// FailRecordWrite is the failpoint hit when the owner publishes a node,
// namespace or stats record, after its early check that the record's
// control word is still its own and before it writes a copy, so that a
// test can stop an owner there while another takes over:
// "partmap.record.write=stop@7" stops at the seventh such write.
const FailRecordWrite = "partmap.record.write"

// recState is what the owner knows about a node or namespace slot.
type recState uint8

const (
	recNever   recState = iota // never published (control payload 0)
	recUsed                    // holds a node or namespace
	recFree                    // published empty: a removed node
	recUnknown                 // its record failed validation at takeover
)

// wrec is the owner's view of one record slot: its state and the control
// word it published last (or adopted).
type wrec struct {
	state recState
	ctl   uint64
}

type wnode struct {
	wrec
	gen     uint64
	info    NodeInfo
	freedAt uint64 // order of removal, for least-recently-freed reuse
}

type wns struct {
	wrec
	info NamespaceInfo
}

// Writer is the tend owner's side of a Map: it changes the tables, and
// every change is fenced by the owner's lease epoch, so that a process
// that lost the lease (stopped, hung, partitioned) can never publish.
// Once another owner has stamped the segment, every call of a stale
// Writer fails with an error wrapping lease.ErrFenced, including calls
// that would change nothing.
// After acquiring the lease, call StampAll before anything else.
//
// Changes are grouped into publish batches: the first change opens a
// batch (readers' Snapshot waits while it is open), Publish closes it,
// increments the generation and wakes WaitChange in every process. A
// Writer is safe for concurrent use, but an owner normally drives it from
// its tend goroutine.
//
// The owner keeps in process memory what it published: per-slot
// reference counts (how many partition entries name each node slot), the
// node and namespace registrations, and a mirror of every partition
// entry. StampAll rebuilds all of it from the segment.
//
// # Damage
//
// The owner treats its memory as the truth and shared memory as a copy
// that anything may damage (a bit flip, a stray write). Every Publish
// re-verifies the records it published and compares every partition
// entry with the mirror (the scrub: 4096 loads per namespace slot), and
// rewrites what differs inside the batch, so a damaged entry serves wrong
// answers until the owner's next Publish at most. A fenced word found
// with an epoch other than the writer's while the lease record still
// names this owner (Lease.Owner) was damaged, not written by a newer
// owner, who takes the lease before it writes anything: the writer
// reclaims it (one CAS from the damaged value) instead of failing with
// ErrFenced forever. Repairs are counted in the segment (Stats.Repairs)
// and logged as one summary record per Publish or StampAll, however many
// words were hit.
type Writer struct {
	m *Map
	l *lease.Lease

	mu      sync.Mutex
	epoch   uint64 // the lease epoch (40 bits) the tables were stamped with; 0 before StampAll
	pub     uint64 // publish counter (payload of the publish word) this writer wrote last
	open    bool   // a batch is open
	entries int    // entry CASes in the open batch

	nodes    []wnode
	byName   map[string]int // node name → 0-based slot
	refs     []int          // partition references per node slot
	freeSeq  uint64
	nss      []wns
	nsByName map[string]int
	mirror   [][Partitions]uint32 // entry payloads per namespace slot
	stats    wrec
	owner    OwnerStats
	buf      [nodeWords]uint64
	scrubBuf [Partitions]uint64

	// refusedNodes and refusedNS are the names refused for lack of room
	// and not stored since (at most maxRefused each); their sizes are
	// the segment's overflow words.
	refusedNodes, refusedNS map[string]bool
	dmg                     damage
}

// maxRefused bounds the names a Writer remembers as refused for lack of
// room; the overflow words saturate there.
const maxRefused = 1024

// damageKind says which kind of shared word a repair rewrote.
type damageKind uint8

const (
	dmgEntry  damageKind = iota // a partition entry
	dmgPub                      // the publish word
	dmgCtl                      // a record's control word
	dmgRecord                   // a record copy that no longer verified
	dmgKinds
)

// damage accumulates the repairs made since the last summary (logged at
// every Publish and StampAll): one log record per publish, however many
// words were hit.
type damage struct {
	n     [dmgKinds]int
	first string // what the first repair found
}

// repaired counts one repair of kind k, described by format and args.
func (w *Writer) repaired(k damageKind, format string, args ...any) {
	if w.dmg.first == "" {
		w.dmg.first = fmt.Sprintf(format, args...)
	}
	w.dmg.n[k]++
}

// flushDamage adds the repairs made since the last flush to the segment's
// repairs counter and logs them as one record.
func (w *Writer) flushDamage() {
	d := &w.dmg
	total := d.n[dmgEntry] + d.n[dmgPub] + d.n[dmgCtl] + d.n[dmgRecord]
	if total == 0 {
		return
	}
	w.m.seg.Add64(w.m.repairs, uint64(total))
	w.m.cfg.Logger.Warn("partmap: repaired damaged shared memory (the owner's copy is the truth)",
		"epoch", w.epoch, "entries", d.n[dmgEntry], "publish_word", d.n[dmgPub], "control_words", d.n[dmgCtl],
		"records", d.n[dmgRecord], "first", d.first)
	*d = damage{}
}

// leaseOurs reports whether the lease record still names this writer's
// lease as the holder, without the side effects of Lease.Holds (which
// forgets a lost lease, turning later ErrFenced errors into ErrNotOwner).
func (w *Writer) leaseOurs() bool {
	e := w.l.Epoch()
	if e == 0 {
		return false
	}
	o := w.l.Owner()
	return o.Held && o.Epoch == e
}

// reclaim replaces the fenced word at off, found holding cur, with want,
// a word of this writer's epoch, and counts it as a repair of kind k. A
// word of another epoch is reclaimed only while the lease record still
// names this owner: then it was damaged, since a newer owner takes the
// lease before it writes anything (and its epoch only grows); otherwise
// reclaim fails with an error wrapping lease.ErrFenced. done is false if
// the word changed under the CAS (the caller looks again).
func (w *Writer) reclaim(off arena.Offset, cur, want uint64, k damageKind, format string, args ...any) (done bool, err error) {
	if ce, _ := lease.SplitFenced(cur); ce != w.epoch && !w.leaseOurs() {
		return false, fenced(lease.ErrFenced, "%s: the word has epoch %d, ours is %d, and the lease is no longer ours",
			fmt.Sprintf(format, args...), ce, w.epoch)
	}
	if !w.m.seg.CAS64(off, cur, want) {
		return false, nil
	}
	w.repaired(k, format, args...)
	return true, nil
}

// Writer returns the owner's writer for this map, fenced by l, a lease on
// the record at LeaseOffset. The writer is unusable (ErrNotStamped) until
// StampAll succeeds.
func (m *Map) Writer(l *lease.Lease) *Writer {
	return &Writer{m: m, l: l}
}

// check returns an error unless the writer is stamped for the lease's
// current epoch. Fencing itself is done by every CAS; this catches an
// owner that re-acquired the lease without stamping again.
func (w *Writer) check() error {
	if w.epoch == 0 {
		return fmt.Errorf("partmap: writer used before StampAll: %w", ErrNotStamped)
	}
	if e := w.l.Epoch() & epochMask; e != w.epoch {
		if e == 0 {
			return fmt.Errorf("partmap: writer stamped with epoch %d: %w", w.epoch, lease.ErrNotOwner)
		}
		return fmt.Errorf("partmap: writer stamped with epoch %d, the lease now has epoch %d: %w", w.epoch, e, ErrNotStamped)
	}
	return nil
}

const epochMask = 1<<lease.EpochBits - 1

// pubWord is the publish word as this writer last wrote it.
func (w *Writer) pubWord() uint64 { return lease.PackFenced(w.epoch, w.pub) }

// stillOurs checks that the publish word is the one this writer wrote
// last, so that calls that change nothing still tell a stale owner it is
// fenced (one atomic load; the writes themselves are fenced by their
// CAS). A publish word damaged while the lease is ours is repaired.
func (w *Writer) stillOurs() error {
	if v := w.m.seg.Load64(w.m.pub); v != w.pubWord() {
		return w.fixPub(v)
	}
	return nil
}

// fenced wraps a fencing error with what was being written.
func fenced(err error, format string, args ...any) error {
	return fmt.Errorf("partmap: %s: %w (another process owns the map now; stop writing and re-acquire the lease)",
		fmt.Sprintf(format, args...), err)
}

// StampAll makes this process's lease epoch the owner of every fenced word
// of the segment, and rebuilds the writer's state from what it finds.
// Call it after every acquisition of the lease and before any change.
//
// In order, it
//
//  1. stamps the publish word with its epoch, opening a batch (a stale
//     owner can no longer open or close one);
//  2. stamps every partition entry (lease.Stamp) and reads it into the
//     mirror, clearing slot numbers out of range and the entries of
//     namespace slots that hold no namespace;
//  3. republishes every valid node, namespace and stats record under its
//     epoch (stamping the control word the record verified under, then
//     writing the unpublished copy and moving the control word to it), and
//     stamps the control words of records that fail validation, keeping
//     them out of use;
//  4. rebuilds the per-slot reference counts and publishes.
//
// A stale owner's CAS on a word this has stamped fails, so each of its
// single-word changes either landed before the stamp (and is part of
// what StampAll adopts) or not at all. StampAll fails with an error
// wrapping lease.ErrFenced if a newer owner has stamped words already.
// A word that carries a later epoch while the lease record still names
// this owner was damaged: it is reclaimed (see Writer), and a control
// word so damaged keeps its record out of use unless the record verifies
// under the tag it was written with.
//
// The overflow words restart from zero: the new owner counts what it
// refuses.
func (w *Writer) StampAll() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.l.Epoch() & epochMask
	if e == 0 {
		return fmt.Errorf("partmap: StampAll: %w", lease.ErrNotOwner)
	}
	base := uint64(0)
	if w.epoch == e {
		base = w.pub // stamped again in the same epoch: never reuse a publish word value
	}
	if err := w.stamp(e, base); err != nil {
		w.epoch = 0
		w.dmg = damage{}
		return err
	}
	w.owner.PID = os.Getpid()
	w.m.cfg.Logger.Info("partmap: stamped the tables", "epoch", e, "nodes", len(w.byName), "namespaces", len(w.nsByName))
	err := w.publishLocked()
	w.flushDamage()
	return err
}

// stamp does StampAll's steps 1 to 3 under epoch e and rebuilds the
// reference counts; StampAll publishes. base is the publish counter this
// writer wrote last in epoch e (0 if none). On error StampAll clears
// w.epoch, leaving the writer unusable (ErrNotStamped).
func (w *Writer) stamp(e, base uint64) error {
	m := w.m
	w.epoch, w.open, w.entries = e, false, 0
	w.refusedNodes, w.refusedNS = map[string]bool{}, map[string]bool{}
	m.seg.Store64(m.nodeOvf, 0)
	m.seg.Store64(m.nsOvf, 0)
	w.nodes = make([]wnode, m.maxNodes)
	w.byName = map[string]int{}
	w.refs = make([]int, m.maxNodes)
	w.nss = make([]wns, m.maxNS)
	w.nsByName = map[string]int{}
	w.mirror = make([][Partitions]uint32, m.maxNS)

	// 1. Seize the publish word.
	if err := w.seize(base); err != nil {
		return err
	}

	// 3 (before 2, so that entries can be checked against namespaces).
	for i := range m.maxNS {
		valid, ctl, err := w.adopt(m.nsT, m.nsCtlOff(i), i, w.buf[:nsWords], "namespace slot", i, func(rec []uint64) error {
			_, err := decodeNamespace(i, rec)
			return err
		})
		if err != nil {
			return err
		}
		ns := &w.nss[i]
		ns.ctl = ctl
		switch {
		case valid == recUsed:
			info, _ := decodeNamespace(i, w.buf[:nsWords])
			if _, dup := w.nsByName[info.Name]; dup {
				ns.state = recUnknown
				m.cfg.Logger.Warn("partmap: namespace registered twice; ignoring the later slot", "namespace", info.Name, "slot", i)
				continue
			}
			ns.state, ns.info = recUsed, info
			w.nsByName[info.Name] = i
		default:
			ns.state = valid
		}
	}
	for i := range m.maxNodes {
		valid, ctl, err := w.adopt(m.nodeT, m.nodeCtlOff(i), i, w.buf[:nodeWords], "node slot", i+1, func(rec []uint64) error {
			_, err := decodeNode(i+1, rec)
			return err
		})
		if err != nil {
			return err
		}
		n := &w.nodes[i]
		n.ctl = ctl
		if valid != recUsed {
			n.state = valid
			continue
		}
		node, _ := decodeNode(i+1, w.buf[:nodeWords])
		n.gen = w.buf[nodeGen]
		switch {
		case node == nil:
			n.state = recFree
		case w.hasNode(node.Name):
			n.state = recUnknown // the same name in two slots: keep it out of use
			m.cfg.Logger.Warn("partmap: node registered twice; ignoring the later slot", "node", node.Name, "slot", i+1)
		default:
			n.state, n.info = recUsed, node.NodeInfo
			w.byName[node.Name] = i
		}
	}
	valid, ctl, err := w.adopt(m.statsT, m.statsCtl, 0, w.buf[:statsWords], "stats", 0, func(rec []uint64) error {
		_, err := decodeStats(rec)
		return err
	})
	if err != nil {
		return err
	}
	w.stats = wrec{state: valid, ctl: ctl}
	if valid == recUsed {
		w.owner, _ = decodeStats(w.buf[:statsWords]) // validated by adopt
	}

	// 2. Stamp the entries.
	for i := range m.maxNS {
		for pid := range uint32(Partitions) {
			off := m.entryOff(i, pid)
			if err := w.stampEntry(off, i, pid); err != nil {
				return err
			}
			_, p := lease.SplitFenced(m.seg.Load64(off))
			clean := p
			if w.nss[i].state != recUsed {
				clean = 0
			}
			for r := range StoredReplicas {
				if s := int(clean >> (8 * r) & 0xff); s > m.maxNodes {
					clean &^= 0xff << (8 * r)
				}
			}
			if clean != p {
				if _, err := w.l.FencedCAS(m.seg, off, p, clean); err != nil {
					return fenced(err, "clear namespace %d partition %d", i, pid)
				}
				_, clean = lease.SplitFenced(m.seg.Load64(off))
			}
			w.mirror[i][pid] = uint32(clean)
			w.addRefs(uint32(clean), 1)
		}
	}
	return nil
}

// stampEntry stamps partition entry off (namespace slot i, partition
// pid) with this writer's epoch, reclaiming an entry damaged to a later
// epoch while the lease is ours.
func (w *Writer) stampEntry(off arena.Offset, i int, pid uint32) error {
	for range readAttempts {
		err := w.l.Stamp(w.m.seg, off)
		if err == nil {
			return nil
		}
		if !errors.Is(err, lease.ErrFenced) {
			return fenced(err, "stamp namespace %d partition %d", i, pid)
		}
		v := w.m.seg.Load64(off)
		_, p := lease.SplitFenced(v)
		done, err := w.reclaim(off, v, lease.PackFenced(w.epoch, p), dmgEntry,
			"namespace %d partition %d entry %#x carries a later epoch", i, pid, v)
		if err != nil || done {
			return err
		}
	}
	return corrupt("partition", int(pid), nil, "namespace %d entry kept changing while it was stamped", i)
}

// adopt takes over record slot idx of t for this writer's epoch. A record
// that verifies is republished unchanged under the epoch and its content
// left in buf (state recUsed); a slot never published is stamped (recNever);
// a record that fails validation has its control word stamped as it is,
// so that no earlier owner can publish it and readers keep rejecting it
// (recUnknown). A control word of a later epoch while the lease is ours
// was damaged: its record is adopted if the copy it names verifies under
// the tag it was written with (only the control word's epoch was hit),
// and kept out of use otherwise.
//
// A verified record is fenced before anything is written for it: its
// control word is stamped as it is (one CAS from the control word the
// record verified under), and only then is a copy written and published
// (see republish). Until that stamp the old owner, if it still runs with
// a batch open, may publish the record itself, into the copy that is not
// published; writing that copy before the stamp could overwrite a
// publication that readers had already verified, and the CAS that then
// fails leaves the slot's current copy carrying this owner's tag under
// the old owner's control word. Between the stamp and the republication
// (one copy write) the record does not verify, so a reader without a
// cached copy finds nothing in that slot for that long.
// An owner that dies in between, or whose copy write fails (both copies
// held by stalled writers), leaves the copy its stamp names tagged with
// the control word's payload under an earlier epoch: the next StampAll
// adopts that copy if it verifies under that tag. It can only be the
// record the stamp fenced: no owner stores into a copy after its control
// word left the owner's epoch (writeCopyFirst), and the stamp names the
// copy the earlier owner does not write.
func (w *Writer) adopt(t *seqlock.Table, ctlOff arena.Offset, idx int, buf []uint64, what string, shown int, decode func([]uint64) error) (recState, uint64, error) {
	m := w.m
	for range readAttempts * 4 {
		c := m.seg.Load64(ctlOff)
		ce, p := lease.SplitFenced(c)
		if ce > w.epoch {
			if !w.leaseOurs() {
				return 0, 0, fenced(lease.ErrFenced, "adopt %s %d: its control word has epoch %d, ours is %d", what, shown, ce, w.epoch)
			}
			state, nc, ok, err := w.adoptDamaged(t, ctlOff, c, idx, buf, what, shown, decode)
			if err != nil || ok {
				return state, nc, err
			}
			continue
		}
		if p == 0 {
			nc := lease.PackFenced(w.epoch, 0)
			if c == nc || m.seg.CAS64(ctlOff, c, nc) {
				return recNever, nc, nil
			}
			continue
		}
		state := recUsed
		rc, _, err := m.readRecord(t, ctlOff, idx, buf, what, shown)
		if err == nil && decode != nil {
			err = decode(buf)
		}
		if err != nil {
			if errors.Is(err, ErrUnstable) {
				continue
			}
			state = recUnknown
		}
		if rc != c {
			continue // republished between the load and the read
		}
		if state == recUnknown && w.intact(t, idx, p, ce, buf, decode) {
			// Stamped by an owner (this one, in an earlier StampAll,
			// or an earlier one) that did not republish it.
			if m.seg.Load64(ctlOff) != c {
				continue
			}
			state = recUsed
			if ce == w.epoch {
				return w.republish(t, ctlOff, c, idx, p, buf, what, shown)
			}
		}
		if ce == w.epoch {
			return state, c, nil // stamped already (StampAll called again)
		}
		m.cfg.Failpoints.Hit(FailAdoptRead)
		if state == recUsed {
			// Fail before the stamp, which would leave the record
			// unverifiable, if it cannot be republished.
			if _, err := w.nextSeq(t, p, what, shown); err != nil {
				return 0, 0, err
			}
		}
		sc := lease.PackFenced(w.epoch, p)
		if !m.seg.CAS64(ctlOff, c, sc) {
			continue // the old owner published it again: read it again
		}
		if state == recUnknown {
			m.cfg.Logger.Warn("partmap: record fails validation; keeping its slot out of use", what, shown, "error", err)
			return recUnknown, sc, nil
		}
		return w.republish(t, ctlOff, sc, idx, p, buf, what, shown)
	}
	return 0, 0, fmt.Errorf("partmap: adopt %s %d: its control word kept changing: %w", what, shown, ErrUnstable)
}

// republish finishes adopting slot idx, whose control word sc (payload p)
// this writer stamped and whose record is in buf: it rewrites the record,
// tagged with the next publication of this epoch, into the copy sc names,
// and moves the control word to that publication (recUsed). That copy no
// longer verifies for readers (its tag is the old epoch's), and the old
// owner, whose publication p was the last, only ever writes the other
// copy: its late store can neither delay this write (a stopped writer
// holding that copy's seqlock) nor damage the record it publishes. No
// other owner can change a word of this epoch, so a failing CAS means the
// word was damaged meanwhile.
func (w *Writer) republish(t *seqlock.Table, ctlOff arena.Offset, sc uint64, idx int, p uint64, buf []uint64, what string, shown int) (recState, uint64, error) {
	np, err := w.writeCopyFirst(t, idx, p, copyOf(p), buf, what, shown)
	if err != nil {
		return 0, 0, err
	}
	nc := lease.PackFenced(w.epoch, np)
	if !w.m.seg.CAS64(ctlOff, sc, nc) {
		return 0, 0, corrupt(what, shown, nil, "control word changed from %#x to %#x while the owner adopted the record", sc, w.m.seg.Load64(ctlOff))
	}
	return recUsed, nc, nil
}

// intact reports whether copy copyOf(p) of slot idx, read into buf,
// carries a tag with payload p of an epoch before epoch below and
// verifies under it.
func (w *Writer) intact(t *seqlock.Table, idx int, p, below uint64, buf []uint64, decode func([]uint64) error) bool {
	if t.Read(2*idx+copyOf(p), buf) != nil {
		return false
	}
	te, tp := lease.SplitFenced(buf[wTag])
	if tp != p || te >= below || buf[wSum] != checksum(buf) {
		return false
	}
	return decode == nil || decode(buf) == nil
}

// adoptDamaged adopts slot idx whose control word c carries a later epoch
// than the writer's while the lease is ours (damage). If the copy c names
// carries a tag of an earlier epoch with c's payload, and verifies under
// it, only the control word's epoch was hit: the record is republished
// under this epoch (recUsed, content in buf). Otherwise the control word
// is reclaimed as it is and the slot kept out of use (recUnknown), or
// stamped empty if it names no copy (recNever). ok is false if the word
// changed meanwhile.
func (w *Writer) adoptDamaged(t *seqlock.Table, ctlOff arena.Offset, c uint64, idx int, buf []uint64, what string, shown int, decode func([]uint64) error) (state recState, nc uint64, ok bool, err error) {
	_, p := lease.SplitFenced(c)
	if p == 0 {
		nc = lease.PackFenced(w.epoch, 0)
		done, err := w.reclaim(ctlOff, c, nc, dmgCtl, "%s %d control word %#x carries a later epoch", what, shown, c)
		return recNever, nc, done, err
	}
	if w.intact(t, idx, p, w.epoch, buf, decode) {
		np, err := w.writeCopy(t, idx, p, buf, what, shown)
		if err != nil {
			return 0, 0, false, err
		}
		nc = lease.PackFenced(w.epoch, np)
		done, err := w.reclaim(ctlOff, c, nc, dmgCtl, "%s %d control word %#x carries a later epoch (its record is intact)", what, shown, c)
		return recUsed, nc, done, err
	}
	nc = lease.PackFenced(w.epoch, p)
	done, err := w.reclaim(ctlOff, c, nc, dmgCtl, "%s %d control word %#x carries a later epoch and its record does not verify; slot kept out of use", what, shown, c)
	return recUnknown, nc, done, err
}

// writeCopy writes rec (tag and checksum filled in here) as the next
// publication after control payload p of slot idx: into the copy that is
// not published, or, if a stalled writer (a stopped earlier owner) holds
// that copy, into the published one. It returns the new control payload.
//
// Publication numbers of node and namespace slots never wrap: readers
// rely on a control word value never being written twice. The stats
// record, which readers do not cache, wraps.
func (w *Writer) writeCopy(t *seqlock.Table, idx int, p uint64, rec []uint64, what string, shown int) (uint64, error) {
	first := 1 - copyOf(p)
	if p == 0 {
		first = 0
	}
	return w.writeCopyFirst(t, idx, p, first, rec, what, shown)
}

// writeCopyFirst is writeCopy trying copy first before the other one.
//
// The copy is written only if, once the writer holds the copy's seqlock
// claim, the slot's control word still carries this writer's epoch (or
// the lease record still names this owner: a word damaged to another
// epoch, which the caller reclaims); otherwise it fails with an error
// wrapping lease.ErrFenced and writes nothing. So a stale owner never
// stores into a copy a newer owner has published: the newer owner stamps
// the control word before it writes any copy, the stamp names the copy
// the stale owner does not write (its last publication), and every other
// copy the newer owner publishes it has written, which it cannot do while
// the stale owner holds the claim, nor before the stale owner's check.
func (w *Writer) writeCopyFirst(t *seqlock.Table, idx int, p uint64, first int, rec []uint64, what string, shown int) (uint64, error) {
	seq, err := w.nextSeq(t, p, what, shown)
	if err != nil {
		return 0, err
	}
	ctlOff := w.m.ctlOff(t, idx)
	stillOurs := func() error {
		if ce, _ := lease.SplitFenced(w.m.seg.Load64(ctlOff)); ce != w.epoch && !w.leaseOurs() {
			return fenced(lease.ErrFenced, "write %s %d: control word has epoch %d, ours is %d", what, shown, ce, w.epoch)
		}
		return nil
	}
	order := [2]int{first, 1 - first}
	var werr error
	for _, cp := range order {
		np := uint64(cp)<<ctlCopyShift | seq
		rec[wTag] = lease.PackFenced(w.epoch, np)
		rec[wSum] = checksum(rec)
		werr = t.WriteIf(2*idx+cp, rec, stillOurs)
		if werr == nil {
			return np, nil
		}
		if errors.Is(werr, lease.ErrFenced) {
			return 0, werr
		}
		if !errors.Is(werr, seqlock.ErrWriterStalled) {
			break
		}
		w.m.cfg.Logger.Warn("partmap: record copy held by a stalled writer; writing the other copy", what, shown, "copy", cp)
	}
	return 0, fmt.Errorf("partmap: write %s %d: %w", what, shown, werr)
}

// nextSeq returns the publication number after control payload p of a
// slot of t: ErrExhausted at the end of the range, except for the stats
// record, which wraps.
func (w *Writer) nextSeq(t *seqlock.Table, p uint64, what string, shown int) (uint64, error) {
	seq := p&ctlSeqMask + 1
	if seq > ctlSeqMask {
		if t != w.m.statsT {
			return 0, fmt.Errorf("partmap: %s %d was published %d times in epoch %d, the most one epoch allows; "+
				"release and re-acquire the lease (a new epoch): %w", what, shown, ctlSeqMask, w.epoch, ErrExhausted)
		}
		seq = 1
	}
	return seq, nil
}

// publishRecord publishes rec as the next version of slot idx of t: it
// writes a copy, then moves the control word to it with one fenced CAS.
// A control word damaged while the lease is ours (another epoch, or a
// payload this owner did not publish) is reclaimed by that move.
func (w *Writer) publishRecord(t *seqlock.Table, ctlOff arena.Offset, idx int, r *wrec, rec []uint64, what string, shown int) error {
	m := w.m
	// A cheap early check: do not even wait for a copy's seqlock claim if
	// the control word is no longer ours. (writeCopy checks again under
	// the claim, which keeps a stale owner's stores out of published
	// copies; the CAS below is what fences the publication.)
	if ce, _ := lease.SplitFenced(m.seg.Load64(ctlOff)); ce != w.epoch && !w.leaseOurs() {
		return fenced(lease.ErrFenced, "publish %s %d: control word has epoch %d, ours is %d", what, shown, ce, w.epoch)
	}
	m.cfg.Failpoints.Hit(FailRecordWrite)
	_, p := lease.SplitFenced(r.ctl)
	np, err := w.writeCopy(t, idx, p, rec, what, shown)
	if err != nil {
		return err
	}
	want := lease.PackFenced(w.epoch, np)
	for range readAttempts {
		ok, err := w.l.FencedCAS(m.seg, ctlOff, p, np)
		if err != nil && !errors.Is(err, lease.ErrFenced) {
			return fenced(err, "publish %s %d", what, shown)
		}
		if ok {
			r.ctl = want
			return nil
		}
		cur := m.seg.Load64(ctlOff)
		done, err := w.reclaim(ctlOff, cur, want, dmgCtl, "%s %d control word %#x, this owner published %#x", what, shown, cur, r.ctl)
		if err != nil {
			return err
		}
		if done {
			r.ctl = want
			return nil
		}
	}
	return corrupt(what, shown, nil, "control word keeps changing behind the owner (%#x)", m.seg.Load64(ctlOff))
}

// nextPub returns the smallest publish counter above base with the parity
// of w.pub (odd while a batch is open).
func (w *Writer) nextPub(base uint64) uint64 {
	n := base + 1
	if n&1 != w.pub&1 {
		n++
	}
	return n
}

// seize makes the publish word this writer's: from a word of an older
// epoch, one CAS to (epoch, counter), a batch open; from a word of this
// epoch (StampAll again), it opens a batch if none is. base is the
// counter this writer wrote last in this epoch (0 if none); the counter
// it seizes with is above it, so the word never takes a value twice. A
// word of a newer epoch means another owner took over, unless the lease
// is still ours: then it was damaged, and is reclaimed.
func (w *Writer) seize(base uint64) error {
	m := w.m
	w.pub = 1 // the parity nextPub keeps: a batch opens
	for range readAttempts * 4 {
		v := m.seg.Load64(m.pub)
		ve, p := lease.SplitFenced(v)
		switch {
		case ve == w.epoch && p >= base && p != 0:
			w.pub, w.open = p, p&1 != 0
			if w.open {
				return nil // our batch is still open
			}
			return w.begin()
		case ve < w.epoch:
			next := w.nextPub(base)
			if m.seg.CAS64(m.pub, v, lease.PackFenced(w.epoch, next)) {
				w.pub, w.open = next, true
				return nil
			}
		default: // a later epoch, or ours with a counter below what we wrote
			next := w.nextPub(base)
			done, err := w.reclaim(m.pub, v, lease.PackFenced(w.epoch, next), dmgPub, "seize the publish word: found %#x", v)
			if err != nil {
				return err
			}
			if done {
				w.pub, w.open = next, true
				return nil
			}
		}
	}
	return corrupt("publish word", -1, nil, "it kept changing while the owner seized it (%#x)", m.seg.Load64(m.pub))
}

// begin opens a publish batch if none is open: one fenced CAS of the
// publish word's counter from even (w.pub) to odd.
func (w *Writer) begin() error {
	if w.open {
		return nil
	}
	if err := w.movePub(); err != nil {
		return err
	}
	w.open = true
	return nil
}

// movePub increments the publish word's counter with a fenced CAS. A
// publish word damaged while the lease is ours is repaired first.
func (w *Writer) movePub() error {
	for range readAttempts {
		if w.pub&1 == 0 && w.pub+2 > lease.PayloadMask { // no room to open and close a batch
			return fmt.Errorf("partmap: publish counter at %d in epoch %d, no publishes left; release and re-acquire the lease: %w",
				w.pub, w.epoch, ErrExhausted)
		}
		ok, err := w.l.FencedCAS(w.m.seg, w.m.pub, w.pub, w.pub+1)
		if err != nil && !errors.Is(err, lease.ErrFenced) {
			return fenced(err, "move the publish word from %d", w.pub)
		}
		if ok {
			w.pub++
			return nil
		}
		if err := w.fixPub(w.m.seg.Load64(w.m.pub)); err != nil {
			return err
		}
	}
	return corrupt("publish word", -1, nil, "it keeps changing behind the owner (%#x)", w.m.seg.Load64(w.m.pub))
}

// fixPub restores the publish word, found holding v instead of the word
// this writer wrote last: a word of another epoch while the lease is
// ours, or of this epoch with another counter, was damaged (a newer
// owner's word makes reclaim fail with ErrFenced). The counter moves past
// both what this writer wrote and, in this epoch, the damaged counter,
// keeping the open/closed parity: the word never takes a value twice,
// which resolved tables rely on. A counter pushed to the end of its range
// is an ErrExhausted error: the owner must start a new epoch.
func (w *Writer) fixPub(v uint64) error {
	for range readAttempts {
		if v == w.pubWord() {
			return nil
		}
		base := w.pub
		if ve, p := lease.SplitFenced(v); ve == w.epoch {
			base = max(base, p)
		}
		next := w.nextPub(base)
		if next+2 > lease.PayloadMask {
			return fmt.Errorf("partmap: the publish word reads %#x, past the counters epoch %d has left; "+
				"release and re-acquire the lease: %w", v, w.epoch, ErrExhausted)
		}
		done, err := w.reclaim(w.m.pub, v, lease.PackFenced(w.epoch, next), dmgPub,
			"publish word %#x, this owner wrote %#x", v, w.pubWord())
		if err != nil {
			return err
		}
		if done {
			w.pub = next
			return nil
		}
		v = w.m.seg.Load64(w.m.pub)
	}
	return corrupt("publish word", -1, nil, "it keeps changing behind the owner (%#x)", v)
}

// Publish verifies the records this owner published (republishing any
// that were damaged, e.g. by a stray write), scrubs
// the partition entries against the owner's mirror (rewriting any that
// differ; see Writer), closes the open batch, which increments the
// generation, and wakes WaitChange in every process. Without an open
// batch and damage it does nothing. Repairs are counted in the segment
// and logged as one summary record.
func (w *Writer) Publish() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	defer w.flushDamage()
	if err := w.stillOurs(); err != nil {
		return err
	}
	if err := w.repair(); err != nil {
		return err
	}
	if !w.m.cfg.NoScrub {
		if err := w.scrub(); err != nil {
			return err
		}
	}
	return w.publishLocked()
}

// scrub compares every partition entry with the mirror and rewrites, in
// the open batch (opened if needed), each one that differs: in payload
// or in epoch (reclaimed while the lease is ours). It costs 4096 loads
// per namespace slot.
func (w *Writer) scrub() error {
	m := w.m
	for i := range m.maxNS {
		m.partsW.LoadN(uint64(i)*Partitions, w.scrubBuf[:])
		for pid, cur := range w.scrubBuf {
			want := lease.PackFenced(w.epoch, uint64(w.mirror[i][pid]))
			if cur == want {
				continue
			}
			if err := w.begin(); err != nil {
				return err
			}
			if err := w.fixEntry(m.entryOff(i, uint32(pid)), i, uint32(pid), cur, want); err != nil {
				return err
			}
		}
	}
	return nil
}

// fixEntry rewrites entry off (namespace slot i, partition pid), found
// holding cur, to want, the owner's word for it.
func (w *Writer) fixEntry(off arena.Offset, i int, pid uint32, cur, want uint64) error {
	for range readAttempts {
		done, err := w.reclaim(off, cur, want, dmgEntry, "namespace %d partition %d entry %#x, the owner wrote %#x", i, pid, cur, want)
		if err != nil || done {
			return err
		}
		if cur = w.m.seg.Load64(off); cur == want {
			return nil
		}
	}
	return corrupt("partition", int(pid), nil, "namespace %d entry keeps changing behind the owner", i)
}

func (w *Writer) publishLocked() error {
	if !w.open {
		return nil
	}
	m := w.m
	if err := w.movePub(); err != nil {
		return err
	}
	w.open, w.entries = false, 0
	m.seg.Add32(m.futex, 1)
	m.seg.FutexWake(m.futex, math.MaxInt32)
	return nil
}

// repair re-reads every record this owner published and republishes the
// ones that no longer verify.
func (w *Writer) repair() error {
	m := w.m
	for i := range w.nodes {
		n := &w.nodes[i]
		if n.state != recUsed && n.state != recFree {
			continue
		}
		ctl, _, err := m.readRecord(m.nodeT, m.nodeCtlOff(i), i, w.buf[:nodeWords], "node slot", i+1)
		if err == nil && ctl == n.ctl {
			continue
		}
		w.repaired(dmgRecord, "node slot %d: %v (control word %#x, the owner published %#x)", i+1, err, ctl, n.ctl)
		if err := w.putNode(i, n.gen, &n.info, n.state == recUsed); err != nil {
			return err
		}
	}
	for i := range w.nss {
		ns := &w.nss[i]
		if ns.state != recUsed {
			continue
		}
		ctl, _, err := m.readRecord(m.nsT, m.nsCtlOff(i), i, w.buf[:nsWords], "namespace slot", i)
		if err == nil && ctl == ns.ctl {
			continue
		}
		w.repaired(dmgRecord, "namespace slot %d: %v (control word %#x, the owner published %#x)", i, err, ctl, ns.ctl)
		if err := w.putNamespace(i, &ns.info); err != nil {
			return err
		}
	}
	return nil
}

// putNode publishes node slot i (0-based) inside the open batch.
func (w *Writer) putNode(i int, gen uint64, info *NodeInfo, used bool) error {
	if err := w.begin(); err != nil {
		return err
	}
	rec := w.buf[:nodeWords]
	encodeNode(rec, gen, info, used)
	return w.publishRecord(w.m.nodeT, w.m.nodeCtlOff(i), i, &w.nodes[i].wrec, rec, "node slot", i+1)
}

func (w *Writer) putNamespace(i int, info *NamespaceInfo) error {
	if err := w.begin(); err != nil {
		return err
	}
	rec := w.buf[:nsWords]
	encodeNamespace(rec, info)
	return w.publishRecord(w.m.nsT, w.m.nsCtlOff(i), i, &w.nss[i].wrec, rec, "namespace slot", i)
}

// AddOrUpdateNode publishes a node: the node of that name is updated in
// place (same slot, same generation); a new node gets a free slot. It
// returns the node's 1-based slot, for SetPartition.
//
// A slot is free when it never held a node or its node was removed
// (RemoveNode, which requires that no partition refers to it); the least
// recently freed slot is reused first, and giving it to a new node
// increments its generation. With no free slot it fails with ErrNoRoom;
// the segment counts the nodes so refused (each name once, however often
// it is retried) until they are stored or removed (Stats.NodeOverflow).
func (w *Writer) AddOrUpdateNode(info NodeInfo) (int, error) {
	if err := info.validate(); err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	if i, ok := w.byName[info.Name]; ok {
		n := &w.nodes[i]
		if n.info.equal(&info) {
			return i + 1, w.stillOurs()
		}
		info = info.clone()
		if err := w.putNode(i, n.gen, &info, true); err != nil {
			return 0, err
		}
		n.info = info
		return i + 1, nil
	}
	i := w.freeSlot()
	if i < 0 {
		left := w.refuse(w.refusedNodes, info.Name, w.m.nodeOvf)
		return 0, fmt.Errorf("partmap: node %s: all %d node slots hold nodes or are still referenced (%d nodes left out); "+
			"raise MaxNodes and use a new segment: %w", info.Name, w.m.maxNodes, left, ErrNoRoom)
	}
	n := &w.nodes[i]
	info = info.clone()
	if err := w.putNode(i, n.gen+1, &info, true); err != nil {
		return 0, err
	}
	n.gen++
	n.state, n.info = recUsed, info
	w.byName[info.Name] = i
	w.unrefuse(w.refusedNodes, info.Name, w.m.nodeOvf)
	return i + 1, nil
}

// refuse records name as refused for lack of room in set, whose size the
// overflow word at off shows, and returns that size. A name already
// refused is not counted again; past maxRefused names the count
// saturates.
func (w *Writer) refuse(set map[string]bool, name string, off arena.Offset) int {
	if !set[name] && len(set) < maxRefused {
		set[name] = true
		w.m.seg.Store64(off, uint64(len(set)))
	}
	return len(set)
}

// unrefuse forgets a refusal of name (it was stored, or removed).
func (w *Writer) unrefuse(set map[string]bool, name string, off arena.Offset) {
	if set[name] {
		delete(set, name)
		w.m.seg.Store64(off, uint64(len(set)))
	}
}

// freeSlot returns the free slot to use next (0-based), or -1: never-used
// slots first, then the least recently freed. A slot whose record was
// unreadable at takeover is free once no entry refers to it.
func (w *Writer) freeSlot() int {
	best := -1
	for i := range w.nodes {
		n := &w.nodes[i]
		if w.refs[i] != 0 {
			continue
		}
		switch n.state {
		case recNever:
			return i
		case recFree, recUnknown:
			if best < 0 || n.freedAt < w.nodes[best].freedAt {
				best = i
			}
		}
	}
	return best
}

// DeactivateNode republishes the named node with Active false. Its slot
// and the partitions that refer to it are unchanged.
func (w *Writer) DeactivateNode(name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	i, ok := w.byName[name]
	if !ok {
		return fmt.Errorf("partmap: deactivate node %q: %w", name, ErrNotFound)
	}
	n := &w.nodes[i]
	if !n.info.Active {
		return w.stillOurs()
	}
	info := n.info
	info.Active = false
	if err := w.putNode(i, n.gen, &info, true); err != nil {
		return err
	}
	n.info = info
	return nil
}

// RemoveNode empties the named node's slot, which may then be reused for
// another node. It fails with ErrInUse while partition entries still
// refer to the node: move them first (SetPartition). A node that was
// refused for lack of room (and so has no slot: ErrNotFound) is no longer
// counted as left out.
func (w *Writer) RemoveNode(name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	i, ok := w.byName[name]
	if !ok {
		w.unrefuse(w.refusedNodes, name, w.m.nodeOvf)
		return fmt.Errorf("partmap: remove node %q: %w", name, ErrNotFound)
	}
	if w.refs[i] != 0 {
		return fmt.Errorf("partmap: remove node %q: %d partition replicas still refer to slot %d; reassign them first: %w",
			name, w.refs[i], i+1, ErrInUse)
	}
	n := &w.nodes[i]
	if err := w.putNode(i, n.gen+1, &NodeInfo{}, false); err != nil {
		return err
	}
	delete(w.byName, name)
	w.freeSeq++
	n.gen++
	n.state, n.info, n.freedAt = recFree, NodeInfo{}, w.freeSeq
	return nil
}

// NodeSlot returns the 1-based slot of the named node as this owner
// published it.
func (w *Writer) NodeSlot(name string) (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, ok := w.byName[name]
	return i + 1, ok
}

// EnsureNamespace registers a namespace (or updates its replica count and
// SC mode) and returns its handle. Namespace slots are never reused for
// another name. With no free slot it fails with ErrNoRoom; the segment
// counts the namespaces so refused, each name once
// (Stats.NamespaceOverflow).
func (w *Writer) EnsureNamespace(name string, replicaCount int, sc bool) (NS, error) {
	if err := validNamespace(name, replicaCount); err != nil {
		return NS{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return NS{}, err
	}
	info := NamespaceInfo{Name: name, ReplicaCount: replicaCount, SC: sc}
	if i, ok := w.nsByName[name]; ok {
		if w.nss[i].info == info {
			return NS{i: uint16(i + 1)}, w.stillOurs()
		}
		if err := w.putNamespace(i, &info); err != nil {
			return NS{}, err
		}
		w.nss[i].info = info
		return NS{i: uint16(i + 1)}, nil
	}
	for i := range w.nss {
		if w.nss[i].state != recNever {
			continue
		}
		if err := w.putNamespace(i, &info); err != nil {
			return NS{}, err
		}
		w.nss[i].state, w.nss[i].info = recUsed, info
		w.nsByName[name] = i
		w.unrefuse(w.refusedNS, name, w.m.nsOvf)
		return NS{i: uint16(i + 1)}, nil
	}
	left := w.refuse(w.refusedNS, name, w.m.nsOvf)
	return NS{}, fmt.Errorf("partmap: namespace %s: all %d namespace slots are taken (%d namespaces left out); "+
		"raise MaxNamespaces and use a new segment: %w", name, w.m.maxNS, left, ErrNoRoom)
}

// nsIndex validates a handle against the namespaces this owner holds.
func (w *Writer) nsIndex(ns NS) (int, error) {
	i := ns.Index()
	if i < 0 || i >= len(w.nss) || w.nss[i].state != recUsed {
		return 0, fmt.Errorf("partmap: namespace handle %d is not a registered namespace: %w", i, ErrInvalid)
	}
	return i, nil
}

// payload validates three 1-based slots (0 = none) and packs them.
func (w *Writer) payload(slots Replicas) (uint32, error) {
	var p uint32
	for r, s := range slots {
		if s == 0 {
			continue
		}
		if int(s) > len(w.nodes) || w.nodes[s-1].state != recUsed {
			return 0, fmt.Errorf("partmap: replica %d: node slot %d holds no node: %w", r, s, ErrInvalid)
		}
		for q := range r {
			if slots[q] == s {
				return 0, fmt.Errorf("partmap: node slot %d is replica %d and %d of one partition: %w", s, q, r, ErrInvalid)
			}
		}
		p |= uint32(s) << (8 * r)
	}
	return p, nil
}

func (w *Writer) hasNode(name string) bool {
	_, ok := w.byName[name]
	return ok
}

func (w *Writer) addRefs(p uint32, d int) {
	for r := range StoredReplicas {
		if s := int(p >> (8 * r) & 0xff); s != 0 && s <= len(w.refs) {
			w.refs[s-1] += d
		}
	}
}

// SetPartition sets the master and proles of partition pid of namespace
// ns: 1-based node slots from AddOrUpdateNode, 0 for none. It is one
// fenced CAS of the partition's entry; a stale owner's fails with an
// error wrapping lease.ErrFenced. Nodes that did not fit (ErrNoRoom) have
// no slot: give their partitions 0, never another node's slot.
func (w *Writer) SetPartition(ns NS, pid uint32, master, prole1, prole2 int) error {
	var slots Replicas
	for r, s := range [StoredReplicas]int{master, prole1, prole2} {
		if s < 0 || s > MaxNodesLimit {
			return fmt.Errorf("partmap: replica %d: node slot %d out of range: %w", r, s, ErrInvalid)
		}
		slots[r] = uint8(s)
	}
	if pid >= Partitions {
		return fmt.Errorf("partmap: partition %d: %w", pid, ErrPartitionOutOfRange)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	i, err := w.nsIndex(ns)
	if err != nil {
		return err
	}
	p, err := w.payload(slots)
	if err != nil {
		return fmt.Errorf("partmap: namespace %s partition %d: %w", w.nss[i].info.Name, pid, err)
	}
	return w.setEntry(i, pid, p)
}

// SetPartitions sets every partition of namespace ns from table, CASing
// only the entries that change, and returns how many did. It stops at the
// first error (entries before it are changed).
func (w *Writer) SetPartitions(ns NS, table *[Partitions]Replicas) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return 0, err
	}
	i, err := w.nsIndex(ns)
	if err != nil {
		return 0, err
	}
	if err := w.stillOurs(); err != nil {
		return 0, err
	}
	changed := 0
	for pid := range uint32(Partitions) {
		p, err := w.payload(table[pid])
		if err != nil {
			return changed, fmt.Errorf("partmap: namespace %s partition %d: %w", w.nss[i].info.Name, pid, err)
		}
		if p == w.mirror[i][pid] {
			continue
		}
		if err := w.setEntry(i, pid, p); err != nil {
			return changed, err
		}
		changed++
	}
	return changed, nil
}

// setEntry CASes one entry from the mirrored payload to p.
func (w *Writer) setEntry(i int, pid uint32, p uint32) error {
	old := w.mirror[i][pid]
	if old == p {
		return w.stillOurs()
	}
	if err := w.begin(); err != nil {
		return err
	}
	if w.entries > 0 {
		w.m.cfg.Failpoints.Hit(FailPublishMid)
	}
	off := w.m.entryOff(i, pid)
	ok, err := w.l.FencedCAS(w.m.seg, off, uint64(old), uint64(p))
	if err != nil && !errors.Is(err, lease.ErrFenced) {
		return fenced(err, "namespace %s partition %d", w.nss[i].info.Name, pid)
	}
	if !ok {
		// The entry is not what this owner wrote (another payload, or
		// another epoch while the lease is ours): damage. Overwrite it;
		// the mirror stays the truth. A newer owner's word fails with
		// ErrFenced.
		if err := w.fixEntry(off, i, pid, w.m.seg.Load64(off), lease.PackFenced(w.epoch, uint64(p))); err != nil {
			return err
		}
	}
	w.entries++
	w.addRefs(old, -1)
	w.addRefs(p, 1)
	w.mirror[i][pid] = p
	return nil
}

// TendReport is one tend round, for RecordTend.
type TendReport struct {
	// InfoRequests is how many info requests the round sent.
	InfoRequests int
	// Failed is true if the round failed.
	Failed bool
	// Duration is how long the round took.
	Duration time.Duration
	// At is when it finished (default: now).
	At time.Time
	// Conflicts is how many partition rows the round found with one node
	// at two replica ranks (and resolved); added to Stats.Conflicts.
	Conflicts int
	// ForeignNodes is how many nodes the round refused, for the first
	// time, because they answered another cluster name; added to
	// OwnerStats.ForeignNodes.
	ForeignNodes int
}

// RecordTend adds a tend round to the owner statistics that followers see
// in Stats().Owner. The statistics are a fenced record, outside publish
// batches (they do not change the generation).
func (w *Writer) RecordTend(r TendReport) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	s := w.owner
	s.Tends++
	s.InfoRequests += uint64(max(r.InfoRequests, 0))
	if r.Failed {
		s.TendErrors++
	}
	s.ForeignNodes += uint64(max(r.ForeignNodes, 0))
	s.LastTend, s.LastTendDuration = r.At, r.Duration
	if err := w.publishStats(&s); err != nil {
		return err
	}
	if r.Conflicts > 0 {
		w.m.seg.Add64(w.m.conflicts, uint64(r.Conflicts))
	}
	return nil
}

// publishStats publishes s as the stats record; w.mu is held.
func (w *Writer) publishStats(s *OwnerStats) error {
	rec := w.buf[:statsWords]
	encodeStats(rec, s)
	err := w.publishRecord(w.m.statsT, w.m.statsCtl, 0, &w.stats, rec, "stats", 0)
	w.flushDamage()
	if err != nil {
		return err
	}
	w.stats.state = recUsed
	w.owner = *s
	return nil
}

// ClusterName returns the cluster name the segment records ("" if none),
// as this owner adopted or recorded it.
func (w *Writer) ClusterName() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.owner.ClusterName
}

// SetClusterName records name as the segment's cluster name and publishes
// it at once (so that it is in the segment before any partition the
// owner learns from that cluster). A segment that already records a name
// keeps it: another name is refused with a *layout.MismatchError naming
// both, the same name is a no-op. The name is 1 to MaxClusterName bytes
// without NUL.
func (w *Writer) SetClusterName(name string) error {
	if name == "" || len(name) > MaxClusterName || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("partmap: cluster name %q: want 1..%d bytes without NUL: %w", name, MaxClusterName, ErrInvalid)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.check(); err != nil {
		return err
	}
	switch w.owner.ClusterName {
	case name:
		return nil
	case "":
	default:
		return &layout.MismatchError{Field: "cluster-name", HaveText: w.owner.ClusterName, WantText: name}
	}
	s := w.owner
	s.ClusterName = name
	return w.publishStats(&s)
}

// Epoch returns the lease epoch the writer stamped the tables with (0
// before StampAll).
func (w *Writer) Epoch() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch
}

// Refs returns how many partition replicas refer to each node slot
// (index 0 is slot 1), as this owner tracks them.
func (w *Writer) Refs() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.refs...)
}
