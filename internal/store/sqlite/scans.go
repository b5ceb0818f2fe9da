package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

const (
	scanCols      = "id, agent_id, report_id, kind, seq, defs_ver, started_at, finished_at, files, bytes, skipped, received_at"
	detectionCols = "id, scan_id, agent_id, path, signature, sha256, defs_ver, found_at, quarantine, access, pid, process, blocked"
)

// RecordScan implements store.Store. A report for an unknown agent is an
// error: unlike check-ins, scans are not batched with other agents'.
func (s *Store) RecordScan(ctx context.Context, sc store.Scan) (int64, error) {
	seq, err := int64Of("scan command sequence", sc.Seq)
	if err != nil {
		return 0, fmt.Errorf("sqlite store: record scan: %w", err)
	}
	if sc.AgentID == "" || sc.ReportID == "" {
		return 0, errors.New("sqlite store: record scan: agent and report ids are required")
	}
	for _, d := range sc.Detections {
		if d.PID < 0 {
			return 0, fmt.Errorf("sqlite store: record scan: detection of %q: negative pid %d", d.Path, d.PID)
		}
	}
	var id int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, "SELECT id FROM scans WHERE agent_id = ? AND report_id = ?", sc.AgentID, sc.ReportID).Scan(&id)
		if err == nil {
			return nil // already stored
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO scans (agent_id, report_id, kind, seq, defs_ver, started_at, finished_at,
			files, bytes, skipped, detections, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			sc.AgentID, sc.ReportID, sc.Kind, seq, sc.DefsVer, timeArg(sc.StartedAt), timeArg(sc.FinishedAt),
			sc.Files, sc.Bytes, sc.Skipped, len(sc.Detections), timeArg(sc.ReceivedAt))
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		for _, d := range sc.Detections {
			_, err := tx.ExecContext(ctx, `INSERT INTO detections (scan_id, agent_id, path, signature, sha256, defs_ver,
				found_at, quarantine, access, pid, process, blocked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				id, sc.AgentID, d.Path, d.Signature, d.SHA256, d.DefsVer, timeArg(d.FoundAt), d.Quarantine,
				d.Access, d.PID, d.Process, d.Blocked)
			if err != nil {
				return err
			}
		}
		if len(sc.Detections) > 0 {
			if _, err := tx.ExecContext(ctx, "UPDATE agents SET detections = detections + ? WHERE id = ?",
				len(sc.Detections), sc.AgentID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite store: record scan: %w", err)
	}
	return id, nil
}

// Scans implements store.Store.
func (s *Store) Scans(ctx context.Context, agentID string, limit int) ([]store.Scan, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, "SELECT "+scanCols+" FROM scans WHERE ?1 = '' OR agent_id = ?1 ORDER BY id DESC LIMIT ?2", agentID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: scans: %w", err)
	}
	defer rows.Close()
	var out []store.Scan
	for rows.Next() {
		var (
			sc                 store.Scan
			seq                int64
			start, fin, recvAt sql.NullInt64
		)
		if err := rows.Scan(&sc.ID, &sc.AgentID, &sc.ReportID, &sc.Kind, &seq, &sc.DefsVer, &start, &fin, &sc.Files, &sc.Bytes, &sc.Skipped, &recvAt); err != nil {
			return nil, fmt.Errorf("sqlite store: scans: %w", err)
		}
		sc.Seq, sc.StartedAt, sc.FinishedAt, sc.ReceivedAt = uint64(seq), timeVal(start), timeVal(fin), timeVal(recvAt)
		out = append(out, sc)
	}
	return out, rows.Err()
}

// Detections implements store.Store.
func (s *Store) Detections(ctx context.Context, agentID string, limit int) ([]store.Detection, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, "SELECT "+detectionCols+" FROM detections WHERE ?1 = '' OR agent_id = ?1 ORDER BY id DESC LIMIT ?2", agentID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: detections: %w", err)
	}
	defer rows.Close()
	var out []store.Detection
	for rows.Next() {
		d, err := scanDetection(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: detections: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func scanDetection(sc scanner) (store.Detection, error) {
	var (
		d     store.Detection
		found sql.NullInt64
	)
	if err := sc.Scan(&d.ID, &d.ScanID, &d.AgentID, &d.Path, &d.Signature, &d.SHA256, &d.DefsVer, &found, &d.Quarantine,
		&d.Access, &d.PID, &d.Process, &d.Blocked); err != nil {
		return store.Detection{}, err
	}
	d.FoundAt = timeVal(found)
	return d, nil
}

// QueryDetections implements store.Store. The rows are read as fn takes
// them, through the index by time (of one agent's when AgentID is set).
func (s *Store) QueryDetections(ctx context.Context, q store.DetectionQuery, fn func(store.Detection) error) error {
	var where []string
	var args []any
	if q.AgentID != "" {
		where, args = append(where, "agent_id = ?"), append(args, q.AgentID)
	}
	if q.Signature != "" {
		where, args = append(where, "instr(lower(signature), lower(?)) > 0"), append(args, q.Signature)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "found_at >= ?"), append(args, micro(q.Since))
	}
	if !q.Until.IsZero() {
		// The zero time (NULL) is before any Until.
		where, args = append(where, "(found_at < ? OR found_at IS NULL)"), append(args, micro(q.Until))
	}
	query := "SELECT " + detectionCols + " FROM detections"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY found_at DESC, id DESC"
	if q.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, q.Limit)
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("sqlite store: query detections: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDetection(rows)
		if err != nil {
			return fmt.Errorf("sqlite store: query detections: %w", err)
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite store: query detections: %w", err)
	}
	return nil
}

// CountDetections implements store.Store. A zero since counts them all.
func (s *Store) CountDetections(ctx context.Context, since time.Time) (int, error) {
	var n int
	var err error
	if since.IsZero() {
		err = s.r.QueryRowContext(ctx, "SELECT count(*) FROM detections").Scan(&n)
	} else {
		err = s.r.QueryRowContext(ctx, "SELECT count(*) FROM detections WHERE found_at >= ?", micro(since)).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite store: count detections: %w", err)
	}
	return n, nil
}
