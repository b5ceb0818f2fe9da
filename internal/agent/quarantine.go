package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/command"
)

// Quarantine keeps infected files out of the way: each is moved into the
// quarantine directory (mode 0700) as ID.bin (mode 0600) beside a record
// ID.json saying where it came from, so that it can be restored.
//
// The agent runs as root among files that users control, so every step
// works on file descriptors: the directory holding a file is opened one
// path element at a time from "/" without following symbolic links (a
// user who swaps a directory on the path for a link makes the move fail,
// rather than move the link's target), the file itself is opened without
// following a link and must be the regular file that was scanned (same
// size and SHA-256), the move is a rename between directory descriptors
// that is checked afterwards to have moved that very file (device and
// inode), and its mode is changed through its descriptor. Names are bytes
// throughout: a name that is not UTF-8 is restored as it was.
type Quarantine struct {
	Dir string
}

// quarantineRecord is the ID.json beside a quarantined file.
type quarantineRecord struct {
	ID string `json:"id"`
	// Original is the file's path for people: JSON turns bytes that are
	// not UTF-8 into U+FFFD, so OriginalBytes holds the exact path.
	Original      string      `json:"original"`
	OriginalBytes []byte      `json:"original_bytes,omitempty"`
	Mode          fs.FileMode `json:"mode"`
	Signature     string      `json:"signature"`
	SHA256        string      `json:"sha256"`
	Size          int64       `json:"size"`
	At            time.Time   `json:"at"`
}

// path is the exact original path.
func (r quarantineRecord) path() string {
	if r.OriginalBytes != nil {
		return string(r.OriginalBytes)
	}
	return r.Original
}

// Scanned identifies the file a scan found: its path, size and SHA-256
// (hex) as the scanner read them.
type Scanned struct {
	Path   string
	Size   int64
	SHA256 string
}

func (q Quarantine) names(id string) (bin, rec string) { return id + ".bin", id + ".json" }

// openDir opens the quarantine directory, creating it (0700).
func (q Quarantine) openDir() (int, error) {
	if err := os.MkdirAll(q.Dir, 0o700); err != nil {
		return -1, err
	}
	fd, err := unix.Open(q.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: q.Dir, Err: err}
	}
	return fd, nil
}

// openParent opens the directory holding path, from "/" one element at a
// time, following no symbolic link, and returns it with the last element.
func openParent(path string) (int, string, error) {
	if !filepath.IsAbs(path) {
		return -1, "", fmt.Errorf("%s is not an absolute path", showPath(path))
	}
	dir, name := filepath.Split(filepath.Clean(path))
	if name == "" || name == "." || name == ".." {
		return -1, "", fmt.Errorf("%s does not name a file", showPath(path))
	}
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", &fs.PathError{Op: "open", Path: "/", Err: err}
	}
	walked := ""
	for _, el := range strings.Split(strings.Trim(dir, "/"), "/") {
		if el == "" {
			continue
		}
		walked += "/" + el
		next, err := unix.Openat(fd, el, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, "", fmt.Errorf("%s: %s is not a directory (a symbolic link?); not following it", showPath(path), showPath(walked))
		} else if err != nil {
			return -1, "", &fs.PathError{Op: "open", Path: walked, Err: err}
		}
		fd = next
	}
	return fd, name, nil
}

// fileID is a file's identity on its system.
type fileID struct{ dev, ino uint64 }

func idOfStat(st *unix.Stat_t) fileID {
	return fileID{uint64(st.Dev), uint64(st.Ino)} //nolint:unconvert // Dev is int32 on darwin
}

// Put moves the scanned file into quarantine and returns its id. It
// refuses when the file at the path is no longer the one scanned. The
// record is written first, so that a crash mid-move never leaves a file
// without one.
func (q Quarantine) Put(f Scanned, signature string) (string, error) {
	qfd, err := q.openDir()
	if err != nil {
		return "", err
	}
	defer unix.Close(qfd)
	dfd, name, err := openParent(f.Path)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	ffd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return "", fmt.Errorf("%s is a symbolic link now, not the file scanned", showPath(f.Path))
	} else if err != nil {
		return "", &fs.PathError{Op: "open", Path: showPath(f.Path), Err: err}
	}
	file := os.NewFile(uintptr(ffd), f.Path)
	defer file.Close()
	var st unix.Stat_t
	if err := unix.Fstat(ffd, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", fmt.Errorf("%s is not a regular file", showPath(f.Path))
	}
	if st.Size != f.Size {
		return "", fmt.Errorf("%s changed since it was scanned (%d bytes, scanned %d); not moving it", showPath(f.Path), st.Size, f.Size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, file); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
		return "", fmt.Errorf("%s changed since it was scanned (SHA-256 %s, scanned %s); not moving it", showPath(f.Path), got, f.SHA256)
	}
	id := newQuarantineID()
	bin, rec := q.names(id)
	r := quarantineRecord{
		ID: id, Original: f.Path, Mode: fs.FileMode(st.Mode).Perm(), Signature: signature, SHA256: f.SHA256, Size: f.Size, At: time.Now().UTC(),
	}
	if !utf8.ValidString(f.Path) {
		r.OriginalBytes = []byte(f.Path)
	}
	js, _ := json.MarshalIndent(r, "", "  ")
	recPath := filepath.Join(q.Dir, rec)
	if err := atomicfile.WriteFile(recPath, js, 0o600); err != nil {
		return "", err
	}
	if err := moveAt(dfd, name, qfd, bin, file, idOfStat(&st), 0o600); err != nil {
		os.Remove(recPath)
		return "", fmt.Errorf("moving %s into quarantine: %w", showPath(f.Path), err)
	}
	return id, nil
}

// Restore puts a quarantined file back where it was, with its mode, and
// returns that path. It refuses to overwrite a file that is there now,
// and to follow a symbolic link on the way.
func (q Quarantine) Restore(id string) (string, error) {
	if !command.ValidQuarantineID(id) {
		return "", fmt.Errorf("%q is not a quarantine id", id)
	}
	bin, rec := q.names(id)
	recPath := filepath.Join(q.Dir, rec)
	b, err := os.ReadFile(recPath)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("nothing in quarantine with id %s", id)
	} else if err != nil {
		return "", err
	}
	var r quarantineRecord
	if err := json.Unmarshal(b, &r); err != nil || r.ID != id || !filepath.IsAbs(r.path()) {
		return "", fmt.Errorf("quarantine record %s is damaged", recPath)
	}
	orig := r.path()
	qfd, err := q.openDir()
	if err != nil {
		return "", err
	}
	defer unix.Close(qfd)
	ffd, err := unix.Openat(qfd, bin, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &fs.PathError{Op: "open", Path: filepath.Join(q.Dir, bin), Err: err}
	}
	file := os.NewFile(uintptr(ffd), bin)
	defer file.Close()
	var st unix.Stat_t
	if err := unix.Fstat(ffd, &st); err != nil {
		return "", err
	}
	dfd, name, err := openParent(orig)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	if err := moveAt(qfd, bin, dfd, name, file, idOfStat(&st), r.Mode.Perm()); errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("refusing to restore over %s, which exists again", showPath(orig))
	} else if err != nil {
		return "", fmt.Errorf("restoring %s: %w", showPath(orig), err)
	}
	os.Remove(recPath)
	return orig, nil
}

// moveAt moves the entry from (sdir, sname) to (ddir, dname), never over
// an existing entry, checks that what moved is file (identity id) and
// gives it mode through its descriptor; when it is not file (the entry
// was swapped meanwhile), it moves it back and fails. Across file systems
// it copies file and removes the source entry if that is still file.
func moveAt(sdir int, sname string, ddir int, dname string, file *os.File, id fileID, mode fs.FileMode) error {
	err := renameNoReplace(sdir, sname, ddir, dname)
	if errors.Is(err, unix.EXDEV) {
		return copyAt(sdir, sname, ddir, dname, file, id, mode)
	} else if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(ddir, dname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if idOfStat(&st) != id {
		if err := renameNoReplace(ddir, dname, sdir, sname); err != nil {
			return fmt.Errorf("the file was swapped for another while it was moved, and moving that back failed: %w", err)
		}
		return errors.New("the file was swapped for another while it was moved; moved that back")
	}
	return unix.Fchmod(int(file.Fd()), uint32(mode.Perm()))
}

// copyAt is moveAt across file systems.
func copyAt(sdir int, sname string, ddir int, dname string, file *os.File, id fileID, mode fs.FileMode) error {
	tmp := dname + ".part"
	tfd, err := unix.Openat(ddir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	out := os.NewFile(uintptr(tfd), tmp)
	fail := func(err error) error {
		out.Close()
		unix.Unlinkat(ddir, tmp, 0)
		return err
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	if _, err := io.Copy(out, file); err != nil {
		return fail(err)
	}
	if err := unix.Fchmod(tfd, uint32(mode.Perm())); err != nil {
		return fail(err)
	}
	if err := out.Sync(); err != nil {
		return fail(err)
	}
	if err := renameNoReplace(ddir, tmp, ddir, dname); err != nil {
		return fail(err)
	}
	out.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(sdir, sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || idOfStat(&st) != id {
		unix.Unlinkat(ddir, dname, 0)
		return errors.New("the file was swapped for another while it was copied; left in place")
	}
	return unix.Unlinkat(sdir, sname, 0)
}

func newQuarantineID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// showPath is a path for messages: as it is when it is UTF-8, quoted with
// Go escapes (reversibly) when it is not.
func showPath(p string) string {
	if utf8.ValidString(p) {
		return p
	}
	return strconv.Quote(p)
}
