package prefs

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The parts of Vigil other than the agent — the server, the LiveUpdate
// server and the mirror — are configured by command-line flags. Each also
// reads a preference file whose keys are those flags' names in CamelCase
// (-admin-listen is AdminListen, -ttl is TTL, -passive-ports is
// PassivePorts), so that a machine's configuration can live in one file
// per part, which vigil ports and vigil doctor read too. A flag given on
// the command line wins over the file.

// DefaultPartPath is where the preference file of a part
// (config.PartServer, config.PartLiveUpdate or config.PartMirror) lives
// when no path is given: beside the agent's, in /Library/Preferences on
// macOS and /etc/vigil elsewhere.
func DefaultPartPath(part string) string {
	if runtime.GOOS == "darwin" {
		return "/Library/Preferences/com.vigil." + part + ".plist"
	}
	return "/etc/vigil/" + part + ".plist"
}

// acronyms are written in capitals in keys.
var acronyms = map[string]string{
	"ttl": "TTL", "http": "HTTP", "ftp": "FTP", "tls": "TLS", "ca": "CA",
	"ip": "IP", "json": "JSON", "url": "URL", "dns": "DNS", "id": "ID",
}

// FlagKey returns the preference key of the flag named name: its
// dash-separated words capitalised and joined, acronyms in capitals
// ("admin-listen" → "AdminListen", "max-conns-per-ip" → "MaxConnsPerIP").
func FlagKey(name string) string {
	var b strings.Builder
	for _, w := range strings.Split(name, "-") {
		if a, ok := acronyms[w]; ok {
			b.WriteString(a)
		} else if w != "" {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

// ApplyFile reads the preference file at path and sets on fs every flag it
// names that was not set on the command line. fs must have been parsed
// already (flags set by the arguments are found with fs.Visit). The flags
// named in exclude (such as -config itself) cannot be set by a file.
//
// Values are checked against the flag's type: a string flag takes a
// string, an integer flag an integer, a boolean flag a boolean, and a
// duration flag a whole number of seconds or a string such as "90s" or
// "5m". Every problem is reported, one per line, each starting with path
// and naming the key, as for agent preference files. If the file does not
// exist the error satisfies errors.Is(err, fs.ErrNotExist). Flags set by
// the file count as set for fs.Visit, as if given on the command line.
func ApplyFile(fs *flag.FlagSet, path string, exclude ...string) error {
	f, err := os.Open(path)
	if err != nil {
		return readError(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return readError(path, err)
	}
	return ApplyData(fs, path, data, exclude...)
}

// ApplyData is ApplyFile with the file's content given; name starts every
// error.
func ApplyData(fs *flag.FlagSet, name string, data []byte, exclude ...string) error {
	root, err := decodePlist(name, data)
	if err != nil {
		return err
	}
	dict, ok := root.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: top level is %s, want a dictionary of preference keys", name, describe(root))
	}
	byKey := map[string]*flag.Flag{}
	var known []string
	fs.VisitAll(func(f *flag.Flag) {
		k := FlagKey(f.Name)
		byKey[k] = f
		known = append(known, k)
	})
	fromArgs := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { fromArgs[f.Name] = true })
	keys := make([]string, 0, len(dict))
	for k := range dict {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		f := byKey[key]
		if f == nil {
			msg := fmt.Sprintf("%s: unknown key %q", name, key)
			if s := suggest(key, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			errs = append(errs, errors.New(msg))
			continue
		}
		if contains(exclude, f.Name) {
			errs = append(errs, fmt.Errorf("%s: key %s: cannot be set in a preference file, only as -%s on the command line", name, key, f.Name))
			continue
		}
		v, err := flagText(f, dict[key])
		if err == nil && !fromArgs[f.Name] {
			err = fs.Set(f.Name, v) // counts as set for fs.Visit, as on the command line
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: key %s: %s", name, key, oneLine(err.Error())))
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// flagText converts a plist value to the text f.Value.Set takes, checking
// that its type fits the flag's.
func flagText(f *flag.Flag, raw any) (string, error) {
	var cur any
	if g, ok := f.Value.(flag.Getter); ok {
		cur = g.Get()
	}
	switch cur.(type) {
	case bool:
		if b, ok := raw.(bool); ok {
			return strconv.FormatBool(b), nil
		}
		return "", fmt.Errorf("want a boolean (<true/> or <false/>), got %s", describe(raw))
	case int, int64, uint, uint64:
		switch n := raw.(type) {
		case int64:
			return strconv.FormatInt(n, 10), nil
		case uint64:
			return strconv.FormatUint(n, 10), nil
		}
		return "", fmt.Errorf("want an integer, got %s", describe(raw))
	case time.Duration:
		switch n := raw.(type) {
		case int64:
			if n < -1<<33 || n > 1<<33 {
				return "", fmt.Errorf("want a number of seconds, got %d", n)
			}
			return (time.Duration(n) * time.Second).String(), nil
		case uint64:
			if n > 1<<33 {
				return "", fmt.Errorf("want a number of seconds, got %d", n)
			}
			return (time.Duration(n) * time.Second).String(), nil
		case string:
			if _, err := time.ParseDuration(n); err != nil {
				return "", fmt.Errorf("%v: want a duration such as \"90s\" or \"5m\"", err)
			}
			return n, nil
		}
		return "", fmt.Errorf(`want a whole number of seconds or a duration string such as "90s", got %s`, describe(raw))
	default:
		if s, ok := raw.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("want a string, got %s", describe(raw))
	}
}
