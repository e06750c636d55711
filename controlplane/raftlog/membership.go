package raftlog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/racklet/rack/controlplane/state"
	"github.com/racklet/rack/events"
)

// MemberInfo describes a member of the Raft configuration.
type MemberInfo struct {
	Name         string `json:"name"`
	RaftAddress  string `json:"raftAddress"`
	NATSURL      string `json:"natsURL,omitempty"`
	APIURL       string `json:"apiURL,omitempty"`
	Voter        bool   `json:"voter"`
	Leader       bool   `json:"leader"`
	State        string `json:"state,omitempty"`
	AppliedIndex uint64 `json:"appliedIndex"`
	CommitIndex  uint64 `json:"commitIndex"`
	// Reachable is false when the member did not answer in time.
	Reachable bool `json:"reachable"`
}

// leadershipLoop follows Raft's leadership notifications. On becoming
// leader it commits a barrier (so its commit index covers every earlier
// term, as read index needs), then runs the leader's duties until
// leadership is lost.
func (l *Log) leadershipLoop(notify <-chan bool) {
	defer l.wg.Done()
	var duties sync.WaitGroup
	stop := func() {}
	end := func() {
		stop()
		duties.Wait()
		l.setLeader(false)
	}
	defer end()
	for {
		select {
		case <-l.ctx.Done():
			return
		case leader := <-notify:
			end()
			if !leader {
				l.log.Info("lost leadership")
				continue
			}
			ctx, cancel := context.WithCancel(l.ctx)
			stop = cancel
			duties.Add(1)
			go func() {
				defer duties.Done()
				l.lead(ctx)
			}()
		}
	}
}

// lead runs while this member is the leader.
func (l *Log) lead(ctx context.Context) {
	// Some failures come back at once (a leadership transfer under way):
	// retry with a growing pause, and say so once per streak, not once
	// per attempt.
	pause := 10 * time.Millisecond
	for warned := false; ; {
		err := l.wait(ctx, l.raft.Barrier(5*time.Second))
		if err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrRaftShutdown) {
			return
		}
		if !warned {
			l.log.Warn("leader barrier failed; retrying", "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Second)
	}
	l.log.Info("leading", "term", l.raft.CurrentTerm(), "applied", l.raft.AppliedIndex())
	l.setLeader(true)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pub.Run(ctx) }()
	go func() { defer wg.Done(); l.membershipEvents(ctx) }()
	wg.Wait()
}

// membershipEvents keeps the log's members in line with the Raft
// configuration: member.joined / member.left events for every difference.
// Level-triggered: on leadership, on every join/remove and periodically.
func (l *Log) membershipEvents(ctx context.Context) {
	var tick <-chan time.Time
	if l.cfg.MemberSyncInterval > 0 {
		t := time.NewTicker(l.cfg.MemberSyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		if err := l.syncMemberEvents(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("recording membership", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-l.memberKick:
		}
	}
}

func (l *Log) kickMembers() {
	select {
	case l.memberKick <- struct{}{}:
	default:
	}
}

func (l *Log) syncMemberEvents(ctx context.Context) error {
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("reading configuration: %w", err)
	}
	var st *state.State
	// Copy under the lock: the FSM replaces members in this map.
	l.store.View(func(s *state.State) { st = &state.State{Members: maps.Clone(s.Members)} })
	inConfig := map[string]bool{}
	var evs []events.Event
	for _, srv := range f.Configuration().Servers {
		name := string(srv.ID)
		inConfig[name] = true
		voter := srv.Suffrage == raft.Voter
		if m, ok := st.Members[name]; ok && m.Address == string(srv.Address) && m.Voter == voter {
			continue
		}
		ev, err := events.New(l.source, events.MemberJoined, name, &events.MemberJoinedData{Address: string(srv.Address), Voter: voter})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	names := make([]string, 0, len(st.Members))
	for name := range st.Members {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if inConfig[name] {
			continue
		}
		ev, err := events.New(l.source, events.MemberLeft, name, &events.MemberLeftData{Reason: "removed from the raft configuration"})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return nil
	}
	ev := evs
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := l.applyLocal(ctx, ev)
	return err
}

// joinLoop asks the cluster, over NATS, to add this new member as a voter,
// until it is in or the log closes.
func (l *Log) joinLoop() {
	defer l.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
		err := l.request(ctx, joinSubject(l.cfg.Rack), joinRequest{Name: l.cfg.Name, Address: l.cfg.Name}, nil)
		cancel()
		if err == nil {
			l.log.Info("joined the cluster")
			if err := l.serveJoins(); err != nil {
				l.log.Error("serving joins", "err", err)
			}
			return
		}
		l.log.Info("waiting to join the cluster", "err", err, "retry", backoff)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (l *Log) addVoter(ctx context.Context, req joinRequest) error {
	if !events.ValidName(req.Name) || req.Address != req.Name {
		return &events.FieldError{Field: "name", Reason: fmt.Sprintf("%q is not a valid member name", req.Name)}
	}
	f := l.raft.AddVoter(raft.ServerID(req.Name), raft.ServerAddress(req.Address), 0, timeoutOf(ctx))
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return errNotLeader
		}
		return fmt.Errorf("adding voter %s: %w", req.Name, err)
	}
	l.log.Info("added voter", "name", req.Name)
	l.kickMembers()
	return nil
}

func (l *Log) removeServer(ctx context.Context, name string) error {
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("reading configuration: %w", err)
	}
	found := false
	for _, s := range f.Configuration().Servers {
		found = found || string(s.ID) == name
	}
	if !found {
		return fmt.Errorf("%w: %s is not in the raft configuration", state.ErrUnknownMember, name)
	}
	if err := l.raft.RemoveServer(raft.ServerID(name), 0, timeoutOf(ctx)).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return errNotLeader
		}
		return fmt.Errorf("removing %s: %w", name, err)
	}
	l.log.Info("removed member", "name", name)
	l.kickMembers()
	return nil
}

// RemoveMember removes a member from the Raft configuration (through the
// leader) and records member.left.
func (l *Log) RemoveMember(ctx context.Context, name string) error {
	return l.leaderDo(ctx, opRemove, removeRequest{Name: name}, nil, func(ctx context.Context) (any, error) {
		return nil, l.removeServer(ctx, name)
	}, func(any) {})
}

// Members lists the Raft configuration with what each member says of
// itself (asked over NATS, briefly; unreachable members are marked).
func (l *Log) Members(ctx context.Context) ([]MemberInfo, error) {
	f := l.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	_, leader := l.raft.LeaderWithID()
	servers := f.Configuration().Servers
	out := make([]MemberInfo, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		out[i] = MemberInfo{Name: string(s.ID), RaftAddress: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: s.ID == leader}
		wg.Add(1)
		go func(mi *MemberInfo) {
			defer wg.Done()
			var info infoResponse
			if mi.Name == l.cfg.Name {
				info = l.info()
			} else {
				ictx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				defer cancel()
				if err := l.request(ictx, memberSubject(l.cfg.Rack, mi.Name, opInfo), struct{}{}, &info); err != nil {
					return
				}
			}
			mi.Reachable = true
			mi.NATSURL, mi.APIURL, mi.State = info.NATSURL, info.APIURL, info.State
			mi.AppliedIndex, mi.CommitIndex = info.AppliedIndex, info.CommitIndex
		}(&out[i])
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Ready returns nil when this member can serve linearizable reads.
func (l *Log) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return l.Sync(ctx)
}

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 10 * time.Second
}
