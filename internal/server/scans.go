package server

import (
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/store"
	"github.com/vigil-fleet/vigil/internal/wire"
)

const (
	maxDetections = 10000
	maxPath       = 4096
)

// handleScan stores an agent's scan report with its detections: a scan's,
// or on-access scanning's (kind onaccess).
func (s *Server) handleScan(w http.ResponseWriter, r *http.Request, agent string) {
	var rep api.ScanReport
	if !decodeBody(w, r, &rep) {
		return
	}
	onAccess := rep.Kind == api.ScanKindOnAccess
	latest := s.latest.Load()
	if rep.Seq > latest {
		var err error
		if latest, err = s.refreshLatest(r.Context()); err != nil { // another instance's command?
			writeError(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
	}
	switch {
	case !wire.ValidName(rep.ReportID):
		writeError(w, http.StatusBadRequest, "report_id: want 1-64 of [A-Za-z0-9._-]")
		return
	case rep.Kind != "" && !onAccess:
		writeError(w, http.StatusBadRequest, "kind: want %q (on-access detections) or none (a scan), got %q", api.ScanKindOnAccess, logValue(rep.Kind))
		return
	case onAccess && rep.Seq != 0:
		writeError(w, http.StatusBadRequest, "seq: an on-access report answers no command (want 0)")
		return
	case onAccess && (rep.Bytes != 0 || rep.Skipped != 0):
		writeError(w, http.StatusBadRequest, "bytes and skipped: 0 in an on-access report")
		return
	case onAccess && len(rep.Detections) == 0:
		writeError(w, http.StatusBadRequest, "detections: an on-access report carries at least one")
		return
	case rep.Seq > latest:
		writeError(w, http.StatusBadRequest, "seq: no command %d", rep.Seq)
		return
	case rep.Files < 0 || rep.Bytes < 0 || rep.Skipped < 0:
		writeError(w, http.StatusBadRequest, "files, bytes and skipped must not be negative")
		return
	case len(rep.Detections) > maxDetections:
		writeError(w, http.StatusBadRequest, "detections: at most %d per report", maxDetections)
		return
	}
	if err := validField("defs_version", rep.DefsVer); err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	sc := store.Scan{
		AgentID: agent, ReportID: rep.ReportID, Kind: rep.Kind, Seq: rep.Seq, DefsVer: rep.DefsVer,
		StartedAt: rep.StartedAt, FinishedAt: rep.FinishedAt, Files: rep.Files, Bytes: rep.Bytes,
		Skipped: rep.Skipped, ReceivedAt: time.Now(),
	}
	blocked := 0
	for i, d := range rep.Detections {
		if d.Path == "" || len(d.Path) > maxPath || !utf8.ValidString(d.Path) || len(d.PathBytes) > maxPath {
			writeError(w, http.StatusBadRequest, "detections[%d].path: want 1 to %d bytes of UTF-8 (and path_bytes, for a name that is not UTF-8, at most %d bytes)", i, maxPath, maxPath)
			return
		}
		if err := d.CheckPath(); err != nil {
			writeError(w, http.StatusBadRequest, "detections[%d]: %v", i, err)
			return
		}
		for _, f := range []struct{ n, v string }{{"signature", d.Signature}, {"sha256", d.SHA256}, {"quarantine", d.Quarantine}} {
			if err := validField(f.n, f.v); err != nil {
				writeError(w, http.StatusBadRequest, "detections[%d].%v", i, err)
				return
			}
		}
		if d.Signature == "" {
			writeError(w, http.StatusBadRequest, "detections[%d].signature: required", i)
			return
		}
		if err := checkDetectionKind(rep.Kind, d); err != nil {
			writeError(w, http.StatusBadRequest, "detections[%d].%v", i, err)
			return
		}
		if d.Blocked {
			blocked++
		}
		sc.Detections = append(sc.Detections, store.Detection{
			AgentID: sc.AgentID, Path: d.FullPath(), Signature: d.Signature, SHA256: d.SHA256,
			DefsVer: rep.DefsVer, FoundAt: d.FoundAt, Quarantine: d.Quarantine,
			Access: d.Access, PID: d.PID, Process: d.Process, Blocked: d.Blocked,
		})
	}
	id, err := s.store.RecordScan(r.Context(), sc)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	s.m.detections.Add(float64(len(sc.Detections)))
	switch {
	case onAccess:
		s.log.Warn("agent reported on-access detections", "agent", sc.AgentID, "scan", id, "detections", len(sc.Detections),
			"blocked", blocked, "defs", rep.DefsVer)
	case len(sc.Detections) > 0:
		s.log.Warn("agent reported detections", "agent", sc.AgentID, "scan", id, "detections", len(sc.Detections), "defs", rep.DefsVer)
	}
	writeJSON(w, http.StatusCreated, api.ScanAck{ID: id})
}

// listParams reads ?agent=ID&limit=N.
func listParams(w http.ResponseWriter, r *http.Request) (agent string, limit int, ok bool) {
	q := r.URL.Query()
	agent, limit = q.Get("agent"), 100
	if agent != "" && !wire.ValidName(agent) {
		writeError(w, http.StatusBadRequest, "agent: not an agent id")
		return "", 0, false
	}
	if l := q.Get("limit"); l != "" {
		var err error
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > 10000 {
			writeError(w, http.StatusBadRequest, "limit: want 1 to 10000")
			return "", 0, false
		}
	}
	return agent, limit, true
}

func (s *Server) hostnames(r *http.Request) map[string]string {
	names := map[string]string{}
	if as, err := s.store.Agents(r.Context()); err == nil {
		for _, a := range as {
			names[a.ID] = a.Hostname
		}
	}
	return names
}

func (s *Server) handleDetections(w http.ResponseWriter, r *http.Request) {
	agent, limit, ok := listParams(w, r)
	if !ok {
		return
	}
	ds, err := s.store.Detections(r.Context(), agent, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	names := s.hostnames(r)
	out := make([]api.DetectionInfo, len(ds))
	for i, d := range ds {
		out[i] = api.DetectionInfo{
			ID: d.ID, ScanID: d.ScanID, AgentID: d.AgentID, Hostname: names[d.AgentID], DefsVer: d.DefsVer,
			Detection: api.Detection{Signature: d.Signature, SHA256: d.SHA256, FoundAt: d.FoundAt, Quarantine: d.Quarantine,
				Access: d.Access, PID: d.PID, Process: d.Process, Blocked: d.Blocked},
		}
		out[i].SetPath(d.Path)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleScans(w http.ResponseWriter, r *http.Request) {
	agent, limit, ok := listParams(w, r)
	if !ok {
		return
	}
	scs, err := s.store.Scans(r.Context(), agent, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	out := make([]api.ScanInfo, len(scs))
	for i, sc := range scs {
		out[i] = api.ScanInfo{
			ID: sc.ID, AgentID: sc.AgentID, Kind: sc.Kind, Seq: sc.Seq, DefsVer: sc.DefsVer, StartedAt: sc.StartedAt,
			FinishedAt: sc.FinishedAt, Files: sc.Files, Bytes: sc.Bytes, Skipped: sc.Skipped, ReceivedAt: sc.ReceivedAt,
		}
	}
	writeJSON(w, http.StatusOK, out)
}
