package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// A migration brings the schema from version N to N+1, where N is its index
// in migrations. It runs inside the transaction that also sets user_version.
type migration struct {
	name string
	up   func(ctx context.Context, tx *sql.Tx) error
}

// migrations is the ordered schema history. Entries are only ever appended:
// an applied migration must never change.
var migrations = []migration{
	{name: "initial schema", up: migrateInitial},
	{name: "scans and detections", up: execMigration(scansSchema)},
	{name: "agents' last check-in, revocation and removal", up: execMigration(agentStatesSchema)},
	{name: "on-access scanning", up: execMigration(onAccessSchema)},
	{name: "users, API tokens and the audit log", up: execMigration(accountsSchema)},
	{name: "fleet queries: sort keys, detection counts, agent groups", up: migrateFleet},
	{name: "the web console's sessions", up: execMigration(sessionsSchema)},
	{name: "agents' last definitions update", up: execMigration(updateSchema)},
}

// updateSchema adds the definitions update each agent's last check-in
// reported (JSON, NULL when it reported none, as every agent did before
// it).
const updateSchema = `ALTER TABLE agents ADD COLUMN update_json TEXT;`

// onAccessSchema adds the on-access state of each agent's last check-in
// (JSON, NULL when it reported none, as every agent did before it), the
// kind of a scan report (empty for the scans before it) and the on-access
// facts of a detection (none for the detections before it).
const onAccessSchema = `
ALTER TABLE agents ADD COLUMN onaccess_json TEXT;
ALTER TABLE scans ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE detections ADD COLUMN access TEXT NOT NULL DEFAULT '';
ALTER TABLE detections ADD COLUMN pid INTEGER NOT NULL DEFAULT 0 CHECK (pid >= 0);
ALTER TABLE detections ADD COLUMN process TEXT NOT NULL DEFAULT '';
ALTER TABLE detections ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1));
`

// agentStatesSchema adds the time of each agent's last check-in (taken, for
// agents that checked in before it existed, from last_seen when it is
// later than the enrollment, which only a check-in makes it), and the times
// an administrator revoked or removed it.
const agentStatesSchema = `
ALTER TABLE agents ADD COLUMN last_checkin INTEGER;
ALTER TABLE agents ADD COLUMN revoked_at INTEGER;
ALTER TABLE agents ADD COLUMN removed_at INTEGER;
UPDATE agents SET last_checkin = last_seen WHERE last_seen > enrolled_at;
`

func execMigration(ddl string) func(ctx context.Context, tx *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, ddl)
		return err
	}
}

const scansSchema = `
CREATE TABLE scans (
	id          INTEGER PRIMARY KEY,
	agent_id    TEXT NOT NULL REFERENCES agents (id),
	report_id   TEXT NOT NULL,
	seq         INTEGER NOT NULL CHECK (seq >= 0),
	defs_ver    TEXT NOT NULL,
	started_at  INTEGER,
	finished_at INTEGER,
	files       INTEGER NOT NULL,
	bytes       INTEGER NOT NULL,
	skipped     INTEGER NOT NULL,
	detections  INTEGER NOT NULL,
	received_at INTEGER,
	UNIQUE (agent_id, report_id)
);

CREATE TABLE detections (
	id         INTEGER PRIMARY KEY,
	scan_id    INTEGER NOT NULL REFERENCES scans (id),
	agent_id   TEXT NOT NULL REFERENCES agents (id),
	path       TEXT NOT NULL,
	signature  TEXT NOT NULL,
	sha256     TEXT NOT NULL,
	defs_ver   TEXT NOT NULL,
	found_at   INTEGER,
	quarantine TEXT NOT NULL
);
CREATE INDEX detections_agent ON detections (agent_id, id);
CREATE INDEX scans_agent ON scans (agent_id, id);
`

// SchemaVersion is the schema version this build creates and understands.
func SchemaVersion() int { return len(migrations) }

const initialSchema = `
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE agents (
	id            TEXT PRIMARY KEY,
	token_hash    BLOB NOT NULL,
	hostname      TEXT NOT NULL,
	os            TEXT NOT NULL,
	arch          TEXT NOT NULL,
	version       TEXT NOT NULL,
	defs_ver      TEXT NOT NULL,
	groups_json   TEXT NOT NULL,
	last_seq      INTEGER NOT NULL CHECK (last_seq >= 0),
	enrolled_at   INTEGER,
	last_seen     INTEGER,
	counters_json TEXT NOT NULL
);

CREATE TABLE command_seq (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	last INTEGER NOT NULL CHECK (last >= 0)
);
INSERT INTO command_seq (id, last) VALUES (1, 0);

CREATE TABLE commands (
	seq       INTEGER PRIMARY KEY CHECK (seq > 0),
	name      TEXT NOT NULL,
	target    TEXT NOT NULL,
	envelope  BLOB NOT NULL,
	issued_at INTEGER,
	expires   INTEGER
);

CREATE TABLE results (
	seq         INTEGER NOT NULL REFERENCES commands (seq),
	agent_id    TEXT NOT NULL REFERENCES agents (id),
	status      TEXT NOT NULL,
	output      TEXT NOT NULL,
	executed_at INTEGER,
	received_at INTEGER,
	PRIMARY KEY (seq, agent_id)
);
`

func migrateInitial(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, initialSchema); err != nil {
		return err
	}
	epoch, err := newEpoch()
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO meta (key, value) VALUES ('epoch', ?)", formatEpoch(epoch))
	return err
}

// newEpoch returns a random non-zero epoch.
func newEpoch() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("epoch: %w", err)
		}
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e, nil
		}
	}
}

// The epoch is stored as unsigned decimal text: SQLite integers are signed
// 64-bit, and half of all epochs are at or above 2^63.
func formatEpoch(e uint64) string { return strconv.FormatUint(e, 10) }

func parseEpoch(s string) (uint64, error) {
	e, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid epoch %q in meta table: %w", s, err)
	}
	if e == 0 {
		return 0, errors.New("invalid epoch 0 in meta table")
	}
	return e, nil
}

// epochState is the store's epoch and the latest sequence number when it
// began (meta keys epoch and epoch_start; a store that never changed epoch
// has no epoch_start: 0).
type epochState struct {
	epoch, start uint64
}

func readEpoch(ctx context.Context, db *sql.DB) (epochState, error) {
	var v string
	err := db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'epoch'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return epochState{}, errors.New("meta table has no epoch")
	}
	if err != nil {
		return epochState{}, err
	}
	var st epochState
	if st.epoch, err = parseEpoch(v); err != nil {
		return epochState{}, err
	}
	err = db.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'epoch_start'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return epochState{}, err
	}
	if st.start, err = strconv.ParseUint(v, 10, 64); err != nil || st.start > math.MaxInt64 {
		return epochState{}, fmt.Errorf("invalid epoch_start %q in meta table", v)
	}
	return st, nil
}

// header is what identifies a database file as a Vigil store.
type header struct {
	version int   // PRAGMA user_version
	appID   int64 // PRAGMA application_id
	objects int   // schema objects other than SQLite's own
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readHeader(ctx context.Context, q querier) (header, error) {
	var h header
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&h.version); err != nil {
		return h, err
	}
	if err := q.QueryRowContext(ctx, "PRAGMA application_id").Scan(&h.appID); err != nil {
		return h, err
	}
	err := q.QueryRowContext(ctx,
		"SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").Scan(&h.objects)
	return h, err
}

// check reports whether the file is a Vigil store (or empty) of a version
// this build can use.
func (h header) check(known int) error {
	switch {
	case h.appID != 0 && h.appID != applicationID:
		return fmt.Errorf("%w: application_id is %#x, want %#x", ErrNotStore, uint32(h.appID), applicationID)
	case h.version > known:
		return fmt.Errorf("%w: its version is %d, this build knows versions up to %d; use a newer Vigil",
			ErrSchemaTooNew, h.version, known)
	case h.version < 0:
		return fmt.Errorf("%w: invalid schema version %d", ErrNotStore, h.version)
	case h.version == 0 && h.objects > 0:
		return fmt.Errorf("%w: database has %d schema objects but no Vigil schema version", ErrNotStore, h.objects)
	case h.version > 0 && h.appID != applicationID:
		return fmt.Errorf("%w: schema version %d without the Vigil application_id", ErrNotStore, h.version)
	}
	return nil
}

// checkIdentity reads the header of the database without writing to it and
// checks it against a schema history of known versions.
func checkIdentity(ctx context.Context, db *sql.DB, known int) error {
	h, err := readHeader(ctx, db)
	if err != nil {
		return err
	}
	return h.check(known)
}

// migrate applies the entries of ms the database lacks, one transaction each.
// The version is read again inside each transaction, which holds the write
// lock, so processes opening the same new file at once do not both apply a
// migration.
func migrate(ctx context.Context, db *sql.DB, ms []migration) error {
	for {
		done, err := migrateOne(ctx, db, ms)
		if err != nil || done {
			return err
		}
	}
}

func migrateOne(ctx context.Context, db *sql.DB, ms []migration) (done bool, err error) {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() // a no-op once committed
	h, err := readHeader(ctx, tx)
	if err != nil {
		return false, err
	}
	if err := h.check(len(ms)); err != nil {
		return false, err
	}
	if h.version == len(ms) {
		return true, nil
	}
	m := ms[h.version]
	if err := m.up(ctx, tx); err != nil {
		return false, fmt.Errorf("schema migration %d (%s): %w", h.version+1, m.name, err)
	}
	// PRAGMA takes no parameters; both values are integers formatted here.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", h.version+1)); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d", applicationID)); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("schema migration %d (%s): commit: %w", h.version+1, m.name, err)
	}
	return false, nil
}
