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
	userCols  = "name, role, password_hash, created_at"
	tokenCols = "id, user_name, name, hash, created_at, last_used"
	auditCols = "id, at, actor, addr, action, target, detail, ok"
)

// AddUser implements store.Store.
func (s *Store) AddUser(ctx context.Context, u store.User) error {
	if u.Name == "" || u.Role == "" || u.PasswordHash == "" {
		return errors.New("postgres store: add user: name, role and password hash are required")
	}
	_, err := s.pool.Exec(ctx, "INSERT INTO users ("+userCols+") VALUES ($1, $2, $3, $4)",
		u.Name, u.Role, u.PasswordHash, ts(u.Created))
	if pgCode(err) == uniqueViolation {
		return fmt.Errorf("postgres store: user %q: %w", u.Name, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("postgres store: add user %q: %w", u.Name, err)
	}
	return nil
}

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	var created *time.Time
	if err := row.Scan(&u.Name, &u.Role, &u.PasswordHash, &created); err != nil {
		return store.User{}, err
	}
	u.Created = timeOf(created)
	return u, nil
}

// User implements store.Store.
func (s *Store) User(ctx context.Context, name string) (store.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, "SELECT "+userCols+" FROM users WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.User{}, fmt.Errorf("postgres store: user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("postgres store: user %q: %w", name, err)
	}
	return u, nil
}

// Users implements store.Store.
func (s *Store) Users(ctx context.Context) ([]store.User, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+userCols+" FROM users ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("postgres store: users: %w", err)
	}
	defer rows.Close()
	var us []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres store: users: %w", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store: users: %w", err)
	}
	return us, nil
}

// SetUserRole implements store.Store: one statement that reads the old
// role under the row's lock.
func (s *Store) SetUserRole(ctx context.Context, name, role string) (string, error) {
	if role == "" {
		return "", errors.New("postgres store: set role: empty role")
	}
	var old string
	err := s.pool.QueryRow(ctx, `UPDATE users u SET role = $2 FROM (SELECT name, role FROM users WHERE name = $1 FOR UPDATE) o
		WHERE u.name = o.name RETURNING o.role`, name, role).Scan(&old)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("postgres store: user %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("postgres store: set role of %q: %w", name, err)
	}
	return old, nil
}

// SetUserPassword implements store.Store.
func (s *Store) SetUserPassword(ctx context.Context, name, hash string) error {
	if hash == "" {
		return errors.New("postgres store: set password: empty hash")
	}
	return s.changeOne(ctx, "set password of user", name, "UPDATE users SET password_hash = $1 WHERE name = $2", hash, name)
}

// RemoveUser implements store.Store.
func (s *Store) RemoveUser(ctx context.Context, name string) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM api_tokens WHERE user_name = $1", name); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "DELETE FROM users WHERE name = $1", name)
		if err == nil && tag.RowsAffected() == 0 {
			err = store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres store: remove user %q: %w", name, err)
	}
	return nil
}

// changeOne runs one statement that must change exactly one row
// (store.ErrNotFound when it changes none).
func (s *Store) changeOne(ctx context.Context, what, name, query string, a ...any) error {
	tag, err := s.pool.Exec(ctx, query, a...)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("postgres store: %s %q: %w", what, name, err)
	}
	return nil
}

// AddToken implements store.Store.
func (s *Store) AddToken(ctx context.Context, t store.APIToken) error {
	if t.ID == "" || t.User == "" || t.Name == "" || len(t.Hash) == 0 {
		return errors.New("postgres store: add token: id, user, name and hash are required")
	}
	_, err := s.pool.Exec(ctx, "INSERT INTO api_tokens ("+tokenCols+") VALUES ($1, $2, $3, $4, $5, $6)",
		t.ID, t.User, t.Name, t.Hash, ts(t.Created), ts(t.LastUsed))
	switch pgCode(err) {
	case "":
	case foreignKeyViolation:
		err = fmt.Errorf("user %q: %w", t.User, store.ErrNotFound)
	case uniqueViolation:
		err = fmt.Errorf("user %q has a token named %q, or the token's id or hash is taken: %w", t.User, t.Name, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("postgres store: add token: %w", err)
	}
	return nil
}

func scanToken(row pgx.Row) (store.APIToken, error) {
	var t store.APIToken
	var created, used *time.Time
	if err := row.Scan(&t.ID, &t.User, &t.Name, &t.Hash, &created, &used); err != nil {
		return store.APIToken{}, err
	}
	t.Created, t.LastUsed = timeOf(created), timeOf(used)
	return t, nil
}

// TokenByHash implements store.Store.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (store.APIToken, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, "SELECT "+tokenCols+" FROM api_tokens WHERE hash = $1", hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.APIToken{}, fmt.Errorf("postgres store: token: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.APIToken{}, fmt.Errorf("postgres store: token: %w", err)
	}
	return t, nil
}

// Tokens implements store.Store.
func (s *Store) Tokens(ctx context.Context, user string) ([]store.APIToken, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+tokenCols+" FROM api_tokens WHERE $1 = '' OR user_name = $1 ORDER BY user_name, name", user)
	if err != nil {
		return nil, fmt.Errorf("postgres store: tokens: %w", err)
	}
	defer rows.Close()
	var ts []store.APIToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres store: tokens: %w", err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres store: tokens: %w", err)
	}
	return ts, nil
}

// RemoveToken implements store.Store.
func (s *Store) RemoveToken(ctx context.Context, user, name string) error {
	return s.changeOne(ctx, "remove token", user+"/"+name, "DELETE FROM api_tokens WHERE user_name = $1 AND name = $2", user, name)
}

// TouchToken implements store.Store.
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	if _, err := s.pool.Exec(ctx, "UPDATE api_tokens SET last_used = $1 WHERE id = $2", ts(at), id); err != nil {
		return fmt.Errorf("postgres store: touch token: %w", err)
	}
	return nil
}

// AppendAudit implements store.Store. An entry needs a time and an action.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) (int64, error) {
	if e.Time.IsZero() || e.Action == "" {
		return 0, errors.New("postgres store: audit: an entry needs a time and an action")
	}
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO audit (at, actor, addr, action, target, detail, ok)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		e.Time, e.Actor, e.Addr, e.Action, e.Target, e.Detail, e.OK).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("postgres store: audit: %w", err)
	}
	return id, nil
}

// AuditLog implements store.Store. The rows are read as fn takes them.
func (s *Store) AuditLog(ctx context.Context, q store.AuditQuery, fn func(store.AuditEvent) error) error {
	var (
		where []string
		a     args
	)
	if q.Actor != "" {
		where = append(where, "actor = "+a.add(q.Actor))
	}
	if q.Action != "" {
		where = append(where, "action = "+a.add(q.Action))
	}
	if !q.Since.IsZero() {
		where = append(where, "at >= "+a.add(bound(q.Since)))
	}
	if !q.Until.IsZero() {
		where = append(where, "at < "+a.add(bound(q.Until)))
	}
	query := "SELECT " + auditCols + " FROM audit"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY at DESC, id DESC"
	if q.Limit > 0 {
		query += " LIMIT " + a.add(q.Limit)
	}
	rows, err := s.pool.Query(ctx, query, a...)
	if err != nil {
		return fmt.Errorf("postgres store: audit log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e store.AuditEvent
		var at time.Time
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Addr, &e.Action, &e.Target, &e.Detail, &e.OK); err != nil {
			return fmt.Errorf("postgres store: audit log: %w", err)
		}
		e.Time = at.UTC()
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres store: audit log: %w", err)
	}
	return nil
}
