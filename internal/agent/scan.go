package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/definitions"
	"github.com/vigil-fleet/vigil/internal/scan"
	"github.com/vigil-fleet/vigil/internal/signatures"
)

// dirPendingScans holds scan reports not yet acknowledged by the server.
const dirPendingScans = "scans"

// scanReq asks the scan worker for a scan: for the command with sequence
// Seq, or a scheduled one when Seq is 0.
type scanReq struct {
	Seq        uint64
	Epoch      uint64 // of Seq
	Paths      []string
	Quarantine bool
	Spread     time.Duration
}

type scanOutcome struct {
	Seq    uint64
	Epoch  uint64
	Status string
	Output string
}

// definitionsDir is the installed definitions release, "" when none.
func (a *Agent) definitionsDir() string {
	if a.upd != nil {
		return a.upd.Path()
	}
	// Definitions installed by other means, in the same layout.
	p, err := definitions.Current(a.defsRoot())
	if err != nil {
		return ""
	}
	return p
}

// defsRoot is where definitions releases are installed.
func (a *Agent) defsRoot() string {
	return definitions.Dir(a.p.StateDirectory, a.p.DefinitionsDirectory)
}

// startScan is the "scan" command: it checks the arguments and hands the
// scan to the worker; the result comes later.
func (a *Agent) startScan(args map[string]string) (string, string) {
	paths := a.p.ScanPaths
	if v, ok := args[command.ArgPaths]; ok {
		var err error
		if paths, err = command.ScanPaths(v); err != nil {
			return command.StatusError, err.Error()
		}
	}
	if len(paths) == 0 {
		return command.StatusError, "no paths to scan: the command names none and the agent has no ScanPaths"
	}
	if a.definitionsDir() == "" {
		return command.StatusError, "no definitions installed: send an update first"
	}
	q := a.p.QuarantineDirectory != ""
	if v, ok := args[command.ArgQuarantine]; ok {
		q = v == "yes"
		if q && a.p.QuarantineDirectory == "" {
			return command.StatusError, "quarantine asked for, but the agent has no QuarantineDirectory"
		}
	}
	select {
	case a.scanReq <- scanReq{Seq: a.core.Running(), Epoch: a.id.Epoch, Paths: paths, Quarantine: q, Spread: time.Duration(a.timing.SpreadMillis) * time.Millisecond}:
		return StatusDeferred, ""
	default:
		return command.StatusError, "too many scans already queued"
	}
}

// restore is the "restore" command.
func (a *Agent) restore(args map[string]string) (string, string) {
	if a.p.QuarantineDirectory == "" {
		return command.StatusError, "this agent has no QuarantineDirectory"
	}
	path, err := Quarantine{Dir: a.p.QuarantineDirectory}.Restore(args[command.ArgID])
	if err != nil {
		return command.StatusError, err.Error()
	}
	a.log.Warn("quarantined file restored", "id", args[command.ArgID], "path", showPath(path))
	return command.StatusOK, "restored " + showPath(path)
}

// scanWorker runs scans one at a time, off the main loop.
func (a *Agent) scanWorker(ctx context.Context) {
	for {
		var req scanReq
		select {
		case <-ctx.Done():
			return
		case req = <-a.scanReq:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(spreadDelay(int(req.Spread / time.Millisecond))):
		}
		out := a.runScan(ctx, req)
		select {
		case a.scanDone <- out:
		case <-ctx.Done():
			return
		}
	}
}

// runScan scans, quarantines when asked, and saves the report for the
// main loop to send.
func (a *Agent) runScan(ctx context.Context, req scanReq) scanOutcome {
	fail := func(err error) scanOutcome {
		a.log.Error("scan failed", "err", err)
		return scanOutcome{Seq: req.Seq, Epoch: req.Epoch, Status: command.StatusError, Output: err.Error()}
	}
	defsDir := a.definitionsDir()
	eng, err := a.engine.get(defsDir)
	if err != nil {
		return fail(fmt.Errorf("loading definitions: %w", err))
	}
	defsVer := filepath.Base(defsDir)
	opts := a.scanOptions()
	started := time.Now()
	a.log.Info("scan started", "paths", req.Paths, "definitions", defsVer, "signatures", eng.Signatures())
	sum, err := eng.ScanPaths(ctx, req.Paths, opts, nil)
	if err != nil {
		return fail(err)
	}
	rep := api.ScanReport{
		ReportID: randomID(), Seq: req.Seq, DefsVer: defsVer, StartedAt: started.UTC(), FinishedAt: time.Now().UTC(),
		Files: sum.Files, Bytes: sum.Bytes, Skipped: int64(len(sum.Skipped)), Detections: []api.Detection{},
	}
	quarantined := map[string]string{}
	if req.Quarantine && len(sum.Detections) > 0 && a.beforeQuarantine != nil {
		a.beforeQuarantine()
	}
	for _, d := range sum.Detections {
		det := api.Detection{Signature: d.Signature, SHA256: d.SHA256, FoundAt: rep.FinishedAt}
		det.SetPath(d.Path)
		if req.Quarantine {
			if id, ok := quarantined[d.Path]; ok {
				det.Quarantine = id
			} else if id, err := (Quarantine{Dir: a.p.QuarantineDirectory}).Put(Scanned{Path: d.Path, Size: d.Size, SHA256: d.SHA256}, d.Signature); err != nil {
				a.log.Error("quarantine failed", "path", showPath(d.Path), "err", err)
			} else {
				quarantined[d.Path], det.Quarantine = id, id
			}
		}
		a.log.Warn("infected file", "path", showPath(d.Path), "signature", d.Signature, "quarantine", det.Quarantine)
		rep.Detections = append(rep.Detections, det)
	}
	if err := a.savePendingScan(rep); err != nil {
		return fail(fmt.Errorf("saving the scan report: %w", err))
	}
	out := fmt.Sprintf("scanned %d files (%d bytes) with definitions %s: %d infected, %d skipped",
		sum.Files, sum.Bytes, defsVer, sum.InfectedFiles(), len(sum.Skipped))
	if len(quarantined) > 0 {
		out += fmt.Sprintf(", %d quarantined", len(quarantined))
	}
	a.onEvent(Event{Kind: EventScanned, Agent: a.ID(), Seq: req.Seq, Name: command.Scan, Status: command.StatusOK, Output: out, Count: len(rep.Detections)})
	return scanOutcome{Seq: req.Seq, Epoch: req.Epoch, Status: command.StatusOK, Output: out}
}

// cachedEngine is an agent's scan engine, of the release it last scanned
// with: loading a real database and building its engine takes seconds and
// hundreds of MiB, so it is done once per release, not for every scan. It
// is rebuilt when the release directory, or any file in it, changes (by
// path, name, size, modification time or inode).
type cachedEngine struct {
	mu     sync.Mutex // held while building
	key    string     // releaseKey of the release eng was built from
	eng    *scan.Engine
	builds int // engines built (tests read it)
}

// get returns the engine of release, a release directory of the agent's
// definitions directory, building it unless the cached one is of the same
// release with the same files.
func (ce *cachedEngine) get(release string) (*scan.Engine, error) {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	key, err := releaseKey(release)
	if err != nil {
		return nil, err
	}
	if ce.eng != nil && ce.key == key {
		return ce.eng, nil
	}
	ce.eng, ce.key = nil, ""
	// Drop the old engine before loading: the two need not coexist.
	runtime.GC()
	// Streamed into the engine: the signatures are never all held in a
	// Set.
	b := scan.NewBuilder()
	restoreGC := scan.BuildGC()
	_, err = signatures.LoadTo(release, signatures.LoadOptions{}, b)
	eng := b.Engine()
	restoreGC()
	if err != nil {
		return nil, err
	}
	ce.eng, ce.key = eng, key
	ce.builds++
	// Give the loader's transient memory back now, not over minutes.
	debug.FreeOSMemory()
	return eng, nil
}

// releaseKey identifies a release directory's contents: its path and each
// entry's name, size, modification time and inode.
func releaseKey(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(dir)
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = uint64(st.Ino)
		}
		fmt.Fprintf(&b, "\x00%s\x00%d\x00%d\x00%d", e.Name(), fi.Size(), fi.ModTime().UnixNano(), ino)
	}
	return b.String(), nil
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (a *Agent) savePendingScan(rep api.ScanReport) error {
	dir := a.path(dirPendingScans)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, rep.ReportID+".json"), rep)
}

// scanned handles a finished scan in the main loop.
func (a *Agent) scanned(o scanOutcome) {
	if o.Seq == 0 || !a.sameEpoch(o.Seq, o.Epoch) {
		return
	}
	r, err := a.core.Complete(api.Result{Seq: o.Seq, Status: o.Status, Output: o.Output})
	if err != nil {
		a.log.Error("recording scan result", "err", err)
		return
	}
	a.queue([]api.Result{r})
}

// sendScans posts saved scan reports, oldest first, removing each once
// the server has it.
func (a *Agent) sendScans(ctx context.Context) error {
	dir := a.path(dirPendingScans)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	sort.Slice(ents, func(i, j int) bool {
		ii, _ := ents[i].Info()
		jj, _ := ents[j].Info()
		return ii != nil && jj != nil && ii.ModTime().Before(jj.ModTime())
	})
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		var rep api.ScanReport
		if ok, err := readJSON(p, &rep); err != nil || !ok {
			a.log.Error("dropping unreadable scan report", "file", p, "err", err)
			os.Remove(p)
			continue
		}
		if _, err := a.client.PostScan(ctx, rep); err != nil {
			if api.IsStatus(err, http.StatusBadRequest) {
				a.log.Error("server refused a scan report; dropping it", "file", p, "err", err)
				os.Remove(p)
				continue
			}
			return err
		}
		os.Remove(p)
		a.onEvent(Event{Kind: EventReportedScan, Agent: a.ID(), Seq: rep.Seq, Count: len(rep.Detections)})
	}
	return nil
}

// pendingScans reports whether scan reports wait to be sent.
func (a *Agent) pendingScans() bool {
	ents, _ := os.ReadDir(a.path(dirPendingScans))
	return len(ents) > 0
}
