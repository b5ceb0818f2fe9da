package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
)

// State is what a relay keeps in StateDir/relay.json: its identity with
// the server and how far it has relayed.
type State struct {
	// AgentID and Token are the relay's enrolled identity and bearer
	// credential (the file is mode 0600).
	AgentID string `json:"agent_id"`
	Token   string `json:"token"`
	// Server is the server URL the relay enrolled with; another -server
	// makes it enroll again.
	Server string `json:"server"`
	// Epoch is the server's epoch the relay follows, and EpochIssued when
	// the statement that put it there was signed (a replayed older
	// statement never moves it back).
	Epoch       uint64    `json:"epoch,string"`
	EpochIssued time.Time `json:"epoch_issued"`
	// LastSeq is the highest command sequence relayed in Epoch: the
	// stream resumes after it.
	LastSeq uint64 `json:"last_seq"`
}

// load reads the state file, if any.
func (r *Relay) load() error {
	b, err := os.ReadFile(r.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("relay state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("relay state %s: %w (remove it to enroll the relay again)", r.path(), err)
	}
	r.st = st
	r.enrolledOK = st.AgentID != "" && st.Token != ""
	if r.enrolledOK && st.Server != r.cfg.Server {
		r.log.Warn("-server changed since the relay enrolled; enrolling again", "was", st.Server, "now", r.cfg.Server)
		r.enrolledOK = false
	}
	return nil
}

func (r *Relay) isEnrolled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.enrolledOK
}

// save writes the state when it changed since the last write.
func (r *Relay) save() error {
	// One write at a time, so that an older state never lands last.
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	st := r.st
	r.dirty = false
	r.mu.Unlock()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(r.path(), append(b, '\n'), 0o600); err != nil {
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
		return err
	}
	return nil
}

// saveLoop writes the progress at most once every saveEvery.
func (r *Relay) saveLoop(ctx interface{ Done() <-chan struct{} }) {
	defer r.wg.Done()
	t := time.NewTicker(saveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.save(); err != nil {
				r.log.Error("saving the relay's progress", "file", r.path(), "err", err)
			}
		}
	}
}
