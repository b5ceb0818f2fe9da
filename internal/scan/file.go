package scan

import (
	"context"
	"io"
	"sync"
)

// FileResult is what ScanFile finds in one file.
type FileResult struct {
	// Signatures are the names to report, in clamscan's order: the first
	// is what clamscan prints without --allmatch. Empty: the file is clean.
	Signatures []string
	// LimitsExceeded is set when the walk of the file's objects stopped at
	// one of opts' limits (the file was not scanned whole).
	LimitsExceeded bool
}

// ScanFile scans one open file, size bytes of r, named path (for archive
// members' names and exclusions), as ScanPaths scans each file it finds:
// every object unpack finds in it, within opts' limits. It does not read
// r's offset. Files are scanned with matchers from a pool, so ScanFile
// may be called from many goroutines at once.
func (e *Engine) ScanFile(ctx context.Context, r io.ReaderAt, size int64, path string, opts Options) (FileResult, error) {
	if e.err != nil {
		return FileResult{}, e.err
	}
	m := e.matchers.get(e)
	defer e.matchers.put(m)
	names, res, err := e.scanObjects(ctx, m, r, size, path, &opts)
	if err != nil {
		return FileResult{}, err
	}
	return FileResult{Signatures: names, LimitsExceeded: len(res.Limits) > 0}, nil
}

// matcherPool keeps matchers between ScanFile calls: a matcher's buffers
// are sized for its engine and cost more to make than a small file to scan.
type matcherPool struct{ p sync.Pool }

func (mp *matcherPool) get(e *Engine) *matcher {
	if m, ok := mp.p.Get().(*matcher); ok {
		return m
	}
	return e.newMatcher()
}

func (mp *matcherPool) put(m *matcher) { mp.p.Put(m) }
