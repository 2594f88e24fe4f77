// Package index is a persistent primary index in shared-memory arenas with
// fast restart: a record server keeps its index in segments that outlive
// the process, so a restarted server reattaches them (a warm restart)
// instead of rebuilding the index by scanning its storage (a cold start),
// and falls back to cold, with a stated reason, whenever the saved index
// cannot be trusted. It is the Go counterpart of Aerospike's primary index
// and fast restart, without their weak points (see "Restart protocol").
//
// # Structures
//
// An entry is 64 bytes (entry.go has its one definition and diagram):
// the 20-byte digest, generation, void time, last-update time, a storage
// location (file id, offset, size) or, for a data-in-index namespace, an
// inline int64, a tombstone flag, two 40-bit links and an AVL height.
// Entries live in stages of Config.StageEntries entries (a power of two up
// to 2^28);
// stage 0 is part of the main segment, stages 1–255 are separate
// segments, created by the writer while readers run and attached by
// readers in other processes the first time they meet a handle in them. A
// Handle is stage (8 bits) and element (28 bits), plus one so that zero is
// null: 2^36 entries per namespace, as Aerospike's 256 stages × 2^28. (The
// 32-bit arena.Handle of arena.Pool has 16 stages of 2^24, too few, so the
// index does its own stage and handle arithmetic.)
//
// Each of the 4096 partitions is split into Config.Sprigs sprigs (a power
// of two up to 4096, default 1024; Aerospike's partition-tree-sprigs,
// whose default is 256). The sprig of a
// digest is taken from the bits that follow the partition bits in digest
// byte order, so each sprig is a contiguous digest range and a partition
// scan, sprig after sprig, comes out in digest order. A sprig is an AVL
// tree ordered by digest whose nodes are the entries themselves (links and
// an 8-bit height in the entry, no other memory per record).
//
// The structure was chosen by BenchmarkSprigShapes (sprig_bench_test.go):
// random lookups over 4 Mi entries (256 MiB, far beyond the caches) split
// into sprigs of n entries, with atomic loads as readers do. On this
// machine (2-core AMD EPYC, shared, 4 KiB pages), ns per lookup and
// average depth:
//
//	n       treap (depth)    AVL             balanced bound   B+-tree of 64 B nodes (bound)
//	16      296–321  (4.1)   209–215 (3.5)   204–208 (3.4)    204–209 (3 lines, +12 B/entry)
//	256     1350–1365 (9.3)  491–493 (7.2)   481–486 (7.0)    389–426 (4 lines, +9 B/entry)
//	4096    2239–2518 (14.8) 1036–1225 (11.3) 1236–1274 (11.0) 439–441 (5 lines, +9 B/entry)
//	65536   2504–2620 (20.2) 1741–1809 (15.3) 1892–1919 (15.0) 508–511 (7 lines, +9 B/entry)
//
// A treap (the first implementation) walks 20–30% deeper and, with the
// misses that adds, is 1.5–2.7× slower than a balanced tree; an AVL tree
// is within a few percent of the perfectly balanced bound (a red-black
// tree, Aerospike's choice, can be up to twice as deep). A B-tree of
// cache-line nodes touches fewer lines once sprigs hold thousands of
// entries, but it needs nodes besides the entries (memory per record),
// splits and merges that readers must validate, and it only wins where
// sprigs are large: at the default 1024 sprigs per partition (2^22
// sprigs) a sprig holds about 2.4 entries at 10M records and about 240 at
// 1G, and raising Sprigs keeps them small. Hence AVL; a B-tree is the step
// to take if sprigs must hold many thousands of entries.
//
// A sprig costs one 8-byte word in the main segment: its version and its
// root handle packed together (shared.go), so a reader learns both in one
// load and Sprigs can be large. (It was 32 bytes: version, root, an entry
// count and a reserved word; the count is gone, partition counts remain.)
// The default of 1024 sprigs per partition (2^22 sprigs) takes the 32 MiB
// the old record took at 256.
//
// A Get at millions of records is bound by dependent cache misses: one
// for the sprig word, then one per entry on the AVL path. Profiling it at
// 10M records (BenchmarkGetLarge in get_bench_test.go, with -cpuprofile)
// puts over 90% of its time on those loads (the sprig word's, then the
// entries' copies); the read lock, the version re-check, the wrap count
// and the decoding are a few percent, and a Get without the read lock
// was no faster (its misses are dependent whatever orders them). What
// remains beyond the misses counted is their price: each of the index's
// misses walks the page tables of a region larger than the floor's. With
// the one-word sprig, `shmbench index` at 10M random keys (2–3 runs
// each, 4 KiB and 2 MiB pages, floor and bbolt in the same runs, a shared
// 2-core machine) measured:
//
//	Sprigs (entries a sprig)  B/record  Get 4 KiB (÷ floor)     Get 2 MiB (÷ floor)    × faster than bbolt (4 KiB / 2 MiB)
//	1024 (2.4)                70.5      695–1131 ns (×2.7–3.6)  514–685 ns (×2.9–3.3)  ×2.3–3.0 / ×3.6–4.1
//	2048 (1.2)                73.8      772–1066 ns (×2.5–2.7)  504–697 ns (×2.4–2.9)  ×2.5–2.8 / ×3.8–4.3
//	4096 (0.6)                80.5      741–816 ns (×2.1–2.8)   467–543 ns (×2.3–2.8)  ×2.6–3.3 / ×4.5
//
// against 900–1016 ns (×4.0–5.0) at 4 KiB and 699–780 ns at 2 MiB for the
// old default (256 sprigs of 32-byte records, 70.5 B per record), and
// 653–672 ns at 120.8 B per record for 4096 sprigs of 32-byte records.
// The default is 1024: as fast as 2048 within the noise and no more
// memory than the old default, at any size (a fixed 32 MiB); 2048 suits
// indexes of tens of millions of records (64 MiB, 73.8 B per record at
// 10M), 4096 costs 13 B per record at 10M for a few percent more.
//
// No Sprigs gets a Get within twice the floor, or five times faster than
// bbolt: both need about one dependent miss per Get, and a sprig table in
// front of the entries always costs two (its word, then the entry).
// Getting there needs the entries themselves addressed by digest bits (a
// sorted hash: open addressing over 64-byte entry lines, the version in
// the entry's own line, Scan recovering digest order per partition), a
// different structure from this one. BenchmarkSortedHashShape measures
// its shape at 10M keys without the index around it (no version check,
// no stages, no growth): at load factor 0.85 (75 B per record) a lookup
// reads 3.8 adjacent lines, one dependent miss, and took 365–428 ns
// against a floor of 268–289 ns (×1.3–1.6, lookups chained or not), where
// BenchmarkGetLarge's Get at 1024 sprigs took 670–675 ns in the same runs.
//
// The main segment also holds the writer lease, the allocator state (a
// high-water mark and a free list threaded through the free entries'
// right links), and statistics (entries, bytes and tombstones per
// partition, live entries), so a warm start reads nothing but the meta.
// Its records are defined in shared.go.
//
// # Writers and readers
//
// The writer has Put, Delete, Update (a compare-and-set under the sprig's
// lock, for a defragmenter that moves a record only if the index still
// points at the old copy), Get, Scan, Count, Partition statistics and
// Check; a Reader in any process has the reads.
//
// One process is the writer: Open takes a lease (package lease) in the
// main segment and fails with ErrWriterRunning while a live process holds
// it; the writer renews it in the background. The writer's per-sprig
// locks are sync.Mutex values in its own memory (8192 stripes, sprig s
// taking lock s mod 8192), never in shared memory, so a dead writer
// leaves no lock held. Readers in other processes (OpenReader) take no
// lock and write nothing: they never block the writer, and a read of a
// sprig the writer is changing at that moment retries (bounded) until the
// sprig is stable again.
//
// # Reclamation: version validation with a bounded walk
//
// Every sprig has a version (in its word, beside its root), odd while the
// writer changes the sprig. The writer makes it odd before it changes any
// entry or link of the
// sprig (an insert, an update in place, an unlink), and even again after.
// A deleted entry goes onto the free list only after its sprig's version
// was made even again, and is reused in another sprig only under that
// sprig's odd version. A reader loads the version (retrying while it is
// odd), walks the tree copying each entry with one atomic load per word,
// following at most maxDepth (256) links, each bounds-checked against the
// published stage count and the stage capacity, then loads the version
// again (with the root: one word): if it changed, what it read may be torn or another sprig's, and
// it retries. An entry freed from sprig A and reused in sprig B therefore
// changed A's version first, so a reader that walked into it rejects what
// it read. Retries are bounded in time (250 ms, then ErrContended); a walk
// that finds a bad handle, a cycle or an entry not marked live under a
// stable version reports ErrCorrupt. Get never returns another key's
// record, never loops and never faults.
//
// The AVL rebalancing after an insert or delete happens under the same
// odd version, so readers never act on a half-rotated tree.
//
// This was chosen over epoch-based reclamation with per-process reader
// slots because it needs nothing from readers: no slot to register, no
// announcement that a dead reader could leave behind and stall
// reclamation, no write to shared memory on the read path. Its cost is a
// retry when the writer changes the very sprig being read, which with
// 2^22 sprigs (default) is rare.
//
// The version has 27 bits and wraps after 2^26 changes of its sprig; a
// reader compares the whole word (version and root) and also the meta's
// wrap count, which the writer raises before it stores a wrapped version,
// so a walk that spans any number of changes is rejected
// (TestVersionWrapSeen bumps a version 2^27 times under a pending read).
//
// Scan(p) copies each sprig of partition p as a validated snapshot (the
// same version check around a complete in-order walk that must yield
// strictly increasing digests of that sprig, which also stops any cycle
// and any link into another sprig's tree) and reports it
// before moving to the next. Every key present for the whole scan lies in
// exactly one sprig and is in that sprig's snapshot, so it is reported
// exactly once; keys inserted or deleted during the scan may or may not
// be.
//
// # Bulk build
//
// A cold rebuild fills an empty index with every record of the storage.
// Put of a new key walks its sprig from the root (a cache miss per level)
// and rebalances, about 0.5–1 µs per record at a million records, so a
// rebuild by Put tops out near 1–2M records/s. Builder (and Load, its
// one-call form for a slice) does the same work in bulk:
//
//   - Add(seq, r) and Delete(seq, d) only append to process memory: 64
//     bytes per call, in 2 MiB chunks (a slice grown by append copied and
//     faulted in its 64 MB about 200 ns a record at 1M records; chunks
//     copy nothing, so the caller need not know the count).
//   - Finish makes a 16-byte sort key per call (digest word 0, item
//     number) and sorts the keys by partition (a counting sort over 4096
//     buckets), then
//     each partition by sprig (a counting sort on the sprig bits, which
//     follow the partition bits in the digest) and each sprig by digest
//     (insertion sort: a sprig holds a handful of records), comparing
//     only word 0 of the digest until two are equal.
//   - Of each digest the record with the largest order key wins, ties
//     going to the one given last: Finish's result equals applying the
//     Adds (as Put) and Deletes (as Delete) to an empty index in order of
//     their keys. A caller feeding a log in order passes 0 throughout
//     (the last one wins); kvstore passes each record's Seq, which makes
//     a defragmenter's copy (it keeps its original's Seq) lose to a newer
//     version or delete. Tombstone records (Record.Tombstone) stay as
//     tombstone entries, as with Put; a winning Delete leaves no entry.
//     Every Add that lost is reported to BuildOptions.Superseded, so a
//     storage can release it.
//   - The winners are numbered in (partition, sprig, digest) order and
//     entry j is allocated at handle position j: the allocator's
//     high-water mark is set once, the stages are all added before the
//     first entry is written, and each sprig's entries are contiguous.
//   - Each sprig's tree is built bottom-up from its sorted run (the middle
//     element is the root, recursively): a perfectly balanced tree, whose
//     subtree of n entries has height bits.Len(n), so the AVL condition
//     holds and later Puts and Deletes rebalance it as usual.
//   - The sprigs are split between GOMAXPROCS workers by entry count;
//     each copies the items of its next 256 entries into a buffer
//     (independent loads overlap their cache misses), writes the entries
//     and publishes each sprig as a Put does: version odd, root, version
//     even. The partition statistics and the live count are
//     written once at the end.
//
// Entries are written with atomic word stores, as everywhere else. On
// amd64 an atomic store is an XCHG, a full fence: about 6 ns a word on
// this machine against well under 1 ns for a plain store, so 8 words cost
// about 50 ns an entry, shared between the workers. Plain stores would
// need an arena accessor that bypasses atomics for memory no reader can
// reach yet; the build is fast enough without it. BenchmarkLoad (1M
// records, Sprigs 256): 6.6–7.9M records/s on heap and SysV segments
// once the process's memory is warm, 4.9M (heap) and 5.8M (SysV) in the
// first iteration of a fresh process, against 1.5–1.9M/s by Put in the
// same run. The kvstore rebuild path end to end (storage.Scan of a
// page-cached log of 1M records, Add in the scan callback, Finish; index
// files on tmpfs, default configuration) ran at 4.6–4.9M records/s, and
// at 5.2M/s with 10M records, against 1.7M/s by Put.
//
// Readers in other processes never wait for a build: an entry is written
// before the root that makes it reachable, and a sprig's root changes
// under an odd version, so a reader sees each sprig either empty
// or complete (TestBuildSeenFromAnotherProcess pauses a build halfway and
// scans from another process; TestBuildReadersRaceHeap does it under the
// race detector; TestBuildRootsFirstCaught is the negative control, a
// build that publishes a sprig before its entries, which the same check
// catches). Count and Partition say 0 until the build's end.
//
// A build goes through the writer gate like any first mutation (so an
// empty index attached warm turns unclean), holds every sprig lock and
// the allocator while it writes (a concurrent Put waits), refuses an
// index that ever handed out an entry (ErrNotEmpty), and checks
// everything that can fail (records against the configuration, capacity,
// the lease, the context) before its first store to shared memory.
//
// # Restart protocol
//
// Open(ctx, cfg, rebuild) starts warm only when all of these hold, and
// otherwise starts cold, discarding the old segments, creating empty ones
// and calling rebuild, with a typed reason (RestartInfo.Reason):
//
//   - the main segment and every stage it lists are present
//     (ReasonSegmentsMissing, e.g. after a reboot);
//   - their layout version and fingerprint (index format, entry size,
//     sprigs, stage entries, instance, namespace, data-in-index) equal the
//     configuration (ReasonFingerprint, naming the field and both values,
//     e.g. "partition-tree-sprigs 512 doesn't match config 1024");
//   - the main segment is in state clean-shutdown and its writer gate is
//     clean (ReasonUnclean): the last writer called CloseClean, or wrote
//     nothing since its warm start (see "Fencing");
//   - the clean seal over the allocator state matches and the meta is
//     consistent (ReasonDamaged; Config.CheckOnWarm adds a full Check);
//   - the storage identity recorded by CloseClean (a UUID from the
//     storage's own header, its committed length and, if it has one, its
//     write sequence) equals
//     Config.Storage (ReasonStorageChanged: wiped, replaced, or written
//     without the index);
//   - Config.ForceCold is not set (ReasonForced).
//
// The clean marker is invalidated by the first mutation after attaching,
// not by attaching: a start that fails before writing leaves the index
// warm for the next one (Aerospike discards its segments at start-up, so
// such a failure forces a cold start). CloseClean writes file segments
// back (msync) before it writes the marker, and the marker after. Close
// without the marker is what a crash does. Open logs "beginning warm
// restart" or "beginning cold start: <reason>" and then the counts and
// durations (log/slog).
//
// # Backends and keys
//
// SysV() keeps the segments at keys 0x53 | 0x02 (arena.ClassIndex) |
// instance (4 bits) | namespace (4 bits) | block (8 bits; 0 the main
// segment, k stage k): never in Aerospike's ranges. Dir(path) keeps them
// as files, which survive a change of IPC namespace and can be copied
// with ordinary tools. Heap(store, name) is for tests under the race
// detector.
//
// # Damage
//
// Shared memory is not trusted: every handle, count and offset read from
// it is checked; damage is a typed error (ErrCorrupt), never a panic or a
// hang. Check walks everything and lists every problem.
//
// # Fencing
//
// The writer renews its lease in the background and checks that it still
// holds it before every mutation, but a check followed by stores fences
// nothing: a writer paused (SIGSTOP, a long GC or page-fault stall)
// between the check and its stores, and replaced meanwhile (its heartbeat
// older than Config.LeaseThreshold), would finish that write when it
// resumes. What fences it is the writer gate, meta word 11 (shared.go), a
// fenced word of package lease (the writer's 40-bit epoch above a state:
// clean, dirty, closing):
//
//   - Open stamps the gate with the new writer's epoch (lease.Stamp, one
//     CAS) before it reads the clean-shutdown state; a cold start creates
//     the gate dirty under its epoch.
//   - The first mutation after a warm attach moves the gate clean → dirty
//     with lease.FencedCAS before anything else, then marks the main
//     segment ready; CloseClean moves it to closing before it records the
//     storage identity and back to clean before it marks the segment
//     clean-shutdown.
//   - A new writer that finds the gate dirty or closing after its stamp
//     starts cold (ReasonUnclean): it discards the segments, and whatever
//     the paused writer still writes lands in memory no index refers to
//     any more (removed SysV segments and unlinked files stay mapped by
//     the processes attached to them). One that finds it clean starts
//     warm, and the paused writer, which had not passed the gate before
//     the stamp, never can: its FencedCAS finds the newer epoch and every
//     call fails with ErrLeaseLost, before its first store. Both orders of
//     the two CASes on the one word are covered; there is no third.
//
// So the whole of a write is fenced by one CAS per writer lifetime, not
// per write: Put, Delete and Update cost what they did, readers are
// untouched, and a warm start stamps one word (flat). The alternative,
// per-sprig version words carrying the epoch and stamped lazily by the new
// writer, was rejected: lazily means a sprig the new writer has not
// touched yet still carries an older epoch, which the paused writer can
// stamp with its own and then write, so it fences only the sprigs the new
// writer already changed; stamping all of them (2^22 by default) at
// takeover is the per-sprig work at Open the warm restart must not do;
// the epoch would take 40 bits of a sprig word that has 27 for its
// version (the root takes the rest); and a writer paused after opening a sprig (odd) could still
// store into it after the takeover, so the new writer could never use
// that sprig again. The gate makes that last case a cold start instead.
//
// TestStoppedWriterFenced stops a writer process at each step of an
// insert, a delete, an update, a stage addition and a clean close, lets
// another process take the index over and write, then continues the
// stopped one: it gets ErrLeaseLost, and the new writer's index holds
// exactly the new writer's writes (Get, Scan, Check, a Reader attaching
// the stages by key, a warm restart after CloseClean). TestStoppedWriterUnfenced is
// the negative control (fencing off): the stopped writer's write lands.
//
// Not fenced: removing a segment by name. A cold start discards the old
// segments (Open, after judging them) and addStage replaces a stale
// segment found at a stage's key; both act on a SysV key or a file path,
// which another writer may have reused between the check and the
// removal. Both first ask whether this writer was replaced (its main
// segment removed, or the lease another's) and stop with ErrLeaseLost or
// ErrWriterRunning if so, which covers a writer paused anywhere before
// that check (TestStoppedWriterFenced's stage cases); a writer paused in
// the microseconds between that check and the removal system call can
// still remove a newer writer's segment. Closing that window needs
// removal by identity in package arena (IPC_RMID on the shmid that was
// inspected; for a file, a rename to a private name, an inode check, then
// unlink). A stale stage is only in the way after a discard that stopped
// at a gap, a failed addStage, or a replaced writer's stage creation.
package index
