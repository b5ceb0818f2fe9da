package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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
		return 0, fmt.Errorf("postgres store: record scan: %w", err)
	}
	if sc.AgentID == "" || sc.ReportID == "" {
		return 0, errors.New("postgres store: record scan: agent and report ids are required")
	}
	for _, d := range sc.Detections {
		if d.PID < 0 {
			return 0, fmt.Errorf("postgres store: record scan: detection of %q: negative pid %d", d.Path, d.PID)
		}
	}
	var id int64
	err = s.write(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO scans (agent_id, report_id, kind, seq, defs_ver, started_at, finished_at,
			files, bytes, skipped, detections, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (agent_id, report_id) DO NOTHING RETURNING id`,
			sc.AgentID, sc.ReportID, sc.Kind, seq, sc.DefsVer, ts(sc.StartedAt), ts(sc.FinishedAt),
			sc.Files, sc.Bytes, sc.Skipped, len(sc.Detections), ts(sc.ReceivedAt)).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			// Stored already (by this instance or another).
			return tx.QueryRow(ctx, "SELECT id FROM scans WHERE agent_id = $1 AND report_id = $2", sc.AgentID, sc.ReportID).Scan(&id)
		}
		if err != nil {
			return err
		}
		if len(sc.Detections) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		for _, d := range sc.Detections {
			b.Queue(`INSERT INTO detections (scan_id, agent_id, path, signature, sha256, defs_ver,
				found_at, quarantine, access, pid, process, blocked) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
				id, sc.AgentID, d.Path, d.Signature, d.SHA256, d.DefsVer, ts(d.FoundAt), d.Quarantine,
				d.Access, d.PID, d.Process, d.Blocked)
		}
		b.Queue("UPDATE agents SET detections = detections + $1 WHERE id = $2", len(sc.Detections), sc.AgentID)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("postgres store: record scan: %w", err)
	}
	return id, nil
}

// Scans implements store.Store.
func (s *Store) Scans(ctx context.Context, agentID string, limit int) ([]store.Scan, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, "SELECT "+scanCols+" FROM scans WHERE $1 = '' OR agent_id = $1 ORDER BY id DESC LIMIT $2", agentID, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres store: scans: %w", err)
	}
	defer rows.Close()
	var out []store.Scan
	for rows.Next() {
		var (
			sc                 store.Scan
			seq                int64
			start, fin, recvAt *time.Time
		)
		if err := rows.Scan(&sc.ID, &sc.AgentID, &sc.ReportID, &sc.Kind, &seq, &sc.DefsVer, &start, &fin,
			&sc.Files, &sc.Bytes, &sc.Skipped, &recvAt); err != nil {
			return nil, fmt.Errorf("postgres store: scans: %w", err)
		}
		sc.Seq, sc.StartedAt, sc.FinishedAt, sc.ReceivedAt = uint64(seq), timeOf(start), timeOf(fin), timeOf(recvAt)
		out = append(out, sc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store: scans: %w", err)
	}
	return out, nil
}

func scanDetection(row pgx.Row) (store.Detection, error) {
	var (
		d     store.Detection
		found *time.Time
	)
	if err := row.Scan(&d.ID, &d.ScanID, &d.AgentID, &d.Path, &d.Signature, &d.SHA256, &d.DefsVer, &found, &d.Quarantine,
		&d.Access, &d.PID, &d.Process, &d.Blocked); err != nil {
		return store.Detection{}, err
	}
	d.FoundAt = timeOf(found)
	return d, nil
}

// queryDetections runs a query of detectionCols and calls fn with each
// detection as its row is read; fn's error comes back as an errCallback.
func (s *Store) queryDetections(ctx context.Context, query string, a args, fn func(store.Detection) error) error {
	rows, err := s.pool.Query(ctx, query, a...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDetection(rows)
		if err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return errCallback{err}
		}
	}
	return rows.Err()
}

// Detections implements store.Store.
func (s *Store) Detections(ctx context.Context, agentID string, limit int) ([]store.Detection, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []store.Detection
	err := s.queryDetections(ctx, "SELECT "+detectionCols+" FROM detections WHERE $1 = '' OR agent_id = $1 ORDER BY id DESC LIMIT $2",
		args{agentID, limit}, func(d store.Detection) error { out = append(out, d); return nil })
	if err != nil {
		return nil, fmt.Errorf("postgres store: detections: %w", err)
	}
	return out, nil
}

// QueryDetections implements store.Store. The rows are read as fn takes
// them, through the index by time (of one agent's when AgentID is set).
// Since and Until are compared exactly with the times as stored: a
// detection stored at 12:00:00.000001 is not at or after
// 12:00:00.000001001.
func (s *Store) QueryDetections(ctx context.Context, q store.DetectionQuery, fn func(store.Detection) error) error {
	var (
		where []string
		a     args
	)
	if q.AgentID != "" {
		where = append(where, "agent_id = "+a.add(q.AgentID))
	}
	if q.Signature != "" {
		where = append(where, `strpos(lower(signature), lower(`+a.add(q.Signature)+`::text COLLATE "C")) > 0`)
	}
	if !q.Since.IsZero() {
		where = append(where, "found_at >= "+a.add(ceilMicro(q.Since)))
	}
	if !q.Until.IsZero() {
		// A detection without a time (the zero time) is before any.
		where = append(where, "(found_at < "+a.add(ceilMicro(q.Until))+" OR found_at IS NULL)")
	}
	query := "SELECT " + detectionCols + " FROM detections"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY found_at DESC NULLS LAST, id DESC"
	if q.Limit > 0 {
		query += " LIMIT " + a.add(q.Limit)
	}
	if err := s.queryDetections(ctx, query, a, fn); err != nil {
		var cb errCallback
		if errors.As(err, &cb) {
			return cb.err
		}
		return fmt.Errorf("postgres store: query detections: %w", err)
	}
	return nil
}

// CountDetections implements store.Store. A zero since counts them all
// (those without a time included).
func (s *Store) CountDetections(ctx context.Context, since time.Time) (int, error) {
	var n int
	var err error
	if since.IsZero() {
		err = s.pool.QueryRow(ctx, "SELECT count(*) FROM detections").Scan(&n)
	} else {
		err = s.pool.QueryRow(ctx, "SELECT count(*) FROM detections WHERE found_at >= $1", ceilMicro(since)).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("postgres store: count detections: %w", err)
	}
	return n, nil
}
