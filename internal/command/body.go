package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/vigil-fleet/vigil/internal/wire"
)

// Target says which agents a command is for. Exactly one of All, Groups or
// Agents is set.
type Target struct {
	All    bool     `json:"all,omitempty"`
	Groups []string `json:"groups,omitempty"`
	Agents []string `json:"agents,omitempty"`
}

// Validate checks that exactly one selector is set and names are sane
// (wire.ValidName).
func (t Target) Validate() error {
	n := 0
	if t.All {
		n++
	}
	if len(t.Groups) > 0 {
		n++
	}
	if len(t.Agents) > 0 {
		n++
	}
	if n != 1 {
		return errors.New("target must be exactly one of all, groups or agents")
	}
	for _, g := range t.Groups {
		if !wire.ValidName(g) {
			return fmt.Errorf("bad group name %q: want 1-64 of [A-Za-z0-9._-]", g)
		}
	}
	for _, a := range t.Agents {
		if !wire.ValidName(a) {
			return fmt.Errorf("bad agent id %q: want 1-64 of [A-Za-z0-9._-]", a)
		}
	}
	return nil
}

// Matches reports whether an agent with this id and these groups is targeted.
func (t Target) Matches(agentID string, groups []string) bool {
	if t.All {
		return true
	}
	if slices.Contains(t.Agents, agentID) {
		return true
	}
	for _, g := range t.Groups {
		if slices.Contains(groups, g) {
			return true
		}
	}
	return false
}

// Command is a command: what the body of a wire.KindCommand envelope
// carries, as JSON (docs/protocol.md §1, "Bodies").
type Command struct {
	// Name is the command, one of Names for a command the server issues.
	Name string `json:"name"`
	// Args are command arguments; for "set", setting name to value.
	Args map[string]string `json:"args,omitempty"`
	// Target selects the agents that execute it.
	Target Target `json:"target"`
	// SpreadMillis is the window over which agents spread their replies.
	SpreadMillis uint32 `json:"spread_ms,omitempty"`
}

// Validate is the one validation of a command the server issues: its
// structure (name, argument names, target) and then the catalog (a known
// command whose arguments fit it).
func (c Command) Validate() error {
	if err := c.wellFormed(); err != nil {
		return err
	}
	return checkArgs(c.Name, c.Args)
}

// wellFormed checks a command's structure, not whether an agent knows it:
// what every agent requires of a body before it reads it. (An agent
// answers a well-formed command it does not know as unsupported.)
func (c Command) wellFormed() error {
	if !cmdNameRE.MatchString(c.Name) {
		return fmt.Errorf("bad command name %q", c.Name)
	}
	if len(c.Args) > 64 {
		return errors.New("too many arguments")
	}
	for k := range c.Args {
		if !wire.ValidName(k) {
			return fmt.Errorf("bad argument name %q", k)
		}
	}
	return c.Target.Validate()
}

var cmdNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// Encode validates c (Validate) and returns its JSON body.
func Encode(c Command) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// Decode parses a command body and checks its structure; errors wrap
// wire.ErrMalformed. A well-formed command of a name the catalog does not
// list decodes: the agent answers it as unsupported.
func Decode(body []byte) (Command, error) {
	var c Command
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Command{}, fmt.Errorf("%w: command body: %v", wire.ErrMalformed, err)
	}
	if dec.More() {
		return Command{}, fmt.Errorf("%w: command body: trailing data", wire.ErrMalformed)
	}
	if err := c.wellFormed(); err != nil {
		return Command{}, fmt.Errorf("%w: command body: %v", wire.ErrMalformed, err)
	}
	return c, nil
}
