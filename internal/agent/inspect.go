package agent

import "path/filepath"

// State is what an agent keeps in its state directory about its
// enrollment and progress, as ReadState finds it.
type State struct {
	// Identity is the agent's identity from enrollment.
	Identity Identity
	// LastSeq is the last command the agent has handled.
	LastSeq uint64
}

// ReadState reads the identity and progress kept in stateDir without
// changing anything there (New, by contrast, opens the journal for
// appending and repairs it), so it is safe while the agent runs. enrolled
// is false when stateDir holds no identity (the agent has not enrolled
// yet); an unreadable or malformed file is an error.
func ReadState(stateDir string) (st State, enrolled bool, err error) {
	ok, err := readJSON(filepath.Join(stateDir, FileIdentityName), &st.Identity)
	if err != nil || !ok {
		return State{}, false, err
	}
	js, err := readJournal(filepath.Join(stateDir, FileJournalName))
	if err != nil {
		return State{}, false, err
	}
	st.LastSeq = js.LastSeq
	return st, true, nil
}
