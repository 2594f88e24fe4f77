// Package partmap keeps an Aerospike cluster's tended state in one shared
// memory segment: the node table, the namespace registrations and every
// namespace's partition map. One process, the tend owner (holder of the
// lease that lives in the same segment), writes it through a Writer; any
// number of processes read it lock-free through a Map.
//
// The segment layout, its size formula and every offset are in layout.go:
// at the defaults (16 nodes, 8 namespaces) the segment is 276,416 bytes,
// about half of the C client's 531,576.
//
// # Reading
//
// A reader resolves a namespace name once (Map.Namespace, cached) and then
// looks partitions up with Map.Master or Map.Replica. A lookup loads three
// shared words — the slot reuse counter, the partition's entry, the node
// slot's control word — and a per-process cache that holds, per slot, the
// last node record this process verified; if the control word and the
// reuse counter are the ones the cached record was verified under, the
// cached *Node is returned. Otherwise the record is read (through package
// seqlock), verified and cached, and the lookup is retried.
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
//     publish word and every entry with its epoch, and republishes every valid record under
//     its epoch with one CAS from the old epoch's control word. From each
//     word's stamp on, a stale owner's CAS of that word fails (ErrFenced),
//     so each of its single-word changes landed entirely before the stamp,
//     and was adopted, or not at all.
//
// What a stale owner can still do is plain stores: into a record copy
// (only in a narrow race, since it checks the control word's epoch before
// writing), into the reuse counter, the overflow counters and the futex
// word. A copy it overwrites after publication no longer verifies (its tag
// carries the old epoch); readers then keep using the record they verified
// last (see below), cold readers get a *CorruptError, and the owner's next
// Publish republishes the record. An extra increment of the reuse counter
// only sends readers to the slow path once; of the futex word, wakes them
// spuriously.
//
// # Slot reuse never misroutes
//
// Partition entries name nodes by 8-bit slot, and slots are reused, so a
// reader that loaded an entry could find the slot given to another node by
// the time it reads the slot. The owner therefore follows this protocol:
//
//	(a) a slot is given to another node (or emptied) only when no partition
//	    entry refers to it: the owner counts references in process memory
//	    (rebuilt from the entries by StampAll) and RemoveNode refuses a
//	    referenced node;
//	(b) the owner increments the segment's reuse counter R before it
//	    publishes the record that changes the slot's node, and the record
//	    carries a slot generation that changes with it;
//	(c) entries refer to a slot only after its new node is published.
//
// A reader loads R (r0), then the entry (slot s), then s's control word
// (C). A cached record is used only if it was verified under C with R read
// before and after its verification equal to r0. Claim: the returned node
// held slot s at some instant at which the entry named s. Let P be the
// publication C names. If P was published before the entry load, P still
// held the slot at the entry load (P is current at the control word load,
// later, and control words never repeat in an epoch — see below for the
// wrap) — that instant proves the claim. Otherwise P was published after the entry load; if it
// kept the slot's node the claim holds; if it changed the node, by (b) R
// was incremented before P, and by (a) and (c) no entry named s between
// that increment and P — so the increment came after the entry load,
// hence after r0's load and before the cache's verification read of R
// completed, contradicting that both equal r0. Hence a lookup returns the
// node that the partition named at one instant during the lookup, or
// nothing; never a node the partition was not assigned to.
//
// Publication numbers are 23 bits, so after 2^23 publications of one slot
// in one epoch a control word can repeat. Even then the node is right: a
// change of node in between moved R, which the lookup compares; only the
// attributes (addresses, active flag) could be stale.
//
// When a slot's newest record does not verify (a stale owner's store), a
// reader returns the record it verified last for that slot if R still
// equals the value read both before its verification and around the entry
// load — no slot changed hands, so the node is right; its attributes may
// be one publication old.
//
// # Guarantees, in short
//
//   - Master, Replica and Lookup return the node that the partition's
//     entry named at one instant during the call, or nothing; never a node
//     the partition was not assigned to (given an owner that follows the
//     protocol above, which Writer enforces).
//   - Snapshot returns exactly the map of one generation.
//   - Once a new owner's StampAll has stamped a word, no write of an older
//     owner to it lands; its plain stores into record copies are detected.
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
// right by one: it grows by one with each publish and jumps when the
// owner changes. Map.Snapshot
// copies a namespace table when the word is even and unchanged across the
// copy, so the copy is exactly one generation's map. Map.WaitChange sleeps
// on a futex word that Publish wakes in every process.
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
// Overflow — more nodes or namespaces than the segment holds — is an
// ErrNoRoom error, counted in the segment (Stats); what fits stays
// correct.
package partmap
