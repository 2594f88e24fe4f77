package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/failpoint"
	"github.com/shmkit/shmkit/index"
	"github.com/shmkit/shmkit/partmap"
)

// maxBody bounds a request body (a record's bins).
const maxBody = 1 << 20

// server is the HTTP front of the namespaces.
type server struct {
	ns  map[string]*namespace
	log *slog.Logger
}

// serve opens every namespace, serves HTTP until ctx is done, then shuts
// down cleanly.
func serve(ctx context.Context, o *options, fps *failpoint.Set, log *slog.Logger, stdout io.Writer) (err error) {
	start := time.Now()
	if o.cpuProfile != "" {
		stopProfile, err := startProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	s := &server{ns: map[string]*namespace{}, log: log}
	var opened []*namespace
	defer func() {
		if err != nil {
			for _, n := range opened {
				n.closeUnclean()
			}
		}
	}()
	for i, name := range o.namespaces {
		n, info, err := openNamespace(ctx, o, i, fps, log)
		if err != nil {
			return err
		}
		opened = append(opened, n)
		s.ns[name] = n
		args := []any{"ns", name, "mode", info.Mode.String(), "records", info.Records, "duration", info.Duration}
		if info.Mode == index.Cold {
			args = append(args, "reason", info.Reason.String(), "rebuild", info.Rebuild)
		}
		log.Info("namespace ready", args...)
	}
	fps.Hit(FailOpened)
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (another server on that port? choose another -addr)", o.addr, err)
	}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "startup", time.Since(start))
	fmt.Fprintf(stdout, "kvstore: listening on %s\n", ln.Addr())
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}

	dctx, stopDefrag := context.WithCancel(context.Background())
	var defrag sync.WaitGroup
	if o.defragEvery > 0 {
		for _, n := range opened {
			defrag.Add(1)
			go func() {
				defer defrag.Done()
				n.st.RunDefrag(dctx, n, o.defragEvery)
			}()
		}
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		stopDefrag()
		defrag.Wait()
		return fmt.Errorf("http server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	stopDefrag()
	defrag.Wait()
	var errs []error
	for _, n := range opened {
		if err := n.closeClean(); err != nil {
			errs = append(errs, err)
		}
	}
	opened = nil
	return errors.Join(errs...)
}

// routes is the HTTP API.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{ns}/{set}/{key...}", s.handleGet)
	mux.HandleFunc("PUT /{ns}/{set}/{key...}", s.handlePut)
	mux.HandleFunc("POST /{ns}/{set}/{key...}", s.handlePut)
	mux.HandleFunc("DELETE /{ns}/{set}/{key...}", s.handleDelete)
	mux.HandleFunc("POST /_defrag", s.handleDefrag)
	return mux
}

// handleDefrag runs one defragmentation pass on every namespace and
// answers what each did.
func (s *server) handleDefrag(w http.ResponseWriter, r *http.Request) {
	out := map[string]storage.DefragStats{}
	for name, n := range s.ns {
		st, err := n.st.Defrag(r.Context(), n)
		if err != nil {
			s.fail(w, fmt.Errorf("namespace %s: defrag: %w", name, err))
			return
		}
		out[name] = st
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// target resolves the request's namespace, set and key.
func (s *server) target(w http.ResponseWriter, r *http.Request) (*namespace, string, string, bool) {
	ns, set, key := r.PathValue("ns"), r.PathValue("set"), r.PathValue("key")
	n := s.ns[ns]
	if n == nil {
		http.Error(w, fmt.Sprintf("namespace %q is not served here (start kvstore with -ns %s)", ns, ns), http.StatusNotFound)
		return nil, "", "", false
	}
	if key == "" || len(set) > storage.MaxSet || len(key) > storage.MaxKey {
		http.Error(w, fmt.Sprintf("key must be 1 to %d bytes and set at most %d", storage.MaxKey, storage.MaxSet), http.StatusBadRequest)
		return nil, "", "", false
	}
	return n, set, key, true
}

func (s *server) handleGet(w http.ResponseWriter, r *http.Request) {
	n, set, key, ok := s.target(w, r)
	if !ok {
		return
	}
	res, err := n.get(set, key)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !res.Found {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Generation", strconv.Itoa(int(res.Generation)))
	if n.dii {
		fmt.Fprintf(w, `{"value":%d}`, res.Value)
		return
	}
	w.Write(res.Bins)
}

func (s *server) handlePut(w http.ResponseWriter, r *http.Request) {
	n, set, key, ok := s.target(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading the body: %v (at most %d bytes)", err, maxBody), http.StatusBadRequest)
		return
	}
	var bins []byte
	var value int64
	if n.dii {
		value, err = singleInteger(body)
	} else {
		bins, err = binsObject(body)
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("namespace %s: %v", n.name, err), http.StatusBadRequest)
		return
	}
	res, err := n.put(set, key, bins, value)
	if err != nil {
		s.fail(w, err)
		return
	}
	d := partmap.StringKeyDigest(set, key)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		NS         string `json:"ns"`
		Set        string `json:"set"`
		Key        string `json:"key"`
		Digest     string `json:"digest"`
		Generation uint16 `json:"generation"`
	}{n.name, set, key, hex.EncodeToString(d[:]), res.Generation})
}

func (s *server) handleDelete(w http.ResponseWriter, r *http.Request) {
	n, set, key, ok := s.target(w, r)
	if !ok {
		return
	}
	found, err := n.del(set, key)
	if err != nil {
		s.fail(w, err)
		return
	}
	if !found {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"deleted":true}`+"\n")
}

// fail answers a server-side error.
func (s *server) fail(w http.ResponseWriter, err error) {
	s.log.Error("request failed", "err", err)
	code := http.StatusInternalServerError
	if errors.Is(err, index.ErrLeaseLost) || errors.Is(err, storage.ErrClosed) || errors.Is(err, index.ErrClosed) {
		code = http.StatusServiceUnavailable
	}
	http.Error(w, err.Error(), code)
}

// binsObject checks that body is a JSON object and returns it compacted.
func binsObject(body []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w, e.g. {\"x\": 1234, \"y\": \"abcd\"}: %v", ErrBadRecord, err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return b.Bytes(), nil
}

// singleInteger parses a data-in-index record: a JSON object with exactly
// one bin whose value is an integer that fits in int64.
func singleInteger(body []byte) (int64, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || len(m) != 1 {
		return 0, fmt.Errorf("%w, e.g. {\"value\": 42}; got %.80q", ErrNotInteger, body)
	}
	for name, raw := range m {
		v, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: bin %q is %.40s, not an integer in int64 range (e.g. {\"value\": 42})", ErrNotInteger, name, raw)
		}
		return v, nil
	}
	return 0, nil
}

// startProfile starts a CPU profile into path.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
