package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/auth"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/wire"
)

func agentInfo(a store.Agent) api.AgentInfo {
	ai := api.AgentInfo{
		ID: a.ID, Hostname: a.Hostname, OS: a.OS, Arch: a.Arch, Version: a.Version, DefsVer: a.DefsVer,
		Groups: a.Groups, LastSeq: a.LastSeq, EnrolledAt: a.EnrolledAt, LastSeen: a.LastSeen,
		LastCheckIn: a.LastCheckIn, Counters: a.Counters, Revoked: a.Revoked,
	}
	if o := a.OnAccess; o != nil {
		ai.OnAccess = &api.OnAccessState{Enabled: o.Enabled, Running: o.Running, Mode: o.Mode, Paths: o.Paths, Error: o.Error}
	}
	if u := a.Update; u != nil {
		ai.Update = &api.UpdateState{From: u.From, To: u.To, At: u.At, Bytes: u.Bytes, FullBytes: u.FullBytes, Deltas: u.Deltas}
	}
	return ai
}

// changeAgent applies a store change (RemoveAgent, RevokeAgent) to the
// agent of the request's {id} path, answering the request itself when it
// fails: 400 for a malformed id, 404 for an unknown one, 503 for the store.
func (s *Server) changeAgent(w http.ResponseWriter, r *http.Request, change func(context.Context, string, time.Time) error) (string, bool) {
	id := r.PathValue("id")
	if !wire.ValidName(id) {
		writeError(w, http.StatusBadRequest, "not an agent id")
		return "", false
	}
	err := change(r.Context(), id, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no agent %s", id)
		return "", false
	} else if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return "", false
	}
	return id, true
}

// handleRemoveAgent removes an agent (204): its credential stops working
// at once, and it leaves the agent list and the pending results.
func (s *Server) handleRemoveAgent(w http.ResponseWriter, r *http.Request) {
	id, ok := s.changeAgent(w, r, s.store.RemoveAgent)
	if !ok {
		return
	}
	// After the store changed, so that an entry read before cannot win.
	s.agents.Store(id, &agentEntry{removed: true})
	s.relays.end(id, errAgentRevoked)
	s.log.Info("agent removed", "agent", id)
	p, addr := principal(r)
	s.auth.Audit(r.Context(), auth.Event{Actor: p.User, Addr: addr, Action: auth.EventAgentRemove, Target: id, OK: true})
	w.WriteHeader(http.StatusNoContent)
}

// handleRevokeAgent revokes an agent and answers with it (200): its
// credential is refused with 403 (reason "revoked") from now on, and it is
// no longer counted as pending.
func (s *Server) handleRevokeAgent(w http.ResponseWriter, r *http.Request) {
	id, ok := s.changeAgent(w, r, s.store.RevokeAgent)
	if !ok {
		return
	}
	a, err := s.store.Agent(r.Context(), id)
	if err != nil {
		// Revoked in the store; refuse it here too whatever happens.
		s.agents.Store(id, &agentEntry{removed: true})
		s.relays.end(id, errAgentRevoked)
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	s.agents.Store(id, &agentEntry{tokenHash: a.TokenHash, groups: a.Groups, revoked: true})
	s.relays.end(id, errAgentRevoked)
	p, addr := principal(r)
	s.auth.Audit(r.Context(), auth.Event{Actor: p.User, Addr: addr, Action: auth.EventAgentRevoke, Target: id, OK: true})
	s.log.Info("agent revoked", "agent", id, "hostname", logValue(a.Hostname))
	writeJSON(w, http.StatusOK, agentInfo(a))
}

func (s *Server) handleAgents(w http.ResponseWriter, r *http.Request) {
	as, err := s.store.Agents(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	out := make([]api.AgentInfo, len(as))
	for i, a := range as {
		out[i] = agentInfo(a)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleServerInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.ServerInfo{
		Epoch: s.Epoch(), LatestSeq: s.latest.Load(), PublicKey: base64.StdEncoding.EncodeToString(s.PublicKey()),
		Group: s.cfg.Group.String(), Port: s.cfg.Port, Interface: s.cfg.Interface, TTL: s.cfg.TTL,
		BasePath: s.cfg.BasePath, Timing: s.timing(),
	})
}

func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	var req api.SendRequest
	if !decodeBody(w, r, &req) {
		return
	}
	p, addr := principal(r)
	if err := s.authorizeCommand(r.Context(), p, addr, req.Name); err != nil {
		writeAuthError(w, err)
		return
	}
	info, err := s.send(r.Context(), req)
	var ve validationError
	switch {
	case errors.As(err, &ve):
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "%v", err)
		return
	}
	s.auditCommand(r.Context(), p, addr, command.Command{Name: req.Name, Args: req.Args, Target: req.Target}, info.Seq)
	writeJSON(w, http.StatusCreated, info)
}

// send issues what a send request asks for, the role of its sender
// checked already: the admin API's send and the console's commands. An
// error the request caused is a validationError.
func (s *Server) send(ctx context.Context, req api.SendRequest) (api.CommandInfo, error) {
	ttl := s.cfg.CommandTTL
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d < time.Second || d > 30*24*time.Hour {
			return api.CommandInfo{}, validationError{errors.New("expires_in: want a duration from 1s to 720h")}
		}
		ttl = d
	}
	c := command.Command{Name: req.Name, Args: req.Args, Target: req.Target, SpreadMillis: s.spreadMillis()}
	body, err := command.Encode(c) // the one validation, before the store is read
	if err != nil {
		return api.CommandInfo{}, validationError{err}
	}
	warnings, err := s.targetWarnings(ctx, req.Target)
	if err != nil {
		return api.CommandInfo{}, fmt.Errorf("store: %w", err)
	}
	if len(warnings) > 0 && req.Strict {
		return api.CommandInfo{}, validationError{fmt.Errorf("%s; nothing was issued (strict)", strings.Join(warnings, "; "))}
	}
	sc, err := s.issue(ctx, c, body, ttl)
	if err != nil {
		return api.CommandInfo{}, err
	}
	info, _ := commandInfo(sc)
	info.Warnings = warnings
	if len(warnings) > 0 {
		s.log.Warn("command issued to a target that matches no agent", "seq", sc.Seq, "warnings", strings.Join(warnings, "; "))
	}
	return info, nil
}

// targetWarnings says which parts of a target match no enrolled agent
// that is not revoked: an agent id, a group, or everything when there is
// no agent at all.
func (s *Server) targetWarnings(ctx context.Context, t command.Target) ([]string, error) {
	as, err := s.store.Agents(ctx)
	if err != nil {
		return nil, err
	}
	active := make(map[string]bool, len(as))
	revoked := map[string]bool{}
	groups := map[string]bool{}
	for _, a := range as {
		if !a.Revoked.IsZero() {
			revoked[a.ID] = true
			continue
		}
		active[a.ID] = true
		for _, g := range a.Groups {
			groups[g] = true
		}
	}
	var ws []string
	if t.All && len(active) == 0 {
		ws = append(ws, "no agent is enrolled")
	}
	for _, id := range t.Agents {
		switch {
		case revoked[id]:
			ws = append(ws, fmt.Sprintf("agent %s is revoked", id))
		case !active[id]:
			ws = append(ws, fmt.Sprintf("no enrolled agent has the id %s", id))
		}
	}
	for _, g := range t.Groups {
		if !groups[g] {
			ws = append(ws, fmt.Sprintf("no enrolled agent is in the group %s", g))
		}
	}
	return ws, nil
}

type validationError struct{ error }

// Issue validates, signs, stores and announces a command, returning it
// once it is durable. ttl is how long it stays valid.
func (s *Server) Issue(ctx context.Context, c command.Command, ttl time.Duration) (store.Command, error) {
	c.SpreadMillis = s.spreadMillis()
	body, err := command.Encode(c) // the one validation: structure, target, catalog
	if err != nil {
		return store.Command{}, validationError{err}
	}
	return s.issue(ctx, c, body, ttl)
}

// spreadMillis is the reply window commands carry.
func (s *Server) spreadMillis() uint32 { return uint32(s.cfg.Spread / time.Millisecond) }

// issue signs, stores and announces a command whose body command.Encode
// made from c.
func (s *Server) issue(ctx context.Context, c command.Command, body []byte, ttl time.Duration) (store.Command, error) {
	return s.issueTry(ctx, c, body, ttl, 0)
}

// issueTry is issue's attempt after retries moves to a new epoch.
func (s *Server) issueTry(ctx context.Context, c command.Command, body []byte, ttl time.Duration, retries int) (store.Command, error) {
	target, _ := json.Marshal(c.Target)
	// The epoch does not change while the command is signed and stored.
	s.epochMu.RLock()
	epoch := s.Epoch()
	sc, err := s.store.AppendCommand(ctx, func(seq uint64) (store.Command, error) {
		if s.store.Epoch() != epoch {
			return store.Command{}, store.ErrEpochChanged // another instance's move, not followed yet
		}
		now := time.Now()
		env, err := wire.Sign(s.key, wire.Header{
			Kind: wire.KindCommand, Epoch: epoch, Seq: seq, Issued: now, Expires: now.Add(ttl),
		}, body)
		if err != nil {
			return store.Command{}, validationError{err}
		}
		return store.Command{Seq: seq, Name: c.Name, Target: string(target), Envelope: env, IssuedAt: now, Expires: now.Add(ttl)}, nil
	})
	if err == nil {
		s.raiseLatest(sc.Seq)
	}
	s.epochMu.RUnlock()
	if errors.Is(err, store.ErrEpochChanged) && retries < 3 {
		// Another instance moved the store to a new epoch: follow it, and
		// sign again in it.
		s.epochMu.Lock()
		s.followEpochLocked()
		s.epochMu.Unlock()
		return s.issueTry(ctx, c, body, ttl, retries+1)
	}
	if err != nil {
		return store.Command{}, err
	}
	s.m.commands.Inc()
	s.log.Info("command issued", "seq", sc.Seq, "epoch", epoch, "name", c.Name, "target", string(target), "bytes", len(sc.Envelope))
	s.announce(sc.Envelope)
	return sc, nil
}

func commandInfo(c store.Command) (api.CommandInfo, error) {
	e, err := wire.Decode(c.Envelope)
	if err != nil {
		return api.CommandInfo{}, err
	}
	wc, err := command.Decode(e.Body)
	if err != nil {
		return api.CommandInfo{}, err
	}
	return api.CommandInfo{
		Seq: c.Seq, Name: wc.Name, Args: wc.Args, Target: wc.Target, IssuedAt: c.IssuedAt,
		Expires: c.Expires, Bytes: len(c.Envelope),
	}, nil
}

func (s *Server) handleListCommands(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if l := r.URL.Query().Get("limit"); l != "" {
		var err error
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > 1000 {
			writeError(w, http.StatusBadRequest, "limit: want 1 to 1000")
			return
		}
	}
	cs, err := s.store.RecentCommands(r.Context(), limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	out := make([]api.CommandInfo, 0, len(cs))
	for _, c := range cs {
		info, err := commandInfo(c)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "command %d: %v", c.Seq, err)
			return
		}
		out = append(out, info)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleCommandResults lists a command's results, with "pending" for every
// agent it targets that was enrolled before it was issued, is not revoked
// and has not reported (with when it was last seen, and whether its last
// check-in said it had handled the command), and the timing that explains
// how long pending results may take.
func (s *Server) handleCommandResults(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "want a sequence number")
		return
	}
	c, err := s.store.Command(r.Context(), seq)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no command %d", seq)
		return
	} else if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	info, err := commandInfo(c)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "command %d: %v", seq, err)
		return
	}
	rs, err := s.store.Results(r.Context(), seq)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	agents, err := s.store.Agents(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	byID := make(map[string]store.Result, len(rs))
	for _, res := range rs {
		byID[res.AgentID] = res
	}
	out := api.CommandResults{CommandInfo: info, Timing: s.timing(), Results: []api.AgentResult{}}
	for _, a := range agents {
		res, ok := byID[a.ID]
		if ok {
			delete(byID, a.ID)
			out.Results = append(out.Results, api.AgentResult{
				AgentID: a.ID, Hostname: a.Hostname, Status: res.Status, Output: res.Output,
				ExecutedAt: res.ExecutedAt, ReceivedAt: res.ReceivedAt,
			})
			continue
		}
		// Agents that enrolled after the command started past it; revoked
		// agents will not report.
		if a.EnrolledAt.Before(c.IssuedAt) && a.Revoked.IsZero() && info.Target.Matches(a.ID, a.Groups) {
			out.Results = append(out.Results, api.AgentResult{
				AgentID: a.ID, Hostname: a.Hostname, Status: "pending",
				LastSeen: a.LastSeen, Reached: a.LastSeq >= seq,
			})
		}
	}
	writeJSON(w, http.StatusOK, out)
}
