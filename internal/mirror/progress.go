package mirror

// The mirror reports its downloads through Progress; the renderers (a
// line per file for logs, terminal bars) are the command line's
// (internal/cli).

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
func (nopProgress) File(string, int64, int64) FileProgress { return NopFileProgress{} }
func (nopProgress) Finish()                                {}

// NopFileProgress is a FileProgress that does nothing, for a renderer
// that does not follow a download.
type NopFileProgress struct{}

func (NopFileProgress) Add(int)    {}
func (NopFileProgress) Restart()   {}
func (NopFileProgress) Done(error) {}
