package unpack

import (
	"bytes"
	"io"
	"os"
)

// spool holds an extracted object: in memory up to a limit, then in an
// unlinked temporary file (closed by close). The extractors write at most the
// limits' worth of bytes into it (MaxFileSize, or what MaxScanSize
// leaves, plus one read chunk), so neither memory nor disk grows with
// what an archive claims.
type spool struct {
	dir    string
	memMax int
	mem    []byte
	f      *os.File
	n      int64
	err    error
}

func (w *walker) newSpool() *spool {
	return &spool{dir: w.opts.TempDir, memMax: w.opts.MemLimit}
}

func (s *spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.f == nil && len(s.mem)+len(p) <= s.memMax {
		s.mem = append(s.mem, p...)
		s.n += int64(len(p))
		return len(p), nil
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "vigil-unpack-*")
		if err != nil {
			s.err = err
			return 0, err
		}
		// Unlinked at once: the open file lives on, and nothing is left
		// behind if the process dies.
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			s.err = err
			return 0, err
		}
		s.f = f
		if _, err := f.Write(s.mem); err != nil {
			s.err = err
			return 0, err
		}
		s.mem = nil
	}
	k, err := s.f.Write(p)
	s.n += int64(k)
	if err != nil {
		s.err = err
	}
	return k, err
}

func (s *spool) size() int64 { return s.n }

// truncate cuts the spool to n bytes (n <= size).
func (s *spool) truncate(n int64) {
	if n >= s.n {
		return
	}
	s.n = n
	if s.f == nil {
		s.mem = s.mem[:n]
		return
	}
	if err := s.f.Truncate(n); err != nil && s.err == nil {
		s.err = err
	}
}

func (s *spool) readerAt() io.ReaderAt {
	if s.f != nil {
		return io.NewSectionReader(s.f, 0, s.n)
	}
	return bytes.NewReader(s.mem)
}

func (s *spool) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.mem = nil
}
