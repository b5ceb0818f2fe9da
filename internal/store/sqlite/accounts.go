package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"github.com/vigil-fleet/vigil/internal/store"
)

// accountsSchema adds the server's users, their API tokens (hashed) and
// the audit log, indexed by time (the order it is read in) and by actor.
const accountsSchema = `
CREATE TABLE users (
	name          TEXT PRIMARY KEY,
	role          TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	created_at    INTEGER
) WITHOUT ROWID;

CREATE TABLE api_tokens (
	id         TEXT PRIMARY KEY,
	user_name  TEXT NOT NULL REFERENCES users (name),
	name       TEXT NOT NULL,
	hash       BLOB NOT NULL UNIQUE,
	created_at INTEGER,
	last_used  INTEGER,
	UNIQUE (user_name, name)
);

CREATE TABLE audit (
	id     INTEGER PRIMARY KEY,
	at     INTEGER NOT NULL,
	actor  TEXT NOT NULL,
	addr   TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	detail TEXT NOT NULL,
	ok     INTEGER NOT NULL CHECK (ok IN (0, 1))
);
CREATE INDEX audit_time ON audit (at, id);
CREATE INDEX audit_actor ON audit (actor, at, id);
`

const (
	userCols  = "name, role, password_hash, created_at"
	tokenCols = "id, user_name, name, hash, created_at, last_used"
	auditCols = "id, at, actor, addr, action, target, detail, ok"
)

// AddUser implements store.Store.
func (s *Store) AddUser(ctx context.Context, u store.User) error {
	if u.Name == "" || u.Role == "" || u.PasswordHash == "" {
		return errors.New("sqlite store: add user: name, role and password hash are required")
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO users ("+userCols+") VALUES (?, ?, ?, ?)",
			u.Name, u.Role, u.PasswordHash, timeArg(u.Created))
		return err
	})
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return fmt.Errorf("sqlite store: user %q: %w", u.Name, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("sqlite store: add user %q: %w", u.Name, err)
	}
	return nil
}

func scanUser(sc scanner) (store.User, error) {
	var u store.User
	var created sql.NullInt64
	if err := sc.Scan(&u.Name, &u.Role, &u.PasswordHash, &created); err != nil {
		return store.User{}, err
	}
	u.Created = timeVal(created)
	return u, nil
}

// User implements store.Store.
func (s *Store) User(ctx context.Context, name string) (store.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, "SELECT "+userCols+" FROM users WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, fmt.Errorf("sqlite store: user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("sqlite store: user %q: %w", name, err)
	}
	return u, nil
}

// Users implements store.Store.
func (s *Store) Users(ctx context.Context) ([]store.User, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+userCols+" FROM users ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("sqlite store: users: %w", err)
	}
	defer rows.Close()
	var us []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: users: %w", err)
	}
	return us, nil
}

// SetUserRole implements store.Store.
func (s *Store) SetUserRole(ctx context.Context, name, role string) (string, error) {
	if role == "" {
		return "", errors.New("sqlite store: set role: empty role")
	}
	var old string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "SELECT role FROM users WHERE name = ?", name).Scan(&old); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE users SET role = ? WHERE name = ?", role, name)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("sqlite store: user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("sqlite store: set role of %q: %w", name, err)
	}
	return old, nil
}

// SetUserPassword implements store.Store.
func (s *Store) SetUserPassword(ctx context.Context, name, hash string) error {
	if hash == "" {
		return errors.New("sqlite store: set password: empty hash")
	}
	return s.changeOne(ctx, "set password of user", name, "UPDATE users SET password_hash = ? WHERE name = ?", hash, name)
}

// RemoveUser implements store.Store.
func (s *Store) RemoveUser(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM api_tokens WHERE user_name = ?", name); err != nil {
			return err
		}
		return execOne(ctx, tx, "DELETE FROM users WHERE name = ?", name)
	})
	if err != nil {
		return fmt.Errorf("sqlite store: remove user %q: %w", name, err)
	}
	return nil
}

// changeOne runs one statement that must change exactly one row
// (store.ErrNotFound when it changes none).
func (s *Store) changeOne(ctx context.Context, what, name, query string, args ...any) error {
	err := s.write(ctx, func(tx *sql.Tx) error { return execOne(ctx, tx, query, args...) })
	if err != nil {
		return fmt.Errorf("sqlite store: %s %q: %w", what, name, err)
	}
	return nil
}

func execOne(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// AddToken implements store.Store.
func (s *Store) AddToken(ctx context.Context, t store.APIToken) error {
	if t.ID == "" || t.User == "" || t.Name == "" || len(t.Hash) == 0 {
		return errors.New("sqlite store: add token: id, user, name and hash are required")
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, "SELECT 1 FROM users WHERE name = ?", t.User).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("user %q: %w", t.User, store.ErrNotFound)
		} else if err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO api_tokens ("+tokenCols+") VALUES (?, ?, ?, ?, ?, ?)",
			t.ID, t.User, t.Name, t.Hash, timeArg(t.Created), timeArg(t.LastUsed))
		if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) || isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
			return fmt.Errorf("user %q has a token named %q, or the token's id or hash is taken: %w", t.User, t.Name, store.ErrExists)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite store: add token: %w", err)
	}
	return nil
}

func scanToken(sc scanner) (store.APIToken, error) {
	var t store.APIToken
	var created, used sql.NullInt64
	if err := sc.Scan(&t.ID, &t.User, &t.Name, &t.Hash, &created, &used); err != nil {
		return store.APIToken{}, err
	}
	t.Created, t.LastUsed = timeVal(created), timeVal(used)
	return t, nil
}

// TokenByHash implements store.Store.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (store.APIToken, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, "SELECT "+tokenCols+" FROM api_tokens WHERE hash = ?", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return store.APIToken{}, fmt.Errorf("sqlite store: token: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.APIToken{}, fmt.Errorf("sqlite store: token: %w", err)
	}
	return t, nil
}

// Tokens implements store.Store.
func (s *Store) Tokens(ctx context.Context, user string) ([]store.APIToken, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT "+tokenCols+" FROM api_tokens WHERE ?1 = '' OR user_name = ?1 ORDER BY user_name, name", user)
	if err != nil {
		return nil, fmt.Errorf("sqlite store: tokens: %w", err)
	}
	defer rows.Close()
	var ts []store.APIToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: tokens: %w", err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite store: tokens: %w", err)
	}
	return ts, nil
}

// RemoveToken implements store.Store.
func (s *Store) RemoveToken(ctx context.Context, user, name string) error {
	return s.changeOne(ctx, "remove token", user+"/"+name, "DELETE FROM api_tokens WHERE user_name = ? AND name = ?", user, name)
}

// TouchToken implements store.Store.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE api_tokens SET last_used = ? WHERE id = ?", timeArg(at), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite store: touch token: %w", err)
	}
	return nil
}

// AppendAudit implements store.Store. An entry needs a time.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) (int64, error) {
	if e.Time.IsZero() || e.Action == "" {
		return 0, errors.New("sqlite store: audit: an entry needs a time and an action")
	}
	var id int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO audit (at, actor, addr, action, target, detail, ok) VALUES (?, ?, ?, ?, ?, ?, ?)",
			e.Time.UnixMicro(), e.Actor, e.Addr, e.Action, e.Target, e.Detail, e.OK)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite store: audit: %w", err)
	}
	return id, nil
}

// AuditLog implements store.Store. The rows are read as fn takes them,
// on one connection of the read pool.
func (s *Store) AuditLog(ctx context.Context, q store.AuditQuery, fn func(store.AuditEvent) error) error {
	var where []string
	var args []any
	if q.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, q.Actor)
	}
	if q.Action != "" {
		where, args = append(where, "action = ?"), append(args, q.Action)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, q.Since.UnixMicro())
	}
	if !q.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, q.Until.UnixMicro())
	}
	query := "SELECT " + auditCols + " FROM audit"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY at DESC, id DESC"
	if q.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, q.Limit)
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("sqlite store: audit log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e store.AuditEvent
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Addr, &e.Action, &e.Target, &e.Detail, &e.OK); err != nil {
			return fmt.Errorf("sqlite store: audit log: %w", err)
		}
		e.Time = time.UnixMicro(at).UTC()
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite store: audit log: %w", err)
	}
	return nil
}
