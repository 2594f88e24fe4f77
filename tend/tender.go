package tend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shmkit/shmkit/layout"
	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend/info"
)

// errNodesFailed marks a cycle in which some node did not answer; the
// cycle still completed (see tender.cycle).
var errNodesFailed = errors.New("tend: nodes failed")

// stopError ends a tender: this process steps down for reason. Every
// tender method returns it (wrapped or not) instead of carrying on.
type stopError struct {
	reason StepDownReason
	err    error
}

func (e *stopError) Error() string {
	return "tend: stepping down (" + e.reason.String() + "): " + e.err.Error()
}
func (e *stopError) Unwrap() error { return e.err }

// isStop reports whether err ends the tender.
func isStop(err error) bool {
	var se *stopError
	return errors.As(err, &se)
}

// stopFor returns the *stopError a partmap or lease error calls for: the
// lease is another process's (StepDownLost), or the epoch is exhausted
// (StepDownExhausted); nil for any other error.
func stopFor(err error) error {
	switch {
	case err == nil:
		return nil
	case isStop(err):
		return err
	case fenced(err):
		return &stopError{reason: StepDownLost, err: err}
	case errors.Is(err, partmap.ErrExhausted):
		return &stopError{reason: StepDownExhausted, err: err}
	}
	return nil
}

// limiter rate-limits repeated warnings: a key logs at most once per
// period (the records suppressed meanwhile are counted in the next one),
// so a node that misbehaves every cycle costs one record per period, not
// one per cycle. It holds at most maxLimitKeys keys.
type limiter struct {
	period time.Duration
	keys   map[string]limited
}

type limited struct {
	at         time.Time
	suppressed int
}

const maxLimitKeys = 256

// log logs msg at level unless key logged within the period.
func (l *limiter) log(log *slog.Logger, level slog.Level, key, msg string, args ...any) {
	now := time.Now()
	st, ok := l.keys[key]
	if ok && now.Sub(st.at) < l.period {
		st.suppressed++
		l.keys[key] = st
		return
	}
	if !ok && len(l.keys) >= maxLimitKeys {
		clear(l.keys)
	}
	if st.suppressed > 0 {
		args = append(args, "suppressed", st.suppressed)
	}
	l.keys[key] = limited{at: now}
	log.Log(context.Background(), level, msg, args...)
}

// node is the owner's memory of one server node.
type node struct {
	name     string
	addr     string // host:port used for info requests
	tlsName  string // the name its certificate carries (Config.TLS)
	build    string
	peersGen int64 // -1: peers list not fetched yet
	partGen  int64 // -1: replicas not fetched yet
	fails    int
	seen     bool // answered this cycle
	stale    bool // partition-generation changed: fetch replicas
	down     bool // deactivated after FailLimit failures; still asked
	peers    []info.Peer
	racks    map[string]int // "rack-ids" (Config.RackAware), as published
}

// answer is the last "replicas" answer of one node.
type answer struct {
	nss []info.NamespaceReplicas
	seq uint64 // arrival order: a later answer wins a tie of regimes
}

// tender is the owner's state while it holds the lease. A new owner starts
// with a fresh one, so its first cycle re-reads everything. Its methods
// return a *stopError when the tender must stop (the lease is lost, the
// segment was removed, ...); the tender keeps no such state itself.
type tender struct {
	c   *Cluster
	v   *view
	w   *partmap.Writer
	log *slog.Logger
	lim limiter

	nodes map[string]*node
	// answers holds the last replicas answer of every node in nodes, down
	// ones included.
	answers map[string]answer
	seq     uint64
	dirty   bool // answers changed since the tables were last written
	handles map[string]partmap.NS
	gone    map[string]bool // deactivated nodes: slot removed once unreferenced
	// refusedNodes and refusedNS are the nodes and namespaces the segment
	// had no room for (logged once each).
	refusedNodes, refusedNS map[string]bool
	retry                   bool // a node slot was freed: offer it to refused peers

	// name is the cluster name nodes must answer: the configured one, or
	// the one the segment records, or "" until the first node answers
	// (acceptName records it).
	name string
	// foreign are the nodes refused for another cluster name (at most
	// maxLimitKeys), foreignNew those refused first since the last
	// RecordTend.
	foreign    map[string]bool
	foreignNew int

	beat      time.Time // when the heartbeat was last written
	sent      uint64
	quiet     bool // seeds unreachable already reported
	conflicts int  // rows resolved by the last writeTables, for RecordTend
}

func newTender(c *Cluster, v *view, w *partmap.Writer, beat time.Time) *tender {
	t := &tender{c: c, v: v, w: w, log: c.log, beat: beat,
		lim:   limiter{period: 10 * c.cfg.TendInterval, keys: map[string]limited{}},
		nodes: map[string]*node{}, answers: map[string]answer{}, handles: map[string]partmap.NS{},
		gone: map[string]bool{}, refusedNodes: map[string]bool{}, refusedNS: map[string]bool{},
		foreign: map[string]bool{}, name: c.cfg.ClusterName}
	if t.name == "" {
		t.name = w.ClusterName()
	}
	// Start from the nodes the segment knows (a previous owner's view);
	// their generations are unknown, so everything is re-read. Inactive
	// ones are down until they answer, and removed if they left.
	for _, n := range v.m.Nodes() {
		if len(n.Addresses) == 0 {
			t.gone[n.Name] = true
			continue
		}
		nd := &node{name: n.Name, addr: n.Addresses[0].String(), tlsName: n.TLSName, build: n.Build, peersGen: -1, partGen: -1}
		if !n.Active {
			nd.down, nd.fails = true, FailLimit
		}
		t.nodes[n.Name] = nd
	}
	t.sent = c.pool.RequestsSent()
	return t
}

// fenced reports whether err means this process is no longer the owner.
func fenced(err error) bool {
	return errors.Is(err, lease.ErrFenced) || errors.Is(err, lease.ErrLost) ||
		errors.Is(err, lease.ErrNotOwner) || errors.Is(err, partmap.ErrNotStamped)
}

// loop tends every TendInterval until ctx ends (it returns ctx's error)
// or a cycle stops the tender (a *stopError); with now set, the first
// cycle runs at once (a new owner re-reads everything without waiting an
// interval).
func (t *tender) loop(ctx context.Context, now bool) error {
	if now {
		if err := t.cycle(ctx); err != nil {
			return err
		}
	}
	tick := time.NewTicker(t.c.cfg.TendInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := t.cycle(ctx); err != nil {
			return err
		}
	}
}

// deadline is when the current cycle must have ended: TendInterval before
// the heartbeat expires, so that an owner that overruns hands the lease
// over (Release) rather than letting it expire under a waiting process.
func (t *tender) deadline() time.Time {
	cfg := &t.c.cfg
	return t.beat.Add(cfg.TakeoverThreshold - cfg.TendInterval)
}

// cycle runs one tend cycle, records it and renews the heartbeat. A cycle
// that completes renews it whether it succeeded or not, so an unreachable
// cluster does not make the lease flap. It returns nil to go on, ctx's
// error when ctx ended, or a *stopError: the lease is lost, the epoch
// exhausted, the segment removed (checked first, every cycle, in a shared
// view), or the cycle did not complete by its deadline (see deadline) in
// a shared view, so that another process takes over (run releases the
// lease).
func (t *tender) cycle(ctx context.Context) error {
	if t.c.removed(t.v) {
		return &stopError{reason: StepDownRemoved, err: fmt.Errorf("%w (%s)", errRemoved, t.c.loc)}
	}
	start := time.Now()
	deadline := t.deadline()
	cctx, cancel := context.WithDeadline(ctx, deadline)
	err := t.tend(cctx)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if isStop(err) {
		return err
	}
	if now := time.Now(); !now.Before(deadline) {
		if t.c.cfg.UseShm {
			return t.overran(now.Sub(start), err)
		}
		// A private view has no one to hand over to: tend on.
		t.log.Warn("tend: cycle overran the takeover threshold", "took", now.Sub(start).Round(time.Millisecond).String())
	}
	if err != nil {
		if errors.Is(err, errNodesFailed) {
			t.log.Debug("tend: cycle failed", "err", err)
		} else {
			t.lim.log(t.log, slog.LevelWarn, "cycle", "tend: cycle failed", "err", err)
		}
	}
	sent := t.c.pool.RequestsSent()
	rerr := t.w.RecordTend(partmap.TendReport{InfoRequests: int(sent - t.sent), Failed: err != nil,
		Duration: time.Since(start), Conflicts: t.conflicts, ForeignNodes: t.foreignNew})
	t.sent, t.conflicts, t.foreignNew = sent, 0, 0
	if se := stopFor(rerr); se != nil {
		return se
	}
	if rerr := t.v.l.Renew(); rerr != nil {
		return &stopError{reason: StepDownLost, err: rerr}
	}
	t.beat = time.Now()
	return nil
}

// overran steps down after a cycle that missed its deadline: whatever the
// cycle wrote is published (each entry is right on its own, and an open
// batch would stall snapshots until the next owner publishes); run
// releases the lease, waking the waiting processes at once.
func (t *tender) overran(took time.Duration, err error) error {
	detail := fmt.Sprintf("cycle took %v, deadline was %v after the last heartbeat (threshold %v)",
		took.Round(time.Millisecond), t.c.cfg.TakeoverThreshold-t.c.cfg.TendInterval, t.c.cfg.TakeoverThreshold)
	if err != nil {
		detail += ": " + err.Error()
	}
	t.log.Warn("tend: cycle overran, stepping down", "epoch", t.w.Epoch(), "detail", detail)
	if perr := t.w.Publish(); perr != nil && !fenced(perr) {
		t.log.Warn("tend: publish before stepping down", "err", perr)
	}
	return &stopError{reason: StepDownOverrun, err: errors.New(detail)}
}

// parallel runs f(i) for i in [0, n) concurrently and waits for all.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// poll is one node's answers in the first phase of a cycle.
type poll struct {
	err      error
	build    string
	partGen  int64
	partErr  error
	peers    *info.Peers // fetched because the peers generation changed
	peersErr error
	racks    map[string]int // Config.RackAware: the "rack-ids" answer
	racksErr error
}

// poll asks a node for its name and generations in one message and, if
// its peers generation changed, for its peers. It only reads n.
func (t *tender) poll(ctx context.Context, n *node) (p poll) {
	names := []string{info.CmdNode, info.CmdPeersGeneration, info.CmdPartitionGeneration}
	if n.build == "" {
		names = append(names, info.CmdBuild)
	}
	if t.name != "" {
		names = append(names, info.CmdClusterName)
	}
	if t.c.cfg.RackAware {
		names = append(names, info.CmdRackIDs)
	}
	r, err := t.c.pool.RequestTLS(ctx, n.addr, n.tlsName, names...)
	if err != nil {
		p.err = err
		return p
	}
	name, err := info.ParseNode(r[info.CmdNode])
	switch {
	case err != nil:
	case name != n.name:
		err = fmt.Errorf("tend: %s answers as node %s, expected %s", n.addr, name, n.name)
	case t.name != "" && r[info.CmdClusterName] != t.name:
		// A node that moved to another cluster fails until deactivated.
		err = fmt.Errorf("tend: node %s answers cluster-name %q, expected %q", n.name, r[info.CmdClusterName], t.name)
	}
	if err != nil {
		p.err = err
		return p
	}
	p.build = r[info.CmdBuild]
	if t.c.cfg.RackAware {
		p.racks, p.racksErr = info.ParseRackIDs(r[info.CmdRackIDs])
	}
	p.partGen, p.partErr = info.ParseGeneration(info.CmdPartitionGeneration, r[info.CmdPartitionGeneration])
	pg, err := info.ParseGeneration(info.CmdPeersGeneration, r[info.CmdPeersGeneration])
	switch {
	case err != nil:
		p.peersErr = err
	case pg != n.peersGen:
		cmd := t.c.peersCmd()
		pr, err := t.c.pool.RequestTLS(ctx, n.addr, n.tlsName, cmd)
		var peers info.Peers
		if err == nil {
			peers, err = info.ParsePeers(cmd, pr[cmd])
		}
		if err != nil {
			p.peersErr = err
		} else {
			peers.Generation = pg
			p.peers = &peers
		}
	}
	return p
}

// tend is one cycle: refresh nodes, peers and partition maps, publish. It
// returns an error wrapping errNodesFailed when it completed but some node
// failed.
func (t *tender) tend(ctx context.Context) error {
	// Poll every known node; nodes that the peers lists (or the seeds) add
	// are polled in a further round of the same cycle, so a joining
	// node's replicas are read in the cycle that finds it. The seeds are
	// asked when no node is known, or when none of the known ones answers.
	polled := map[string]bool{}
	failed, answered := 0, 0
	seeded := false
	addRefused := t.retry
	t.retry = false
	for {
		if !seeded && answered == 0 && (len(t.nodes) == 0 || len(polled) > 0) {
			seeded = true
			if err := t.seed(ctx); err != nil {
				return err
			}
		}
		var nodes []*node
		for _, n := range t.sortedNodes() {
			if !polled[n.name] {
				nodes = append(nodes, n)
				polled[n.name] = true
			}
		}
		if len(nodes) == 0 {
			break
		}
		polls := make([]poll, len(nodes))
		parallel(len(nodes), func(i int) { polls[i] = t.poll(ctx, nodes[i]) })
		if err := ctx.Err(); err != nil {
			// Cut off: nothing is concluded from this round of answers.
			return fmt.Errorf("tend: cycle: %w", err)
		}
		for i, n := range nodes {
			changed, err := t.applyPoll(ctx, n, &polls[i])
			if err != nil {
				return err
			}
			if changed {
				addRefused = true
			}
			if n.seen {
				answered++
			} else {
				failed++
			}
		}
		if err := t.updatePeers(ctx, addRefused); err != nil {
			return err
		}
		addRefused = false
	}
	if len(t.nodes) == 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("tend: cycle: %w", err)
		}
		return fmt.Errorf("%w: no node known and no seed answers", errNodesFailed)
	}
	f, err := t.refreshReplicas(ctx)
	if err != nil {
		return err
	}
	failed += f
	// A namespace that cannot be written is logged and retried next cycle;
	// it does not hold back the others, nor the publish.
	if err := t.writeTables(); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(t.gone)) {
		switch err := t.w.RemoveNode(name); {
		case err == nil:
			delete(t.gone, name)
			t.retry = t.retry || len(t.refusedNodes) > 0
			t.log.Info("tend: node slot freed", "node", name)
		case errors.Is(err, partmap.ErrNotFound):
			delete(t.gone, name)
		default:
			if se := stopFor(err); se != nil {
				return se
			}
		}
	}
	if err := t.w.Publish(); err != nil {
		if se := stopFor(err); se != nil {
			return se
		}
		return fmt.Errorf("tend: publish: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d failures among %d nodes", errNodesFailed, failed, len(polled))
	}
	return ctx.Err()
}

// applyPoll records one node's poll and reports whether its peers list
// changed.
func (t *tender) applyPoll(ctx context.Context, n *node, p *poll) (peersChanged bool, err error) {
	n.seen = false
	if p.err != nil {
		return false, t.fail(n, p.err)
	}
	n.fails, n.seen = 0, true
	racksChanged := false
	if p.racksErr != nil {
		t.lim.log(t.log, slog.LevelWarn, "racks "+n.name, "tend: bad rack-ids answer, the last one kept", "node", n.name, "err", p.racksErr)
	} else if t.c.cfg.RackAware && !maps.Equal(p.racks, n.racks) {
		n.racks, racksChanged = p.racks, true
	}
	if (p.build != "" && n.build == "") || (racksChanged && !n.down) {
		if p.build != "" && n.build == "" {
			n.build = p.build
		}
		if _, err := t.publishNode(ctx, n); err != nil {
			return false, err
		}
	} else if n.down {
		ok, err := t.publishNode(ctx, n)
		if err != nil {
			return false, err
		}
		if ok {
			t.log.Info("tend: node reactivated", "node", n.name, "addr", n.addr)
		}
	}
	n.down = false
	if p.partErr != nil {
		t.lim.log(t.log, slog.LevelWarn, "partgen "+n.name, "tend: bad partition-generation", "node", n.name, "err", p.partErr)
	} else if p.partGen != n.partGen {
		n.stale = true
	}
	switch {
	case p.peersErr != nil:
		t.lim.log(t.log, slog.LevelWarn, "peers "+n.name, "tend: peers", "node", n.name, "err", p.peersErr)
	case p.peers != nil:
		n.peers, n.peersGen = p.peers.Peers, p.peers.Generation
		return true, nil
	}
	return false, nil
}

func (t *tender) sortedNodes() []*node {
	ns := make([]*node, 0, len(t.nodes))
	for _, name := range slices.Sorted(maps.Keys(t.nodes)) {
		ns = append(ns, t.nodes[name])
	}
	return ns
}

// fail counts a failed tend of n. After FailLimit failures in a row the
// node is marked inactive in the shared table and its slot is kept: its
// partitions keep pointing at it (as the official clients keep routing to
// a node until the cluster reassigns its partitions), it is still asked
// every cycle and reactivated when it answers, and it is removed once it
// leaves the cluster (updatePeers). Failures past FailLimit are logged at
// the limiter's rate.
func (t *tender) fail(n *node, err error) error {
	n.fails++
	if n.fails <= FailLimit {
		t.log.Debug("tend: node failed", "node", n.name, "fails", n.fails, "err", err)
	} else {
		t.lim.log(t.log, slog.LevelDebug, "fail "+n.name, "tend: node failed", "node", n.name, "fails", n.fails, "err", err)
	}
	if n.fails != FailLimit {
		return nil
	}
	n.down = true
	t.c.pool.CloseAddr(n.addr)
	t.log.Info("tend: node deactivated", "node", n.name, "addr", n.addr, "reason", fmt.Sprintf("failed %d tends in a row: %v", n.fails, err))
	_, derr := t.deactivate(n.name)
	return derr
}

// removeNode forgets n, which left the cluster: its claims are dropped and
// it is marked inactive in the shared table; its slot is freed once no
// partition refers to it.
func (t *tender) removeNode(n *node, why string) error {
	delete(t.nodes, n.name)
	t.c.pool.CloseAddr(n.addr)
	delete(t.answers, n.name)
	t.dirty = true // its claims go, and it no longer holds entries in place
	t.log.Info("tend: node removed", "node", n.name, "addr", n.addr, "reason", why)
	ok, err := t.deactivate(n.name)
	if ok {
		t.gone[n.name] = true
	}
	return err
}

// deactivate marks node name inactive in the shared table (a node the
// table does not hold counts as done) and reports whether it did; a failed
// write is logged, and is a *stopError if the tender must stop.
func (t *tender) deactivate(name string) (bool, error) {
	err := t.w.DeactivateNode(name)
	if err == nil || errors.Is(err, partmap.ErrNotFound) {
		return true, nil
	}
	if se := stopFor(err); se != nil {
		return false, se
	}
	t.lim.log(t.log, slog.LevelWarn, "deactivate "+name, "tend: deactivate node", "node", name, "err", err)
	return false, nil
}

// seed learns the nodes behind the configured seeds, asked in parallel.
func (t *tender) seed(ctx context.Context) error {
	seeds := make([]seed, len(t.c.cfg.Seeds))
	for i, s := range t.c.cfg.Seeds {
		seeds[i], _ = parseSeed(s) // checked by Open
	}
	replies := make([]identity, len(seeds))
	parallel(len(seeds), func(i int) { replies[i] = t.identify(ctx, seeds[i].addr, seeds[i].tlsName) })
	found := false
	for i, sd := range seeds {
		s := sd.addr
		rp := replies[i]
		if rp.err != nil {
			level := slog.LevelWarn
			if t.quiet {
				level = slog.LevelDebug
			}
			t.log.Log(ctx, level, "tend: seed unreachable", "seed", s, "err", rp.err)
			continue
		}
		found = true
		if _, ok := t.nodes[rp.name]; ok {
			continue
		}
		if ok, err := t.acceptName(rp.name, s, rp.cluster); err != nil {
			return err
		} else if !ok {
			continue
		}
		n := &node{name: rp.name, addr: s, tlsName: t.tlsName(sd.tlsName), build: rp.build, peersGen: -1, partGen: -1}
		ok, err := t.publishNode(ctx, n)
		if err != nil {
			return err
		}
		if ok {
			t.nodes[n.name] = n
			delete(t.gone, n.name)
			t.log.Info("tend: node added", "node", n.name, "addr", s, "from", "seed")
		}
	}
	t.quiet = !found
	return nil
}

// identity is a node's answer to "who are you".
type identity struct {
	name, build, cluster string
	err                  error
}

// tlsName is what a node record keeps as the node's TLS name: name with
// TLS, nothing without (a seed's TLS name is meaningless in clear text).
func (t *tender) tlsName(name string) string {
	if t.c.cfg.TLS == nil {
		return ""
	}
	return name
}

// identify asks the node at addr (whose certificate carries tlsName, with
// TLS) for its name, build and cluster name.
func (t *tender) identify(ctx context.Context, addr, tlsName string) (id identity) {
	r, err := t.c.pool.RequestTLS(ctx, addr, tlsName, info.CmdNode, info.CmdBuild, info.CmdClusterName)
	if err == nil {
		id.name, err = info.ParseNode(r[info.CmdNode])
		id.build, id.cluster = r[info.CmdBuild], r[info.CmdClusterName]
	}
	id.err = err
	return id
}

// acceptName decides whether a node that answered cluster-name cluster may
// enter the map: it must answer t.name. With no name expected yet, the
// first name a node answers is recorded in the segment and expected from
// then on ("null", a server without cluster-name, records nothing). A
// refused node is logged (rate-limited, with both names) and counted once.
// The error is a *stopError.
func (t *tender) acceptName(node, addr, cluster string) (bool, error) {
	if cluster == "null" {
		cluster = ""
	}
	switch {
	case t.name == "" && cluster == "":
		return true, nil
	case t.name == "":
		if err := t.w.SetClusterName(cluster); err != nil {
			if se := stopFor(err); se != nil {
				return false, se
			}
			if errors.Is(err, layout.ErrMismatch) {
				// Recorded by another owner since ours started.
				return false, &stopError{reason: StepDownLost, err: err}
			}
			t.lim.log(t.log, slog.LevelWarn, "name", "tend: cannot record the cluster name", "cluster_name", cluster, "err", err)
			return false, nil
		}
		t.name = cluster
		t.log.Info("tend: recorded the cluster name its first node answered", "cluster_name", cluster, "node", node)
		return true, nil
	case cluster == t.name:
		return true, nil
	}
	if !t.foreign[node] && len(t.foreign) < maxLimitKeys {
		t.foreign[node] = true
		t.foreignNew++
	}
	t.lim.log(t.log, slog.LevelWarn, "foreign "+node, "tend: node refused: it belongs to another cluster",
		"node", node, "addr", addr, "cluster_name", cluster, "expected", t.name)
	return false, nil
}

// publishNode writes a node into the shared node table, active, and
// reports whether it did. A node the table has no room for is logged
// (once) and counted by partmap. The error is a *stopError, if the tender
// must stop.
func (t *tender) publishNode(ctx context.Context, n *node) (bool, error) {
	ap, err := resolve(ctx, n.addr)
	if err != nil {
		t.lim.log(t.log, slog.LevelWarn, "addr "+n.name, "tend: node address", "node", n.name, "addr", n.addr, "err", err)
		return false, nil
	}
	_, err = t.w.AddOrUpdateNode(partmap.NodeInfo{Name: n.name, Addresses: []netip.AddrPort{ap}, TLSName: n.tlsName, Build: n.build, Active: true, Racks: n.racks})
	switch {
	case err == nil:
		delete(t.refusedNodes, n.name)
		return true, nil
	case stopFor(err) != nil:
		return false, stopFor(err)
	case errors.Is(err, partmap.ErrNoRoom):
		if t.refusedNodes[n.name] {
			t.log.Debug("tend: node not stored", "node", n.name, "err", err)
		} else if len(t.refusedNodes) < maxLimitKeys {
			t.refusedNodes[n.name] = true
			t.log.Error("tend: node not stored: no room in the segment; its partitions are left without a node", "node", n.name, "err", err)
		}
	default:
		t.lim.log(t.log, slog.LevelError, "store "+n.name, "tend: node not stored", "node", n.name, "err", err)
	}
	return false, nil
}

// resolve turns a node address into an IP address and port, asking DNS
// (within ctx, the tend cycle) for a host name.
func resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: no address", host)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}

// updatePeers adds the peers new to the owner and removes the nodes that
// left the cluster: those that no answering node lists as a peer. A node
// that answers itself is removed only if another node answered too (a
// lone node lists no peers); one that does not answer is removed at once.
// Peers the segment had no room for are offered a slot again only when
// addRefused (a peers list changed, or a slot was freed); those no peers
// list names any more are forgotten (and no longer counted as left out).
func (t *tender) updatePeers(ctx context.Context, addRefused bool) error {
	listed := map[string]bool{}
	answered := 0
	type candidate struct {
		from, name, addr, tlsName string
		id                        identity
	}
	var cands []candidate
	for _, n := range t.sortedNodes() {
		if !n.seen || n.peersGen < 0 {
			continue
		}
		answered++
		for _, p := range n.peers {
			listed[p.Name] = true
			if _, ok := t.nodes[p.Name]; ok || len(p.Hosts) == 0 || (t.refusedNodes[p.Name] && !addRefused) {
				continue
			}
			if slices.ContainsFunc(cands, func(c candidate) bool { return c.name == p.Name }) {
				continue
			}
			cands = append(cands, candidate{from: n.name, name: p.Name, addr: p.Hosts[0].String(), tlsName: t.tlsName(p.TLSName)})
		}
	}
	// A new peer is asked who it is before it enters the map (as the
	// official clients validate a node): its name and cluster name.
	parallel(len(cands), func(i int) { cands[i].id = t.identify(ctx, cands[i].addr, cands[i].tlsName) })
	for _, cd := range cands {
		id := cd.id
		switch {
		case id.err != nil:
			t.lim.log(t.log, slog.LevelWarn, "peer "+cd.name, "tend: peer unreachable; not added yet", "node", cd.name, "addr", cd.addr, "err", id.err)
			continue
		case id.name != cd.name:
			t.lim.log(t.log, slog.LevelWarn, "peer "+cd.name, "tend: peer answers under another name; not added", "node", cd.name, "addr", cd.addr, "answers", id.name)
			continue
		}
		if ok, err := t.acceptName(cd.name, cd.addr, id.cluster); err != nil {
			return err
		} else if !ok {
			continue
		}
		nn := &node{name: cd.name, addr: cd.addr, tlsName: cd.tlsName, build: id.build, peersGen: -1, partGen: -1}
		ok, err := t.publishNode(ctx, nn)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		t.nodes[nn.name] = nn
		delete(t.gone, nn.name)
		t.log.Info("tend: node added", "node", nn.name, "addr", nn.addr, "from", cd.from)
	}
	if answered == 0 {
		return nil
	}
	for _, n := range t.sortedNodes() {
		var err error
		switch {
		case listed[n.name]:
		case !n.seen:
			err = t.removeNode(n, "left the cluster: in no peers list, not answering")
		case answered >= 2:
			err = t.removeNode(n, "left the cluster: in no peers list")
		}
		if err != nil {
			return err
		}
	}
	for name := range t.refusedNodes {
		if !listed[name] {
			delete(t.refusedNodes, name)
			t.gone[name] = true // RemoveNode forgets the refusal
		}
	}
	return nil
}

// refreshReplicas fetches, in parallel, the replicas of the nodes whose
// partition generation changed and keeps the answers for writeTables. It
// returns how many nodes failed.
func (t *tender) refreshReplicas(ctx context.Context) (int, error) {
	var stale []*node
	for _, n := range t.sortedNodes() {
		if n.seen && n.stale {
			stale = append(stale, n)
		}
	}
	type reply struct {
		gen int64
		nss []info.NamespaceReplicas
		err error // request failed
		bad error // answer did not parse
	}
	replies := make([]reply, len(stale))
	parallel(len(stale), func(i int) {
		r, err := t.c.pool.RequestTLS(ctx, stale[i].addr, stale[i].tlsName, info.CmdPartitionGeneration, info.CmdReplicas)
		if err != nil {
			replies[i].err = err
			return
		}
		replies[i].gen, replies[i].bad = info.ParseGeneration(info.CmdPartitionGeneration, r[info.CmdPartitionGeneration])
		if replies[i].bad == nil {
			replies[i].nss, replies[i].bad = info.ParseReplicas(r[info.CmdReplicas])
		}
	})
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("tend: cycle: %w", err)
	}
	failed := 0
	for i, n := range stale {
		rp := replies[i]
		switch {
		case rp.err != nil:
			failed++
			if err := t.fail(n, rp.err); err != nil {
				return failed, err
			}
		case rp.bad != nil:
			// Keep the node's last answer; retry next cycle.
			t.lim.log(t.log, slog.LevelWarn, "replicas "+n.name, "tend: bad replicas answer, its last answer kept", "node", n.name, "err", rp.bad)
		default:
			t.seq++
			t.answers[n.name] = answer{nss: rp.nss, seq: t.seq}
			n.partGen, n.stale, t.dirty = rp.gen, false, true
		}
	}
	return failed, nil
}

// writeTables recomputes every namespace's table from the kept answers,
// if they changed, with MergeClaims, and writes the entries that differ.
// Nodes the segment had no room for have no slot, so their partitions
// have no node rather than a wrong one. A namespace that cannot be
// written is logged and retried next cycle (the tables stay dirty); it
// holds back neither the other namespaces nor the publish. Only a
// *stopError is returned.
func (t *tender) writeTables() error {
	if !t.dirty {
		return nil
	}
	byNS := map[string][]Claim{}
	var order []string
	for _, name := range slices.Sorted(maps.Keys(t.answers)) {
		a := t.answers[name]
		for j := range a.nss {
			nr := &a.nss[j]
			if _, ok := byNS[nr.Namespace]; !ok {
				order = append(order, nr.Namespace)
			}
			byNS[nr.Namespace] = append(byNS[nr.Namespace], Claim{Node: name, Seq: a.seq, Regime: nr.Regime, Bitmaps: nr.Bitmaps})
		}
	}
	// Namespaces no answer mentions any more have no owners.
	for _, name := range slices.Sorted(maps.Keys(t.handles)) {
		if _, ok := byNS[name]; !ok {
			order = append(order, name)
		}
	}
	// While some node's replicas are out of date (a new owner's first
	// cycle, a failed request, a malformed answer), entries are replaced
	// but never emptied: an unclaimed replica keeps its published node,
	// as the official clients keep theirs.
	uncertain := false
	for name, n := range t.nodes {
		if _, ok := t.answers[name]; !ok || n.stale {
			uncertain = true
		}
	}
	clean := true
	for _, name := range order {
		claims := byNS[name]
		replicas, sc := 1, false
		for _, cl := range claims {
			replicas = max(replicas, min(len(cl.Bitmaps), 255))
			sc = sc || cl.Regime > 0
		}
		h, ok := t.handles[name]
		if len(claims) > 0 {
			// Registers the namespace, or updates its replica count and mode.
			var err error
			if h, err = t.w.EnsureNamespace(name, replicas, sc); err != nil {
				if se := stopFor(err); se != nil {
					return se
				}
				t.refuseNamespace(name, err)
				continue
			}
			t.handles[name] = h
		} else if !ok {
			continue
		}
		var kept *Owners
		if uncertain {
			kept = t.published(h)
		}
		mg := MergeClaims(claims, kept)
		if mg.Conflicts > 0 {
			t.conflicts += mg.Conflicts
			t.lim.log(t.log, slog.LevelWarn, "conflict "+name, "tend: one node at two replica ranks; the older claim dropped",
				"namespace", name, "partitions", mg.Conflicts)
		}
		var rows [partmap.Partitions]partmap.Replicas
		for pid := range rows {
			for r, owner := range mg.Owners[pid] {
				if owner == "" {
					continue
				}
				if s, ok := t.w.NodeSlot(owner); ok {
					rows[pid][r] = uint8(s)
				}
			}
		}
		if _, err := t.w.SetPartitions(h, &rows); err != nil {
			if se := stopFor(err); se != nil {
				return se
			}
			clean = false
			t.lim.log(t.log, slog.LevelError, "write "+name, "tend: namespace not written; retrying next cycle", "namespace", name, "err", err)
		}
	}
	t.dirty = !clean
	return nil
}

// published returns namespace h's published table by node name.
func (t *tender) published(h partmap.NS) *Owners {
	var o Owners
	for pid := range uint32(partmap.Partitions) {
		for r := range partmap.StoredReplicas {
			if cur, ok := t.v.m.Replica(h, pid, r); ok {
				o[pid][r] = cur.Name
			}
		}
	}
	return &o
}

// refuseNamespace logs (once per name) a namespace that could not be
// registered; partmap counts ErrNoRoom refusals in the segment.
func (t *tender) refuseNamespace(name string, err error) {
	if t.refusedNS[name] {
		t.log.Debug("tend: namespace not stored", "namespace", name, "err", err)
		return
	}
	t.refusedNS[name] = true
	t.log.Error("tend: namespace not stored; lookups in it fail with ErrNamespace", "namespace", name, "err", err)
}
