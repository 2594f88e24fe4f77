package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/backup"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/internal/cli"
)

// backupVerbs are the verbs that move segments to and from files: backup,
// restore and verify.
func backupVerbs() []verb {
	return []verb{
		{name: "backup", summary: "save an index or file segments into a new directory (checksummed chunks, all or nothing)", help: backupHelp, run: runBackup},
		{name: "restore", summary: "recreate the segments of a backup after verifying all of it", help: restoreHelp, run: runRestore},
		{name: "verify", summary: "check a backup as restore would, without restoring", help: verifyHelp, run: runVerify},
	}
}

const backupHelp = `
usage: shmctl backup (--instance I [--namespace N] [--store-dir S] | --prefix P | --key K) --dir D
                     [--compress] [--chunk-mib M] [--analyze [-json]]

Saves segments into the new directory D, all or nothing: the data goes to a
temporary directory next to D (".D.partial-PID"), each segment as chunks
of M MiB (default 8) with an XXH3-128 checksum each, processed in parallel
on every core; the manifest (keys or paths, sizes, owner, group and mode, layout version
and fingerprint, chunk checksums, tool version, host, time; itself
checksummed) is written last, files and directory are synced, and the
directory is renamed to D.

  --instance I    the index segments of instance I (0-15) under shmkit's
                  SysV key scheme, every namespace that has one...
  --namespace N   ...or only namespace N (0-15)
  --store-dir S   ...kept as files in directory S (index.Dir) instead
  --prefix P      every file segment whose path starts with P
  --key K         the SysV segment with key K (hex 0x... or decimal)
  --compress      store each chunk as a zstd frame (fastest level)
  --analyze       say what would be written and the space needed; write
                  nothing (-json: as JSON)

Refuses (exit 3), naming each, segments that a process has attached and
index segments that were not cleanly shut down. Holds each index's writer
lease for the whole backup, so that no server can start under it. Refuses
(exit 4) when the file system of D has less free space than the segments'
size. A progress bar with rate and time left goes to stderr when it is a
terminal.
`

const restoreHelp = `
usage: shmctl restore --dir D [--force]

Recreates the segments saved in D at their keys and paths, with their
owner, group and mode. Before creating anything it verifies the manifest
and every chunk (exit 1 if the backup is damaged, naming what is wrong),
refuses targets that exist (exit 3, naming them; --force replaces those
that no process has attached) and checks free memory (SysV: MemAvailable,
kernel.shmall and shmmax; files: their file system; exit 4).

An index's main segment is created first and claimed, and its writer lease
held, so that a server started meanwhile waits or refuses; its
clean-shutdown state is written last, so that an interrupted restore never
leaves segments that would start warm. On any failure everything created is
removed.
`

const verifyHelp = `
usage: shmctl verify --dir D [-json]

Makes every check restore makes before it creates anything: the manifest's
checksum, format version and contents, no foreign files in D, each data
file's size, and each chunk's length and XXH3-128 (decompressing it if
compressed). Exit 0 if the backup is intact, 1 if it is damaged (naming
what is wrong), 4 if it cannot be read.
`

// backupExit maps a backup error to an exit code.
func backupExit(err error) int {
	switch {
	case err == nil:
		return exitOK
	case backup.Damaged(err):
		return exitProblems
	case backup.Refused(err):
		return exitRefused
	}
	return exitFailed
}

func runBackup(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "backup")
	instance := fs.Int("instance", -1, "index instance (0-15)")
	namespace := fs.Int("namespace", -1, "index namespace (0-15; default all)")
	storeDir := fs.String("store-dir", "", "index segments are files in this directory")
	prefix := fs.String("prefix", "", "file segments whose path starts with this")
	keyStr := fs.String("key", "", "SysV key of a segment")
	dir := fs.String("dir", "", "backup directory to create")
	compress := fs.Bool("compress", false, "zstd-compress the chunks")
	chunkMiB := fs.Int("chunk-mib", backup.DefaultChunkSize>>20, "chunk size in MiB (1-64)")
	analyze := fs.Bool("analyze", false, "only say what would be written")
	asJSON := fs.Bool("json", false, "with --analyze: JSON output")
	rest, err := cli.ParseInterleaved(fs, args)
	if err != nil {
		return exitUsage
	}
	usage := func(msg string) int {
		fmt.Fprintf(e.stderr, "shmctl backup: %s (shmctl help backup)\n", msg)
		return exitUsage
	}
	if len(rest) > 0 {
		return usage(fmt.Sprintf("unexpected arguments %q", rest))
	}
	if *dir == "" {
		return usage("--dir is required")
	}
	picked := 0
	for _, b := range []bool{*instance >= 0, *prefix != "", *keyStr != ""} {
		if b {
			picked++
		}
	}
	if picked != 1 {
		return usage("give exactly one of --instance, --prefix and --key")
	}
	if *chunkMiB < 1 || *chunkMiB > backup.MaxChunkSize>>20 {
		return usage(fmt.Sprintf("--chunk-mib %d: give 1 to %d", *chunkMiB, backup.MaxChunkSize>>20))
	}
	var src backup.Source
	switch {
	case *instance >= 0:
		if *instance > 15 || *namespace > 15 {
			return usage("--instance and --namespace are 0-15")
		}
		store := index.SysV()
		if *storeDir != "" {
			store = index.Dir(*storeDir)
		}
		var nss []uint8
		if *namespace >= 0 {
			nss = []uint8{uint8(*namespace)}
		}
		cfgs, err := backup.FindIndexes(store, uint8(*instance), nss)
		if err != nil {
			fmt.Fprintf(e.stderr, "shmctl backup: %v\n", err)
			return exitFailed
		}
		if len(cfgs) == 0 {
			fmt.Fprintf(e.stderr, "shmctl backup: no index of instance %d (%s) exists\n", *instance, store)
			return exitFailed
		}
		src.Indexes = cfgs
	case *prefix != "":
		files, err := backup.FilesWithPrefix(*prefix)
		if err != nil {
			fmt.Fprintf(e.stderr, "shmctl backup: %v\n", err)
			return exitFailed
		}
		if len(files) == 0 {
			fmt.Fprintf(e.stderr, "shmctl backup: no file matches the prefix %q\n", *prefix)
			return exitFailed
		}
		src.Files = files
	default:
		k, err := arena.ParseKey(*keyStr)
		if err != nil {
			return usage(err.Error())
		}
		src.Keys = append(src.Keys, k)
	}
	opts := backup.Options{ChunkSize: uint64(*chunkMiB) << 20, Tool: "shmctl " + toolVersion(), Logger: warnLogger(e.stderr)}
	if *compress {
		opts.Compression = backup.Zstd
	}
	if *analyze {
		p, err := backup.Analyze(src, *dir, opts)
		if err != nil {
			fmt.Fprintf(e.stderr, "shmctl backup: %v\n", err)
			return backupExit(err)
		}
		printPlan(e.stdout, p, *asJSON, *compress)
		return exitOK
	}
	bar := newProgressBar(e.stderr, "backup")
	opts.Progress = bar.update
	res, err := backup.Backup(ctx, src, *dir, opts)
	bar.finish()
	if err != nil {
		fmt.Fprintf(e.stderr, "shmctl backup: %v\n", err)
		return backupExit(err)
	}
	fmt.Fprintf(e.stdout, "backed up %d segment(s), %s, into %s (%s stored, %s, %s/s)\n",
		len(res.Manifest.Segments), humanBytes(res.Bytes), res.Dir, humanBytes(res.Stored), res.Duration.Round(1e6),
		humanBytes(uint64(float64(res.Bytes)/max(res.Duration.Seconds(), 1e-9))))
	return exitOK
}

// warnLogger logs warnings and errors (a lease taken over from a dead
// holder, say) to w; the routine lease messages stay out of the output.
func warnLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// toolVersion is the module version this binary was built from.
func toolVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "(unknown)"
}

func printPlan(w io.Writer, p *backup.Plan, asJSON, compress bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(p)
		return
	}
	fmt.Fprintf(w, "%-24s %-12s %14s %7s %s\n", "SEGMENT", "ROLE", "BYTES", "CHUNKS", "STATE")
	for _, s := range p.Segments {
		fmt.Fprintf(w, "%-24s %-12s %14d %7d %s\n", strings.TrimPrefix(strings.TrimPrefix(s.Name(), "SysV key "), "file "),
			s.Role, s.Size, (s.Size+uint64(p.ChunkSize)-1)/uint64(p.ChunkSize), s.State)
	}
	how := "uncompressed"
	if compress {
		how = "at most (zstd usually needs much less)"
	}
	fmt.Fprintf(w, "%d segment(s), %s in %d chunks; space needed %s %s; free %s\n",
		len(p.Segments), humanBytes(p.Bytes), p.Chunks, humanBytes(p.Need), how, humanBytes(p.Free))
	if p.Need > p.Free {
		fmt.Fprintln(w, "NOT ENOUGH SPACE: the backup would be refused")
	}
}

func runRestore(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "restore")
	dir := fs.String("dir", "", "backup directory")
	force := fs.Bool("force", false, "replace existing targets")
	rest, err := cli.ParseInterleaved(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(rest) > 0 || *dir == "" {
		fmt.Fprintln(e.stderr, "shmctl restore: --dir is required and takes no arguments (shmctl help restore)")
		return exitUsage
	}
	bar := newProgressBar(e.stderr, "restore")
	res, err := backup.Restore(ctx, *dir, backup.Options{Force: *force, Progress: bar.update, Logger: warnLogger(e.stderr)})
	bar.finish()
	if err != nil {
		fmt.Fprintf(e.stderr, "shmctl restore: %v (nothing restored)\n", err)
		return backupExit(err)
	}
	for _, r := range res.Replaced {
		fmt.Fprintf(e.stdout, "replaced %s\n", r)
	}
	for _, s := range res.Manifest.Segments {
		fmt.Fprintf(e.stdout, "restored %s (%s, %s, uid %d gid %d mode %#o)\n", s.Name(), s.Role, humanBytes(s.Size), s.UID, s.GID, s.Mode)
	}
	fmt.Fprintf(e.stdout, "restored %d segment(s), %s, in %s\n", len(res.Manifest.Segments), humanBytes(res.Bytes), res.Duration.Round(1e6))
	return exitOK
}

func runVerify(ctx context.Context, e *env, args []string) int {
	fs := newFlags(e, "verify")
	dir := fs.String("dir", "", "backup directory")
	asJSON := fs.Bool("json", false, "JSON output")
	rest, err := cli.ParseInterleaved(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(rest) > 0 || *dir == "" {
		fmt.Fprintln(e.stderr, "shmctl verify: --dir is required and takes no arguments (shmctl help verify)")
		return exitUsage
	}
	bar := newProgressBar(e.stderr, "verify")
	m, err := backup.Verify(ctx, *dir, backup.Options{Progress: bar.update, Logger: warnLogger(e.stderr)})
	bar.finish()
	if *asJSON {
		out := struct {
			OK       bool             `json:"ok"`
			Problem  string           `json:"problem,omitempty"`
			Manifest *backup.Manifest `json:"manifest,omitempty"`
		}{OK: err == nil, Manifest: m}
		if err != nil {
			out.Problem = err.Error()
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
		return backupExit(err)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "shmctl verify: %v\n", err)
		return backupExit(err)
	}
	var chunks int
	var total uint64
	for _, s := range m.Segments {
		chunks += len(s.Chunks)
		total += s.Size
	}
	fmt.Fprintf(e.stdout, "%s: intact: %d segment(s), %s in %d chunks (%s), written %s by %s on %s\n",
		*dir, len(m.Segments), humanBytes(total), chunks, m.Compression, m.Created.Format("2006-01-02 15:04:05Z"), m.Tool, m.Host)
	return exitOK
}

func humanBytes(n uint64) string {
	const u = 1024
	if n < u {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, i := float64(n), 0
	for v >= u && i < 5 {
		v /= u
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i-1])
}
