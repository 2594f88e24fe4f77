// Command kvstore is a single-node record server that keeps its primary
// index in shared memory (package index) and its records in an append-only
// log on disk (package storage): the subject of shmkit's fast-restart
// demonstration and of `shmbench restart`.
//
//	kvstore -dir /var/lib/kvstore -ns test,counters -dii counters -addr 127.0.0.1:8000
//	curl -X PUT --data '{"x": 1234, "y": "abcd"}' 127.0.0.1:8000/test/demo/myTestKey
//	curl 127.0.0.1:8000/test/demo/myTestKey          # {"x":1234,"y":"abcd"}
//	curl -X DELETE 127.0.0.1:8000/test/demo/myTestKey
//	kill -TERM %1                                      # clean shutdown: the next start is warm
//
// HTTP: GET, PUT (or POST) and DELETE /{ns}/{set}/{key}; a record's bins are
// a JSON object; a missing record is 404. POST /_defrag runs one
// defragmentation pass at once (besides the background ones). Each namespace has its own index
// (instance -instance, namespace number its position in -ns) and its own log
// directory (-dir/<ns>). A namespace listed in -dii keeps data in the index:
// its records are a single integer bin, kept in the index entry, and any
// other write is refused with 400.
//
// A write is acknowledged (200) only once its record is in the log; see
// README.md for the fsync policy and -sync. On SIGINT or SIGTERM the server
// stops accepting requests, closes each log cleanly and then the index with
// the log's identity, so the next start is warm. It prints
// "kvstore: listening on ADDR" on stdout once it answers requests.
//
// -load N writes N records per namespace directly into the logs (no
// server, no index) and exits: the input of the restart benchmark.
//
// Flags go before or after other arguments.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/index"
)

// options are the command-line settings.
type options struct {
	addr         string
	dir          string
	namespaces   []string
	dii          map[string]bool
	instance     int
	shmDir       string
	sysvBase     uint
	sync         bool
	coldStart    bool
	checkOnWarm  bool
	sprigs       int
	stageEntries int
	fileSize     uint64
	defragEvery  time.Duration
	defragThresh float64
	load         int
	loadBinBytes int
	logJSON      bool
	cpuProfile   string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "kvstore:", err)
		return 2
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if o.logJSON {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h).With("pid", os.Getpid())
	fps, err := failpoint.FromEnv()
	if err != nil {
		fmt.Fprintln(stderr, "kvstore:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if o.load > 0 {
		if err := bulkLoad(o, log); err != nil {
			fmt.Fprintln(stderr, "kvstore:", err)
			return 1
		}
		return 0
	}
	if err := serve(ctx, o, fps, log, stdout); err != nil {
		fmt.Fprintln(stderr, "kvstore:", err)
		return 1
	}
	return 0
}

// parseFlags parses args, accepting flags before or after other arguments
// (there are none, so any left over is an error).
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{dii: map[string]bool{}}
	fs := flag.NewFlagSet("kvstore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8000", "HTTP listen address (port 0: any free port; the address is printed)")
	fs.StringVar(&o.dir, "dir", "kvstore-data", "directory of the record logs, one subdirectory per namespace")
	ns := fs.String("ns", "test", "comma-separated namespaces (at most 16); each has its own index and log")
	dii := fs.String("dii", "", "comma-separated namespaces that keep data in the index (a single integer bin)")
	fs.IntVar(&o.instance, "instance", 0, "instance number (0–15) in the index's SysV keys")
	fs.StringVar(&o.shmDir, "shm-dir", "", "keep the index segments as files in this directory instead of SysV shared memory")
	fs.UintVar(&o.sysvBase, "sysv-base", 0, "SysV key of block 0 of the first namespace's index (tests); default shmkit's index keys")
	fs.BoolVar(&o.sync, "sync", false, "fdatasync every write before acknowledging it (survives power loss; group commit)")
	fs.BoolVar(&o.coldStart, "coldstart", false, "discard the saved index and rebuild it from the logs")
	fs.BoolVar(&o.checkOnWarm, "check", false, "verify every index structure before accepting a warm restart")
	fs.IntVar(&o.sprigs, "sprigs", index.DefaultSprigs, "partition-tree-sprigs: sorted-hash sprigs per partition (power of two)")
	fs.IntVar(&o.stageEntries, "stage-entries", 1<<22, "index entries per stage segment (power of two; index.EntrySize, 48 bytes, each)")
	fs.Uint64Var(&o.fileSize, "file-size", storage.DefaultFileSize, "capacity of each log file in bytes")
	fs.DurationVar(&o.defragEvery, "defrag-interval", 10*time.Second, "interval between defragmentation passes (0: none)")
	fs.Float64Var(&o.defragThresh, "defrag-threshold", storage.DefaultDefragThreshold, "live share under which a log file is rewritten")
	fs.IntVar(&o.load, "load", 0, "write N records per namespace directly into the logs and exit (benchmarks)")
	fs.IntVar(&o.loadBinBytes, "load-bin-bytes", 16, "size of the string bin of each loaded record")
	fs.BoolVar(&o.logJSON, "log-json", false, "log JSON lines instead of text")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the start-up (until the server answers) to this file")
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", rest)
	}
	seen := map[string]bool{}
	for _, n := range strings.Split(*ns, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if len(n) > storage.MaxNamespace || strings.ContainsAny(n, "/\\") || n == "." || n == ".." {
			return nil, fmt.Errorf("namespace %q: at most %d bytes, no slash, not . or ..", n, storage.MaxNamespace)
		}
		if seen[n] {
			return nil, fmt.Errorf("namespace %q listed twice in -ns", n)
		}
		seen[n] = true
		o.namespaces = append(o.namespaces, n)
	}
	if len(o.namespaces) == 0 || len(o.namespaces) > 16 {
		return nil, fmt.Errorf("-ns lists %d namespaces: give 1 to 16", len(o.namespaces))
	}
	for _, n := range strings.Split(*dii, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if !seen[n] {
			return nil, fmt.Errorf("-dii names %q, which is not in -ns %q: add it there", n, *ns)
		}
		o.dii[n] = true
	}
	if o.instance < 0 || o.instance > 15 {
		return nil, fmt.Errorf("-instance %d: give 0 to 15", o.instance)
	}
	return o, nil
}
