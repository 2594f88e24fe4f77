// Package storage is the record log of the kvstore example: an
// append-only log of fixed-capacity files in a directory, where the
// server keeps its records while its index (package index, glued to this
// one by the server) says where each live record is.
//
// # Files
//
// The log is a sequence of files log-XXXXXXXX.dat (XXXXXXXX: the file id
// in hex, 1..65535, reused once the defragmenter has removed a file),
// each at most Options.FileSize bytes (default 64 MiB). A file starts
// with an 80-byte header: magic "SHMKVLOG", format version, the storage
// UUID (16 random bytes made when the storage is created, in every
// file), the file id, its capacity, its creation number (log order is
// creation order, not id order) and the Seq the file started at, under a
// checksum. Files are created under a temporary name and renamed into
// place, so a crash never leaves a half-written header. Records follow,
// each in a frame: length, CRC-32C of length and body, then the body
// (Seq, last-update time, generation, void time, digest, flags, field
// lengths, namespace, set, key, bins). [Location] is file id, offset and
// frame size, bounded (16, 40 and 24 bits) so an index entry can pack
// it; larger records are refused with [ErrTooLarge].
//
// # Durability
//
// An Append is acknowledged (returns its Location) once its frame was
// written to the head file with one write(2): by default the record then
// survives the process being killed at any point, but not a power loss
// or kernel crash, until the next [Storage.Sync] (fdatasync). With
// Options.SyncEveryWrite, Append returns only after an fdatasync covering
// the record (concurrent appends share one: group commit), and the
// record survives power loss. Whatever the policy, a file is
// fdatasync'ed before the next one is created (so only the head file can
// have a torn tail) and the defragmenter syncs its copies before it
// removes their source.
//
// A crash can leave the head file with a torn tail: part of a frame, or
// garbage. Open reads the head file and cuts it after the last frame
// whose checksum holds (and logs how many bytes it cut). It cannot tell a
// torn tail from damage inside the head file (a power loss under the
// default policy can leave both): it cuts at the first bad frame either
// way. A bad frame in a sealed file is never cut: Read and Scan report it
// as [ErrCorrupt]. Close saves a
// state file (the committed length and the accounting below) that the
// next Open trusts instead of reading anything; the first mutation after
// Open removes it, so a process that opens and stops without writing
// leaves the storage clean.
//
// # Identity
//
// [Storage.Identity] is the UUID plus the committed length, given as the
// head file id, the end of its last acknowledged record and the next Seq.
// Every acknowledged Append changes it; it is computed from the files'
// contents only (no inode, no path), so a copy of the directory restored
// on another host reports the same Identity, while a wiped or replaced
// storage reports another UUID. The index records it at clean shutdown
// and compares it at start-up.
//
// # Rebuilding an index
//
// [Storage.Scan] reads every record in log order with large sequential
// reads and no allocation per record (the Record's slices alias the read
// buffer during the callback). Deletes are tombstone records, so a cold
// rebuild never resurrects a deleted record. The supersession rule is
// by Seq, a number Append assigns, strictly increasing: a larger Seq
// supersedes a smaller one. It agrees with log order except for the
// defragmenter's copies, which keep their original's Seq (see Scan for
// why that matters).
//
// # Defragmentation and accounting
//
// Each file counts its dead bytes: records the server released
// ([Storage.Release], on overwrite and delete), tombstones, and copies
// whose move failed. The count is saved by Close and restored by a clean
// Open; after an unclean stop it is rebuilt by Scan (which the cold
// rebuild of the index runs anyway) plus the Release calls the rebuild
// makes for superseded records. [Storage.Defrag] rewrites sealed files
// whose live share fell under Options.DefragThreshold (default 0.5): it
// asks the server's [Liveness] which records are live, copies those to
// the head, repoints the index with a compare-and-set, and removes the
// file. A tombstone is dropped only when no other file may still hold an
// older record of its digest: each file keeps an in-memory Bloom filter
// of its digests and its smallest Seq (built by reading the file the
// first time a tombstone needs it, kept up to date by appends), and a
// tombstone is copied forward while any other file may shadow it. The
// filters cost one bit per 16 bytes of file capacity (1/128 of the log's
// size in memory, 512 KiB per 64 MiB file) once built. Under
// a steady overwrite load every sealed file left after a pass is at least
// threshold live, so the log stays within about live/threshold bytes plus
// the head file and the files filled since the last pass.
//
// An index that keeps no location (data in the index) cannot say which
// file a dead version is in, only its size: it calls
// [Storage.ReleaseUnplaced], and judges liveness by the record's
// contents. Once the unplaced bytes reach one file's capacity and
// (1-threshold)/2 of the sealed bytes, the next pass surveys: it reads
// every sealed file, asks Liveness about each record and recounts each
// file's dead bytes, then proceeds as above. The log then stays within
// about live/threshold plus that share of itself (at most 8/3 of the
// live bytes at threshold 0.5), and the surveys cost one read of the
// sealed files per (1-threshold)/2 of the log that dies.
//
// # Failpoints
//
// [FailAppendMid], [FailAppendAfter] and [FailDefragMid] name the points
// where the tests kill a process; a nil Options.Failpoints disarms them.
package storage
