package member

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/racklet/rack/controlplane/api"
	"github.com/racklet/rack/controlplane/etcdlog"
	"github.com/racklet/rack/controlplane/publish"
	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// The etcd store (Config.Store "etcd"): every member embeds one etcd
// member (etcdlog.StartServer) and opens the event log on it
// (etcdlog.Open, on its own member's client URL). The member that wins the
// rack's election (etcdlog's leadership, on an etcd lease) does what the
// Raft leader does: it publishes committed events to NATS (package
// publish, the same subjects and watermark) and keeps member.joined /
// member.left in line with etcd's member list; the reconcilers follow the
// same leadership (Member.LeaderCh). Each member records its NATS and API
// URLs under /racklet/<rack>/members/<name> for GET /v1/members.

// etcdCompactInterval is how often the leader compacts etcd's history
// (see etcdlog/compact.go).
const etcdCompactInterval = 5 * time.Minute

// etcdBackend is a member's etcd store.
type etcdBackend struct {
	cfg    Config
	log    *slog.Logger
	server *etcdlog.Server
	cli    *clientv3.Client
	el     *etcdlog.Log
	pub    *publish.Publisher
	source string
	kick   chan struct{} // asks the leader to reconcile member events
	nc     *nats.Conn
	sub    *nats.Subscription // of membersChangedSubject

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ api.Cluster = (*etcdBackend)(nil)

// etcdMemberInfo is what a member says of itself in etcd.
type etcdMemberInfo struct {
	NATSURL string `json:"natsURL"`
	APIURL  string `json:"apiURL"`
}

// startEtcd starts the member's etcd member and log; it returns once the
// etcd member serves (a quorum of its cluster is up) and the log has
// caught up.
func startEtcd(ctx context.Context, cfg Config, sec *security, nc *nats.Conn, natsURL, apiURL string, reg prometheus.Registerer, logger *slog.Logger) (*etcdBackend, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	electionMs, tickMs, leaseTTL := cfg.etcdTiming()
	b := &etcdBackend{cfg: cfg, log: logger, source: events.Source(cfg.Rack, cfg.Name), kick: make(chan struct{}, 1), nc: nc}
	var err error
	b.server, err = etcdlog.StartServer(ctx, etcdlog.ServerConfig{
		Name: cfg.Name, Dir: filepath.Join(cfg.DataDir, "etcd"),
		PeerListen: cfg.etcdScheme() + "://" + cfg.EtcdPeer, PeerAdvertise: cfg.etcdPeerURL(),
		ClientListen: cfg.etcdScheme() + "://" + cfg.EtcdClient, ClientAdvertise: cfg.etcdClientURL(),
		TLS:            sec.etcd(cfg),
		InitialCluster: strings.Join(cfg.EtcdInitialCluster, ","), Join: cfg.EtcdJoin,
		Token: "racklet-" + cfg.Rack, ElectionMs: electionMs, TickMs: tickMs, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	undo := []func(){b.server.Kill}
	fail := func(err error) (*etcdBackend, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	// One endpoint, this member's own: it forwards to etcd's leader, and
	// when it cannot reach a quorum this member is cut off, as a Raft
	// member would be.
	b.cli, err = clientv3.New(clientv3.Config{
		Endpoints: []string{b.server.ClientURL()}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), Context: context.WithoutCancel(ctx), TLS: sec.etcd(cfg).ClientConfig(),
	})
	if err != nil {
		return fail(fmt.Errorf("connecting to the etcd member: %w", err))
	}
	undo = append(undo, func() { _ = b.cli.Close() })
	b.el, err = etcdlog.Open(ctx, etcdlog.Config{
		Client: b.cli, Rack: cfg.Rack, Member: cfg.Name, Retention: cfg.Retention,
		Elect: true, ElectionTTL: leaseTTL, CompactInterval: etcdCompactInterval, Logger: logger,
	})
	if err != nil {
		return fail(fmt.Errorf("opening the event log on etcd: %w", err))
	}
	undo = append(undo, func() { _ = b.el.Kill() })
	info, err := json.Marshal(etcdMemberInfo{NATSURL: natsURL, APIURL: apiURL})
	if err != nil {
		return fail(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = b.cli.Put(pctx, b.infoPrefix()+cfg.Name, string(info))
	cancel()
	if err != nil {
		return fail(fmt.Errorf("recording this member's URLs in etcd: %w", err))
	}
	published := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "racklet_eventlog_events_published_total",
		Help: "Committed events this member published to NATS as leader.",
	})
	if reg != nil {
		if err := reg.Register(published); err != nil {
			return fail(fmt.Errorf("registering metrics: %w", err))
		}
	}
	b.pub, err = publish.Open(publish.Config{
		Conn: nc, Rack: cfg.Rack, Log: b.el, WatermarkPath: filepath.Join(cfg.DataDir, "published-sequence"),
		Published: published, Logger: logger,
	})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { _ = b.pub.Close() })
	// etcd tells no one of membership changes: members tell each other
	// over NATS, so that the leader records them at once.
	b.sub, err = nc.Subscribe(membersChangedSubject(cfg.Rack), func(*nats.Msg) { b.kickMembers() })
	if err != nil {
		return fail(fmt.Errorf("subscribing to membership changes: %w", err))
	}
	b.announceMembership()
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(2)
	go b.leadershipLoop(b.el.LeaderCh())
	go b.watchServer()
	return b, nil
}

func (b *etcdBackend) infoPrefix() string { return b.el.Root() + "members/" }

// leadershipLoop runs the leader's duties while this member holds the
// rack's leadership.
func (b *etcdBackend) leadershipLoop(ch <-chan bool) {
	defer b.wg.Done()
	var duties sync.WaitGroup
	stop := func() {}
	end := func() {
		stop()
		duties.Wait()
	}
	defer end()
	for {
		var leader, ok bool
		select {
		case <-b.ctx.Done():
			return
		case leader, ok = <-ch:
			if !ok {
				return
			}
		}
		end()
		if !leader {
			continue
		}
		b.log.Info("leading the rack: publishing events, recording membership")
		ctx, cancel := context.WithCancel(b.ctx)
		stop = cancel
		duties.Add(2)
		go func() { defer duties.Done(); b.pub.Run(ctx) }()
		go func() { defer duties.Done(); b.membershipEvents(ctx) }()
	}
}

// watchServer logs a fatal error of the etcd member (removed from the
// cluster, a failed disk): the member can no longer serve the log.
func (b *etcdBackend) watchServer() {
	defer b.wg.Done()
	select {
	case <-b.ctx.Done():
	case err, ok := <-b.server.Err():
		if ok && err != nil {
			b.log.Error("the embedded etcd member failed; this member cannot serve the log", "err", err)
		}
	}
}

// membershipEvents keeps the log's members in line with etcd's member
// list, level-triggered: on leadership, on every removal through this
// member and every MemberSyncInterval; and every second while etcd lists a
// member that has not started (it has no name yet) or the last try failed.
func (b *etcdBackend) membershipEvents(ctx context.Context) {
	interval := b.cfg.MemberSyncInterval
	if interval == 0 {
		interval = 5 * time.Second
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		pending, err := b.syncMemberEvents(ctx)
		if err != nil && ctx.Err() == nil {
			b.log.Warn("recording membership", "err", err)
		}
		var soon <-chan time.Time
		if pending || err != nil {
			soon = time.After(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-soon:
		case <-b.kick:
		}
	}
}

// membersChangedSubject is where members announce a change of etcd's
// member list (a start, a join, a removal).
func membersChangedSubject(rack string) string { return "racklet." + rack + ".etcd.members.changed" }

// announceMembership asks the leader, wherever it is, to reconcile the
// member events now.
func (b *etcdBackend) announceMembership() {
	if err := b.nc.Publish(membersChangedSubject(b.cfg.Rack), nil); err != nil {
		b.log.Warn("announcing a membership change", "err", err)
	}
}

func (b *etcdBackend) kickMembers() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// syncMemberEvents appends member.joined for every started etcd member
// the state lacks or records differently (peer URL, voter or learner),
// and member.left for every member of the state etcd no longer lists; a
// fenced append, so only the leader records them. pending: etcd lists a
// member that has not started yet.
func (b *etcdBackend) syncMemberEvents(ctx context.Context) (pending bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := b.cli.MemberList(ctx)
	if err != nil {
		return false, fmt.Errorf("listing etcd members: %w", err)
	}
	var recorded map[string]state.Member
	b.el.Store().View(func(s *state.State) {
		recorded = make(map[string]state.Member, len(s.Members))
		for name, m := range s.Members {
			recorded[name] = *m
		}
	})
	listed := map[string]bool{}
	var evs []events.Event
	for _, m := range list.Members {
		if m.Name == "" {
			pending = true // added, not started yet
			continue
		}
		if !events.ValidName(m.Name) {
			b.log.Warn("etcd member with a name that is not a valid member name; not recorded", "name", m.Name)
			continue
		}
		listed[m.Name] = true
		addr, voter := firstOr(m.PeerURLs, "-"), !m.IsLearner
		if r, ok := recorded[m.Name]; ok && r.Address == addr && r.Voter == voter {
			continue
		}
		ev, err := events.New(b.source, events.MemberJoined, m.Name, &events.MemberJoinedData{Address: addr, Voter: voter})
		if err != nil {
			return pending, err
		}
		evs = append(evs, ev)
	}
	for _, name := range slices.Sorted(maps.Keys(recorded)) {
		if listed[name] {
			continue
		}
		ev, err := events.New(b.source, events.MemberLeft, name, &events.MemberLeftData{Reason: "removed from the etcd cluster"})
		if err != nil {
			return pending, err
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return pending, nil
	}
	_, err = b.el.AppendFenced(ctx, evs...)
	return pending, err
}

// Members lists etcd's members with what each says of itself (its URLs in
// etcd, its indexes by a brief status call). RaftAddress is the etcd peer
// URL; Leader marks the member that leads the rack (publishes, runs the
// reconcilers), which need not be etcd's own Raft leader; AppliedIndex and
// CommitIndex are the etcd member's.
func (b *etcdBackend) Members(ctx context.Context) ([]api.MemberInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := b.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing etcd members: %w", err)
	}
	leader, err := b.el.Leader(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := b.cli.Get(ctx, b.infoPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("reading member URLs: %w", err)
	}
	infos := map[string]etcdMemberInfo{}
	for _, kv := range resp.Kvs {
		var info etcdMemberInfo
		if json.Unmarshal(kv.Value, &info) == nil {
			infos[strings.TrimPrefix(string(kv.Key), b.infoPrefix())] = info
		}
	}
	out := make([]api.MemberInfo, len(list.Members))
	var wg sync.WaitGroup
	for i, m := range list.Members {
		name := m.Name
		if name == "" {
			name = strconv.FormatUint(m.ID, 16) // added, not started yet
		}
		info := infos[name]
		out[i] = api.MemberInfo{
			Name: name, RaftAddress: firstOr(m.PeerURLs, ""), NATSURL: info.NATSURL, APIURL: info.APIURL,
			Voter: !m.IsLearner, Leader: leader != "" && name == leader,
		}
		if len(m.ClientURLs) == 0 {
			continue
		}
		wg.Add(1)
		go func(mi *api.MemberInfo, endpoint string) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			st, err := b.cli.Status(sctx, endpoint)
			if err != nil {
				return // unreachable: no indexes
			}
			mi.AppliedIndex, mi.CommitIndex = st.RaftAppliedIndex, st.RaftIndex
		}(&out[i], m.ClientURLs[0])
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RemoveMember removes a member (by name, or by hex id if it never
// started) from the etcd cluster; the leader records member.left.
func (b *etcdBackend) RemoveMember(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := b.cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("listing etcd members: %w", err)
	}
	for _, m := range list.Members {
		if m.Name != name && (m.Name != "" || strconv.FormatUint(m.ID, 16) != name) {
			continue
		}
		if _, err := b.cli.MemberRemove(ctx, m.ID); err != nil {
			return fmt.Errorf("removing %s from the etcd cluster: %w", name, err)
		}
		b.log.Info("removed member from the etcd cluster", "name", name)
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if _, err := b.cli.Delete(dctx, b.infoPrefix()+name); err != nil {
			b.log.Warn("deleting the removed member's URLs", "name", name, "err", err)
		}
		dcancel()
		b.kickMembers()
		b.announceMembership()
		return nil
	}
	return fmt.Errorf("%w: %s is not a member of the etcd cluster", state.ErrUnknownMember, name)
}

// Ready returns nil when this member can serve linearizable reads.
func (b *etcdBackend) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return b.el.Sync(ctx)
}

// close stops the leader's duties, resigns the leadership (the next
// member takes over at once) and stops the etcd member gracefully.
func (b *etcdBackend) close() error {
	return b.stop(true)
}

// kill stops everything abruptly: the leadership's lease expires by
// itself, the etcd member stops without handing its leadership over.
func (b *etcdBackend) kill() { _ = b.stop(false) }

func (b *etcdBackend) stop(graceful bool) error {
	var errs []error
	_ = b.sub.Unsubscribe()
	b.cancel()
	if graceful {
		errs = append(errs, b.el.Close())
	} else {
		errs = append(errs, b.el.Kill())
	}
	b.wg.Wait()
	errs = append(errs, b.pub.Close())
	if err := b.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("closing the etcd client: %w", err))
	}
	if graceful {
		b.server.Close()
	} else {
		b.server.Kill()
	}
	return errors.Join(errs...)
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}
