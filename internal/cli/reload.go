package cli

import (
	"flag"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"sync"

	"github.com/vigil-fleet/vigil/internal/prefs"
)

// A reloader re-reads a part's preference file on SIGHUP. The file is
// read and validated exactly as at start-up (with the same command line,
// whose flags still win); a file that does not validate is logged as an
// error and changes nothing. Of the keys whose value changed, those the
// part applies live are applied; every other changed key is logged by name
// as needing a restart, again at each SIGHUP until the part restarts.
//
// A part applies a key live when its flag's flag.Value is a liveValue
// (-log-level: LogLevel); docs/operations.md lists the keys each part
// applies live.
type reloader struct {
	file string
	// read reads and validates the file and returns the text of every
	// key's value, for comparison.
	read func() (values map[string]string, err error)
	// applyText applies one changed key from its new text, if it can be
	// applied so, and reports whether it was.
	applyText func(key, text string) bool

	mu      sync.Mutex
	inForce map[string]string // key -> value text the part runs with
}

// liveValue is a flag value that takes effect as soon as it is set, such
// as -log-level, whose level the logger reads at each record.
type liveValue interface {
	flag.Value
	live()
}

// reload re-reads the file and applies it, logging what it did.
func (rl *reloader) reload(log *slog.Logger) {
	log.Debug("reading the preference file", "file", rl.file)
	values, err := rl.read()
	if err != nil {
		log.Error("preference file not reloaded; nothing changed", "file", rl.file, "err", err)
		return
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	var changed []string
	for k, v := range values {
		if old, ok := rl.inForce[k]; !ok || old != v {
			changed = append(changed, k)
		}
	}
	sort.Strings(changed)
	if len(changed) == 0 {
		log.Info("preference file reloaded; nothing changed", "file", rl.file)
		return
	}
	applied := map[string]bool{}
	for _, k := range changed {
		if rl.applyText != nil && rl.applyText(k, values[k]) {
			applied[k] = true
		}
	}
	var live, restart []string
	for _, k := range changed {
		if applied[k] {
			live = append(live, k)
			rl.inForce[k] = values[k]
			log.Info("preference applied", "key", k)
		} else {
			restart = append(restart, k)
			log.Warn("preference changed; it takes effect at the next restart", "key", k)
		}
	}
	log.Info("preference file reloaded", "file", rl.file, "applied", live, "restart_needed", restart)
}

// flagValues returns the text of every flag of fs but -config, by
// preference key.
func flagValues(fs *flag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" {
			m[prefs.FlagKey(f.Name)] = f.Value.String()
		}
	})
	return m
}

// partReloader is the reloader of a part whose preference file sets its
// flags: running is its flag set as parsed at start-up, reread re-parses
// the same command line and re-reads the file.
func partReloader[O any](running *flag.FlagSet, reread func() (*flag.FlagSet, O, error)) *reloader {
	byKey := map[string]*flag.Flag{}
	running.VisitAll(func(f *flag.Flag) { byKey[prefs.FlagKey(f.Name)] = f })
	return &reloader{
		file: running.Lookup("config").Value.String(),
		read: func() (map[string]string, error) {
			fs, _, err := reread()
			if err != nil {
				return nil, err
			}
			return flagValues(fs), nil
		},
		applyText: func(key, text string) bool {
			f := byKey[key]
			if f == nil {
				return false
			}
			lv, ok := f.Value.(liveValue)
			return ok && lv.Set(text) == nil
		},
		inForce: flagValues(running),
	}
}

// agentValues returns the text of every key of an agent preference file.
func agentValues(a *prefs.Agent, skip ...string) map[string]string {
	m := map[string]string{}
	v := reflect.ValueOf(a).Elem()
	for _, k := range prefs.Keys() {
		if slices.Contains(skip, k.Name) {
			continue
		}
		f := v.FieldByName(k.Name)
		if !f.IsValid() {
			// Every key is an Agent field of the same name
			// (TestAgentValuesCoverKeys); a new key that is not must not
			// go unnoticed.
			panic(fmt.Sprintf("prefs.Agent has no field for key %s", k.Name))
		}
		m[k.Name] = fmt.Sprint(f.Interface())
	}
	return m
}

// agentReloader is the agent's reloader: load reads and validates the
// preference file at path. LogLevel is applied live to level unless
// -log-level was given, which wins over the file.
func agentReloader(path string, running *prefs.Agent, load func(string) (*prefs.Agent, error), level *levelFlag, levelFromFlag bool) *reloader {
	var skip []string
	if levelFromFlag {
		skip = []string{"LogLevel"}
	}
	return &reloader{
		file: path,
		read: func() (map[string]string, error) {
			a, err := load(path)
			if err != nil {
				return nil, err
			}
			return agentValues(a, skip...), nil
		},
		applyText: func(key, text string) bool {
			return key == "LogLevel" && level.Set(text) == nil
		},
		inForce: agentValues(running, skip...),
	}
}
