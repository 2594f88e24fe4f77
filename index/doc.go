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
// An entry is 48 bytes (entry.go has its one definition and diagram):
// the 20-byte digest, generation, void time, last-update time (42 bits of
// Unix ms), a storage location (file id, offset, size) or, for a
// data-in-index namespace, an inline int64, and flags (live, tombstone,
// inline). A sorted hash needs no links, so an entry is six words where
// Aerospike's, with its tree links, is 64 bytes. Entries live in lines of
// 48 bytes in stages of Config.StageEntries lines (a power of two up to
// 2^28); stage 0 is part of the main segment, stages 1–255 are separate
// segments, created by the writer while readers run and attached by
// readers in other processes the first time they meet a handle in them. A
// Handle is stage (8 bits) and line (28 bits), plus one so that zero is
// null: 2^36 lines per namespace, as Aerospike's 256 stages × 2^28. (The
// 32-bit arena.Handle of arena.Pool has 16 stages of 2^24, too few, so the
// index does its own stage and handle arithmetic.)
//
// Each of the 4096 partitions is split into Config.Sprigs sprigs (a power
// of two up to 4096, default 4; Aerospike's partition-tree-sprigs,
// whose default is 256). The sprig of a digest is taken from the bits
// that follow the partition bits in digest byte order, so each sprig is a
// contiguous digest range and a partition scan, sprig after sprig, comes
// out in digest order.
//
// A sprig is a sorted hash table: a run of n consecutive lines inside one
// stage (n a size class: 1–15, then eight classes per doubling up to a
// stage). The home line of a digest is (h × m) >> 64, where h is the
// digest's bits after its partition and sprig bits read as a uint64 (its
// home key) and m = n − n/32 the home lines (the last 32nd are overflow
// lines for entries pushed past the end): homes are monotone in the
// digest. Entries are kept in digest order, each at or after its home,
// with no empty line between its home and itself (linear probing that
// preserves order, without wrap-around). So:
//
//   - Get reads the sprig's word (8 bytes in the main segment: version,
//     size class and the table's handle, shared.go), then lines from the
//     home forward until the digest, a larger one, an empty line or the
//     table's end: one dependent miss for the home line, then the
//     adjacent cache lines of the same page.
//   - Put of a new key shifts the entries from its place to the next empty
//     line one line right; Delete moves the entries after the removed one
//     that are displaced from their homes one line back. A table grows
//     (laid out anew in a run of the fitting class for 72% load, the old
//     run freed) when it would hold more than 88% (tables under ten lines
//     fill up) or no empty line follows the place; it shrinks at 30%, and
//     a sprig left empty gives its run back. The writer keeps each table's
//     entry count in the main segment (section "counts").
//   - Scan reads a sprig's table line by line: digest order.
//
// The structure was chosen by measurement (figures and commands in
// BENCHMARKS.md, "Primary index"). With AVL trees (the previous
// structure, chosen over a treap and a B-tree of cache-line nodes by
// BenchmarkSprigShapes, sprig_bench_test.go) a Get at 10M random keys cost
// a dependent miss for the sprig word in a 32 MiB table of roots and then
// about 1.8 more down the tree: ×2.7–3.6 the floor (one dependent random
// load over as much memory) and 2.3–3.0× faster than bbolt, and no Sprigs
// setting came within 2× the floor, because a table of roots in front of
// scattered entries always costs two misses or more. The sorted hash
// costs one miss for the home line (the 128 KiB table of sprig words at
// 4 sprigs stays cached) plus the lines after it on the same page.
// BenchmarkGetLarge (get_bench_test.go: 10M records built by Load, SysV
// segments with 4 KiB pages, the floor timed in alternating rounds; with
// the fuller loads of before the change below) put Sprigs 4 at ×1.76–1.97 the floor and 16 at ×1.85–2.19 in six paired
// runs on this shared machine (4 ahead in each); Sprigs 1 was no faster
// than 4. At 4 a table holds 610 entries at 10M and 61 at 1M, so a grow
// that lays one out again takes up to about a hundred µs at 10M (the
// sprig's readers are not held up: they read the old table until the new
// one is published).
//
// The load is a trade between memory, lookups and inserts, and the home
// lines must stay under full: with growth at 93% of a table and an eighth
// of overflow lines the home lines held up to 106% before a grow, so
// clusters, and with them lookups and inserts, lengthened with the
// table's size. BenchmarkPutFill (N random Puts into an empty heap index;
// lines a record, lines a lookup, fill time):
//
//	overflow, grow at → to   Sprigs  2M records          8M records
//	n/8,  93% → 87%          16      1.223  3.13  3.73 s  –
//	n/8,  93% → 75%          16      1.354  2.73  2.81 s  1.408  4.49  11.9 s
//	n/8,  93% → 75%          4       1.411  4.49  2.85 s  1.418  7.75  18.1 s
//	n/16, 90% → 75%          16      1.407  2.30  2.83 s  1.441  3.27  12.8 s
//	n/16, 90% → 75%          4       1.442  3.27  2.82 s  1.483  3.80  13.7 s
//	n/16, 85% → 70%          16      1.462  2.14  2.54 s  1.508  2.82  11.5 s
//	n/16, 85% → 70%          4       1.511  2.82  2.50 s  1.513  3.26  11.3 s
//	n/32, 88% → 72% (chosen) 16      1.515  2.06  2.55 s  1.485  2.72  12.6 s
//	n/32, 88% → 72% (chosen) 4       1.487  2.72  2.61 s  1.495  3.11  12.4 s
//
// Growing by one size class at a time (to 87%) made each insert pay for
// laying out about a dozen lines again, every word an atomic store. A bulk
// build sizes each table for 82% (about 1.27 lines a record at 10M). Memory per
// record is the lines handed out (in tables and in free runs) × 48 B, plus
// 16 B a sprig (its word and its count), rounded up to whole stages (see
// BENCHMARKS.md for the 10M figure); the AVL index's 64-byte entries took
// one line a record, 70.5 B. Eight size classes per doubling round a table
// up by about 4% on average; the free runs a fill leaves (0.2 lines a
// record at 8M) are the old runs of tables that grew.
//
// Runs come from an allocator whose state lives in the main segment
// (shared.go, section "alloc"): a bump pointer over the stages (a run
// never crosses a stage: the rest of a stage too small for the next run
// becomes a free run), and a free list per size class, doubly linked
// through the free runs' first lines, each free run marked with its size
// in its first and last line. A freed run is merged with free runs right
// before and after it in its stage, and an allocation takes the first
// run of the smallest non-empty list that is large enough, splitting off
// the rest. Without the merging a fill by Put left as many lines free as
// in tables (2.41 lines a record at 2M): every sprig grows through the
// small classes and the runs it leaves behind are too small for anyone
// later.
//
// The main segment also holds the writer lease, the allocator state
// and statistics (entries, bytes and tombstones per partition, live
// entries, lines in tables and free), so a warm start reads nothing but
// the meta. Its records are defined in shared.go.
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
// locks are sync.Mutex values in its own memory (up to 8192 stripes,
// sprig s taking lock s mod 8192), never in shared memory, so a dead writer
// leaves no lock held. Readers in other processes (OpenReader) take no
// lock and write nothing: they never block the writer, and a read of a
// sprig the writer is changing at that moment retries (bounded) until the
// sprig is stable again.
//
// # Reclamation: version validation with a bounded read
//
// Every sprig has a version (in its word, beside its table's handle and
// size class), odd while the writer changes the sprig. The writer makes
// it odd before it changes any line of the sprig's table (an insert and
// its shift, an update in place, a delete and its shift back) or the
// table itself (a grow or shrink: the new table is written in a run no
// sprig points at, then the word changes), and even again after. A run
// goes onto a free list only after its sprig's word points elsewhere, and
// is reused for another sprig's table before that sprig's word points at
// it. A reader loads the word (retrying while the version is odd), checks
// the handle and class (the run must lie inside one published stage),
// copies lines with one atomic load per word, at most the table's lines,
// then loads the word again: if it changed, what it read may be torn,
// shifted or another sprig's, and it retries. A run freed from sprig A
// and reused by sprig B therefore changed A's word first, so a reader
// still reading it rejects what it read. Retries are bounded in time
// (250 ms, then ErrContended); a read that finds a bad handle or class, an
// entry with unknown flags, lines out of order or a table without entries
// under a stable word reports ErrCorrupt. Get never returns another key's
// record, never loops and never faults.
//
// This was chosen over epoch-based reclamation with per-process reader
// slots because it needs nothing from readers: no slot to register, no
// announcement that a dead reader could leave behind and stall
// reclamation, no write to shared memory on the read path. Its cost is a
// retry when the writer changes the very sprig being read.
//
// The version has 19 bits and wraps after 2^18 changes of its sprig; a
// reader compares the whole word (version, class and table) and also the
// meta's wrap count, which the writer raises before it stores a wrapped
// version, so a read that spans any number of changes is rejected
// (TestVersionWrapSeen bumps a version 2^19 times under a pending read).
//
// Scan(p) copies each sprig of partition p as a validated snapshot (the
// same version check around a read of its whole table that must yield
// strictly increasing digests of that sprig and at least one entry) and
// reports it before moving to the next. Every key present for the whole
// scan lies in exactly one sprig and is in that sprig's snapshot, so it
// is reported exactly once; keys inserted or deleted during the scan may
// or may not be.
//
// # Bulk build
//
// A cold rebuild fills an empty index with every record of the storage.
// Put of a new key misses on its table, shifts entries and now and then
// lays the whole table out anew in a larger run (grow), about 1–2 µs per
// record at a million records, so a rebuild by Put tops out near 0.5–1M
// records/s. Builder (and Load, its one-call form for a slice) does the
// same work in bulk:
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
//   - Each non-empty sprig's table is sized for buildLoad (85%): the
//     smallest class of at least count/0.85 lines in which its sorted
//     entries, each laid at max(home, previous+1), end before the table's
//     end (else the next class). Empty sprigs get no table and are not
//     touched. The tables are laid one after another over the stages
//     (none across a stage's end); the stages are all added, and
//     capacity checked, before the first line is written.
//   - The sprigs are split between GOMAXPROCS workers by entry count;
//     each copies the items of its next 256 entries into a buffer
//     (independent loads overlap their cache misses), writes each entry
//     at its line (the empty lines of a fresh stage are zero already) and
//     the table's count, and publishes each sprig as a grow does: version
//     odd, table, version even. The partition statistics and the live
//     count are written once at the end.
//
// Entries are written with atomic word stores, as everywhere else. On
// amd64 an atomic store is an XCHG, a full fence: about 6 ns a word on
// this machine against well under 1 ns for a plain store, so 8 words cost
// about 50 ns an entry, shared between the workers. Plain stores would
// need an arena accessor that bypasses atomics for memory no reader can
// reach yet; the build is fast enough without it. BenchmarkLoad (1M
// records, default Sprigs, stages of 2^20 lines, first touch of fresh
// segments in every iteration, a shared machine): 3.3–4.7M records/s on
// heap and SysV segments, against 0.68–0.71M/s by Put in the same run
// (with AVL trees: 6.6–7.9M/s warm, 4.9–5.8M/s fresh, Put 1.5–1.9M/s).
// `shmbench restart` (kvstore, exec until the first answer, SysV
// segments), alternating with the AVL build of the same runs: a cold
// start at 100k records took 37–38 ms (2.63–2.70M records/s; the rebuild
// alone 3.2M/s) against 59–65 ms (1.53–1.71M/s) with AVL trees and their
// 32 MiB sprig table, which every cold start wrote and faulted in; at 1M,
// 399 ms (2.51M/s) against 535 ms (1.87M/s).
//
// Readers in other processes never wait for a build: a table is written
// before the sprig word that makes it reachable, and a sprig's word
// changes under an odd version, so a reader sees each sprig either empty
// or complete (TestBuildSeenFromAnotherProcess pauses a build halfway and
// scans from another process; TestBuildReadersRaceHeap does it under the
// race detector; TestBuildRootsFirstCaught is the negative control, a
// build that publishes a sprig before its entries, which the same check
// catches: a published table without entries is damage). Count and Partition say 0 until the build's end.
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
// writer already changed; stamping all of them (2^16 by default, 2^24 at most) at
// takeover is the per-sprig work at Open the warm restart must not do;
// the epoch would take 40 bits of a sprig word that has 19 for its
// version (the table's handle and class take the rest); and a writer
// paused after opening a sprig (odd) could still
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
