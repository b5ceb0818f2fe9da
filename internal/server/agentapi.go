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
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/wire"
)

const (
	maxRequestBody = 1 << 20
	maxOutput      = 4 << 10
	maxResults     = 500
	maxFetch       = 500
	maxField       = 256
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
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
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

type agentKey struct{}

// agentAuth checks "Authorization: Bearer AGENTID.TOKEN" and passes the
// agent id in the request context.
func (s *Server) agentAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		id, tok, ok2 := strings.Cut(cred, ".")
		if !ok || !ok2 || !wire.ValidName(id) || tok == "" {
			s.m.authFail.Inc()
			writeError(w, http.StatusUnauthorized, "missing or malformed agent credential")
			return
		}
		want, err := s.tokenHash(r.Context(), id)
		if err != nil || subtle.ConstantTimeCompare(want, hashToken(tok)) != 1 {
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				writeError(w, http.StatusServiceUnavailable, "store: %v", err)
				return
			}
			s.m.authFail.Inc()
			writeError(w, http.StatusUnauthorized, "unknown agent or wrong credential")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), agentKey{}, id)))
	}
}

func (s *Server) tokenHash(ctx context.Context, id string) ([]byte, error) {
	if v, ok := s.tokens.Load(id); ok {
		return v.([]byte), nil
	}
	a, err := s.store.Agent(ctx, id)
	if err != nil {
		return nil, err
	}
	s.tokens.Store(id, a.TokenHash)
	return a.TokenHash, nil
}

func agentID(r *http.Request) string { return r.Context().Value(agentKey{}).(string) }

func validField(name, v string) error {
	if len(v) > maxField || !utf8.ValidString(v) {
		return fmt.Errorf("%s: at most %d bytes of UTF-8", name, maxField)
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

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req api.EnrollRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if subtle.ConstantTimeCompare([]byte(req.Secret), []byte(s.secret)) != 1 {
		s.m.authFail.Inc()
		s.log.Warn("enrollment refused: wrong secret", "remote", r.RemoteAddr, "hostname", req.Hostname)
		writeError(w, http.StatusForbidden, "wrong enrollment secret")
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
	latest := s.latest.Load()
	a := store.Agent{
		ID: id, TokenHash: hashToken(tok), Hostname: req.Hostname, OS: req.OS, Arch: req.Arch,
		Version: req.Version, Groups: req.Groups, LastSeq: latest, EnrolledAt: now, LastSeen: now,
	}
	if err := s.store.EnrollAgent(r.Context(), a); err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	s.tokens.Store(id, a.TokenHash)
	s.m.enrollments.Inc()
	s.log.Info("agent enrolled", "agent", id, "hostname", req.Hostname, "os", req.OS, "groups", req.Groups, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusCreated, api.EnrollResponse{
		AgentID: id, Token: id + "." + tok, Epoch: s.epoch, LatestSeq: latest, Timing: s.timing(),
	})
}

func (s *Server) handleCheckIn(w http.ResponseWriter, r *http.Request) {
	var req api.CheckInRequest
	if !decodeBody(w, r, &req) {
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
	latest := s.latest.Load()
	if req.LastSeq > latest {
		writeError(w, http.StatusConflict, "last_seq %d is ahead of the server's latest %d", req.LastSeq, latest)
		return
	}
	err := s.checkins.add(r.Context(), store.CheckIn{
		AgentID: agentID(r), Hostname: req.Hostname, OS: req.OS, Arch: req.Arch, Version: req.Version,
		DefsVer: req.DefsVer, Groups: req.Groups, LastSeq: req.LastSeq, Counters: req.Counters, At: time.Now(),
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, api.CheckInResponse{
		Changed: req.LastSeq < latest, Epoch: s.epoch, LatestSeq: latest, Timing: s.timing(),
	})
}

func (s *Server) flushCheckIns(cs []store.CheckIn) error {
	s.m.batchSize.WithLabelValues("checkin").Observe(float64(len(cs)))
	err := s.store.CheckIns(context.Background(), cs)
	if err == nil {
		s.m.checkins.Add(float64(len(cs)))
	} else {
		s.log.Error("storing check-ins", "err", err, "batch", len(cs))
	}
	return err
}

func (s *Server) flushResults(rs []store.Result) error {
	s.m.batchSize.WithLabelValues("result").Observe(float64(len(rs)))
	err := s.store.RecordResults(context.Background(), rs)
	if err == nil {
		s.m.results.Add(float64(len(rs)))
	} else {
		s.log.Error("storing results", "err", err, "batch", len(rs))
	}
	return err
}

func (s *Server) handleCommands(w http.ResponseWriter, r *http.Request) {
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
	resp := api.CommandsResponse{Epoch: s.epoch, LatestSeq: s.latest.Load(), Commands: make([][]byte, len(cmds))}
	for i, c := range cmds {
		resp.Commands[i] = c.Envelope
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleCommand(w http.ResponseWriter, r *http.Request) {
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

func (s *Server) handleResults(w http.ResponseWriter, r *http.Request) {
	var req api.ResultsRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if len(req.Results) == 0 || len(req.Results) > maxResults {
		writeError(w, http.StatusBadRequest, "results: want 1 to %d", maxResults)
		return
	}
	id, latest, now := agentID(r), s.latest.Load(), time.Now()
	rs := make([]store.Result, len(req.Results))
	for i, res := range req.Results {
		switch {
		case res.Seq == 0 || res.Seq > latest:
			writeError(w, http.StatusBadRequest, "results[%d]: no command %d", i, res.Seq)
			return
		case !api.ValidStatus(res.Status):
			writeError(w, http.StatusBadRequest, "results[%d]: unknown status %q", i, res.Status)
			return
		case len(res.Output) > maxOutput || !utf8.ValidString(res.Output):
			writeError(w, http.StatusBadRequest, "results[%d]: output must be at most %d bytes of UTF-8", i, maxOutput)
			return
		}
		rs[i] = store.Result{Seq: res.Seq, AgentID: id, Status: res.Status, Output: res.Output, ExecutedAt: res.ExecutedAt, ReceivedAt: now}
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
	w.WriteHeader(http.StatusNoContent)
}
