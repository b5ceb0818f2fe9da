package cli

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// Runtime settings. vigil server and vigil liveupdate publish their
// effective settings while they run (ports.Publish), so that vigil ports
// and vigil doctor see a part started with flags only; those two prefer a
// live part's published settings to its preference file and say which
// they read.

// runtimeDir is the runtime directory of env: $VIGIL_RUNTIME_DIR, or the
// platform's default; "" when it is "off".
func runtimeDir(env *Env) string {
	return ports.RuntimeDir(env.Getenv(ports.RuntimeDirEnv))
}

// secretWords mark flags left out of the published settings: a flag whose
// name holds one of them may carry a secret or the path to one.
var secretWords = []string{"key", "token", "secret", "password", "credential"}

// publicFlags are flags whose names hold a secret word but whose values
// are public: the server's public key a relay verifies with.
var publicFlags = []string{"server-key"}

func secretFlag(name string) bool {
	if slices.Contains(publicFlags, name) {
		return false
	}
	return slices.ContainsFunc(strings.Split(name, "-"), func(w string) bool { return slices.Contains(secretWords, w) })
}

// partSettings is the plist of a part's effective settings for args (its
// command line, with its preference file applied as the part does), under
// its preference file's keys: every flag but -config and the secret ones.
// loadPart reads it back to the same settings.
func partSettings[O partOptions](flags func(*Env) (*flag.FlagSet, O), args []string) ([]byte, error) {
	fs, o := flags(quietEnv())
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := o.finish(fs); err != nil {
		return nil, err
	}
	dict := map[string]any{}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" || secretFlag(f.Name) {
			return
		}
		k := prefs.FlagKey(f.Name)
		g, ok := f.Value.(flag.Getter)
		if !ok {
			err = errors.Join(err, fmt.Errorf("flag -%s: value of unknown type", f.Name))
			return
		}
		switch v := g.Get().(type) {
		case string, bool:
			dict[k] = v
		case int:
			dict[k] = int64(v)
		case int64:
			dict[k] = v
		case uint:
			dict[k] = uint64(v)
		case uint64:
			dict[k] = v
		case time.Duration:
			dict[k] = v.String()
		case encoding.TextMarshaler: // a group, a port range
			b, merr := v.MarshalText()
			err = errors.Join(err, merr)
			dict[k] = string(b)
		default:
			err = errors.Join(err, fmt.Errorf("flag -%s: value of type %T", f.Name, v))
		}
	})
	if err != nil {
		return nil, err
	}
	return plist.Marshal(dict, plist.XMLFormat)
}

// publishPart publishes the effective settings of a part started with args
// in the runtime directory, for vigil ports and vigil doctor, and returns
// the function that removes them, to be deferred until the part stops.
// A part that cannot publish (no runtime directory, no permission, another
// instance running) says so in its log and runs all the same.
func publishPart[O partOptions](env *Env, log *slog.Logger, part string, flags func(*Env) (*flag.FlagSet, O), args []string) (unpublish func()) {
	dir := runtimeDir(env)
	if dir == "" {
		return func() {}
	}
	data, err := partSettings(flags, args)
	if err == nil {
		var pub *ports.Published
		if pub, err = ports.Publish(dir, part, data); err == nil {
			log.Info("settings published for vigil ports and vigil doctor", "file", pub.Path)
			return func() {
				if err := pub.Remove(); err != nil {
					log.Warn("cannot remove the published settings", "file", pub.Path, "err", err)
				}
			}
		}
	}
	log.Warn("settings not published: vigil ports and vigil doctor will not see this "+part+" unless given its preference file", "dir", dir, "err", err)
	return func() {}
}

// chooseFile picks the file to read a part's settings from: the file
// given; else the settings the running part published in dir (recording
// its PID); else its default preference file when it exists. It returns
// "" when the part is not on this machine. Published settings that are
// stale are ignored with a note.
func (m *machineParts) chooseFile(dir, part, given, def string) (string, error) {
	if given != "" || dir == "" {
		return pick(given, def)
	}
	r, note, err := ports.FindRunning(dir, part)
	switch {
	case err != nil:
		m.notes = append(m.notes, fmt.Sprintf("cannot read the settings of a running vigil %s in %s: %v", part, dir, err))
	case note != "":
		m.notes = append(m.notes, note)
	case r != nil:
		m.running[part] = r.PID
		return r.Path, nil
	}
	return pick("", def)
}
