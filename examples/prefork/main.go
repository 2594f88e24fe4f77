// Command prefork is the Go version of Aerospike's Node.js cluster-module
// example: a master process starts worker processes that share one
// listening port and one shared-memory cluster view, of which exactly one
// worker tends.
//
// The master opens the listener and hands its file descriptor to every
// worker (exec.Cmd.ExtraFiles); each worker re-executes this binary with
// PREFORK_WORKER=1, rebuilds the listener with net.FileListener, opens the
// cluster view with tend.Open, a record client on it (package record), and
// serves
//
//	GET    /{key}                 the record's bins as JSON; 404 if there is none
//	POST   /{key}                 writes the JSON object in the body as the record's bins;
//	                              answers {"ns","set","key","digest":{"type":"Buffer","data":[...]}}
//	DELETE /{key}                 deletes the record; 404 if there was none
//	GET    /route/{ns}/{set}/{key} where a record lives (digest, partition, master, replicas)
//	GET    /stats                 this worker's tend statistics and record client counts
//
// Records are in namespace test, set demo (flags -ns and -set), with the
// path as a string key, as in the Node.js example; JSON numbers that are
// integers are stored as integer bins, others as floats, arrays as lists
// and objects as maps. -v logs every request with the worker's id, as
// NODE_DEBUG=server does there.
//
// GET /stats also reports the worker's Pid and Worker id; its Role and
// OwnerPID tell which worker tends.
//
// SIGINT (or SIGTERM) to the master is forwarded to the workers, which
// close their cluster view (releasing the tend lease) and exit; the master
// then removes the segment.
//
// Killing the tending worker makes another worker take over at once (its
// /stats then shows role owner, a new epoch and a takeover with reason
// "owner dead"); readers keep answering from the shared map meanwhile. The
// master notices the death (log "worker died") and restarts the worker
// under the same id, where it joins as a follower: at once, or a second
// later if it died within a second of its start (so that a worker crashing
// at start is restarted once a second, not in a busy loop). It restarts
// nothing while shutting down, nor a worker that exits with status 0 on
// its own.
//
//	prefork -sim 3 -workers 4 -addr :8000
//	curl -i -H "Content-Type: application/json" http://localhost:8000/myTestKey
//	curl -i -H "Content-Type: application/json" --data-binary '{"x": 1234, "y": "abcd"}' http://localhost:8000/myTestKey
//	curl localhost:8000/route/test/demo/myTestKey
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmkit/shmkit/arena"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

const (
	envWorker = "PREFORK_WORKER"
	envSeeds  = "PREFORK_SEEDS"
	envID     = "PREFORK_ID"
)

type options struct {
	workers            int
	addr, seeds, key   string
	ns, set            string
	sim                int
	interval, takeover time.Duration
	verbose, noShm     bool
}

func main() {
	var o options
	flag.IntVar(&o.workers, "workers", 4, "number of worker processes")
	flag.StringVar(&o.addr, "addr", ":8000", "listen address")
	flag.IntVar(&o.sim, "sim", 0, "start a simulated cluster of N nodes (namespace test, RF 2)")
	flag.StringVar(&o.seeds, "seeds", "", "comma-separated seed host:port list")
	flag.StringVar(&o.key, "shm-key", "", "SysV key of the shared cluster view (default shmkit's cluster key)")
	flag.DurationVar(&o.interval, "tend-interval", time.Second, "tend interval")
	flag.DurationVar(&o.takeover, "takeover-threshold", 30*time.Second, "takeover threshold")
	flag.StringVar(&o.ns, "ns", "test", "namespace of the records")
	flag.StringVar(&o.set, "set", "demo", "set of the records")
	flag.BoolVar(&o.verbose, "v", false, "log every request with the worker's id")
	flag.BoolVar(&o.noShm, "no-shm", false, "every worker tends for itself (no shared view; the benchmark baseline)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())
	var err error
	if os.Getenv(envWorker) == "1" {
		err = worker(o, log.With("worker", os.Getenv(envID)))
	} else {
		err = master(o, log.With("role", "master"))
	}
	if err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

func shmKey(s string) (arena.Key, error) {
	if s == "" {
		return tend.DefaultShmKey(), nil
	}
	return arena.ParseKey(s)
}

func master(o options, log *slog.Logger) error {
	key, err := shmKey(o.key)
	if err != nil {
		return err
	}
	seeds := o.seeds
	if o.sim > 0 {
		sim, err := tendtest.New(tendtest.Options{Nodes: o.sim, Namespaces: []tendtest.NamespaceSpec{{Name: "test", ReplicationFactor: 2}}})
		if err != nil {
			return err
		}
		defer sim.Close()
		seeds = strings.Join(sim.Seeds(), ",")
	}
	if seeds == "" {
		return errors.New("no seeds: use -seeds or -sim")
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	f, err := ln.(*net.TCPListener).File()
	ln.Close() // from here on the socket lives in f, which workers inherit
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	defer f.Close() // kept open to restart workers
	s := &supervisor{exe: exe, seeds: seeds, listener: f, log: log,
		running: map[int]*exec.Cmd{}, exited: make(chan workerExit, o.workers), restart: make(chan int, o.workers)}
	for i := range o.workers {
		if err := s.start(i + 1); err != nil {
			s.signal(syscall.SIGTERM)
			s.wait()
			return err
		}
	}
	for len(s.running) > 0 || (s.pending > 0 && !s.stopping) {
		select {
		case sig := <-sigs:
			log.Info("forwarding signal to workers", "signal", sig.String())
			s.stopping = true
			s.signal(sig)
		case e := <-s.exited:
			s.reap(e)
		case id := <-s.restart:
			s.pending--
			if s.stopping {
				continue
			}
			if err := s.start(id); err != nil {
				log.Error("restart failed", "worker", id, "err", err)
			}
		}
	}
	// Every worker has detached: remove the segment (a segment still in
	// use elsewhere is refused, and kept).
	loc := arena.SysV(key)
	if err := arena.Remove(loc, arena.RemoveOptions{}); err != nil && !errors.Is(err, arena.ErrNotFound) {
		log.Warn("segment kept", "segment", loc.String(), "err", err)
	}
	log.Info("all workers exited")
	return nil
}

// minUptime is how long a worker must have run for the master to restart
// it at once after an abnormal exit; one that died sooner is restarted
// minUptime later, so that a worker crashing at start costs one restart a
// second, not a busy loop.
const minUptime = time.Second

// supervisor is the master's view of its workers. Only the master's main
// goroutine uses it, except that each worker's Wait reports on exited.
type supervisor struct {
	exe, seeds string
	listener   *os.File
	log        *slog.Logger
	running    map[int]*exec.Cmd // by worker id
	exited     chan workerExit
	restart    chan int // ids whose delayed restart is due
	pending    int      // delayed restarts not yet due
	stopping   bool
}

type workerExit struct {
	id, pid int
	err     error
	ran     time.Duration
}

// start starts worker id, which inherits the listener as fd 3.
func (s *supervisor) start(id int) error {
	cmd := exec.Command(s.exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), envWorker+"=1", envSeeds+"="+s.seeds, fmt.Sprintf("%s=%d", envID, id))
	cmd.ExtraFiles = []*os.File{s.listener}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start worker %d: %w", id, err)
	}
	s.running[id] = cmd
	s.log.Info("worker started", "worker", id, "worker_pid", cmd.Process.Pid)
	started := time.Now()
	go func() {
		err := cmd.Wait()
		s.exited <- workerExit{id: id, pid: cmd.Process.Pid, err: err, ran: time.Since(started)}
	}()
	return nil
}

// reap handles a worker's exit. A worker that died (killed, crashed) while
// the master is not stopping is restarted under the same id: at once, or
// minUptime later if it died within minUptime of its start. The cluster
// view needs no help: if the dead worker was the tend owner, another
// worker has already taken over (lease reason "owner dead"); the new
// worker joins as a follower.
func (s *supervisor) reap(e workerExit) {
	delete(s.running, e.id)
	if e.err == nil || s.stopping {
		s.log.Info("worker exited", "worker", e.id, "worker_pid", e.pid, "status", fmt.Sprint(e.err))
		return
	}
	s.log.Warn("worker died", "worker", e.id, "worker_pid", e.pid, "status", e.err.Error(), "ran", e.ran.Round(time.Millisecond).String())
	if e.ran >= minUptime {
		s.log.Info("restarting worker", "worker", e.id)
		if err := s.start(e.id); err != nil {
			s.log.Error("restart failed", "worker", e.id, "err", err)
		}
		return
	}
	s.log.Info("restarting worker", "worker", e.id, "after", minUptime.String())
	s.pending++
	time.AfterFunc(minUptime, func() { s.restart <- e.id })
}

func (s *supervisor) signal(sig os.Signal) {
	for _, c := range s.running {
		c.Process.Signal(sig)
	}
}

// wait reaps every running worker (after a failed start).
func (s *supervisor) wait() {
	for len(s.running) > 0 {
		e := <-s.exited
		delete(s.running, e.id)
	}
}

// nodeJSON is a node in a /route answer.
type nodeJSON struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
}

// routeJSON is a /route answer.
type routeJSON struct {
	NS          string     `json:"ns"`
	Set         string     `json:"set"`
	Key         string     `json:"key"`
	Digest      []int      `json:"digest"`
	PartitionID uint32     `json:"partition_id"`
	Master      *nodeJSON  `json:"master"`
	Replicas    []nodeJSON `json:"replicas"`
}

// statsJSON is a /stats answer: the worker's pid and id, its tend.Stats
// fields (Role, OwnerPID, Epoch, Takeovers, ...) and its record client's
// counts.
type statsJSON struct {
	Pid    int
	Worker int
	tend.Stats
	Records record.Stats
}

// bufferJSON is how the Node.js client's JSON shows a Buffer.
type bufferJSON struct {
	Type string `json:"type"`
	Data []int  `json:"data"`
}

// keyJSON is a POST (and DELETE) answer, the Node.js example's record key.
type keyJSON struct {
	NS     string     `json:"ns"`
	Set    string     `json:"set"`
	Key    string     `json:"key"`
	Digest bufferJSON `json:"digest"`
}

func toJSON(n *partmap.Node) nodeJSON {
	j := nodeJSON{Name: n.Name, Addresses: []string{}}
	for _, a := range n.Addresses {
		j.Addresses = append(j.Addresses, a.String())
	}
	return j
}

func worker(o options, log *slog.Logger) error {
	key, err := shmKey(o.key)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return fmt.Errorf("inherited listener: %w", err)
	}
	c, err := tend.Open(ctx, tend.Config{
		Seeds: strings.Split(os.Getenv(envSeeds), ","), UseShm: !o.noShm, ShmKey: key,
		TendInterval: o.interval, TakeoverThreshold: o.takeover, Logger: log,
	})
	if err != nil {
		return err
	}
	rc, err := record.NewClient(c, nil)
	if err != nil {
		c.Close()
		return err
	}
	id, _ := strconv.Atoi(os.Getenv(envID))
	log.Info("worker starting", "role", c.Stats().Role)
	mux := http.NewServeMux()
	h := &handler{rc: rc, ns: o.ns, set: o.set}
	mux.HandleFunc("GET /{key}", h.get)
	mux.HandleFunc("POST /{key}", h.post)
	mux.HandleFunc("DELETE /{key}", h.del)
	mux.HandleFunc("GET /route/{ns}/{set}/{key}", func(w http.ResponseWriter, r *http.Request) {
		ns, set, k := r.PathValue("ns"), r.PathValue("set"), r.PathValue("key")
		d := partmap.StringKeyDigest(set, k)
		out := routeJSON{NS: ns, Set: set, Key: k, PartitionID: d.PartitionID(), Replicas: []nodeJSON{}}
		for _, b := range d {
			out.Digest = append(out.Digest, int(b))
		}
		m, err := c.Master(ns, d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		mj := toJSON(m)
		out.Master = &mj
		for i := 1; i < partmap.StoredReplicas; i++ {
			if n, err := c.Replica(ns, d, i); err == nil {
				out.Replicas = append(out.Replicas, toJSON(n))
			}
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, statsJSON{Pid: os.Getpid(), Worker: id, Stats: c.Stats(), Records: rc.Stats()})
	})
	var hd http.Handler = mux
	if o.verbose {
		hd = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.Info(fmt.Sprintf("incoming %s request for %s on worker %d", r.Method, r.URL.Path, id))
			mux.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{Handler: hd, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	<-ctx.Done()
	log.Info("worker exiting")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	rc.Close()
	return c.Close()
}

// handler serves the record endpoints.
type handler struct {
	rc      *record.Client
	ns, set string
}

// maxBody bounds a POST body.
const maxBody = 1 << 20

func (h *handler) key(w http.ResponseWriter, r *http.Request) (record.Key, bool) {
	k, err := record.NewKey(h.ns, h.set, r.PathValue("key"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return k, false
	}
	return k, true
}

// fail answers err: 404 without a body for a missing record, as the
// Node.js example does, and 500 with the error otherwise.
func fail(w http.ResponseWriter, err error) {
	if errors.Is(err, record.ErrKeyNotFound) {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	k, ok := h.key(w, r)
	if !ok {
		return
	}
	rec, err := h.rc.Get(r.Context(), nil, k)
	if err != nil {
		fail(w, err)
		return
	}
	writeRecordJSON(w, jsonValue(map[string]any(rec.Bins)))
}

func (h *handler) post(w http.ResponseWriter, r *http.Request) {
	k, ok := h.key(w, r)
	if !ok {
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil || body == nil {
		http.Error(w, fmt.Sprintf("the body must be a JSON object: %v", err), http.StatusBadRequest)
		return
	}
	bins := make(record.BinMap, len(body))
	for name, v := range body {
		bins[name] = binValue(v)
	}
	if err := h.rc.Put(r.Context(), nil, k, bins); err != nil {
		fail(w, err)
		return
	}
	writeRecordJSON(w, keyAnswer(k, r.PathValue("key")))
}

func (h *handler) del(w http.ResponseWriter, r *http.Request) {
	k, ok := h.key(w, r)
	if !ok {
		return
	}
	existed, err := h.rc.Delete(r.Context(), nil, k)
	if err != nil {
		fail(w, err)
		return
	}
	if !existed {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	writeRecordJSON(w, keyAnswer(k, r.PathValue("key")))
}

func keyAnswer(k record.Key, userKey string) keyJSON {
	out := keyJSON{NS: k.Namespace, Set: k.Set, Key: userKey, Digest: bufferJSON{Type: "Buffer", Data: make([]int, len(k.Digest))}}
	for i, b := range k.Digest {
		out.Digest.Data[i] = int(b)
	}
	return out
}

// binValue converts a decoded JSON value (with UseNumber) to a bin value:
// integers to int64, other numbers to float64, arrays to lists, objects
// to maps.
func binValue(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64() // the decoder only produces valid numbers
		return f
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = binValue(e)
		}
		return l
	case map[string]any:
		m := make(map[any]any, len(v))
		for k, e := range v {
			m[k] = binValue(e)
		}
		return m
	}
	return v // string, bool, nil
}

// jsonValue converts a bin value to something encoding/json writes: maps
// with non-string keys get their keys formatted.
func jsonValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = jsonValue(e)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonValue(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = jsonValue(e)
		}
		return l
	}
	return v
}

// writeRecordJSON writes v as the Node.js example does: compact, without
// a trailing newline.
func writeRecordJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
