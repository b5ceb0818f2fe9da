package store

import (
	"context"
	"errors"
)

// EventKind says what changed in a store shared by several server
// instances.
type EventKind int

const (
	// EventCommands: commands were appended; Event.Seq is the latest
	// sequence number of the append that committed.
	EventCommands EventKind = iota + 1
	// EventResults: results were recorded.
	EventResults
	// EventEpoch: the store moved to a new epoch. Epoch and EpochStart
	// already return the new one when the event is delivered.
	EventEpoch
	// EventAgent: an agent was revoked or removed; Event.Agent is its id.
	// Instances forget what they hold of its credential.
	EventAgent
	// EventResync: events may have been missed (the store's connection to
	// its events was lost and is back, or the subscription just began):
	// the subscriber re-reads what it follows (LatestSeq, Epoch). Epoch
	// and EpochStart were read again before it is delivered.
	EventResync
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventCommands:
		return "commands"
	case EventResults:
		return "results"
	case EventEpoch:
		return "epoch"
	case EventResync:
		return "resync"
	case EventAgent:
		return "agent"
	}
	return "unknown"
}

// Event is a change a store committed, whoever made it: this process or
// another over the same database.
type Event struct {
	Kind EventKind
	// Seq is the latest sequence number after an EventCommands.
	Seq uint64
	// Agent is the agent revoked or removed, after an EventAgent.
	Agent string
}

// Notifier is implemented by stores that several server instances may
// share (the PostgreSQL store), so that each instance learns what the
// others committed. A store only one process opens (SQLite) has no need
// of it.
type Notifier interface {
	// Events delivers the changes committed to the store, by any
	// instance, from now until ctx is done; the channel is closed then.
	// An event is sent only once its change is committed. The first
	// event is an EventResync, and another follows each time events may
	// have been missed. The subscriber must receive promptly: a slow one
	// holds back the events behind it.
	Events(ctx context.Context) <-chan Event
	// RefreshEpoch reads the epoch again, for a caller that has reason
	// to think another instance moved the store before its event came
	// (an agent checking in from an epoch that is not this one's).
	RefreshEpoch(ctx context.Context) error
}

// ErrEpochChanged is what an AppendCommand sign function returns when the
// store's Epoch, read while it runs, is no longer the epoch it signs in:
// another instance moved a shared store to a new epoch. Nothing is stored
// and no sequence number is used; the caller follows the new epoch and
// signs again.
var ErrEpochChanged = errors.New("the store moved to a new epoch")
