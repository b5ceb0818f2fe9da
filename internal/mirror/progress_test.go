package mirror

import (
	"fmt"
	"io"
	"sync"
)

// lineProgress is the tests' Progress: one line per finished or failed
// download, written to w, as a log renderer would.
type lineProgress struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *lineProgress) Start(int, int64) {}
func (p *lineProgress) Finish()          {}

func (p *lineProgress) File(path string, size, have int64) FileProgress {
	return &lineFile{p: p, path: path, size: size}
}

type lineFile struct {
	p    *lineProgress
	path string
	size int64
}

func (f *lineFile) Add(int)  {}
func (f *lineFile) Restart() {}

func (f *lineFile) Done(err error) {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err != nil {
		fmt.Fprintf(f.p.w, "  failed  %s: %v\n", f.path, err)
		return
	}
	fmt.Fprintf(f.p.w, "  fetched %s (%d bytes)\n", f.path, f.size)
}
