package agent

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vigil-fleet/vigil/internal/atomicfile"
	"github.com/vigil-fleet/vigil/internal/command"
)

// Quarantine keeps infected files out of the way: each is moved into the
// quarantine directory (mode 0700) as ID.bin (mode 0600) beside a record
// ID.json saying where it came from, so that it can be restored.
type Quarantine struct {
	Dir string
}

// quarantineRecord is the ID.json beside a quarantined file.
type quarantineRecord struct {
	ID        string      `json:"id"`
	Original  string      `json:"original"`
	Mode      fs.FileMode `json:"mode"`
	Signature string      `json:"signature"`
	SHA256    string      `json:"sha256"`
	At        time.Time   `json:"at"`
}

func (q Quarantine) paths(id string) (bin, rec string) {
	return filepath.Join(q.Dir, id+".bin"), filepath.Join(q.Dir, id+".json")
}

// Put moves path into quarantine and returns its id. The record is written
// first, so that a crash mid-move never leaves a file without one.
func (q Quarantine) Put(path, signature, sha256 string) (string, error) {
	if err := os.MkdirAll(q.Dir, 0o700); err != nil {
		return "", err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	bin, rec := q.paths(id)
	js, _ := json.MarshalIndent(quarantineRecord{
		ID: id, Original: path, Mode: fi.Mode().Perm(), Signature: signature, SHA256: sha256, At: time.Now().UTC(),
	}, "", "  ")
	if err := atomicfile.WriteFile(rec, js, 0o600); err != nil {
		return "", err
	}
	if err := moveFile(path, bin, 0o600); err != nil {
		os.Remove(rec)
		return "", err
	}
	return id, nil
}

// Restore puts a quarantined file back where it was, with its mode, and
// returns that path. It refuses to overwrite a file that is there now.
func (q Quarantine) Restore(id string) (string, error) {
	if !command.ValidQuarantineID(id) {
		return "", fmt.Errorf("%q is not a quarantine id", id)
	}
	bin, rec := q.paths(id)
	b, err := os.ReadFile(rec)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("nothing in quarantine with id %s", id)
	} else if err != nil {
		return "", err
	}
	var r quarantineRecord
	if err := json.Unmarshal(b, &r); err != nil || r.ID != id || !filepath.IsAbs(r.Original) {
		return "", fmt.Errorf("quarantine record %s is damaged", rec)
	}
	if _, err := os.Lstat(r.Original); err == nil {
		return "", fmt.Errorf("refusing to restore over %s, which exists again", r.Original)
	}
	if err := moveFile(bin, r.Original, r.Mode); err != nil {
		return "", err
	}
	os.Remove(rec)
	return r.Original, nil
}

// moveFile renames src to dst, or copies and removes it across file
// systems, leaving dst with the given mode.
func moveFile(src, dst string, mode fs.FileMode) error {
	if err := os.Chmod(src, mode); err != nil {
		return err
	}
	err := os.Rename(src, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".part"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	out.Close()
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Remove(src)
}
