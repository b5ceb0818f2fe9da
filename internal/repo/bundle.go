package repo

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Limits of a definitions bundle. AddDefinitions refuses to publish a
// bundle that ExtractBundle would refuse to extract.
const (
	MaxBundleFiles    = 1000      // files in one bundle
	MaxBundleFileSize = 512 << 20 // bytes in one file of a bundle
	MaxBundleNameLen  = 100       // bytes in a file name (fits a plain ustar header)
)

// bundleModTime is the modification time of every file in a bundle, so
// that the same files always make the same bundle (and the same hash).
var bundleModTime = time.Unix(0, 0).UTC()

// CheckBundleName reports whether name may be the name of a file in a
// definitions bundle: 1 to MaxBundleNameLen characters from the portable
// file name set (A-Z a-z 0-9 . _ -), not starting with a dot or a dash.
// So: no path separators, no "." or "..", no hidden files, no surprises
// on any file system.
func CheckBundleName(name string) error {
	if name == "" {
		return fmt.Errorf("empty file name")
	}
	if len(name) > MaxBundleNameLen {
		return fmt.Errorf("file name %.20q...: longer than %d bytes", name, MaxBundleNameLen)
	}
	if name[0] == '.' {
		return fmt.Errorf("file name %q: starts with a dot", name)
	}
	if name[0] == '-' {
		return fmt.Errorf("file name %q: starts with a dash", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '/' || c == '\\':
			return fmt.Errorf("file name %q: contains a path separator", name)
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("file name %q: character %q not allowed (want A-Z a-z 0-9 . _ -)", name, c)
		}
	}
	return nil
}

// MakeBundle returns the deterministic tar of files: flat, sorted by
// name, every entry a regular file with mode 0644, uid/gid 0, no owner
// names and the same modification time.
func MakeBundle(files map[string][]byte) ([]byte, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("a definitions release needs at least one file")
	}
	if len(files) > MaxBundleFiles {
		return nil, fmt.Errorf("%d files: a bundle holds at most %d", len(files), MaxBundleFiles)
	}
	names := make([]string, 0, len(files))
	for name, data := range files {
		if err := CheckBundleName(name); err != nil {
			return nil, err
		}
		if len(data) > MaxBundleFileSize {
			return nil, fmt.Errorf("file %s: %d bytes, more than the limit of %d", name, len(data), MaxBundleFileSize)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     name,
			Mode:     0o644,
			Size:     int64(len(files[name])),
			ModTime:  bundleModTime,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", name, err)
		}
		if _, err := tw.Write(files[name]); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ExtractBundle extracts the definitions bundle read from r into dir,
// which must exist, and returns the names of the files it wrote, sorted.
//
// It trusts nothing in the bundle: it refuses absolute names, "..",
// subdirectories and any name CheckBundleName refuses, every entry that
// is not a regular file (directories, symbolic and hard links, devices,
// FIFOs), names that appear twice, files larger than MaxBundleFileSize,
// more than MaxBundleFiles files, an empty bundle, and files that already
// exist in dir. Files are created through an os.Root confined to dir with
// O_EXCL, so nothing is written outside dir and nothing is overwritten.
// On error, the files it wrote are removed.
//
// Callers should extract a bundle whose hash they have verified (TUF) into
// a new, empty directory and switch to it only when ExtractBundle succeeds.
func ExtractBundle(r io.Reader, dir string) ([]string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("extract bundle: %w", err)
	}
	defer root.Close()
	var written []string
	ok := false
	defer func() {
		if !ok {
			for _, name := range written {
				_ = root.Remove(name)
			}
		}
	}()
	seen := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("extract bundle: %w", err)
		}
		name := hdr.Name
		if err := checkEntry(hdr); err != nil {
			return nil, fmt.Errorf("extract bundle: entry %q: %w", name, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("extract bundle: entry %q appears twice", name)
		}
		if len(seen) == MaxBundleFiles {
			return nil, fmt.Errorf("extract bundle: more than %d files", MaxBundleFiles)
		}
		seen[name] = true
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("extract bundle: %w", err)
		}
		written = append(written, name)
		n, err := io.Copy(f, io.LimitReader(tr, MaxBundleFileSize+1))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("extract bundle: %s: %w", name, err)
		}
		if n != hdr.Size || n > MaxBundleFileSize {
			return nil, fmt.Errorf("extract bundle: %s: size %d does not match its header or the limit", name, n)
		}
	}
	if len(written) == 0 {
		return nil, fmt.Errorf("extract bundle: no files")
	}
	ok = true
	slices.Sort(written)
	return written, nil
}

// BundleFiles returns the files of a definitions bundle (name -> content),
// read in memory with ExtractBundle's checks: regular files only, names
// CheckBundleName accepts, each once, at most MaxBundleFiles files of at
// most MaxBundleFileSize bytes, at least one file, nothing after the
// archive's end but its zero blocks.
func BundleFiles(bundle []byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(bundle))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		name := hdr.Name
		if err := checkEntry(hdr); err != nil {
			return nil, fmt.Errorf("bundle: entry %q: %w", name, err)
		}
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("bundle: entry %q appears twice", name)
		}
		if len(files) == MaxBundleFiles {
			return nil, fmt.Errorf("bundle: more than %d files", MaxBundleFiles)
		}
		// The header's size is checked against the limit and the data
		// is inside bundle, so it is no larger than what was read.
		if hdr.Size > int64(len(bundle)) {
			return nil, fmt.Errorf("bundle: %s: size %d beyond the bundle's end", name, hdr.Size)
		}
		data := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return nil, fmt.Errorf("bundle: %s: %w", name, err)
		}
		files[name] = data
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("bundle: no files")
	}
	return files, nil
}

// checkEntry checks one tar header of a bundle.
func checkEntry(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeReg:
	case tar.TypeDir:
		return fmt.Errorf("directories are not allowed")
	case tar.TypeSymlink:
		return fmt.Errorf("symbolic links are not allowed")
	case tar.TypeLink:
		return fmt.Errorf("hard links are not allowed")
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("devices are not allowed")
	case tar.TypeFifo:
		return fmt.Errorf("FIFOs are not allowed")
	default:
		return fmt.Errorf("entry type %q is not allowed", hdr.Typeflag)
	}
	name := hdr.Name
	if filepath.IsAbs(name) || strings.HasPrefix(name, "/") || strings.HasPrefix(name, `\`) {
		return fmt.Errorf("absolute paths are not allowed")
	}
	for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return fmt.Errorf("\"..\" is not allowed")
		}
	}
	if strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("subdirectories are not allowed")
	}
	if err := CheckBundleName(hdr.Name); err != nil {
		return err
	}
	if hdr.Size < 0 || hdr.Size > MaxBundleFileSize {
		return fmt.Errorf("size %d exceeds the limit of %d bytes", hdr.Size, MaxBundleFileSize)
	}
	return nil
}
