// Package backup saves shmkit's shared-memory segments to a directory and
// restores them, so that an index survives a reboot or a move to another
// host and the server still starts warm (the job of Aerospike's ASMT,
// without its gaps). shmctl backup, restore and verify are thin verbs over
// it.
//
// # What is saved
//
// A Source names segments: the indexes of an index.Config (every block its
// main segment records), SysV keys, and file segments (FilesWithPrefix).
// Backup refuses, naming each, a segment that a process has attached, one
// whose header is not ready or clean, and an index main segment that was
// not cleanly shut down; it holds each index's writer lease for the whole
// backup, so that no server can start under it (the saved lease record is
// the one from before the backup took it).
//
// # Format
//
// Each segment is cut into chunks (Options.ChunkSize, default 8 MiB), each
// with its XXH3-128 checksum (github.com/zeebo/xxh3; format version 2:
// version 1 had a SHA-256 per chunk, which took more than half of a
// backup's CPU time and capped it at about 1.4 GB/s per core, where
// XXH3 hashes tens of GB/s; against accidental damage both are as good,
// and against deliberate damage neither is worth more, since whoever
// can rewrite a chunk can rewrite the manifest too), processed in parallel over the cores and written in
// order into one data file per segment, raw or as one zstd frame per chunk
// (github.com/klauspost/compress). The manifest — keys or paths, sizes,
// owner, group and mode, layout version, kind, state and fingerprint, the
// chunks with their offsets and checksums, the tool's version, the host
// and the time — is written last, with a SHA-256 line over itself. Sizes
// and offsets are 64-bit throughout: segments over 4 GiB are saved whole.
//
//	D/MANIFEST       "shmkit-backup 2", JSON, "sha256 <hex>"
//	D/seg-000.data   chunk | chunk | …
//
// All or nothing: everything is written into ".D.partial-PID" next to D,
// files and directory are synced, and the directory is renamed to D. A
// directory whose name carries ".partial-" is never accepted, so a backup
// killed at any point leaves nothing that Verify or Restore accepts.
//
// # Restore
//
// Restore verifies the manifest and every chunk before it creates anything,
// refuses targets that exist (Options.Force replaces unattached ones) and
// checks free memory (MemAvailable, kernel.shmall and shmmax for SysV
// segments; the file system for files). It creates each index main segment
// first, claims it (state initializing, with this process's liveness slot:
// a server opening it waits, and takes over only once the restore is dead)
// and takes its writer lease; then it writes the other segments, then the
// main segments' contents, restores owners and modes, and writes the
// clean-shutdown state last. A restore killed anywhere before that leaves
// nothing that starts warm; on an error it removes what it created. The
// restored bytes equal the saved ones, except the index's lease record,
// which shows the restore as its last (released) holder.
//
// Verify makes every check Restore makes before it creates anything.
// Every error is an *Error wrapping one of the Err values: Damaged and
// Refused sort them for exit codes.
package backup
