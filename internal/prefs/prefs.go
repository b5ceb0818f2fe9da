// Package prefs reads, validates and writes the Vigil agent's preference
// file: a property list (XML or binary, as written by macOS's defaults(1),
// plutil(1), an MDM profile or a text editor) holding one dictionary of keys.
//
// The keys follow the managed-antivirus client that Vigil re-implements: the
// agent joins the UDP multicast group named by MulticastAddress on
// MulticastPort (8192) to receive the server's commands, and talks back over
// HTTP to the base URL in NodeCommURL. Every key is defined once, in the
// table behind [Keys]; [Parse], [Load] and [Write] are driven by that table,
// so documentation, decoding and encoding cannot disagree.
//
// Files are strict: a value of the wrong type, an out-of-range value, a
// missing required key and an unknown key (usually a typo, for which the
// closest known key is suggested) are all errors. Each error starts with the
// file's name and, when a key is at fault, names the key:
//
//	/etc/vigil/agent.plist: key MulticastPort: want an integer from 1 to 65535, got string "abc"
//
// When a file has several problems they are all reported, one per line.
//
// A file is measured before it is decoded, and refused if its decoded form
// would exceed fixed limits (65,536 values, 4 MiB of strings and data, 64
// levels of nesting): a binary plist of a few hundred bytes can refer to
// its objects so often that decoding it would take gigabytes.
//
// The server, the LiveUpdate server and the mirror have preference files
// too, of a simpler kind: their keys name the command's flags ([FlagKey],
// [ApplyFile]), checked with the same strictness and the same messages.
package prefs

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
)

// maxFileSize bounds what Load and Parse accept. A real preference file is
// well under a kilobyte; the bound keeps a mistaken path (a log, a device)
// from being read whole.
const maxFileSize = 1 << 20

// DefaultPath is the agent preference file: on macOS the plist in
// /Library/Preferences that the reference client also used, elsewhere a
// plist under /etc/vigil.
func DefaultPath() string {
	if runtime.GOOS == "darwin" {
		return "/Library/Preferences/com.vigil.agent.plist"
	}
	return "/etc/vigil/agent.plist"
}

// DefaultStateDir is the default StateDirectory: where the agent keeps its
// enrolment credentials and the state it must remember across restarts.
func DefaultStateDir() string {
	if runtime.GOOS == "darwin" {
		return "/Library/Application Support/Vigil"
	}
	return "/var/lib/vigil"
}

// Agent is the content of an agent preference file. [Load] and [Parse]
// return it validated and with defaults filled in; see [Keys] for what each
// field means and its limits.
type Agent struct {
	MulticastAddress     string        // key MulticastAddress: IPv4 or IPv6 multicast group
	MulticastPort        int           // key MulticastPort: UDP port of the group
	MulticastInterface   string        // key MulticastInterface: interface to join on; "" = system default
	NodeCommURL          string        // key NodeCommURL: http(s) base URL of the server's agent API
	ServerPublicKey      string        // key ServerPublicKey: base64 Ed25519 public key of the server
	EnrollmentSecret     string        // key EnrollmentSecret: shared secret used to enrol
	ServerCACertificate  string        // key ServerCACertificate: PEM CA file pinned for https
	StateDirectory       string        // key StateDirectory: the agent's state directory
	Groups               []string      // key Groups: groups the agent asks to belong to
	CheckInInterval      time.Duration // key CheckInInterval: whole seconds; 0 = the server's
	MetricsAddress       string        // key MetricsAddress: host:port for Prometheus /metrics
	LogLevel             string        // key LogLevel: debug, info, warn or error
	Hostname             string        // key Hostname: override of the reported host name
	LiveUpdateServers    []string      // key LiveUpdateServers: ftp/http/https repository URLs, in order
	RepositoryRoot       string        // key RepositoryRoot: pinned TUF root metadata of the repository
	DefinitionsDirectory string        // key DefinitionsDirectory: where definitions are installed
	UpdateInterval       time.Duration // key UpdateInterval: whole seconds; 0 = only on command
	UpgradeInterval      time.Duration // key UpgradeInterval: whole seconds; 0 = upgrades only on command
	ScanPaths            []string      // key ScanPaths: what a scan covers when the command names nothing
	ScanExclude          []string      // key ScanExclude: path prefixes and patterns not scanned
	ScanInterval         time.Duration // key ScanInterval: whole seconds; 0 = only on command
	MaxScanFileSize      int64         // key MaxScanFileSize: bytes; clamscan's --max-filesize
	QuarantineDirectory  string        // key QuarantineDirectory: where detections are moved; "" = report only

	OnAccess                 bool          // key OnAccess: scan files on access
	OnAccessPaths            []string      // key OnAccessPaths: the trees watched
	OnAccessMode             string        // key OnAccessMode: notify or block
	OnAccessExcludePaths     []string      // key OnAccessExcludePaths: path prefixes never scanned on access
	OnAccessExcludeProcesses []string      // key OnAccessExcludeProcesses: executables whose accesses are not scanned
	OnAccessEvents           []string      // key OnAccessEvents: open, exec, close_write
	OnAccessMaxFileSize      int64         // key OnAccessMaxFileSize: bytes
	OnAccessVerdictTimeout   time.Duration // key OnAccessVerdictTimeout: whole milliseconds
}

// ServerKey returns the server's Ed25519 public key decoded from
// ServerPublicKey, or nil if ServerPublicKey does not hold one (which cannot
// happen for an Agent returned by Load or Parse). The result is a fresh copy.
func (a *Agent) ServerKey() ed25519.PublicKey {
	key, err := decodePublicKey(a.ServerPublicKey)
	if err != nil {
		return nil
	}
	return key
}

func decodePublicKey(s string) (ed25519.PublicKey, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not valid base64 (standard encoding, with padding): %v", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("decodes to %d bytes, want a %d-byte Ed25519 public key", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// Load reads and validates the preference file at path (an XML or binary
// property list). Keys that are absent get their defaults. If the file does
// not exist the error satisfies errors.Is(err, fs.ErrNotExist).
func Load(path string) (*Agent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, readError(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, readError(path, err)
	}
	return Parse(path, data)
}

// readError names path once: the *fs.PathError from the os package would
// name it a second time.
func readError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: cannot read preference file: %w", path, err)
}

// Parse validates a preference file's content, data, and returns it with
// defaults applied. name (usually the file's path) starts every error.
// Parse never panics, whatever data holds.
func Parse(name string, data []byte) (*Agent, error) {
	root, err := decodePlist(name, data)
	if err != nil {
		return nil, err
	}
	dict, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: top level is %s, want a dictionary of preference keys", name, describe(root))
	}
	return fromDict(name, dict)
}

// decodePlist decodes data with howett.net/plist, accepting only the XML and
// binary formats. The text (OpenStep/GNUstep) formats are refused: the
// library's text parser accepts almost any bytes as a bare string, which
// would hide a file that is not a property list at all.
func decodePlist(name string, data []byte) (root any, err error) {
	notPlist := func(detail string) error {
		return fmt.Errorf("%s: not a property list (XML or binary): %s", name, oneLine(detail))
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes, too large for a preference file", name, maxFileSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, notPlist("file is empty")
	}
	isBinary := bytes.HasPrefix(data, []byte("bplist"))
	if !isBinary && !looksLikeXML(data) {
		// Refused here, not by the decoder, whose text-format parser
		// recurses once per nesting level: a megabyte of "(" took it
		// 850 MB of stack.
		return nil, notPlist(`neither an XML plist nor a binary plist (no "bplist" header)`)
	}
	if err := checkDecodedSize(data); err != nil {
		var le *limitError
		if errors.As(err, &le) {
			return nil, fmt.Errorf("%s: refused before decoding: %v", name, err)
		}
		return nil, notPlist("binary: " + err.Error())
	}
	defer func() {
		// The decoder recovers its own parse errors but re-raises runtime
		// errors (and fails on non-error panics); a malformed file must
		// never take the agent down.
		if r := recover(); r != nil {
			root, err = nil, notPlist(fmt.Sprintf("decoder failed: %v", r))
		}
	}()
	format, err := plist.Unmarshal(data, &root)
	if err != nil {
		// Input that is not binary and that the XML parser does not take
		// for XML goes to the text parser, whose complaint would mislead.
		if !isBinary && strings.Contains(err.Error(), "text property list") {
			return nil, notPlist(`neither an XML plist nor a binary plist (no "bplist" header)`)
		}
		return nil, notPlist(strings.TrimPrefix(err.Error(), "plist: "))
	}
	if format != plist.XMLFormat && format != plist.BinaryFormat {
		return nil, notPlist(`neither an XML plist nor a binary plist (no "bplist" header)`)
	}
	return root, nil
}

// oneLine escapes control characters (the decoder's messages can quote a
// newline from the file) so that each problem stays on one line.
func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func looksLikeXML(data []byte) bool {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && data[0] == '<'
}

// fromDict applies the key table to a decoded top-level dictionary.
func fromDict(name string, dict map[string]any) (*Agent, error) {
	a := &Agent{}
	var errs []error
	keyErr := func(key string, err error) {
		errs = append(errs, fmt.Errorf("%s: key %s: %w", name, key, err))
	}
	for i := range keyTable {
		k := &keyTable[i]
		raw, present := dict[k.name]
		if !present {
			if k.required {
				keyErr(k.name, fmt.Errorf("missing; this key is required (%s)", k.doc))
			} else {
				k.setDefault(a)
			}
			continue
		}
		if err := k.set(a, raw); err != nil {
			keyErr(k.name, err)
		}
	}
	var unknown []string
	for key := range dict {
		if lookupKey(key) == nil {
			unknown = append(unknown, key)
		}
	}
	sort.Strings(unknown)
	for _, key := range unknown {
		msg := fmt.Sprintf("%s: unknown key %q", name, key)
		if s := suggestKey(key); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		errs = append(errs, errors.New(msg))
	}
	if len(errs) == 0 {
		for _, c := range crossChecks {
			if key, err := c(a); err != nil {
				keyErr(key, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// Write writes a to path as a property list in format (plist.XMLFormat or
// plist.BinaryFormat) with mode 0644 (0600 when it holds an
// EnrollmentSecret), replacing any existing file
// atomically: the data goes to a temporary file in the same directory,
// which is synced and then renamed over path. Keys whose field holds its
// zero value are omitted (Load then applies the default). Write refuses an
// Agent that Load would reject, with the error Load would give.
func Write(path string, a *Agent, format int) error {
	if a == nil {
		return fmt.Errorf("%s: nothing to write (nil *prefs.Agent)", path)
	}
	if format != plist.XMLFormat && format != plist.BinaryFormat {
		return fmt.Errorf("%s: cannot write plist format %d: want plist.XMLFormat (%d) or plist.BinaryFormat (%d)",
			path, format, plist.XMLFormat, plist.BinaryFormat)
	}
	data, err := encode(path, a, format)
	if err != nil {
		return err
	}
	if err := checkReadsBack(path, a, data, format); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if a.EnrollmentSecret != "" {
		mode = 0o600 // the secret is not for every local user
	}
	if err := atomicfile.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("%s: cannot write preference file: %w", path, err)
	}
	return nil
}

// checkReadsBack parses data, the encoding of a, with the very code that
// will read the file, and checks that every key written reads back as
// written.
func checkReadsBack(path string, a *Agent, data []byte, format int) error {
	back, err := Parse(path, data)
	if err != nil {
		return err
	}
	for i := range keyTable {
		k := &keyTable[i]
		want, _ := k.get(a)
		if want == nil {
			continue
		}
		if got, _ := k.get(back); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("%s: key %s: %v reads back from a %s plist as %v",
				path, k.name, want, plist.FormatNames[format], got)
		}
	}
	return nil
}

func encode(path string, a *Agent, format int) ([]byte, error) {
	// The encoder writes a dictionary's keys sorted, so files are stable.
	dict := make(map[string]any, len(keyTable))
	var errs []error
	for i := range keyTable {
		k := &keyTable[i]
		val, err := k.get(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: key %s: %w", path, k.name, err))
			continue
		}
		if val != nil {
			dict[k.name] = val
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	data, err := plist.MarshalIndent(dict, format, "\t")
	if err != nil {
		return nil, fmt.Errorf("%s: cannot encode preferences: %w", path, err)
	}
	if format == plist.XMLFormat && !bytes.HasSuffix(data, []byte("\n")) {
		data = append(data, '\n')
	}
	return data, nil
}
