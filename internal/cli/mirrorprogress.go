package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/vigil-fleet/vigil/internal/mirror"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// newLogProgress returns a mirror.Progress that writes one plain line per
// finished or failed download to w: for logs and pipes.
func newLogProgress(w io.Writer) mirror.Progress { return &logProgress{w: w} }

type logProgress struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *logProgress) Start(int, int64) {}
func (p *logProgress) Finish()          {}

func (p *logProgress) File(path string, size, have int64) mirror.FileProgress {
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
	fmt.Fprintf(f.p.w, "  fetched %s (%s%s) in %s\n", f.path, transport.HumanBytes(f.size), resumed, roundDuration(time.Since(f.start)))
}

// newBarProgress returns a mirror.Progress that draws, on w (a terminal), a bar
// per download in progress and one for the whole session.
func newBarProgress(w io.Writer) mirror.Progress { return &barProgress{w: w} }

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

func (b *barProgress) File(path string, size, have int64) mirror.FileProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p == nil {
		return mirror.NopFileProgress{}
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

// roundDuration rounds d for display as the mirror does: to 10ms from a
// second, 10µs from a millisecond, 1µs below.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
