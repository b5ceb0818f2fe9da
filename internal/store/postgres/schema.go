package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// A migration brings the schema from version N to N+1, where N is its index
// in migrations. It runs in the transaction that records it in
// schema_migrations.
type migration struct {
	name string
	sql  string
}

// migrations is the ordered schema history. Entries are only ever appended:
// an applied migration must never change.
var migrations = []migration{
	{name: "initial schema", sql: initialSchema},
	{name: "fleet query indexes", sql: fleetIndexes},
	{name: "the web console's sessions", sql: sessionsSchema},
	{name: "agents' last definitions update", sql: updateSchema},
}

// updateSchema adds the definitions update each agent's last check-in
// reported (JSON, NULL when it reported none, as every agent did before
// it).
const updateSchema = `ALTER TABLE agents ADD COLUMN update_json text;`

// SchemaVersion is the schema version this build creates and understands.
func SchemaVersion() int { return len(migrations) }

// migrationLock is the key of the advisory lock Open holds while it
// migrates ("VGIL").
const migrationLock = 0x5647494c

// Every text column that is compared, sorted or searched is COLLATE "C":
// bytewise order (as SQLite's BINARY and Go's string comparison) and
// ASCII-only lower(), whatever the database's default collation.
const initialSchema = `
CREATE TABLE meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);

CREATE TABLE agents (
	id            text COLLATE "C" PRIMARY KEY,
	token_hash    bytea NOT NULL,
	hostname      text COLLATE "C" NOT NULL,
	os            text COLLATE "C" NOT NULL,
	arch          text NOT NULL,
	version       text COLLATE "C" NOT NULL,
	defs_ver      text COLLATE "C" NOT NULL,
	groups        text[] COLLATE "C" NOT NULL,
	last_seq      bigint NOT NULL CHECK (last_seq >= 0),
	enrolled_at   timestamptz,
	last_seen     timestamptz,
	last_checkin  timestamptz,
	counters_json text NOT NULL,
	onaccess_json text,
	revoked_at    timestamptz,
	removed_at    timestamptz,
	detections    bigint NOT NULL DEFAULT 0,
	version_key   text COLLATE "C" NOT NULL,
	defs_key      text COLLATE "C" NOT NULL,
	groups_key    text COLLATE "C" NOT NULL
) WITH (fillfactor = 70);

CREATE TABLE command_seq (
	id   integer PRIMARY KEY CHECK (id = 1),
	last bigint NOT NULL CHECK (last >= 0)
);
INSERT INTO command_seq (id, last) VALUES (1, 0);

CREATE TABLE commands (
	seq       bigint PRIMARY KEY CHECK (seq > 0),
	name      text NOT NULL,
	target    text NOT NULL,
	envelope  bytea NOT NULL,
	issued_at timestamptz,
	expires   timestamptz
);

CREATE TABLE results (
	seq         bigint NOT NULL REFERENCES commands (seq),
	agent_id    text COLLATE "C" NOT NULL REFERENCES agents (id),
	status      text NOT NULL,
	output      bytea NOT NULL,
	executed_at timestamptz,
	received_at timestamptz,
	PRIMARY KEY (seq, agent_id)
);

CREATE TABLE scans (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	agent_id    text COLLATE "C" NOT NULL REFERENCES agents (id),
	report_id   text NOT NULL,
	kind        text NOT NULL,
	seq         bigint NOT NULL CHECK (seq >= 0),
	defs_ver    text NOT NULL,
	started_at  timestamptz,
	finished_at timestamptz,
	files       bigint NOT NULL,
	bytes       bigint NOT NULL,
	skipped     bigint NOT NULL,
	detections  integer NOT NULL,
	received_at timestamptz,
	UNIQUE (agent_id, report_id)
);

CREATE TABLE detections (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	scan_id    bigint NOT NULL REFERENCES scans (id),
	agent_id   text COLLATE "C" NOT NULL REFERENCES agents (id),
	path       text NOT NULL,
	signature  text COLLATE "C" NOT NULL,
	sha256     text NOT NULL,
	defs_ver   text NOT NULL,
	found_at   timestamptz,
	quarantine text NOT NULL,
	access     text NOT NULL,
	pid        integer NOT NULL CHECK (pid >= 0),
	process    text NOT NULL,
	blocked    boolean NOT NULL
);
CREATE INDEX scans_agent ON scans (agent_id, id);
CREATE INDEX detections_agent ON detections (agent_id, id);

CREATE TABLE users (
	name          text COLLATE "C" PRIMARY KEY,
	role          text NOT NULL,
	password_hash text NOT NULL,
	created_at    timestamptz
);

CREATE TABLE api_tokens (
	id         text COLLATE "C" PRIMARY KEY,
	user_name  text COLLATE "C" NOT NULL REFERENCES users (name),
	name       text COLLATE "C" NOT NULL,
	hash       bytea NOT NULL UNIQUE,
	created_at timestamptz,
	last_used  timestamptz,
	UNIQUE (user_name, name)
);

CREATE TABLE audit (
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at     timestamptz NOT NULL,
	actor  text COLLATE "C" NOT NULL,
	addr   text NOT NULL,
	action text COLLATE "C" NOT NULL,
	target text NOT NULL,
	detail text NOT NULL,
	ok     boolean NOT NULL
);
CREATE INDEX audit_time ON audit (at, id);
CREATE INDEX audit_actor ON audit (actor, at, id);
`

// fleetIndexes serve the fleet queries at 100,000 agents. Agent lists are
// read through a (key, id) index for each order, and a (key DESC, id) one
// for the keys many agents share (so that a descending page, ties by id
// ascending, needs no sort); hostnames are nearly unique, so a backward
// scan with an incremental sort of the few ties serves their descending
// order. last_seen and the status have no index on purpose: every check-in
// changes last_seen, and leaving it out of every index lets PostgreSQL
// update the row in place (a HOT update, fillfactor 70 keeps room for
// it) without touching any index; those two orders are a scan of the
// agents and a top-N sort. Groups have a GIN index (group filters and
// command targets: groups @> / &&).
const fleetIndexes = `
CREATE INDEX agents_hostname ON agents (hostname, id) WHERE removed_at IS NULL;
CREATE INDEX agents_os ON agents (os, id) WHERE removed_at IS NULL;
CREATE INDEX agents_os_desc ON agents (os DESC, id) WHERE removed_at IS NULL;
CREATE INDEX agents_version ON agents (version_key, id) WHERE removed_at IS NULL;
CREATE INDEX agents_version_desc ON agents (version_key DESC, id) WHERE removed_at IS NULL;
CREATE INDEX agents_defs ON agents (defs_key, id) WHERE removed_at IS NULL;
CREATE INDEX agents_defs_desc ON agents (defs_key DESC, id) WHERE removed_at IS NULL;
CREATE INDEX agents_groups_key ON agents (groups_key, id) WHERE removed_at IS NULL;
CREATE INDEX agents_groups_key_desc ON agents (groups_key DESC, id) WHERE removed_at IS NULL;
CREATE INDEX agents_detections ON agents (detections, id) WHERE removed_at IS NULL;
CREATE INDEX agents_detections_desc ON agents (detections DESC, id) WHERE removed_at IS NULL;
CREATE INDEX agents_groups ON agents USING gin (groups) WHERE removed_at IS NULL;

CREATE INDEX results_agent_seq ON results (agent_id, seq);
CREATE INDEX detections_time ON detections (found_at DESC NULLS LAST, id DESC);
CREATE INDEX detections_agent_time ON detections (agent_id, found_at DESC NULLS LAST, id DESC);
`

var (
	// ErrSchemaTooNew is returned by Open for a database whose schema
	// version is newer than this build knows how to use.
	ErrSchemaTooNew = errors.New("database schema is newer than this build supports")
	// ErrNotStore is returned by Open for a database (its schema in the
	// search path) that holds tables but no Vigil schema.
	ErrNotStore = errors.New("database is not a Vigil store")
)

// migrate applies the entries of ms the database lacks, one transaction
// each, under a transaction-level advisory lock: server instances opening
// the same new database at once apply each migration once, the others
// waiting for the lock and then finding it applied.
func migrate(ctx context.Context, db beginner, ms []migration) error {
	for {
		done, err := migrateOne(ctx, db, ms)
		if err != nil || done {
			return err
		}
	}
}

type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

func migrateOne(ctx context.Context, db beginner, ms []migration) (done bool, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op once committed
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
		return false, fmt.Errorf("migration lock: %w", err)
	}
	var hasTable bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&hasTable); err != nil {
		return false, err
	}
	version := 0
	if hasTable {
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&version); err != nil {
			return false, err
		}
	} else {
		// A database with tables of its own in the schema we would use
		// is not ours to fill.
		var tables []string
		rows, err := tx.Query(ctx, `SELECT c.relname::text FROM pg_class c
			WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1 LIMIT 5`)
		if err != nil {
			return false, err
		}
		if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return false, err
		}
		if len(tables) > 0 {
			return false, fmt.Errorf("%w: the schema in the search path has tables (%s) but no schema_migrations",
				ErrNotStore, strings.Join(tables, ", "))
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (
			version    integer PRIMARY KEY CHECK (version > 0),
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return false, err
		}
	}
	switch {
	case version > len(ms):
		return false, fmt.Errorf("%w: its version is %d, this build knows versions up to %d; use a newer Vigil",
			ErrSchemaTooNew, version, len(ms))
	case version == len(ms):
		return true, tx.Commit(ctx)
	}
	m := ms[version]
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return false, fmt.Errorf("schema migration %d (%s): %w", version+1, m.name, err)
	}
	if version == 0 {
		epoch, err := newEpoch()
		if err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO meta (key, value) VALUES ('epoch', $1)", formatEpoch(epoch)); err != nil {
			return false, err
		}
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version+1, m.name); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("schema migration %d (%s): commit: %w", version+1, m.name, err)
	}
	return false, nil
}
