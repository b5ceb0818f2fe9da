package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/wire"
)

const (
	maxRequestBody = 1 << 20
	// maxEnrollBody bounds an enrollment request, which comes before any
	// credential: a real one is a few hundred bytes.
	maxEnrollBody = 8 << 10
	maxResults    = 500
	maxFetch      = 500
	maxField      = 256
	// epochStatementTTL is how long a signed epoch statement is valid.
	epochStatementTTL = 10 * time.Minute
	// logInterval is the least time between two log lines of one kind
	// that a client can cause at will (wrong enrollment secrets, refused
	// results); the lines in between are counted in the next one.
	logInterval = 10 * time.Second
	// maxLogValue bounds a client-supplied value in a log line.
	maxLogValue = 64
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, api.Error{Error: fmt.Sprintf(format, args...)})
}

// decodeBody reads a bounded JSON request body into v, refusing unknown
// fields and trailing data.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return decodeBodyMax(w, r, v, maxRequestBody)
}

// decodeBodyMax is decodeBody with a limit of max bytes.
func decodeBodyMax(w http.ResponseWriter, r *http.Request, v any, max int64) bool {
	return decodeJSON(w, http.MaxBytesReader(w, r.Body, max), v)
}

// decodeJSON decodes one JSON value from rd into v, refusing unknown
// fields and trailing data with a 400.
func decodeJSON(w http.ResponseWriter, rd io.Reader, v any) bool {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: %v", err)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad request body: trailing data")
		return false
	}
	return true
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

func (s *Server) timing() api.Timing {
	return api.Timing{
		CheckInSeconds: int(s.cfg.CheckInInterval / time.Second),
		SpreadMillis:   int(s.cfg.Spread / time.Millisecond),
	}
}

// agentHandler is a handler of the agent API: agentAuth calls it with
// the id of the agent whose credential the request carries.
type agentHandler func(w http.ResponseWriter, r *http.Request, id string)

// agentEntry is what the server keeps in memory of an agent it has
// authenticated: its credential's hash, the groups it last reported, and
// whether an administrator revoked or removed it. Entries are replaced,
// never changed.
type agentEntry struct {
	tokenHash []byte
	groups    []string
	revoked   bool
	removed   bool
	// stored is the agent's last check-in this server wrote to the
	// store (nil before one): a check-in that reports the same state
	// may be acknowledged before it is written (see deferCheckIn).
	stored *store.CheckIn
}

// agentAuth checks "Authorization: Bearer AGENTID.TOKEN" and passes the
// agent id to h (as an argument: no copy of the request per call). A revoked agent's credential gets 403
// with the reason "revoked"; a removed agent's is unknown (401).
func (s *Server) agentAuth(h agentHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		id, tok, ok2 := strings.Cut(cred, ".")
		if !ok || !ok2 || !wire.ValidName(id) || tok == "" {
			s.m.authFail.Inc()
			writeError(w, http.StatusUnauthorized, "missing or malformed agent credential")
			return
		}
		e, err := s.agentEntry(r.Context(), id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
		if err != nil || e.removed || subtle.ConstantTimeCompare(e.tokenHash, hashToken(tok)) != 1 {
			s.refuseUnknown(w)
			return
		}
		if e.revoked {
			s.refuseRevoked(w, id)
			return
		}
		h(w, r, id)
	}
}

// refuseUnknown answers a credential of an unknown or removed agent, or a
// wrong one.
func (s *Server) refuseUnknown(w http.ResponseWriter) {
	s.m.authFail.Inc()
	writeError(w, http.StatusUnauthorized, "unknown agent or wrong credential")
}

// refuseRevoked answers the credential of a revoked agent.
func (s *Server) refuseRevoked(w http.ResponseWriter, id string) {
	s.m.authFail.Inc()
	writeJSON(w, http.StatusForbidden, api.Error{
		Error:  fmt.Sprintf("agent %s was revoked by an administrator", id),
		Reason: api.ReasonRevoked,
	})
}

// refuseCheckIn answers a check-in the store refused: the agent was
// revoked or removed (through another instance, or while the check-in
// waited for its batch). It reads the agent again, keeps what it found in
// memory so that the agent's other requests are refused too, and answers
// as agentAuth does from then on.
func (s *Server) refuseCheckIn(ctx context.Context, w http.ResponseWriter, id string) {
	a, err := s.store.Agent(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.agents.Store(id, &agentEntry{removed: true})
		s.refuseUnknown(w)
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
	case !a.Revoked.IsZero():
		s.agents.Store(id, &agentEntry{tokenHash: a.TokenHash, groups: a.Groups, revoked: true})
		s.refuseRevoked(w, id)
	default:
		// Neither revoked nor removed now: the check-in was not recorded,
		// and the agent sends it again at its next interval.
		writeError(w, http.StatusServiceUnavailable, "the check-in was not recorded; try again")
	}
}

// agentEntry returns the agent's entry, reading it from the store the
// first time. Unknown ids are not kept (anyone can present one).
func (s *Server) agentEntry(ctx context.Context, id string) (*agentEntry, error) {
	if v, ok := s.agents.Load(id); ok {
		return v.(*agentEntry), nil
	}
	a, err := s.store.Agent(ctx, id)
	if err != nil {
		return nil, err
	}
	e := &agentEntry{tokenHash: a.TokenHash, groups: a.Groups, revoked: !a.Revoked.IsZero()}
	// An entry stored meanwhile (by a revocation or removal, which store
	// theirs after the store changed) wins over what was read before.
	v, _ := s.agents.LoadOrStore(id, e)
	return v.(*agentEntry), nil
}

// logValue bounds a client-supplied string for a log line: at most
// maxLogValue bytes of it, cut on a character boundary and marked, with
// every character that is not printable written as an escape.
func logValue(v string) string {
	cut := false
	if len(v) > maxLogValue {
		n := maxLogValue
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v, cut = v[:n], true
	}
	var b strings.Builder
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, v[i])
		case unicode.IsPrint(r):
			b.WriteString(v[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	if cut {
		b.WriteString("…")
	}
	return b.String()
}

// logLimiter lets one log line of a kind through per interval and counts
// the ones it holds back.
type logLimiter struct {
	every time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether a line may be logged at now and, if so, how many
// were held back since the last one.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.every), 0
	return true, n
}

func validField(name, v string) error {
	if len(v) > maxField || !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("%s: at most %d bytes of UTF-8, without NUL", name, maxField)
	}
	return nil
}

func validGroups(gs []string) error {
	if len(gs) > 64 {
		return errors.New("groups: at most 64")
	}
	for _, g := range gs {
		if !wire.ValidName(g) {
			return fmt.Errorf("groups: bad group name %q", g)
		}
	}
	return nil
}

// handleEnroll enrolls a new agent. It comes before any credential, so it
// is bounded: at most cfg.MaxEnrolling at once (503 with Retry-After
// beyond), a small body, the secret checked before anything else, and the
// log lines a wrong secret causes limited and made of bounded values.
func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	select {
	case s.enrollSlots <- struct{}{}:
		defer func() { <-s.enrollSlots }()
	default:
		s.m.enrollBusy.Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "too many enrollments at once; retry later")
		return
	}
	var req api.EnrollRequest
	if !decodeBodyMax(w, r, &req, maxEnrollBody) {
		return
	}
	if subtle.ConstantTimeCompare([]byte(req.Secret), []byte(s.EnrollSecret())) != 1 {
		s.m.authFail.Inc()
		if ok, held := s.refusedLog.allow(time.Now()); ok {
			s.log.Warn("enrollment refused: wrong secret", "remote", r.RemoteAddr,
				"hostname", logValue(req.Hostname), "refused_unlogged", held)
		}
		writeError(w, http.StatusForbidden, "wrong enrollment secret")
		return
	}
	if !wire.ValidNonce(req.Nonce) {
		writeError(w, http.StatusBadRequest, "nonce: want 32 to 64 lower-case hex digits chosen at random")
		return
	}
	if kid := wire.KeyID(s.PublicKey()); req.KeyID != "" && req.KeyID != hex.EncodeToString(kid[:]) {
		writeError(w, http.StatusConflict, "the agent's ServerPublicKey (key id %s) is not this server's signing key (key id %x, in %s): nothing was enrolled",
			logValue(req.KeyID), kid, FilePublicKey)
		return
	}
	for _, f := range []struct{ n, v string }{{"hostname", req.Hostname}, {"os", req.OS}, {"arch", req.Arch}, {"version", req.Version}} {
		if err := validField(f.n, f.v); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	if err := validGroups(req.Groups); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	idb := make([]byte, 8)
	rand.Read(idb)
	id := hex.EncodeToString(idb)
	tok := randomToken(32)
	now := time.Now()
	// The agent starts at the current sequence: it does not replay history.
	ep, latest := s.ep.Load(), s.latest.Load()
	proof, err := s.epochStatement(wire.EpochStatement{Agent: id, Nonce: req.Nonce}, ep.epoch, latest, now)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "signing the enrollment: %v", err)
		return
	}
	a := store.Agent{
		ID: id, TokenHash: hashToken(tok), Hostname: req.Hostname, OS: req.OS, Arch: req.Arch,
		Version: req.Version, Groups: req.Groups, LastSeq: latest, EnrolledAt: now, LastSeen: now,
	}
	if err := s.store.EnrollAgent(r.Context(), a); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	s.agents.Store(id, &agentEntry{tokenHash: a.TokenHash, groups: a.Groups})
	s.m.enrollments.Inc()
	s.log.Info("agent enrolled", "agent", id, "hostname", logValue(req.Hostname), "os", logValue(req.OS),
		"groups", req.Groups, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusCreated, api.EnrollResponse{
		AgentID: id, Token: id + "." + tok, Epoch: ep.epoch, LatestSeq: latest, Proof: proof, Timing: s.timing(),
	})
}

// epochStatement signs an epoch statement (wire.KindEpoch) in epoch with
// sequence seq, valid for epochStatementTTL from now.
func (s *Server) epochStatement(st wire.EpochStatement, epoch, seq uint64, now time.Time) ([]byte, error) {
	body, err := wire.EncodeEpochStatement(st)
	if err != nil {
		return nil, err
	}
	return wire.Sign(s.key, wire.Header{
		Kind: wire.KindEpoch, Epoch: epoch, Seq: seq, Issued: now, Expires: now.Add(epochStatementTTL),
	}, body)
}

// handleCheckIn records an agent's report and tells it the latest
// sequence. An agent in another epoch gets a signed statement of the
// server's (EpochProof); an agent in the server's epoch that is ahead of
// it proves the server lost commands, and moves the server to a new epoch
// first (see agentAhead).
func (s *Server) handleCheckIn(w http.ResponseWriter, r *http.Request, id string) {
	var req api.CheckInRequest
	if !decodeCheckIn(w, r, &req) {
		return
	}
	for _, f := range []struct{ n, v string }{{"hostname", req.Hostname}, {"os", req.OS}, {"arch", req.Arch}, {"version", req.Version}, {"defs_version", req.DefsVer}} {
		if err := validField(f.n, f.v); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	if err := validGroups(req.Groups); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if len(req.Counters) > 64 {
		writeError(w, http.StatusBadRequest, "counters: at most 64")
		return
	}
	onAccess, err := onAccessState(req.OnAccess)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	now := time.Now()
	update, err := updateState(req.Update, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	ep, latest := s.ep.Load(), s.latest.Load()
	if req.Epoch != ep.epoch && s.shared() {
		// The agent may come from an epoch another instance moved the
		// store to, which this one has not followed yet: it must not be
		// sent back to the epoch the store left.
		var err error
		if ep, latest, err = s.refreshEpoch(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
	}
	moved := false
	if req.Epoch == ep.epoch && req.LastSeq > latest {
		var err error
		if ep, latest, moved, err = s.agentAhead(r.Context(), id, req); err != nil {
			writeError(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
	}
	resp := api.CheckInResponse{Epoch: ep.epoch, LatestSeq: latest, Timing: s.timing()}
	lastSeq := req.LastSeq
	if req.Epoch == ep.epoch {
		resp.Changed = req.LastSeq < latest
	} else {
		// The agent starts in this epoch after the commands of the epochs
		// before it, and fetches the ones of this epoch it has not seen.
		proof, err := s.epochStatement(wire.EpochStatement{Agent: id, Previous: req.Epoch}, ep.epoch, ep.start, now)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "signing the epoch statement: %v", err)
			return
		}
		resp.EpochProof, resp.Changed = proof, ep.start < latest
		if !moved {
			s.noteEpochMove(id, req, ep)
		}
		// Its sequence in another epoch means nothing in this one; it is
		// where the statement starts it.
		lastSeq = ep.start
	}
	c := store.CheckIn{
		AgentID: id, Hostname: req.Hostname, OS: req.OS, Arch: req.Arch, Version: req.Version,
		DefsVer: req.DefsVer, Groups: req.Groups, LastSeq: lastSeq, Counters: req.Counters,
		OnAccess: onAccess, Update: update, At: now,
	}
	if req.Epoch == ep.epoch && !moved && s.deferCheckIn(c) {
		writeCheckInResponse(w, resp)
		return
	}
	err = s.checkins.add(r.Context(), c)
	if errors.Is(err, errRefused) {
		s.refuseCheckIn(r.Context(), w, id)
		return
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	writeCheckInResponse(w, resp)
}

func (s *Server) flushResults(rs []store.Result) error {
	s.m.batchSize.WithLabelValues("result").Observe(float64(len(rs)))
	err := s.store.RecordResults(context.Background(), rs)
	if err == nil {
		s.m.results.Add(float64(len(rs)))
		s.resultsChanged.Notify() // the console's live pages
	} else {
		s.log.Error("storing results", "err", err, "batch", len(rs))
	}
	return err
}

func (s *Server) handleCommands(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	after, err := strconv.ParseUint(q.Get("after"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "after: want a sequence number")
		return
	}
	limit := maxFetch
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > maxFetch {
			writeError(w, http.StatusBadRequest, "limit: want 1 to %d", maxFetch)
			return
		}
	}
	cmds, err := s.store.CommandsAfter(r.Context(), after, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	if n := len(cmds); n > 0 {
		s.raiseLatest(cmds[n-1].Seq) // another instance's, not heard of yet
	}
	resp := api.CommandsResponse{Epoch: s.Epoch(), LatestSeq: s.latest.Load(), Commands: make([][]byte, len(cmds))}
	for i, c := range cmds {
		resp.Commands[i] = c.Envelope
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleCommand(w http.ResponseWriter, r *http.Request, _ string) {
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
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	w.Write(c.Envelope)
}

// handleResults judges each result on its own: a result for a command
// that does not exist or did not target the agent, or a malformed one, is
// refused for good (the agent drops it); the others are stored, and the
// answer (200) waits until they are durable. A store failure fails the
// whole request (503): the agent sends the batch again.
func (s *Server) handleResults(w http.ResponseWriter, r *http.Request, id string) {
	var req api.ResultsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Results) == 0 || len(req.Results) > maxResults {
		writeError(w, http.StatusBadRequest, "results: want 1 to %d", maxResults)
		return
	}
	latest, now := s.latest.Load(), time.Now()
	if slices.ContainsFunc(req.Results, func(res api.Result) bool { return res.Seq > latest }) {
		var err error
		if latest, err = s.refreshLatest(r.Context()); err != nil { // another instance's command?
			writeError(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
	}
	var groups []string
	if v, ok := s.agents.Load(id); ok {
		groups = v.(*agentEntry).groups
	}
	resp := api.ResultsResponse{Accepted: make([]uint64, 0, len(req.Results))}
	rs := make([]store.Result, 0, len(req.Results))
	for _, res := range req.Results {
		why, err := s.judgeResult(r.Context(), id, groups, latest, res)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
		if why != "" {
			resp.Refused = append(resp.Refused, api.RefusedResult{Seq: res.Seq, Error: why})
			continue
		}
		if slices.Contains(resp.Accepted, res.Seq) {
			continue // the same result twice in a batch is stored once
		}
		resp.Accepted = append(resp.Accepted, res.Seq)
		rs = append(rs, store.Result{Seq: res.Seq, AgentID: id, Status: res.Status, Output: res.Output, ExecutedAt: res.ExecutedAt, ReceivedAt: now})
	}
	if n := len(resp.Refused); n > 0 {
		s.m.resultsRefused.Add(float64(n))
		if ok, held := s.resultLog.allow(now); ok {
			s.log.Warn("results refused", "agent", id, "refused", n, "first_seq", resp.Refused[0].Seq,
				"error", resp.Refused[0].Error, "refused_unlogged", held)
		}
	}
	// Each result is its own batch item so that concurrent agents share
	// transactions; the response waits for all of this agent's.
	var err error
	errc := make(chan error, len(rs))
	for _, res := range rs {
		go func() { errc <- s.results.add(r.Context(), res) }()
	}
	for range rs {
		if e := <-errc; e != nil && err == nil {
			err = e
		}
	}
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// judgeResult returns why a result is refused for good, or "" when it is
// acceptable. The error is a store failure.
func (s *Server) judgeResult(ctx context.Context, agent string, groups []string, latest uint64, res api.Result) (string, error) {
	switch {
	case res.Seq == 0 || res.Seq > latest:
		return fmt.Sprintf("no command %d", res.Seq), nil
	case !command.ValidStatus(res.Status):
		return fmt.Sprintf("unknown status %q", logValue(res.Status)), nil
	case len(res.Output) > api.MaxOutput || !utf8.ValidString(res.Output):
		return fmt.Sprintf("output must be at most %d bytes of UTF-8", api.MaxOutput), nil
	}
	t, err := s.target(ctx, res.Seq)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Sprintf("no command %d", res.Seq), nil
	} else if err != nil {
		return "", err
	}
	if !t.Matches(agent, groups) {
		return fmt.Sprintf("command %d is not for this agent", res.Seq), nil
	}
	return "", nil
}

// targetCache keeps the decoded targets of commands by sequence number
// (commands never change), so that judging results reads the store once
// per command. It holds at most maxCachedTargets and starts over when full.
type targetCache struct {
	m sync.Map // seq -> command.Target
	n atomic.Int64
}

const maxCachedTargets = 4096

// target returns the target of command seq.
func (s *Server) target(ctx context.Context, seq uint64) (command.Target, error) {
	if v, ok := s.targets.m.Load(seq); ok {
		return v.(command.Target), nil
	}
	c, err := s.store.Command(ctx, seq)
	if err != nil {
		return command.Target{}, err
	}
	e, err := wire.Decode(c.Envelope)
	if err != nil {
		return command.Target{}, fmt.Errorf("command %d: %w", seq, err)
	}
	wc, err := command.Decode(e.Body)
	if err != nil {
		return command.Target{}, fmt.Errorf("command %d: %w", seq, err)
	}
	if s.targets.n.Add(1) > maxCachedTargets {
		s.targets.m.Clear()
		s.targets.n.Store(1)
	}
	s.targets.m.Store(seq, wc.Target)
	return wc.Target, nil
}
