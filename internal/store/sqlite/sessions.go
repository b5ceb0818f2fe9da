package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/vigil-fleet/vigil/internal/store"
)

// sessionsSchema adds the web console's sessions (by the SHA-256 of their
// id), indexed by last use (the least recently used goes first when the
// table is full; idle sessions are pruned) and by creation (sessions past
// their absolute age are pruned).
const sessionsSchema = `
CREATE TABLE sessions (
	id_hash    BLOB PRIMARY KEY,
	csrf       TEXT NOT NULL,
	user_name  TEXT NOT NULL,
	role       TEXT NOT NULL,
	via        TEXT NOT NULL,
	addr       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	last_used  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_last_used ON sessions (last_used, id_hash);
CREATE INDEX sessions_created ON sessions (created_at);
`

const sessionCols = "id_hash, csrf, user_name, role, via, addr, created_at, last_used"

// checkSession says what a session to create lacks.
func checkSession(s store.Session) error {
	switch {
	case len(s.IDHash) != sha256.Size:
		return fmt.Errorf("the id hash is %d bytes, want %d (SHA-256)", len(s.IDHash), sha256.Size)
	case s.CSRF == "" || s.User == "" || s.Role == "":
		return errors.New("a CSRF token, a user and a role are required")
	case s.Created.IsZero() || s.LastUsed.IsZero():
		return errors.New("the creation and last use times are required")
	}
	return nil
}

// CreateSession implements store.Store: the table is trimmed and the
// session inserted in one transaction.
func (s *Store) CreateSession(ctx context.Context, ss store.Session, max int) error {
	if err := checkSession(ss); err != nil {
		return fmt.Errorf("sqlite store: create session: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		// Inserted first: a session refused (its hash is taken) removes
		// none.
		if _, err := tx.ExecContext(ctx, "INSERT INTO sessions ("+sessionCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			ss.IDHash, ss.CSRF, ss.User, ss.Role, ss.Via, ss.Addr, ss.Created.UnixMicro(), ss.LastUsed.UnixMicro()); err != nil {
			return err
		}
		if max <= 0 {
			return nil
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sessions").Scan(&n); err != nil {
			return err
		}
		if n <= max {
			return nil
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash IN
			(SELECT id_hash FROM sessions WHERE id_hash <> ? ORDER BY last_used, id_hash LIMIT ?)`, ss.IDHash, n-max)
		return err
	})
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return fmt.Errorf("sqlite store: create session: %w", store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("sqlite store: create session: %w", err)
	}
	return nil
}

// Session implements store.Store.
func (s *Store) Session(ctx context.Context, idHash []byte) (store.Session, error) {
	var ss store.Session
	var created, last int64
	err := s.r.QueryRowContext(ctx, "SELECT "+sessionCols+" FROM sessions WHERE id_hash = ?", idHash).
		Scan(&ss.IDHash, &ss.CSRF, &ss.User, &ss.Role, &ss.Via, &ss.Addr, &created, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Session{}, fmt.Errorf("sqlite store: session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, fmt.Errorf("sqlite store: session: %w", err)
	}
	ss.Created, ss.LastUsed = time.UnixMicro(created).UTC(), time.UnixMicro(last).UTC()
	return ss, nil
}

// TouchSession implements store.Store.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE sessions SET last_used = ?1 WHERE id_hash = ?2 AND last_used < ?1", at.UnixMicro(), idHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite store: touch session: %w", err)
	}
	return nil
}

// RemoveSession implements store.Store.
func (s *Store) RemoveSession(ctx context.Context, idHash []byte) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE id_hash = ?", idHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite store: remove session: %w", err)
	}
	return nil
}

// PruneSessions implements store.Store. A zero time bounds nothing.
func (s *Store) PruneSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE last_used < ? OR created_at < ?", timeArg(idleBefore), timeArg(createdBefore))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite store: prune sessions: %w", err)
	}
	return int(n), nil
}

// CountSessions implements store.Store.
func (s *Store) CountSessions(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM sessions").Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite store: count sessions: %w", err)
	}
	return n, nil
}
