package prefs

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/config"
)

// Key documents one preference key.
type Key struct {
	Name     string // the key as written in the plist, e.g. "MulticastPort"
	Type     string // plist type: "string", "integer" or "array of strings"
	Default  string // value used when the key is absent; "" when there is none
	Doc      string // what the key means and the values it accepts
	Required bool   // Load fails when the key is absent
}

// Keys returns the documentation of every preference key, in the order of
// the Agent fields. The slice is the caller's to modify.
func Keys() []Key {
	out := make([]Key, len(keyTable))
	for i, k := range keyTable {
		out[i] = Key{Name: k.name, Type: k.kind.String(), Default: k.def, Doc: k.doc, Required: k.required}
	}
	return out
}

type valueKind int

const (
	kindString valueKind = iota
	kindInteger
	kindStringArray
	kindBool
)

func (k valueKind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindInteger:
		return "integer"
	case kindStringArray:
		return "array of strings"
	case kindBool:
		return "boolean"
	}
	return fmt.Sprintf("valueKind(%d)", int(k))
}

// keyDef defines a key once: its documentation and how it is decoded,
// defaulted and encoded.
type keyDef struct {
	name     string
	kind     valueKind
	required bool
	def      string // documentation of the default, shown by Keys
	doc      string

	// set type-checks and validates a value as decoded from a plist and
	// stores it in a.
	set func(a *Agent, raw any) error
	// setDefault stores the default in a when the key is absent.
	setDefault func(a *Agent)
	// get returns the value to encode, or nil to omit the key.
	get func(a *Agent) (any, error)
}

const defaultMulticastAddress = config.DefaultGroup
const defaultMulticastPort = config.DefaultPort
const defaultLogLevel = "info"
const defaultMaxScanFileSize = 100 << 20
const defaultOnAccessMaxFileSize = 5 << 20
const defaultOnAccessVerdictTimeout = 2 * time.Second

// OnAccessModes and OnAccessEvents are the values of the keys
// OnAccessMode and OnAccessEvents.
var (
	OnAccessModes  = []string{"notify", "block"}
	OnAccessEvents = []string{"open", "exec", "close_write"}
)

var logLevels = []string{"debug", "info", "warn", "error"}

// keyTable is the single definition of every key. Its order is that of
// the Agent fields, of Keys and of the documentation.
var keyTable = []keyDef{
	stringKey(stringSpec{
		name: "MulticastAddress",
		def:  defaultMulticastAddress,
		doc: "UDP multicast group on which the agent receives the server's commands: an IPv4 (224.0.0.0/4) " +
			"or IPv6 (ff00::/8, e.g. ff15::8192) multicast address, without a zone.",
		field:    func(a *Agent) *string { return &a.MulticastAddress },
		defValue: func() string { return defaultMulticastAddress },
		check:    checkMulticastAddress,
	}),
	intKey(intSpec{
		name:     "MulticastPort",
		def:      strconv.Itoa(defaultMulticastPort),
		doc:      "UDP port of the multicast group, 1 to 65535.",
		min:      1,
		max:      65535,
		want:     "an integer from 1 to 65535",
		defValue: defaultMulticastPort,
		load:     func(a *Agent, v int64) { a.MulticastPort = int(v) },
		store:    func(a *Agent) (int64, error) { return int64(a.MulticastPort), nil },
	}),
	stringKey(stringSpec{
		name: "MulticastInterface",
		def:  "",
		doc: "Name of the network interface on which to join the group (e.g. en0, eth0, lo). " +
			"Absent or empty: the interface the system routes multicast through.",
		field: func(a *Agent) *string { return &a.MulticastInterface },
		check: checkInterfaceName,
	}),
	stringKey(stringSpec{
		name:     "NodeCommURL",
		required: true,
		doc: "Base URL of the server's agent API, over which the agent enrols, checks in and reports: " +
			"http:// or https://, a host, an optional port, and a path that is the API base " +
			"(the server serves it under /vigil by default: e.g. https://vigil.example.com:8443/vigil). No user info, query or fragment.",
		field: func(a *Agent) *string { return &a.NodeCommURL },
		check: checkNodeCommURL,
	}),
	stringKey(stringSpec{
		name:     "ServerPublicKey",
		required: true,
		doc: "The server's Ed25519 public key, base64 (standard encoding, with padding) of its 32 bytes. " +
			"The agent accepts only commands signed by this key.",
		field: func(a *Agent) *string { return &a.ServerPublicKey },
		check: func(s string) error {
			_, err := decodePublicKey(s)
			return err
		},
	}),
	stringKey(stringSpec{
		name: "EnrollmentSecret",
		doc: "Shared secret the agent presents to enrol with the server. Needed only until the agent " +
			"has enrolled. Keep a file holding it unreadable to other users (vigil writes such files with " +
			"mode 0600), or remove the key once the agent has enrolled.",
		field: func(a *Agent) *string { return &a.EnrollmentSecret },
		check: func(s string) error { return checkText(s, 1024) },
	}),
	stringKey(stringSpec{
		name: "ServerCACertificate",
		doc: "Absolute path of a PEM file of CA certificates that the server's TLS certificate must chain to, " +
			"instead of the system's roots. Only for an https NodeCommURL.",
		field: func(a *Agent) *string { return &a.ServerCACertificate },
		check: checkAbsPath,
	}),
	stringKey(stringSpec{
		name: "StateDirectory",
		def:  "/var/lib/vigil (macOS: /Library/Application Support/Vigil)",
		doc: "Absolute path of the directory in which the agent keeps its enrolment credentials and " +
			"the state it must keep across restarts.",
		field:    func(a *Agent) *string { return &a.StateDirectory },
		defValue: DefaultStateDir,
		check:    checkAbsPath,
	}),
	{
		name: "Groups",
		kind: kindStringArray,
		doc: "Groups the agent asks to belong to, so that commands can target them. Each name is 1 to 64 " +
			"characters of A-Z, a-z, 0-9, '.', '_' and '-', listed once.",
		set: func(a *Agent, raw any) error {
			list, err := asStringArray(raw)
			if err != nil {
				return err
			}
			seen := make(map[string]int, len(list))
			for i, g := range list {
				if !groupName.MatchString(g) {
					return fmt.Errorf("item %d: %q is not a group name (1 to 64 of A-Z a-z 0-9 . _ -)", i+1, g)
				}
				if j, dup := seen[g]; dup {
					return fmt.Errorf("item %d: group %q is already item %d", i+1, g, j+1)
				}
				seen[g] = i
			}
			if len(list) == 0 {
				list = nil
			}
			a.Groups = list
			return nil
		},
		setDefault: func(a *Agent) { a.Groups = nil },
		get: func(a *Agent) (any, error) {
			if len(a.Groups) == 0 {
				return nil, nil
			}
			return slices.Clone(a.Groups), nil
		},
	},
	intKey(intSpec{
		name: "CheckInInterval",
		def:  "0 (the server's)",
		doc: "Seconds between the agent's regular check-ins with the server, 5 to 86400. " +
			"Absent or 0: the interval the server asks for.",
		min:  5,
		max:  86400,
		zero: true,
		want: "an integer number of seconds from 5 to 86400, or 0 for the server's interval",
		secs: func(a *Agent) *time.Duration { return &a.CheckInInterval },
	}),
	stringKey(stringSpec{
		name: "MetricsAddress",
		doc: "host:port on which the agent serves Prometheus metrics at /metrics (e.g. 127.0.0.1:9464, " +
			"or :9464 for every address). Absent or empty: no metrics endpoint.",
		field: func(a *Agent) *string { return &a.MetricsAddress },
		check: checkHostPort,
	}),
	stringKey(stringSpec{
		name:     "LogLevel",
		def:      defaultLogLevel,
		doc:      "Least severe log messages written: debug, info, warn or error.",
		field:    func(a *Agent) *string { return &a.LogLevel },
		defValue: func() string { return defaultLogLevel },
		check: func(s string) error {
			if !slices.Contains(logLevels, s) {
				return fmt.Errorf("want one of %s, got %q", strings.Join(logLevels, ", "), s)
			}
			return nil
		},
	}),
	stringKey(stringSpec{
		name: "Hostname",
		doc: "Host name the agent reports to the server. Absent or empty: the system's host name. " +
			"At most 255 bytes, no control characters.",
		field: func(a *Agent) *string { return &a.Hostname },
		check: func(s string) error { return checkText(s, 255) },
	}),
	{
		name: "LiveUpdateServers",
		kind: kindStringArray,
		doc: "LiveUpdate servers to fetch definitions from, tried in order: internal ftp:// and http:// " +
			"servers first, then the vendor's public http(s):// one. Each URL is where the repository's " +
			"metadata/ and targets/ directories are served. Absent: the agent does not update definitions.",
		set: func(a *Agent, raw any) error {
			list, err := asStringArray(raw)
			if err != nil {
				return err
			}
			for i, u := range list {
				if err := checkLiveUpdateURL(u); err != nil {
					return fmt.Errorf("item %d: %w", i+1, err)
				}
			}
			if len(list) == 0 {
				list = nil
			}
			a.LiveUpdateServers = list
			return nil
		},
		setDefault: func(a *Agent) { a.LiveUpdateServers = nil },
		get: func(a *Agent) (any, error) {
			if len(a.LiveUpdateServers) == 0 {
				return nil, nil
			}
			return slices.Clone(a.LiveUpdateServers), nil
		},
	},
	stringKey(stringSpec{
		name: "RepositoryRoot",
		doc: "Absolute path of the definitions repository's trusted root metadata (1.root.json), " +
			"installed with the agent. Required with LiveUpdateServers: only updates signed under this " +
			"root are ever installed.",
		field: func(a *Agent) *string { return &a.RepositoryRoot },
		check: checkAbsPath,
	}),
	stringKey(stringSpec{
		name:  "DefinitionsDirectory",
		def:   "StateDirectory/definitions",
		doc:   "Absolute path of the directory where definitions releases are installed (current, previous).",
		field: func(a *Agent) *string { return &a.DefinitionsDirectory },
		check: checkAbsPath,
	}),
	intKey(intSpec{
		name: "UpdateInterval",
		def:  "0 (only on the server's update command)",
		doc: "Seconds between scheduled definitions updates (a random delay of up to a tenth is added), " +
			"300 to 604800. Absent or 0: the agent updates only when the server sends an update command.",
		min:  300,
		max:  604800,
		zero: true,
		want: "an integer number of seconds from 300 to 604800, or 0 for updates on command only",
		secs: func(a *Agent) *time.Duration { return &a.UpdateInterval },
	}),
	intKey(intSpec{
		name: "UpgradeInterval",
		def:  "0 (only on the server's upgrade command)",
		doc: "Seconds between scheduled checks for a newer Vigil release for the agent's platform (a random delay " +
			"of up to a tenth is added), 3600 to 2592000; a newer one is installed and tried as the upgrade command " +
			"does, and a release that failed its trial is not tried again by the schedule. Needs LiveUpdateServers. " +
			"Absent or 0: the agent upgrades only when the server sends an upgrade command.",
		min:  3600,
		max:  2592000,
		zero: true,
		want: "an integer number of seconds from 3600 to 2592000, or 0 for upgrades on command only",
		secs: func(a *Agent) *time.Duration { return &a.UpgradeInterval },
	}),
	absPathListKey("ScanPaths",
		"Absolute paths a scan covers when the server's scan command names none, and that scheduled scans cover.",
		func(a *Agent) *[]string { return &a.ScanPaths }, false),
	absPathListKey("ScanExclude",
		"Paths not scanned: an absolute path excludes that file or directory tree; a pattern without a "+
			"slash (filepath.Match syntax, e.g. *.iso) excludes files and directories whose name matches.",
		func(a *Agent) *[]string { return &a.ScanExclude }, true),
	intKey(intSpec{
		name: "ScanInterval",
		def:  "0 (only on the server's scan command)",
		doc: "Seconds between scheduled scans of ScanPaths (a random delay of up to a tenth is added), " +
			"3600 to 2592000. Absent or 0: the agent scans only when the server sends a scan command.",
		min:  3600,
		max:  2592000,
		zero: true,
		want: "an integer number of seconds from 3600 to 2592000, or 0 for scans on command only",
		secs: func(a *Agent) *time.Duration { return &a.ScanInterval },
	}),
	intKey(intSpec{
		name:     "MaxScanFileSize",
		def:      strconv.Itoa(defaultMaxScanFileSize),
		doc:      "clamscan's --max-filesize: files larger than this many bytes are not scanned and count as clean, and neither are archive members that large; 1 to 2^40.",
		min:      1,
		max:      1 << 40,
		want:     "an integer number of bytes from 1 to 1099511627776",
		defValue: defaultMaxScanFileSize,
		load:     func(a *Agent, v int64) { a.MaxScanFileSize = v },
		store:    func(a *Agent) (int64, error) { return a.MaxScanFileSize, nil },
	}),
	stringKey(stringSpec{
		name: "QuarantineDirectory",
		doc: "Absolute path of a directory (created with mode 0700) into which infected files are moved, " +
			"with a record of where they came from, so that the restore command can put them back. " +
			"Absent: detections are reported and files left in place.",
		field: func(a *Agent) *string { return &a.QuarantineDirectory },
		check: checkAbsPath,
	}),
	{
		name: "OnAccess",
		kind: kindBool,
		def:  "false",
		doc: "Scan files as they are opened, executed and written (Linux, fanotify; the agent must run as root). " +
			"The server's set onaccess=on|off overrides it.",
		set: func(a *Agent, raw any) error {
			v, ok := raw.(bool)
			if !ok {
				return fmt.Errorf("want a boolean (<true/> or <false/>), got %s", describe(raw))
			}
			a.OnAccess = v
			return nil
		},
		setDefault: func(a *Agent) { a.OnAccess = false },
		get: func(a *Agent) (any, error) {
			if !a.OnAccess {
				return nil, nil
			}
			return true, nil
		},
	},
	absPathListKey("OnAccessPaths",
		"The directory trees on-access scanning watches, at most 64. Each tree is watched whole, new files and directories "+
			"included, but not other filesystems mounted inside it: list those too.",
		func(a *Agent) *[]string { return &a.OnAccessPaths }, false),
	stringKey(stringSpec{
		name:     "OnAccessMode",
		def:      "notify",
		doc:      "notify: report infected files and let every access through; block: also deny the open or exec of an infected file. The server's set onaccess_mode overrides it.",
		field:    func(a *Agent) *string { return &a.OnAccessMode },
		defValue: func() string { return OnAccessModes[0] },
		check: func(s string) error {
			if !slices.Contains(OnAccessModes, s) {
				return fmt.Errorf("want notify or block, got %q", s)
			}
			return nil
		},
	}),
	absPathListKey("OnAccessExcludePaths",
		"Path prefixes on-access scanning never scans: an absolute path excludes that file or directory tree.",
		func(a *Agent) *[]string { return &a.OnAccessExcludePaths }, false),
	absPathListKey("OnAccessExcludeProcesses",
		"Absolute paths of executables whose accesses are never scanned (a backup program, a database). "+
			"The agent itself is always excluded.",
		func(a *Agent) *[]string { return &a.OnAccessExcludeProcesses }, false),
	{
		name: "OnAccessEvents",
		kind: kindStringArray,
		def:  "open, exec, close_write",
		doc: "The accesses scanned: open (a file opened), exec (a program started), close_write (a file written " +
			"and closed: scanned then, so that it is known before its next open). Each at most once, at least one.",
		set: func(a *Agent, raw any) error {
			list, err := asStringArray(raw)
			if err != nil {
				return err
			}
			if len(list) == 0 {
				return errors.New("is empty: list at least one of open, exec, close_write (or leave the key out)")
			}
			for i, e := range list {
				if !slices.Contains(OnAccessEvents, e) {
					return fmt.Errorf("item %d: %q is not an event (open, exec or close_write)", i+1, e)
				}
				if j := slices.Index(list[:i], e); j >= 0 {
					return fmt.Errorf("item %d: %q is already item %d", i+1, e, j+1)
				}
			}
			a.OnAccessEvents = list
			return nil
		},
		setDefault: func(a *Agent) { a.OnAccessEvents = slices.Clone(OnAccessEvents) },
		get: func(a *Agent) (any, error) {
			if len(a.OnAccessEvents) == 0 {
				return nil, nil
			}
			return slices.Clone(a.OnAccessEvents), nil
		},
	},
	intKey(intSpec{
		name:     "OnAccessMaxFileSize",
		def:      strconv.Itoa(defaultOnAccessMaxFileSize),
		doc:      "Files larger than this many bytes are let through unscanned on access (a scan covers them); 1 to 2^40.",
		min:      1,
		max:      1 << 40,
		want:     "an integer number of bytes from 1 to 1099511627776",
		defValue: defaultOnAccessMaxFileSize,
		load:     func(a *Agent, v int64) { a.OnAccessMaxFileSize = v },
		store:    func(a *Agent) (int64, error) { return a.OnAccessMaxFileSize, nil },
	}),
	intKey(intSpec{
		name: "OnAccessVerdictTimeout",
		def:  "2000",
		doc: "Milliseconds an open or exec waits for its verdict, 10 to 60000: a verdict not ready by then lets the " +
			"access through (fail-open), logged and counted, and the file is still scanned.",
		min:      10,
		max:      60000,
		want:     "an integer number of milliseconds from 10 to 60000",
		defValue: int64(defaultOnAccessVerdictTimeout / time.Millisecond),
		load:     func(a *Agent, v int64) { a.OnAccessVerdictTimeout = time.Duration(v) * time.Millisecond },
		store: func(a *Agent) (int64, error) {
			d := a.OnAccessVerdictTimeout
			if d%time.Millisecond != 0 {
				return 0, fmt.Errorf("%v is not a whole number of milliseconds", d)
			}
			return int64(d / time.Millisecond), nil
		},
	}),
}

// crossChecks validate combinations of keys once every key is valid on its
// own. Each returns the key it blames.
var crossChecks = []func(a *Agent) (string, error){
	func(a *Agent) (string, error) {
		if len(a.LiveUpdateServers) > 0 && a.RepositoryRoot == "" {
			return "RepositoryRoot", errors.New("missing: LiveUpdateServers are set, and updates are verified against this root")
		}
		return "", nil
	},
	func(a *Agent) (string, error) {
		if a.ServerCACertificate != "" && !strings.HasPrefix(strings.ToLower(a.NodeCommURL), "https://") {
			return "ServerCACertificate", fmt.Errorf("set, but NodeCommURL %q is not https, so no certificate would be checked", a.NodeCommURL)
		}
		return "", nil
	},
	func(a *Agent) (string, error) {
		if a.OnAccess && len(a.OnAccessPaths) == 0 {
			return "OnAccessPaths", errors.New("missing: OnAccess is true, and on-access scanning needs the trees to watch")
		}
		if len(a.OnAccessPaths) > maxOnAccessPaths {
			return "OnAccessPaths", fmt.Errorf("%d paths: at most %d", len(a.OnAccessPaths), maxOnAccessPaths)
		}
		return "", nil
	},
}

// maxOnAccessPaths bounds OnAccessPaths (and what a check-in reports).
const maxOnAccessPaths = 64

func lookupKey(name string) *keyDef {
	for i := range keyTable {
		if keyTable[i].name == name {
			return &keyTable[i]
		}
	}
	return nil
}

// stringSpec describes a string key. An empty string counts as absent for
// an optional key; a required key must not be empty.
type stringSpec struct {
	name     string
	required bool
	def      string
	doc      string
	field    func(a *Agent) *string
	defValue func() string // nil: the default is ""
	check    func(s string) error
}

func stringKey(s stringSpec) keyDef {
	setDefault := func(a *Agent) {
		v := ""
		if s.defValue != nil {
			v = s.defValue()
		}
		*s.field(a) = v
	}
	return keyDef{
		name:     s.name,
		kind:     kindString,
		required: s.required,
		def:      s.def,
		doc:      s.doc,
		set: func(a *Agent, raw any) error {
			v, ok := raw.(string)
			if !ok {
				return fmt.Errorf("want a string, got %s", describe(raw))
			}
			if v == "" {
				if s.required {
					return errors.New("is empty; this key is required")
				}
				setDefault(a)
				return nil
			}
			if err := s.check(v); err != nil {
				return err
			}
			*s.field(a) = v
			return nil
		},
		setDefault: setDefault,
		get: func(a *Agent) (any, error) {
			if v := *s.field(a); v != "" {
				return v, nil
			}
			return nil, nil
		},
	}
}

// intSpec describes an integer key. Zero in the Agent means absent.
type intSpec struct {
	name     string
	def      string
	doc      string
	min, max int64
	zero     bool   // 0 is accepted too (meaning the same as absent)
	want     string // description of valid values, for errors
	defValue int64
	load     func(a *Agent, v int64)
	store    func(a *Agent) (int64, error)
	// secs, instead of load and store: the key is the duration it
	// points to, in whole seconds.
	secs func(a *Agent) *time.Duration
}

func intKey(s intSpec) keyDef {
	if s.secs != nil {
		s.load = func(a *Agent, v int64) { *s.secs(a) = time.Duration(v) * time.Second }
		s.store = func(a *Agent) (int64, error) {
			d := *s.secs(a)
			if d%time.Second != 0 {
				return 0, fmt.Errorf("%v is not a whole number of seconds", d)
			}
			return int64(d / time.Second), nil
		}
	}
	return keyDef{
		name: s.name,
		kind: kindInteger,
		def:  s.def,
		doc:  s.doc,
		set: func(a *Agent, raw any) error {
			var v int64
			switch n := raw.(type) {
			case uint64:
				if n > uint64(s.max) {
					return fmt.Errorf("want %s, got %s", s.want, describe(raw))
				}
				v = int64(n)
			case int64:
				v = n
			default:
				return fmt.Errorf("want %s, got %s", s.want, describe(raw))
			}
			if v == 0 && s.zero {
				s.load(a, s.defValue)
				return nil
			}
			if v < s.min || v > s.max {
				return fmt.Errorf("want %s, got %s", s.want, describe(raw))
			}
			s.load(a, v)
			return nil
		},
		setDefault: func(a *Agent) { s.load(a, s.defValue) },
		get: func(a *Agent) (any, error) {
			v, err := s.store(a)
			if err != nil || v == 0 {
				return nil, err
			}
			return v, nil
		},
	}
}

func asStringArray(raw any) ([]string, error) {
	items, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("want an array of strings, got %s", describe(raw))
	}
	out := make([]string, len(items))
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("item %d: want a string, got %s", i+1, describe(item))
		}
		out[i] = s
	}
	return out, nil
}

var groupName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func checkMulticastAddress(s string) error {
	ip := net.ParseIP(s)
	if ip == nil {
		return fmt.Errorf("%q is not an IP address (want an IPv4 or IPv6 multicast group, e.g. %s or ff15::8192)", s, defaultMulticastAddress)
	}
	if !ip.IsMulticast() {
		return fmt.Errorf("%s is not a multicast address (want one in 224.0.0.0/4 or ff00::/8)", s)
	}
	return nil
}

func checkInterfaceName(s string) error {
	if err := checkText(s, 255); err != nil {
		return err
	}
	if strings.ContainsAny(s, " /") {
		return fmt.Errorf("%q is not a network interface name", s)
	}
	return nil
}

func checkNodeCommURL(s string) error {
	if err := checkText(s, 2048); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	switch u.Scheme {
	case "http", "https":
	case "":
		return fmt.Errorf("%q has no scheme; want http:// or https://", s)
	default:
		return fmt.Errorf("scheme %q is not supported; want http:// or https://", u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return fmt.Errorf("%q has no host; want %s://host[:port]/path", s, u.Scheme)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %q is not from 1 to 65535", s, p)
		}
	}
	if u.User != nil {
		return fmt.Errorf("%q has user info; credentials do not belong in the URL", redactURL(u))
	}
	if u.RawQuery != "" || u.ForceQuery {
		return fmt.Errorf("%q has a query; want only a base path", s)
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("%q has a fragment; want only a base path", s)
	}
	return nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = url.User("xxxxx")
	return c.String()
}

// absPathListKey is an array of absolute paths (and, with patterns, of
// filepath.Match patterns without a slash).
func absPathListKey(name, doc string, field func(a *Agent) *[]string, patterns bool) keyDef {
	return keyDef{
		name: name,
		kind: kindStringArray,
		doc:  doc,
		set: func(a *Agent, raw any) error {
			list, err := asStringArray(raw)
			if err != nil {
				return err
			}
			for i, p := range list {
				if patterns && !strings.Contains(p, "/") {
					if _, err := filepath.Match(p, ""); err != nil || p == "" {
						return fmt.Errorf("item %d: %q is not a valid pattern", i+1, p)
					}
					continue
				}
				if err := checkAbsPath(p); err != nil {
					return fmt.Errorf("item %d: %w", i+1, err)
				}
			}
			if len(list) == 0 {
				list = nil
			}
			*field(a) = list
			return nil
		},
		setDefault: func(a *Agent) { *field(a) = nil },
		get: func(a *Agent) (any, error) {
			if len(*field(a)) == 0 {
				return nil, nil
			}
			return slices.Clone(*field(a)), nil
		},
	}
}

func checkLiveUpdateURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	switch u.Scheme {
	case "ftp", "http", "https":
	default:
		return fmt.Errorf("%q: want an ftp://, http:// or https:// URL", s)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want scheme://host[:port]/path, without query or fragment", s)
	}
	return nil
}

func checkAbsPath(s string) error {
	if err := checkText(s, 4096); err != nil {
		return err
	}
	if !filepath.IsAbs(s) {
		return fmt.Errorf("%q is not an absolute path", s)
	}
	return nil
}

func checkHostPort(s string) error {
	if err := checkText(s, 255); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port (e.g. 127.0.0.1:9464, [::1]:9464 or :9464), got %q: %v", s, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
	}
	if strings.ContainsFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' }) {
		return fmt.Errorf("%q: %q is not a host name or address", s, host)
	}
	return nil
}

// checkText rejects strings longer than max bytes, invalid UTF-8, control
// characters (tabs and newlines included) and characters that an XML plist
// cannot hold, so that every accepted value survives a rewrite in either
// format.
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%d bytes long, at most %d allowed", len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%q is not valid UTF-8", s)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%q contains a control character", s)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return !isXMLChar(r) }) {
		return fmt.Errorf("%q contains a character that is not allowed in XML", s)
	}
	return nil
}

// isXMLChar reports whether r may appear in an XML 1.0 document.
func isXMLChar(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		(r >= 0x20 && r <= 0xD7FF) ||
		(r >= 0xE000 && r <= 0xFFFD) ||
		(r >= 0x10000 && r <= unicode.MaxRune)
}

// describe names a decoded plist value's type and shows the value, for
// errors: `string "abc"`, `integer 5`, `array of 2 items`.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 64 {
			return fmt.Sprintf("string %q... (%d bytes)", v[:64], len(v))
		}
		return fmt.Sprintf("string %q", v)
	case uint64:
		return fmt.Sprintf("integer %d", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("real %v", v)
	case float32:
		return fmt.Sprintf("real %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case []byte:
		return fmt.Sprintf("data of %d bytes", len(v))
	case time.Time:
		return "date " + v.UTC().Format(time.RFC3339)
	case []any:
		return fmt.Sprintf("array of %d items", len(v))
	case map[string]any:
		return fmt.Sprintf("dictionary of %d keys", len(v))
	case plist.UID:
		return fmt.Sprintf("UID %d", uint64(v))
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("value of type %T", v)
}

// suggestKey returns the known agent key closest to an unknown one,
// ignoring case, when it is close enough to be a likely typo; otherwise "".
func suggestKey(unknown string) string {
	names := make([]string, len(keyTable))
	for i, k := range keyTable {
		names[i] = k.name
	}
	return suggest(unknown, names)
}

// suggest returns the name in known closest to unknown, ignoring case, when
// it is close enough to be a likely typo; otherwise "".
func suggest(unknown string, known []string) string {
	best, bestDist := "", -1
	u := strings.ToLower(unknown)
	for _, name := range known {
		d := editDistance(u, strings.ToLower(name))
		if bestDist < 0 || d < bestDist {
			best, bestDist = name, d
		}
	}
	longer := max(utf8.RuneCountInString(unknown), len(best))
	if bestDist <= 3 && bestDist*4 <= longer {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 256 || len(rb) > 256 {
		// Far longer than any key: not a typo of one, and not worth the work.
		return 1 << 30
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
