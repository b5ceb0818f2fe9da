package mirror

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// Progress is told about target downloads. A session calls Start, then
// File for each download (from several goroutines), then Finish.
type Progress interface {
	// Start announces files downloads totalling bytes.
	Start(files int, bytes int64)
	// File announces one download of size bytes, of which have are
	// already on disk (a resumed partial file).
	File(path string, size, have int64) FileProgress
	// Finish is called when the downloads are over (done or abandoned).
	Finish()
}

// FileProgress follows one download.
type FileProgress interface {
	// Add reports n more bytes.
	Add(n int)
	// Restart reports that the download starts again from byte 0.
	Restart()
	// Done reports the end of the download: err is nil on success.
	Done(err error)
}

type nopProgress struct{}

func (nopProgress) Start(int, int64)                       {}
func (nopProgress) File(string, int64, int64) FileProgress { return nopFile{} }
func (nopProgress) Finish()                                {}

type nopFile struct{}

func (nopFile) Add(int)    {}
func (nopFile) Restart()   {}
func (nopFile) Done(error) {}

// NewLogProgress returns a Progress that writes one plain line per
// finished or failed download to w: for logs and pipes.
func NewLogProgress(w io.Writer) Progress { return &logProgress{w: w} }

type logProgress struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *logProgress) Start(int, int64) {}
func (p *logProgress) Finish()          {}

func (p *logProgress) File(path string, size, have int64) FileProgress {
	return &logFile{p: p, path: path, size: size, have: have, start: time.Now()}
}

type logFile struct {
	p          *logProgress
	path       string
	size, have int64
	start      time.Time
}

func (f *logFile) Add(int)  {}
func (f *logFile) Restart() { f.have = 0 }

func (f *logFile) Done(err error) {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if err != nil {
		fmt.Fprintf(f.p.w, "  failed  %s: %v\n", f.path, err)
		return
	}
	resumed := ""
	if f.have > 0 {
		resumed = fmt.Sprintf(", resumed at %s", transport.HumanBytes(f.have))
	}
	fmt.Fprintf(f.p.w, "  fetched %s (%s%s) in %s\n", f.path, transport.HumanBytes(f.size), resumed, roundDur(time.Since(f.start)))
}

// NewBarProgress returns a Progress that draws, on w (a terminal), a bar
// per download in progress and one for the whole session.
func NewBarProgress(w io.Writer) Progress { return &barProgress{w: w} }

type barProgress struct {
	w     io.Writer
	mu    sync.Mutex
	p     *mpb.Progress
	total *mpb.Bar
}

func (b *barProgress) Start(files int, bytes int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.p = mpb.New(mpb.WithOutput(b.w), mpb.WithWidth(100), mpb.WithRefreshRate(120*time.Millisecond))
	b.total = b.p.AddBar(bytes,
		mpb.BarPriority(1<<30), // drawn last, under the files
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("total (%d files)", files), decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
			decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			decor.Percentage(decor.WCSyncSpace)))
}

func (b *barProgress) File(path string, size, have int64) FileProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p == nil {
		return nopFile{}
	}
	bar := b.p.AddBar(size,
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name(path, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
			decor.Percentage(decor.WCSyncSpace)))
	if have > 0 {
		bar.SetCurrent(have)
		b.total.IncrInt64(have)
	}
	return &barFile{bar: bar, total: b.total, have: have}
}

func (b *barProgress) Finish() {
	b.mu.Lock()
	p, total := b.p, b.total
	b.p, b.total = nil, nil
	b.mu.Unlock()
	if p == nil {
		return
	}
	if !total.Completed() {
		total.Abort(false)
	}
	p.Wait()
}

type barFile struct {
	bar, total *mpb.Bar
	have, got  int64
}

func (f *barFile) Add(n int) {
	f.got += int64(n)
	f.bar.IncrBy(n)
	f.total.IncrBy(n)
}

func (f *barFile) Restart() {
	f.total.IncrInt64(-f.have)
	f.have = 0
	f.bar.SetCurrent(0)
}

func (f *barFile) Done(err error) {
	if err != nil {
		f.total.IncrInt64(-(f.have + f.got))
		f.bar.Abort(true)
		return
	}
	f.bar.SetTotal(-1, true)
}
