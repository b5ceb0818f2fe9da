package command

import (
	"fmt"
	"slices"
	"sort"
)

// Handler executes one command on an agent and returns its result status
// (one of the Status constants, or a status of the agent's own that it
// never reports) and output.
type Handler func(c Command) (status, output string)

// Registry maps the catalog's command names to the handlers an agent
// executes them with. An agent fills one, a handler per name of Names, so
// that the catalog and what agents execute line up by name: Register
// refuses a name the catalog does not list, and Missing lists the names
// left without a handler.
type Registry struct {
	handlers map[string]Handler
}

// Register sets the handler of the command name. It panics when name is
// not in the catalog or already has a handler: both are programming
// errors.
func (r *Registry) Register(name string, h Handler) {
	if !slices.Contains(Names(), name) {
		panic(fmt.Sprintf("command: registering a handler for %q, which the catalog does not list", name))
	}
	if _, ok := r.handlers[name]; ok {
		panic(fmt.Sprintf("command: a second handler for %q", name))
	}
	if r.handlers == nil {
		r.handlers = map[string]Handler{}
	}
	r.handlers[name] = h
}

// Lookup returns the handler of the command name.
func (r *Registry) Lookup(name string) (Handler, bool) {
	h, ok := r.handlers[name]
	return h, ok
}

// Names returns the names that have a handler, sorted.
func (r *Registry) Names() []string {
	var n []string
	for name := range r.handlers {
		n = append(n, name)
	}
	sort.Strings(n)
	return n
}

// Missing returns the catalog's names that have no handler, sorted.
func (r *Registry) Missing() []string {
	var n []string
	for _, name := range Names() {
		if _, ok := r.handlers[name]; !ok {
			n = append(n, name)
		}
	}
	return n
}
