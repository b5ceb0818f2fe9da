package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigil-fleet/vigil/internal/store"
)

const (
	commandCols = "seq, name, target, envelope, issued_at, expires"
	resultCols  = "seq, agent_id, status, output, executed_at, received_at"
)

// AppendCommand implements store.Store. It reads the epoch once it holds
// the counter's lock, so that while sign runs Epoch and EpochStart are
// the store's, another instance's new epoch included: a sign that finds
// Epoch is not the epoch it signs in returns store.ErrEpochChanged, and
// nothing is stored. The Command sign returns must carry
// the sequence number it was given (or leave Seq zero) and a non-empty
// envelope. The returned Command is what was stored: times are truncated
// to the microsecond and in UTC.
func (s *Store) AppendCommand(ctx context.Context, sign func(seq uint64) (store.Command, error)) (store.Command, error) {
	var cmd store.Command
	err := s.write(ctx, func(tx pgx.Tx) error {
		// The row lock serializes appends, of every instance, until
		// commit. The epoch is read by a second statement of the same
		// round trip, so that another instance's NewEpoch committed
		// before the lock was granted is visible to it (a statement sees
		// what committed before it began), and Epoch returns it while
		// sign runs: a signer can tell that the store left the epoch it
		// signs in (store.ErrEpochChanged).
		var (
			last      int64
			e, estart string
			b         pgx.Batch
		)
		b.Queue("UPDATE command_seq SET last = last + 1 WHERE id = 1 RETURNING last")
		b.Queue("SELECT value, coalesce((SELECT value FROM meta WHERE key = 'epoch_start'), '0') FROM meta WHERE key = 'epoch'")
		br := tx.SendBatch(ctx, &b)
		err := br.QueryRow().Scan(&last)
		if err == nil {
			if err = br.QueryRow().Scan(&e, &estart); err != nil {
				err = fmt.Errorf("reading the epoch: %w", err)
			}
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if pgCode(err) == "22003" { // numeric_value_out_of_range
				return errors.New("sequence numbers exhausted")
			}
			return err
		}
		if cached := s.epoch.Load(); e != formatEpoch(cached.epoch) {
			// No NewEpoch can commit before this transaction does (it
			// needs the row lock): the value stored is the newest.
			var st epochState
			if st.epoch, err = strconv.ParseUint(e, 10, 64); err != nil || st.epoch == 0 {
				return fmt.Errorf("invalid epoch %q in meta table", e)
			}
			if st.start, err = strconv.ParseUint(estart, 10, 64); err != nil {
				return fmt.Errorf("invalid epoch_start %q in meta table", estart)
			}
			s.epoch.Store(&st)
		}
		seq := uint64(last)
		c, err := sign(seq)
		if err != nil {
			return fmt.Errorf("sign command %d: %w", seq, err)
		}
		if c.Seq != 0 && c.Seq != seq {
			return fmt.Errorf("sign returned a command with sequence %d for sequence %d", c.Seq, seq)
		}
		if len(c.Envelope) == 0 {
			return fmt.Errorf("sign returned an empty envelope for sequence %d", seq)
		}
		c.Seq = seq
		c.IssuedAt = normTime(c.IssuedAt)
		c.Expires = normTime(c.Expires)
		// The NOTIFY goes with the insert, in one statement.
		if _, err := tx.Exec(ctx, "WITH ins AS (INSERT INTO commands ("+commandCols+") VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq) "+
			"SELECT pg_notify('"+eventChannel+"', 'commands ' || seq) FROM ins",
			last, c.Name, c.Target, c.Envelope, ts(c.IssuedAt), ts(c.Expires)); err != nil {
			return fmt.Errorf("command %d: %w", seq, err)
		}
		cmd = c
		return nil
	})
	if err != nil {
		return store.Command{}, fmt.Errorf("postgres store: append command: %w", err)
	}
	return cmd, nil
}

// LatestSeq implements store.Store.
func (s *Store) LatestSeq(ctx context.Context) (uint64, error) {
	var seq int64
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM commands").Scan(&seq); err != nil {
		return 0, fmt.Errorf("postgres store: latest sequence: %w", err)
	}
	return uint64(seq), nil
}

func scanCommand(row pgx.Row) (store.Command, error) {
	var (
		c               store.Command
		seq             int64
		issued, expires *time.Time
	)
	if err := row.Scan(&seq, &c.Name, &c.Target, &c.Envelope, &issued, &expires); err != nil {
		return store.Command{}, err
	}
	c.Seq, c.IssuedAt, c.Expires = uint64(seq), timeOf(issued), timeOf(expires)
	return c, nil
}

// Command implements store.Store.
func (s *Store) Command(ctx context.Context, seq uint64) (store.Command, error) {
	if seq > math.MaxInt64 {
		return store.Command{}, fmt.Errorf("postgres store: command %d: %w", seq, store.ErrNotFound)
	}
	c, err := scanCommand(s.pool.QueryRow(ctx, "SELECT "+commandCols+" FROM commands WHERE seq = $1", int64(seq)))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Command{}, fmt.Errorf("postgres store: command %d: %w", seq, store.ErrNotFound)
	}
	if err != nil {
		return store.Command{}, fmt.Errorf("postgres store: command %d: %w", seq, err)
	}
	return c, nil
}

// CommandsAfter implements store.Store.
func (s *Store) CommandsAfter(ctx context.Context, after uint64, limit int) ([]store.Command, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	cs, err := s.queryCommands(ctx, "SELECT "+commandCols+" FROM commands WHERE seq > $1 ORDER BY seq LIMIT $2", int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres store: commands after %d: %w", after, err)
	}
	return cs, nil
}

// RecentCommands implements store.Store.
func (s *Store) RecentCommands(ctx context.Context, limit int) ([]store.Command, error) {
	if limit <= 0 {
		return nil, nil
	}
	cs, err := s.queryCommands(ctx, "SELECT "+commandCols+" FROM commands ORDER BY seq DESC LIMIT $1", limit)
	if err != nil {
		return nil, fmt.Errorf("postgres store: recent commands: %w", err)
	}
	return cs, nil
}

func (s *Store) queryCommands(ctx context.Context, query string, a ...any) ([]store.Command, error) {
	rows, err := s.pool.Query(ctx, query, a...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cs []store.Command
	for rows.Next() {
		c, err := scanCommand(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// RecordResults implements store.Store: one INSERT of the whole batch,
// in (Seq, AgentID) order so that concurrent batches wait for one another
// rather than deadlock. A Seq above math.MaxInt64 fails the batch.
func (s *Store) RecordResults(ctx context.Context, rs []store.Result) error {
	if len(rs) == 0 {
		return nil
	}
	type key struct {
		seq   uint64
		agent string
	}
	seen := make(map[key]bool, len(rs))
	batch := make([]store.Result, 0, len(rs))
	for _, r := range rs {
		if _, err := int64Of("result sequence", r.Seq); err != nil {
			return fmt.Errorf("postgres store: result of agent %q: %w", r.AgentID, err)
		}
		if k := (key{r.Seq, r.AgentID}); !seen[k] { // the first of a batch is kept
			seen[k] = true
			batch = append(batch, r)
		}
	}
	slices.SortFunc(batch, func(a, b store.Result) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), strings.Compare(a.AgentID, b.AgentID))
	})
	n := len(batch)
	seqs, agents, statuses := make([]int64, n), make([]string, n), make([]string, n)
	outputs := make([][]byte, n)
	executed, received := make([]*time.Time, n), make([]*time.Time, n)
	for i, r := range batch {
		seqs[i], agents[i], statuses[i] = int64(r.Seq), r.AgentID, r.Status
		outputs[i] = []byte(r.Output)
		executed[i], received[i] = ts(r.ExecutedAt), ts(r.ReceivedAt)
	}
	// A result for a command or agent that does not exist (or an agent
	// removed or revoked) is dropped like a duplicate, rather than
	// failing the whole batch on the foreign key.
	// The NOTIFY is part of the statement's transaction, sent only when a
	// row was inserted.
	_, err := s.pool.Exec(ctx, `WITH ins AS (INSERT INTO results (`+resultCols+`)
		SELECT r.seq, r.agent_id, r.status, r.output, r.executed_at, r.received_at
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::timestamptz[])
			WITH ORDINALITY AS r(seq, agent_id, status, output, executed_at, received_at, n)
		WHERE EXISTS (SELECT 1 FROM commands c WHERE c.seq = r.seq)
		AND EXISTS (SELECT 1 FROM agents a WHERE a.id = r.agent_id AND a.removed_at IS NULL AND a.revoked_at IS NULL)
		ORDER BY r.n
		ON CONFLICT (seq, agent_id) DO NOTHING
		RETURNING 1)
		SELECT pg_notify('`+eventChannel+`', 'results') WHERE EXISTS (SELECT 1 FROM ins)`, seqs, agents, statuses, outputs, executed, received)
	if err != nil {
		return fmt.Errorf("postgres store: record results: %w", err)
	}
	return nil
}

func scanResult(row pgx.Row) (store.Result, error) {
	var (
		r        store.Result
		seq      int64
		output   []byte
		exe, rcv *time.Time
	)
	if err := row.Scan(&seq, &r.AgentID, &r.Status, &output, &exe, &rcv); err != nil {
		return store.Result{}, err
	}
	r.Seq, r.Output, r.ExecutedAt, r.ReceivedAt = uint64(seq), string(output), timeOf(exe), timeOf(rcv)
	return r, nil
}

func (s *Store) queryResults(ctx context.Context, query string, a ...any) ([]store.Result, error) {
	rows, err := s.pool.Query(ctx, query, a...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rs []store.Result
	for rows.Next() {
		r, err := scanResult(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

// Results implements store.Store.
func (s *Store) Results(ctx context.Context, seq uint64) ([]store.Result, error) {
	if seq > math.MaxInt64 {
		return nil, nil
	}
	rs, err := s.queryResults(ctx, "SELECT "+resultCols+" FROM results WHERE seq = $1 ORDER BY agent_id", int64(seq))
	if err != nil {
		return nil, fmt.Errorf("postgres store: results of %d: %w", seq, err)
	}
	return rs, nil
}

// AgentResults implements store.Store.
func (s *Store) AgentResults(ctx context.Context, agentID string, after uint64, limit int) ([]store.Result, error) {
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	rs, err := s.queryResults(ctx, "SELECT "+resultCols+" FROM results WHERE agent_id = $1 AND seq > $2 ORDER BY seq DESC LIMIT $3",
		agentID, int64(after), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres store: results of agent %q: %w", agentID, err)
	}
	return rs, nil
}
