package ports

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
)

// Runtime files. A server, LiveUpdate server or relay started with flags
// only has no preference file for vigil ports and vigil doctor to read, so
// while it runs it publishes its effective settings in the runtime
// directory: PART.plist holds them under the keys of the part's
// preference file (and nothing secret), PART.pid the PID of the process
// that wrote them (and, on Linux, its start time, so that a PID used
// again by another process is not taken for it). The part removes both
// when it exits cleanly; files left by a process that was killed are
// recognised by FindRunning and ignored.

// RuntimeDirEnv is the environment variable that names the runtime
// directory; "off" turns publishing and reading off.
const RuntimeDirEnv = "VIGIL_RUNTIME_DIR"

// DefaultRuntimeDir is the runtime directory when RuntimeDirEnv is not
// set: /var/run/vigil on macOS, /run/vigil elsewhere.
func DefaultRuntimeDir() string {
	if runtime.GOOS == "darwin" {
		return "/var/run/vigil"
	}
	return "/run/vigil"
}

// RuntimeDir is the runtime directory for a value of RuntimeDirEnv: the
// value itself, DefaultRuntimeDir when it is empty, "" (none) when it is
// "off".
func RuntimeDir(env string) string {
	switch {
	case env == "":
		return DefaultRuntimeDir()
	case strings.EqualFold(env, "off"):
		return ""
	}
	return env
}

// Running is a part whose settings a live process published.
type Running struct {
	Part string // config.PartServer, config.PartLiveUpdate or config.PartRelay
	Path string // its settings, DIR/PART.plist
	PID  int    // the process that published them
}

// Published is what Publish wrote; Remove takes it back.
type Published struct {
	Path    string // DIR/PART.plist
	pidPath string
	pidLine string
}

// checkPart refuses a part name that is not a plain file name.
func checkPart(part string) error {
	if part == "" || strings.ContainsAny(part, `/\.`) {
		return fmt.Errorf("runtime files: bad part name %q", part)
	}
	return nil
}

func runtimePaths(dir, part string) (settings, pid string) {
	return filepath.Join(dir, part+".plist"), filepath.Join(dir, part+".pid")
}

// ErrBusy is returned by Publish when another live process has published
// settings for the same part.
type ErrBusy struct {
	Part, Path string
	PID        int
}

func (e *ErrBusy) Error() string {
	return fmt.Sprintf("%s holds the settings of another vigil %s, pid %d, which is running: this one's are not published", e.Path, e.Part, e.PID)
}

// Publish writes settings, a plist of the part's preference keys, to
// DIR/PART.plist and this process's PID to DIR/PART.pid, each atomically,
// the PID first, creating DIR (mode 0755) when missing. The files are
// readable by everyone: settings must hold nothing secret. When the files
// belong to another live process Publish changes nothing and returns an
// *ErrBusy.
func Publish(dir, part string, settings []byte) (*Published, error) {
	if err := checkPart(part); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path, pidPath := runtimePaths(dir, part)
	if pid, start, err := readPID(pidPath); err == nil && pid != os.Getpid() {
		if alive, _ := liveness(pid, start); alive {
			return nil, &ErrBusy{Part: part, Path: path, PID: pid}
		}
	}
	start, _ := procStart(os.Getpid())
	if start == "" {
		start = "-"
	}
	p := &Published{Path: path, pidPath: pidPath, pidLine: fmt.Sprintf("%d %s\n", os.Getpid(), start)}
	if err := atomicfile.WriteFile(pidPath, []byte(p.pidLine), 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, settings, 0o644); err != nil {
		os.Remove(pidPath)
		return nil, err
	}
	return p, nil
}

// Remove deletes the settings, then the PID file, unless another process
// has taken them over since.
func (p *Published) Remove() error {
	if b, err := os.ReadFile(p.pidPath); err != nil || string(b) != p.pidLine {
		return nil // not ours any more
	}
	err := os.Remove(p.Path)
	if errors.Is(err, iofs.ErrNotExist) {
		err = nil
	}
	if err2 := os.Remove(p.pidPath); err2 != nil && !errors.Is(err2, iofs.ErrNotExist) && err == nil {
		err = err2
	}
	return err
}

// maxPIDFile bounds what readPID reads.
const maxPIDFile = 64

// readPID reads a PID file: "PID START\n", START "-" when not known.
func readPID(path string) (pid int, start string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	b := make([]byte, maxPIDFile+1)
	n, _ := f.Read(b)
	fields := strings.Fields(string(b[:n]))
	if n > maxPIDFile || len(fields) != 2 || !strings.HasSuffix(string(b[:n]), "\n") {
		return 0, "", fmt.Errorf("%s: not a PID file (want \"PID START\\n\")", path)
	}
	pid, err = strconv.Atoi(fields[0])
	if err != nil || pid < 1 {
		return 0, "", fmt.Errorf("%s: %q is not a PID", path, fields[0])
	}
	return pid, fields[1], nil
}

// FindRunning looks in dir for the settings of a running part. It returns
// them when the process that published them runs, in this network
// namespace; otherwise nil and, when files were found, a note saying why
// they are ignored (the process is gone: it was killed; it runs in
// another network namespace). Neither a missing directory nor missing
// files are errors.
func FindRunning(dir, part string) (*Running, string, error) {
	if err := checkPart(part); err != nil {
		return nil, "", err
	}
	path, pidPath := runtimePaths(dir, part)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, "", nil
		}
		return nil, "", err
	}
	pid, start, err := readPID(pidPath)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, fmt.Sprintf("ignored %s: no %s beside it names the process that wrote it (a vigil %s that did not exit cleanly)", path, filepath.Base(pidPath), part), nil
		}
		return nil, fmt.Sprintf("ignored %s: %v", path, err), nil
	}
	alive, why := liveness(pid, start)
	if !alive {
		return nil, fmt.Sprintf("ignored %s: left by vigil %s pid %d, which %s (killed, or crashed)", path, part, pid, why), nil
	}
	if other, ok := otherNetNS(pid); ok && other {
		return nil, fmt.Sprintf("ignored %s: vigil %s pid %d runs in another network namespace", path, part, pid), nil
	}
	return &Running{Part: part, Path: path, PID: pid}, "", nil
}

// liveness reports whether the process pid that recorded start runs, and
// if not, why.
func liveness(pid int, start string) (bool, string) {
	if !processExists(pid) {
		return false, "is no longer running"
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return true, "" // no /proc: the PID is all there is
	}
	got, state := procStart(pid)
	switch {
	case got == "":
		return false, "is no longer running"
	case state == "Z" || state == "X":
		return false, "has exited"
	case start != "-" && got != start:
		return false, "is no longer running (its PID now belongs to another process)"
	}
	return true, ""
}

// procStart reads a process's start time (in clock ticks since boot) and
// state from /proc/PID/stat: "", "" without /proc or when the process is
// gone.
func procStart(pid int) (start, state string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", ""
	}
	// pid (comm) state ppid … starttime is field 22; comm may hold
	// anything, so count from its closing parenthesis.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", ""
	}
	return f[19], f[0]
}

// otherNetNS reports whether pid runs in another network namespace than
// this process; ok is false when that cannot be told (no /proc, no
// permission).
func otherNetNS(pid int) (other, ok bool) {
	self, err1 := os.Readlink("/proc/self/ns/net")
	its, err2 := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err1 != nil || err2 != nil {
		return false, false
	}
	return self != its, true
}
