package postgres

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/store"
)

// sessionsSchema adds the web console's sessions (by the SHA-256 of their
// id), indexed by last use (the least recently used goes first when the
// table is full; idle sessions are pruned) and by creation (sessions past
// their absolute age are pruned). Every server instance reads them: a
// login on one is known to all.
const sessionsSchema = `
CREATE TABLE sessions (
	id_hash    bytea PRIMARY KEY,
	csrf       text NOT NULL,
	user_name  text COLLATE "C" NOT NULL,
	role       text NOT NULL,
	via        text NOT NULL,
	addr       text NOT NULL,
	created_at timestamptz NOT NULL,
	last_used  timestamptz NOT NULL
);
CREATE INDEX sessions_last_used ON sessions (last_used, id_hash);
CREATE INDEX sessions_created ON sessions (created_at);
`

const sessionCols = "id_hash, csrf, user_name, role, via, addr, created_at, last_used"

// sessionLock is the key of the advisory lock CreateSession holds while
// it counts, trims and inserts ("VSES"): logins on several instances at
// once do not together overfill the table.
const sessionLock = 0x56534553

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

// CreateSession implements store.Store: one transaction, under an
// advisory lock that serializes logins (not lookups or touches).
func (s *Store) CreateSession(ctx context.Context, ss store.Session, max int) error {
	if err := checkSession(ss); err != nil {
		return fmt.Errorf("postgres store: create session: %w", err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		if max > 0 {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(sessionLock)); err != nil {
				return err
			}
		}
		// Inserted first: a session refused (its hash is taken) removes
		// none.
		if _, err := tx.Exec(ctx, "INSERT INTO sessions ("+sessionCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			ss.IDHash, ss.CSRF, ss.User, ss.Role, ss.Via, ss.Addr, ss.Created, ss.LastUsed); err != nil {
			return err
		}
		if max <= 0 {
			return nil
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM sessions").Scan(&n); err != nil {
			return err
		}
		if n <= max {
			return nil
		}
		_, err := tx.Exec(ctx, `DELETE FROM sessions WHERE id_hash IN
			(SELECT id_hash FROM sessions WHERE id_hash <> $1 ORDER BY last_used, id_hash LIMIT $2)`, ss.IDHash, n-max)
		return err
	})
	if pgCode(err) == uniqueViolation {
		return fmt.Errorf("postgres store: create session: %w", store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("postgres store: create session: %w", err)
	}
	return nil
}

// Session implements store.Store.
func (s *Store) Session(ctx context.Context, idHash []byte) (store.Session, error) {
	var ss store.Session
	err := s.pool.QueryRow(ctx, "SELECT "+sessionCols+" FROM sessions WHERE id_hash = $1", idHash).
		Scan(&ss.IDHash, &ss.CSRF, &ss.User, &ss.Role, &ss.Via, &ss.Addr, &ss.Created, &ss.LastUsed)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Session{}, fmt.Errorf("postgres store: session: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, fmt.Errorf("postgres store: session: %w", err)
	}
	ss.Created, ss.LastUsed = ss.Created.UTC(), ss.LastUsed.UTC()
	return ss, nil
}

// TouchSession implements store.Store.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, at time.Time) error {
	if _, err := s.pool.Exec(ctx, "UPDATE sessions SET last_used = $1 WHERE id_hash = $2 AND last_used < $1", at, idHash); err != nil {
		return fmt.Errorf("postgres store: touch session: %w", err)
	}
	return nil
}

// RemoveSession implements store.Store.
func (s *Store) RemoveSession(ctx context.Context, idHash []byte) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM sessions WHERE id_hash = $1", idHash); err != nil {
		return fmt.Errorf("postgres store: remove session: %w", err)
	}
	return nil
}

// PruneSessions implements store.Store. A zero time bounds nothing.
func (s *Store) PruneSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM sessions WHERE last_used < $1 OR created_at < $2", ts(idleBefore), ts(createdBefore))
	if err != nil {
		return 0, fmt.Errorf("postgres store: prune sessions: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// CountSessions implements store.Store.
func (s *Store) CountSessions(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM sessions").Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres store: count sessions: %w", err)
	}
	return n, nil
}
