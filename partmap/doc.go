// Package partmap keeps an Aerospike cluster's tended state in one shared
// memory segment: the node table, the namespace registrations and every
// namespace's partition map. One process, the tend owner (holder of the
// lease that lives in the same segment), writes it through a Writer; any
// number of processes read it lock-free through a Map.
//
// The segment layout, its size formula and every offset are in layout.go:
// at the defaults (16 nodes, 8 namespaces) the segment is 280,640 bytes,
// about half of the C client's 531,576.
//
// # Reading
//
// A reader resolves a namespace name once (Map.Namespace, cached) and then
// looks partitions up with Map.Master or Map.Replica. There are two paths.
//
// The fast path: the process keeps, per namespace, the partition map
// resolved to *Node values as of one value of the publish word (a resolved
// table, built once per publish by the first lookup that needs it, or by
// Map.Prepare). A lookup loads the publish word; if it still holds the
// table's value, the table answers. That is one load of shared memory and
// two of the process's own. Why it is right is in resolved.go: the owner
// changes nothing a lookup reads without first moving the publish word,
// and the word never takes a value twice.
//
// The entry path, when the table cannot answer (the first lookup after a
// publish, a batch in progress, a record that cannot be verified): the
// lookup loads two shared words — the partition's entry and the node
// slot's control word — and, in its own process, a counter of verified
// cache fills and the cache, which holds per slot the last node record
// this process verified. If the cached record was verified before the
// lookup began and under the control word the slot still has, the cached
// *Node is returned. Otherwise the record is read (through package
// seqlock), verified, cached, and the lookup is retried.
//
// # Fencing: what a stale owner can and cannot do
//
// Every word the owner writes is fenced by its lease epoch (package lease):
//
//   - A partition entry is one fenced word, written with one FencedCAS, so
//     readers get it with one atomic load and it is never torn.
//   - A node, namespace or stats record is two seqlock records (copies)
//     and a fenced control word naming the published copy and a
//     publication number. The owner writes the unpublished copy, tagging
//     it with the control word it is about to publish, then CASes the
//     control word. Readers accept a copy only if its tag equals the
//     control word (and its checksum matches), so only copies published by
//     the current epoch verify.
//   - The publish word (generation and "batch open" flag) is a fenced word
//     too.
//   - A new owner calls Writer.StampAll before anything else. It stamps the
//     publish word and every entry with its epoch, and adopts every valid
//     record: it stamps the control word the record verified under (one
//     CAS, payload unchanged), then rewrites the copy that word names (the
//     stale owner writes only the other one) tagged with its next
//     publication, and CASes the control word to it. From each word's
//     stamp on, a stale owner's CAS of that word fails (ErrFenced), so each
//     of its single-word changes landed entirely before the stamp, and was
//     adopted, or not at all. The stamp must come before any copy write:
//     until then the stale owner may publish the record into the copy it
//     writes. Between the two CASes the record does not verify; a reader
//     without a cached copy that meets it waits for the control word to
//     move (one copy write; at most 20 ms, then it reports the record as
//     it found it), so a takeover does not make a namespace or a node
//     briefly unknown.
//
// A stale owner never stores into a copy a newer owner published: it
// writes a copy only after checking, while it holds that copy's seqlock
// claim, that the record's control word still carries its epoch, and a
// newer owner stamps the control word before it writes any copy, names by
// that stamp the copy the stale owner does not write, and publishes any
// other copy only after writing it, which waits for the stale owner's
// claim. What a stale owner can still do is plain stores into the
// overflow counters and the futex word; an extra increment of the futex
// word wakes waiters spuriously. A copy damaged otherwise after
// publication (a stray write) no longer verifies: processes that verified
// the record before keep using their cached copy, which stays valid while
// the control word is unchanged; others get a *CorruptError until the
// owner's next Publish republishes the record.
//
// # Slot reuse never misroutes
//
// Partition entries name nodes by 8-bit slot, and slots are reused. Two
// things make that safe.
//
// The owner's map is right at every instant:
//
//	(a) a slot is given to another node (or emptied) only when no partition
//	    entry refers to it: the owner counts references in process memory
//	    (rebuilt from the entries by StampAll) and RemoveNode refuses a
//	    referenced node;
//	(b) an entry refers to a slot only after the slot's node is published;
//	(c) every entry and every control word changes with one CAS.
//
// So at any instant, an entry that names slot s names the node the owner
// assigned to the partition, and s holds that node's record. The record
// carries a slot generation that changes whenever the slot changes hands,
// which tells the node lifetimes of a slot apart (Node.Gen).
//
// A lookup returns what slot s held at the instant it loaded the entry.
// It loads the process's fill counter F, then the entry (slot s), then s's
// control word C, and uses the cached record of s only if (1) it was
// verified under C and (2) its verification completed before F was loaded
// (each fill counts itself after verifying, before it is cached). The fill
// loaded C after reading the record; the lookup loaded C again after the
// entry; and a control word value is never written twice (publication
// numbers grow within an epoch and the owner never lets them wrap; a new
// epoch changes every word). So the word held C throughout, in particular
// when the entry was loaded: at that instant the entry named s and s held
// the cached record. With (a)-(c), the node is the one the partition was
// assigned at that instant. A record verified after the lookup began
// (by another goroutine) is not used: the lookup starts over, and a lookup
// that cannot complete returns nothing.
//
// The negative control in the tests — a lookup without condition (2) —
// does return nodes a partition was never assigned when another goroutine
// refreshes the cache while it is between its two loads.
//
// A resolved table is built by the same steps for every partition at
// once — the entries first, then the slots' records — between two loads of
// the publish word, and kept only if both loads agree; its lookups are
// valid only while the word still agrees. The tests' negative controls
// keep tables that a publish tore (they misroute) and answer from a table
// without checking the word (they return the old master after a move).
//
// # Guarantees, in short
//
//   - Master, Replica and Lookup return the node that the partition's
//     entry named at one instant during the call, or nothing; never a node
//     the partition was not assigned to (given an owner that follows the
//     protocol above, which Writer enforces). Its attributes are those of
//     that instant.
//   - Snapshot returns exactly the map of one generation.
//   - Once a new owner's StampAll has stamped a word, no write of an older
//     owner to it lands, and none into a record copy the newer owner
//     publishes.
//   - What a segment's content says is not authenticated: anything that
//     can write the segment can route partitions to any node in the table.
//
// # Namespaces
//
// Namespace slots are append-only: a slot never changes name, so a handle
// (NS) stays valid, and Map.Namespace caches names, re-verifying a cached
// one only when its control word changes. A namespace whose record a new
// owner finds damaged is kept out of use (its entries cleared); the owner
// registers the name again in another slot.
//
// # Generations, snapshots and waiting
//
// The publish word's counter is odd while the owner writes a batch (every
// change between two Publish calls); the generation is the word shifted
// right by one: it grows by one with each publish and jumps when the owner
// changes. Map.Snapshot copies a namespace table when the word is even and
// unchanged across the copy, so the copy is exactly one generation's map.
// Map.WaitChange sleeps on a futex word that Publish wakes in every
// process.
//
// # Damaged or hostile segments
//
// Nothing read from the segment is trusted: slot numbers, lengths, address
// families and record tags are checked, loops over shared words are
// bounded, and a seqlock record left busy is bounded by
// Config.StallTimeout. A record that fails validation is not read again
// under the same control word for ten StallTimeouts, so a damaged slot
// costs one slow read, not one per lookup. Bad content makes lookups
// return nothing, or a *CorruptError (ErrCorrupt) or ErrUnstable; it never
// panics or hangs.
//
// The owner repairs what it wrote: every Publish re-verifies its records
// and compares every partition entry with its in-memory mirror, and
// rewrites what differs, so damaged content misroutes until the owner's
// next publish at most. A fenced word damaged to an epoch above the
// owner's (which would otherwise look like a newer owner's and fence the
// owner out for good) is reclaimed while the lease record still names the
// owner, and a damaged publish counter is moved past the damage. Repairs
// are counted (Stats.Repairs) and logged as one summary record per
// publish. See Writer.
//
// Overflow — more nodes or namespaces than the segment holds — is an
// ErrNoRoom error; the segment counts the names left out, each once
// however often it is retried (Stats); what fits stays correct.
package partmap
