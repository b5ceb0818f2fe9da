// Package storecopy copies a whole store from one implementation to
// another (vigil store migrate: SQLite into PostgreSQL) and checks the
// copy.
//
// An [Exporter] hands every row of its store, tables in a fixed order
// (the order foreign keys need) and each table in key order, to a [Sink];
// an [Importer] fills an empty store from such rows in one transaction,
// keeping every ID, sequence number, time, the epoch, the epoch start and
// the command sequence counter. The store.Store interface reads only what
// the server needs (no removed agents, no scan's detection count): these
// two interfaces, implemented by the stores beside it, read and write the
// rows as they are.
//
// A [Digest] is a Sink that counts each table's rows and hashes them in a
// canonical encoding (times to the microsecond in UTC, empty lists and
// maps as none), so that the digests of two stores, exported in the same
// order, are equal exactly when their contents are; [Compare] says which
// tables differ. [Copy] imports, then compares the digests of both sides.
package storecopy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"

	"github.com/vigil-fleet/vigil/internal/store"
)

// ErrNotEmpty is returned by Import for a target store that holds
// anything: an agent, a command (or a used sequence number), a user, ...
var ErrNotEmpty = errors.New("target store is not empty")

// Meta is a store's identity and counters.
type Meta struct {
	Epoch      uint64
	EpochStart uint64
	// LastSeq is the command sequence counter: the last number issued
	// (the highest command's, as numbers are never skipped).
	LastSeq uint64
}

// Agent is an agents row: removed agents included (Removed not zero,
// their token hash erased), with their detection count.
type Agent struct {
	store.Agent
	Removed time.Time
}

// Scan is a scans row: a report without its detections (they are rows
// of their own), with the number it reported.
type Scan struct {
	store.Scan
	DetectionCount int
}

// Sink receives a store's rows, in the order its methods are listed
// (Meta first, once), each table in key order: agents by ID, users by
// name, tokens by ID, commands by sequence, results by sequence then
// agent, scans, detections and audit entries by ID.
type Sink interface {
	Meta(Meta) error
	Agent(Agent) error
	User(store.User) error
	Token(store.APIToken) error
	Command(store.Command) error
	Result(store.Result) error
	Scan(Scan) error
	Detection(store.Detection) error
	Audit(store.AuditEvent) error
}

// Exporter is a store that can hand all its rows to a Sink, from one
// consistent state of the store (one read transaction), stopping at the
// Sink's first error, which it returns.
type Exporter interface {
	Export(ctx context.Context, to Sink) error
}

// Importer is a store that can be filled, when it is empty, from rows in
// an Exporter's order. Import begins one transaction, fails with
// ErrNotEmpty (changing nothing) when the store holds anything, calls
// fill with a Sink that inserts each row as given, sets the epoch, epoch
// start and sequence counter of the Meta received, calls check (when not
// nil) with an Exporter of what the transaction now holds, and commits;
// any error, check's included, rolls everything back.
type Importer interface {
	Import(ctx context.Context, fill func(Sink) error, check func(Exporter) error) error
}

// Tables are the table names a Digest counts, in export order.
var Tables = []string{"agents", "users", "api_tokens", "commands", "results", "scans", "detections", "audit"}

// Digest is a Sink that counts and hashes what it receives.
type Digest struct {
	Info   Meta // what Meta received
	Counts map[string]int
	Sums   map[string][]byte // SHA-256 of each table's rows in order

	hashes map[string]hash.Hash
}

// NewDigest returns an empty Digest.
func NewDigest() *Digest {
	d := &Digest{Counts: map[string]int{}, Sums: map[string][]byte{}, hashes: map[string]hash.Hash{}}
	for _, t := range Tables {
		d.hashes[t] = sha256.New()
		d.Sums[t] = d.hashes[t].Sum(nil)
	}
	return d
}

func (d *Digest) add(table string, row any) error {
	b, err := json.Marshal(row)
	if err != nil {
		return fmt.Errorf("digest of %s: %w", table, err)
	}
	h := d.hashes[table]
	h.Write(b)
	h.Write([]byte{'\n'})
	d.Counts[table]++
	d.Sums[table] = h.Sum(nil)
	return nil
}

// canonical returns a time as both stores keep it.
func canonical(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

// Meta implements Sink.
func (d *Digest) Meta(m Meta) error { d.Info = m; return nil }

// Agent implements Sink.
func (d *Digest) Agent(a Agent) error {
	a.EnrolledAt, a.LastSeen, a.LastCheckIn = canonical(a.EnrolledAt), canonical(a.LastSeen), canonical(a.LastCheckIn)
	a.Revoked, a.Removed = canonical(a.Revoked), canonical(a.Removed)
	if len(a.Groups) == 0 {
		a.Groups = nil
	}
	if len(a.Counters) == 0 {
		a.Counters = nil
	}
	if len(a.TokenHash) == 0 {
		a.TokenHash = nil
	}
	if a.OnAccess != nil && len(a.OnAccess.Paths) == 0 {
		o := *a.OnAccess
		o.Paths = nil
		a.OnAccess = &o
	}
	return d.add("agents", a)
}

// User implements Sink.
func (d *Digest) User(u store.User) error {
	u.Created = canonical(u.Created)
	return d.add("users", u)
}

// Token implements Sink.
func (d *Digest) Token(t store.APIToken) error {
	t.Created, t.LastUsed = canonical(t.Created), canonical(t.LastUsed)
	return d.add("api_tokens", t)
}

// Command implements Sink.
func (d *Digest) Command(c store.Command) error {
	c.IssuedAt, c.Expires = canonical(c.IssuedAt), canonical(c.Expires)
	return d.add("commands", c)
}

// Result implements Sink. The output is hashed as bytes.
func (d *Digest) Result(r store.Result) error {
	r.ExecutedAt, r.ReceivedAt = canonical(r.ExecutedAt), canonical(r.ReceivedAt)
	type result struct {
		store.Result
		Output []byte // JSON would turn invalid UTF-8 into U+FFFD
	}
	return d.add("results", result{r, []byte(r.Output)})
}

// Scan implements Sink.
func (d *Digest) Scan(s Scan) error {
	s.StartedAt, s.FinishedAt, s.ReceivedAt = canonical(s.StartedAt), canonical(s.FinishedAt), canonical(s.ReceivedAt)
	s.Detections = nil
	return d.add("scans", s)
}

// Detection implements Sink.
func (d *Digest) Detection(x store.Detection) error {
	x.FoundAt = canonical(x.FoundAt)
	return d.add("detections", x)
}

// Audit implements Sink.
func (d *Digest) Audit(e store.AuditEvent) error {
	e.Time = canonical(e.Time)
	return d.add("audit", e)
}

// Compare lists how b differs from a: the epoch, epoch start or sequence
// counter, and each table whose row count or content differs. None when
// they are equal.
func Compare(a, b *Digest) []string {
	var diffs []string
	if a.Info.Epoch != b.Info.Epoch {
		diffs = append(diffs, fmt.Sprintf("epoch: %d, copy %d", a.Info.Epoch, b.Info.Epoch))
	}
	if a.Info.EpochStart != b.Info.EpochStart {
		diffs = append(diffs, fmt.Sprintf("epoch start: %d, copy %d", a.Info.EpochStart, b.Info.EpochStart))
	}
	if a.Info.LastSeq != b.Info.LastSeq {
		diffs = append(diffs, fmt.Sprintf("command sequence counter: %d, copy %d", a.Info.LastSeq, b.Info.LastSeq))
	}
	for _, t := range Tables {
		switch {
		case a.Counts[t] != b.Counts[t]:
			diffs = append(diffs, fmt.Sprintf("%s: %d rows, copy %d", t, a.Counts[t], b.Counts[t]))
		case string(a.Sums[t]) != string(b.Sums[t]):
			diffs = append(diffs, fmt.Sprintf("%s: same %d rows, different contents (SHA-256 %x, copy %x)", t, a.Counts[t], a.Sums[t][:8], b.Sums[t][:8]))
		}
	}
	return diffs
}

// tee is a Sink that hands each row to both its sinks.
type tee [2]Sink

func (t tee) Meta(m Meta) error   { return errors.Join(t[0].Meta(m), t[1].Meta(m)) }
func (t tee) Agent(a Agent) error { return both(t[0].Agent(a), func() error { return t[1].Agent(a) }) }
func (t tee) User(u store.User) error {
	return both(t[0].User(u), func() error { return t[1].User(u) })
}
func (t tee) Token(k store.APIToken) error {
	return both(t[0].Token(k), func() error { return t[1].Token(k) })
}
func (t tee) Command(c store.Command) error {
	return both(t[0].Command(c), func() error { return t[1].Command(c) })
}
func (t tee) Result(r store.Result) error {
	return both(t[0].Result(r), func() error { return t[1].Result(r) })
}
func (t tee) Scan(s Scan) error { return both(t[0].Scan(s), func() error { return t[1].Scan(s) }) }
func (t tee) Detection(x store.Detection) error {
	return both(t[0].Detection(x), func() error { return t[1].Detection(x) })
}
func (t tee) Audit(e store.AuditEvent) error {
	return both(t[0].Audit(e), func() error { return t[1].Audit(e) })
}

func both(err error, next func() error) error {
	if err != nil {
		return err
	}
	return next()
}

// MismatchError is returned by Copy when the copy does not read back as
// the source: Diffs says how.
type MismatchError struct{ Diffs []string }

func (e *MismatchError) Error() string {
	return fmt.Sprintf("the copy differs from the source: %v", e.Diffs)
}

// Copy imports everything src exports into dst (which must be empty)
// and, before the import commits, reads the copy back and compares it
// with what src exported: a *MismatchError when they differ, and then
// nothing is committed. It returns the digest of what was copied.
func Copy(ctx context.Context, src Exporter, dst Importer) (*Digest, error) {
	from := NewDigest()
	err := dst.Import(ctx, func(to Sink) error {
		return src.Export(ctx, tee{from, to})
	}, func(copied Exporter) error {
		return Verify(ctx, from, copied)
	})
	if err != nil {
		return nil, err
	}
	return from, nil
}

// Verify exports dst and compares it with want: a *MismatchError when
// they differ.
func Verify(ctx context.Context, want *Digest, dst Exporter) error {
	got := NewDigest()
	if err := dst.Export(ctx, got); err != nil {
		return fmt.Errorf("reading the copy back: %w", err)
	}
	if diffs := Compare(want, got); len(diffs) > 0 {
		return &MismatchError{Diffs: diffs}
	}
	return nil
}
