package tend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/shmkit/shmkit/lease"
	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/tend/info"
)

// node is the owner's memory of one server node.
type node struct {
	name     string
	addr     string // host:port used for info requests
	build    string
	peersGen int64
	partGen  int64
	fails    int
	seen     bool // answered this cycle
	stale    bool // partition-generation changed: fetch replicas
	peers    []info.Peer
	gotPeers bool // peers list fetched this cycle
}

// nsTable is the owner's merged view of one namespace.
type nsTable struct {
	ns       partmap.NS
	replicas int
	sc       bool
	owners   [partmap.Partitions][partmap.StoredReplicas]string
	regime   [partmap.Partitions]uint32
}

// tender is the owner's state while it holds the lease. A new owner starts
// with a fresh one, so its first cycle re-reads everything.
type tender struct {
	c     *Cluster
	w     *partmap.Writer
	log   *slog.Logger
	nodes map[string]*node
	nss   map[string]*nsTable
	gone  map[string]bool // deactivated nodes to remove once unreferenced
	lost  bool
	sent  uint64
}

func newTender(c *Cluster, w *partmap.Writer) *tender {
	t := &tender{c: c, w: w, log: c.log, nodes: map[string]*node{}, nss: map[string]*nsTable{}, gone: map[string]bool{}}
	// Start from the nodes the segment knows (a previous owner's view);
	// their generations are unknown, so everything is re-read.
	for _, n := range c.m.Nodes() {
		if !n.Active || len(n.Addresses) == 0 {
			continue
		}
		t.nodes[n.Name] = &node{name: n.Name, addr: n.Addresses[0].String(), build: n.Build, peersGen: -1, partGen: -1}
	}
	t.sent = c.pool.RequestsSent()
	return t
}

// fenced reports whether err means this process is no longer the owner.
func fenced(err error) bool {
	return errors.Is(err, lease.ErrFenced) || errors.Is(err, lease.ErrLost) ||
		errors.Is(err, lease.ErrNotOwner) || errors.Is(err, partmap.ErrNotStamped)
}

// loop tends every TendInterval until ctx ends or the lease is lost.
func (t *tender) loop(ctx context.Context) {
	tick := time.NewTicker(t.c.cfg.TendInterval)
	defer tick.Stop()
	for !t.lost {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.cycle(ctx)
	}
}

// cycle runs one tend cycle bounded by the takeover threshold, records it
// and renews the heartbeat. It sets t.lost when the lease is gone.
func (t *tender) cycle(ctx context.Context) {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, t.c.cfg.TakeoverThreshold)
	err := t.tend(cctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		if fenced(err) {
			t.drop(err)
			return
		}
		t.log.Warn("tend: cycle failed", "err", err)
	}
	sent := t.c.pool.RequestsSent()
	rerr := t.w.RecordTend(partmap.TendReport{InfoRequests: int(sent - t.sent), Failed: err != nil, Duration: time.Since(start)})
	t.sent = sent
	if rerr != nil && fenced(rerr) {
		t.drop(rerr)
		return
	}
	if rerr := t.c.l.Renew(); rerr != nil {
		t.drop(rerr)
	}
}

func (t *tender) drop(err error) {
	if !t.lost {
		t.log.Warn("tend: lost the lease", "epoch", t.w.Epoch(), "err", err)
	}
	t.lost = true
}

// tend is one cycle: refresh nodes, peers and partition maps, publish.
func (t *tender) tend(ctx context.Context) error {
	if len(t.nodes) == 0 {
		t.seed(ctx)
	}
	peersChanged := false
	for _, n := range t.sortedNodes() {
		n.seen, n.gotPeers = false, false
		names := []string{info.CmdNode, info.CmdPeersGeneration, info.CmdPartitionGeneration}
		if n.build == "" {
			names = append(names, info.CmdBuild)
		}
		r, err := t.c.pool.Request(ctx, n.addr, names...)
		if err == nil {
			err = t.checkNode(n, r)
		}
		if err != nil {
			t.fail(n, err)
			continue
		}
		n.fails, n.seen = 0, true
		if g, err := info.ParseGeneration(info.CmdPartitionGeneration, r[info.CmdPartitionGeneration]); err != nil {
			t.log.Warn("tend: bad partition-generation", "node", n.name, "err", err)
		} else {
			n.stale = g != n.partGen
		}
		pg, err := info.ParseGeneration(info.CmdPeersGeneration, r[info.CmdPeersGeneration])
		if err != nil {
			t.log.Warn("tend: bad peers-generation", "node", n.name, "err", err)
			continue
		}
		if pg != n.peersGen {
			pr, err := t.c.pool.Request(ctx, n.addr, info.CmdPeersClearStd)
			var p info.Peers
			if err == nil {
				p, err = info.ParsePeers(info.CmdPeersClearStd, pr[info.CmdPeersClearStd])
			}
			if err != nil {
				t.log.Warn("tend: peers", "node", n.name, "err", err)
			} else {
				n.peers, n.gotPeers, n.peersGen, peersChanged = p.Peers, true, pg, true
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("tend: cycle: %w", ctx.Err())
		}
	}
	if peersChanged {
		if err := t.updatePeers(); err != nil {
			return err
		}
	}
	if err := t.refreshReplicas(ctx); err != nil {
		return err
	}
	for name := range t.gone {
		switch err := t.w.RemoveNode(name); {
		case err == nil || errors.Is(err, partmap.ErrNotFound):
			delete(t.gone, name)
		case fenced(err):
			return err
		}
	}
	if err := t.w.Publish(); err != nil {
		return fmt.Errorf("tend: publish: %w", err)
	}
	return ctx.Err()
}

func (t *tender) sortedNodes() []*node {
	ns := make([]*node, 0, len(t.nodes))
	for _, n := range t.nodes {
		ns = append(ns, n)
	}
	slices.SortFunc(ns, func(a, b *node) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	return ns
}

// checkNode verifies the node's name and notes its build.
func (t *tender) checkNode(n *node, r map[string]string) error {
	name, err := info.ParseNode(r[info.CmdNode])
	if err != nil {
		return err
	}
	if name != n.name {
		return fmt.Errorf("tend: %s answers as node %s, expected %s", n.addr, name, n.name)
	}
	if b, ok := r[info.CmdBuild]; ok && n.build == "" {
		n.build = b
		if err := t.publishNode(n, true); err != nil {
			return err
		}
	}
	return nil
}

func (t *tender) fail(n *node, err error) {
	n.fails++
	t.log.Debug("tend: node failed", "node", n.name, "fails", n.fails, "err", err)
	if n.fails >= FailLimit {
		t.removeNode(n, fmt.Sprintf("failed %d tends in a row: %v", n.fails, err))
	}
}

func (t *tender) removeNode(n *node, why string) {
	delete(t.nodes, n.name)
	t.c.pool.CloseAddr(n.addr)
	t.log.Info("tend: node removed", "node", n.name, "addr", n.addr, "reason", why)
	if err := t.w.DeactivateNode(n.name); err != nil && !errors.Is(err, partmap.ErrNotFound) {
		t.log.Warn("tend: deactivate node", "node", n.name, "err", err)
		if fenced(err) {
			t.drop(err)
		}
		return
	}
	t.gone[n.name] = true
}

// seed learns the nodes behind the configured seeds.
func (t *tender) seed(ctx context.Context) {
	for _, s := range t.c.cfg.Seeds {
		r, err := t.c.pool.Request(ctx, s, info.CmdNode, info.CmdBuild)
		if err != nil {
			t.log.Warn("tend: seed unreachable", "seed", s, "err", err)
			continue
		}
		name, err := info.ParseNode(r[info.CmdNode])
		if err != nil {
			t.log.Warn("tend: seed", "seed", s, "err", err)
			continue
		}
		if _, ok := t.nodes[name]; ok {
			continue
		}
		n := &node{name: name, addr: s, build: r[info.CmdBuild], peersGen: -1, partGen: -1}
		if err := t.publishNode(n, true); err == nil {
			t.nodes[name] = n
			t.log.Info("tend: node added", "node", name, "addr", s, "from", "seed")
		}
	}
}

// publishNode writes a node into the shared node table.
func (t *tender) publishNode(n *node, active bool) error {
	ap, err := resolve(n.addr)
	if err != nil {
		t.log.Warn("tend: node address", "node", n.name, "addr", n.addr, "err", err)
		return err
	}
	if _, err := t.w.AddOrUpdateNode(partmap.NodeInfo{Name: n.name, Addresses: []netip.AddrPort{ap}, Build: n.build, Active: active}); err != nil {
		// ErrNoRoom is counted by partmap; the node is left out.
		t.log.Error("tend: node not stored", "node", n.name, "err", err)
		if fenced(err) {
			t.drop(err)
		}
		return err
	}
	return nil
}

func resolve(hostport string) (netip.AddrPort, error) {
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
	ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %v", host, err)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), uint16(p)), nil
}

// updatePeers adds the peers new to the owner and removes the nodes that
// vanished from every peers list.
func (t *tender) updatePeers() error {
	listed := map[string]bool{}
	answered := 0
	for _, n := range t.sortedNodes() {
		if !n.seen {
			continue
		}
		answered++
		for _, p := range n.peers {
			listed[p.Name] = true
			if _, ok := t.nodes[p.Name]; ok || len(p.Hosts) == 0 {
				continue
			}
			nn := &node{name: p.Name, addr: p.Hosts[0].String(), peersGen: -1, partGen: -1}
			if err := t.publishNode(nn, true); err != nil {
				if fenced(err) {
					return err
				}
				continue
			}
			t.nodes[nn.name] = nn
			delete(t.gone, nn.name)
			t.log.Info("tend: node added", "node", nn.name, "addr", nn.addr, "from", n.name)
		}
	}
	if answered < 2 {
		return nil // a lone node lists no peers: nothing vanished
	}
	for _, n := range t.sortedNodes() {
		if !listed[n.name] && n.seen {
			t.removeNode(n, "left the cluster (in no peers list)")
		}
	}
	return nil
}

type answer struct {
	node   string
	nss    []info.NamespaceReplicas
	gen    int64
	target *node
}

// refreshReplicas fetches the replicas of the nodes whose partition
// generation changed, merges them by the regime rule and writes the
// changed entries.
func (t *tender) refreshReplicas(ctx context.Context) error {
	var answers []answer
	for _, n := range t.sortedNodes() {
		if !n.seen || !n.stale {
			continue
		}
		r, err := t.c.pool.Request(ctx, n.addr, info.CmdPartitionGeneration, info.CmdReplicas)
		if err != nil {
			t.fail(n, err)
			continue
		}
		gen, err := info.ParseGeneration(info.CmdPartitionGeneration, r[info.CmdPartitionGeneration])
		if err != nil {
			t.log.Warn("tend: bad partition-generation", "node", n.name, "err", err)
			continue
		}
		nss, err := info.ParseReplicas(r[info.CmdReplicas])
		if err != nil {
			// Keep the published map; retry next cycle.
			t.log.Warn("tend: bad replicas answer, map kept", "node", n.name, "err", err)
			continue
		}
		answers = append(answers, answer{node: n.name, nss: nss, gen: gen, target: n})
	}
	if len(answers) == 0 {
		return nil
	}
	touched := map[string]*nsTable{}
	// Apply in ascending regime order per namespace (stable: node order
	// among equals), as tendtest.MergeReplicas does.
	type claim struct {
		node string
		nr   *info.NamespaceReplicas
	}
	byNS := map[string][]claim{}
	var nsNames []string
	for i := range answers {
		for j := range answers[i].nss {
			nr := &answers[i].nss[j]
			if _, ok := byNS[nr.Namespace]; !ok {
				nsNames = append(nsNames, nr.Namespace)
			}
			byNS[nr.Namespace] = append(byNS[nr.Namespace], claim{answers[i].node, nr})
		}
	}
	for _, name := range nsNames {
		claims := byNS[name]
		slices.SortStableFunc(claims, func(a, b claim) int {
			switch {
			case a.nr.Regime < b.nr.Regime:
				return -1
			case a.nr.Regime > b.nr.Regime:
				return 1
			}
			return 0
		})
		tab, err := t.table(name, claims[0].nr)
		if err != nil {
			if fenced(err) {
				return err
			}
			continue
		}
		touched[name] = tab
		for _, cl := range claims {
			if cl.nr.Regime > 0 {
				tab.sc = true
			}
			if cl.nr.ReplicaCount > tab.replicas {
				tab.replicas = cl.nr.ReplicaCount
			}
			for r := 0; r < min(len(cl.nr.Bitmaps), partmap.StoredReplicas); r++ {
				bm := &cl.nr.Bitmaps[r]
				for pid := range uint32(partmap.Partitions) {
					if !bm.Has(pid) {
						continue
					}
					if cl.nr.Regime >= tab.regime[pid] {
						tab.owners[pid][r] = cl.node
						tab.regime[pid] = cl.nr.Regime
					}
				}
			}
		}
	}
	for _, name := range nsNames {
		tab, ok := touched[name]
		if !ok {
			continue
		}
		if _, err := t.w.EnsureNamespace(name, tab.replicas, tab.sc); err != nil && fenced(err) {
			return err
		}
		var rows [partmap.Partitions]partmap.Replicas
		for pid := range rows {
			for r, owner := range tab.owners[pid] {
				if owner == "" {
					continue
				}
				if s, ok := t.w.NodeSlot(owner); ok {
					rows[pid][r] = uint8(s)
				}
			}
		}
		if _, err := t.w.SetPartitions(tab.ns, &rows); err != nil {
			return fmt.Errorf("tend: write %s: %w", name, err)
		}
	}
	for _, a := range answers {
		a.target.partGen, a.target.stale = a.gen, false
	}
	return nil
}

// table returns the owner's table of namespace name, registering it.
func (t *tender) table(name string, nr *info.NamespaceReplicas) (*nsTable, error) {
	if tab, ok := t.nss[name]; ok {
		return tab, nil
	}
	ns, err := t.w.EnsureNamespace(name, max(nr.ReplicaCount, 1), nr.Regime > 0)
	if err != nil {
		// ErrNoRoom is counted by partmap; the namespace is left out.
		t.log.Error("tend: namespace not stored", "namespace", name, "err", err)
		return nil, err
	}
	tab := &nsTable{ns: ns, replicas: max(nr.ReplicaCount, 1), sc: nr.Regime > 0}
	t.nss[name] = tab
	return tab, nil
}
