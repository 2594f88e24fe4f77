// Package arena attaches shared-memory segments, creates and initializes
// them exactly once however many processes start together, and gives
// bounds-checked atomic access to their words. The higher packages (seqlock,
// lease, partmap, tend) build their structures on it.
//
// # Backends
//
// A Location says where a segment lives:
//
//   - SysV(key): a System V shared-memory segment (shmget/shmat). It
//     survives the processes that use it until removed (ipcrm -M, Remove),
//     is what Aerospike's shared-memory tending uses, and is listed by
//     ipcs -m.
//   - File(path): a file mapped with mmap, by default on the tmpfs
//     /dev/shm (DefaultFilePath names shmkit.<name> there). Creation
//     reserves the whole size with fallocate, so a full filesystem fails
//     creation instead of a later write. Each attached process holds a
//     shared flock, which tells an attached segment from an idle one.
//   - HeapStore.At(name): memory of this process, for tests under the
//     race detector (which cannot see memory outside the Go heap): the
//     goroutines of a test share a HeapStore as processes share a key
//     space.
//
// Every backend runs the same protocols; tests run them on all of them.
//
// # Huge pages
//
// Options.HugePages backs a new segment with 2 MiB pages: SysV segments
// with SHM_HUGETLB from the pool reserved in /proc/sys/vm/nr_hugepages,
// file segments from a tmpfs mounted with huge=always (or hugetlbfs).
// HugePagesTry falls back to normal pages and logs why; HugePagesRequire
// fails with ErrNoHugePages and a hint saying what to reserve or mount.
// Segment.PageUse reports the pages the kernel actually mapped. See
// HugePagePolicy.
//
// # Keys and paths
//
// shmkit's SysV keys are 0x53CCIIIS: the prefix 0x53, a class byte
// (ClassCluster, ClassIndex, ClassPool, ClassLease, ClassTest), 12 bits of
// instance and 4 bits of growth stage (MakeKey, Key.WithStage). Keys in
// the ranges Aerospike's clients and servers use are refused
// (ErrReservedKey), so neither side can attach or remove the other's
// segments by accident. A file segment's stages are the path with the
// suffix .s<n> (Location.Stage).
//
// # Initialization
//
// A segment starts with a layout.Header; its state word says where the
// segment is in its life: empty, initializing (with the initializer's pid),
// ready, clean-shutdown, or retired. Create, Open and OpenOrCreate attach
// the segment and then:
//
//   - the process that created it claims it (empty → initializing) with a
//     compare-and-swap, records its procid.Identity, writes the header and
//     runs Options.Init, stores the header checksum, and only then sets
//     the state to ready;
//   - every other process waits, bounded by Options.Timeout and the
//     context, until the state is ready, and then checks the header
//     (layout.Check) and that it describes the segment it asks for
//     (layout.Header.Match: kind, configuration fields, sections);
//   - an initializer that died (judged by its identity) is replaced: a
//     waiter claims the segment again and re-initializes it from scratch;
//     a segment left empty longer than Options.AbandonAfter (its creator
//     died before claiming it) is initialized by the waiter.
//
// Mismatches and damage are typed errors (*Error wrapping one of the Err*
// values, or a *layout.MismatchError) that name the segment and say how to
// get out, usually by removing it (Location.RemoveHint).
//
// # Safety rules
//
//   - Shared memory is never trusted. Every offset or length read from a
//     segment is checked (CheckRange, CheckWord, Segment.Words) before it
//     is used; bad contents give a typed error, never a panic or a hang.
//     The word accessors panic only on offsets that are the caller's own
//     constants gone wrong, which is a programming error.
//   - Everything another process may change concurrently is read and
//     written with the atomic word accessors (Load64, Store64, CAS64,
//     LoadWords, Words, …); there are no byte accessors.
//   - Segments hold no Go pointers: structures link by Offset or by pool
//     Handle. All pointer conversions are in one file (unsafe.go).
//   - An existing segment is attached only if its owner (and for SysV its
//     creator) is this process's user or one listed in Options.AllowUIDs
//     (ErrForeignOwner), and its mode is within Options.Mode
//     (ErrModeTooWide). A file segment's path is never followed through a
//     symbolic link (ErrSymlink) and must be a regular file with one link
//     (ErrNotRegular): another user could otherwise make this process
//     write where they choose.
//   - A segment may be removed while attached (ipcrm, Remove with Force, a
//     replaced file): Segment.Removed says so, and the process should
//     close and open again rather than go on alone on the old memory.
//   - Never truncate a mapped segment file: accesses past the new end
//     raise SIGBUS in every process that maps it.
//   - Tests leave nothing behind: package arenatest hands out SysV test
//     keys and removes their segments when the test ends.
package arena
