package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/transport"
)

// copyBufferSize is the size of the buffer that hashes files on disk.
const copyBufferSize = 256 << 10

// downloadBufferSize is the size of each download worker's buffer: the
// size of its reads from the network and of its writes to disk.
const downloadBufferSize = 1 << 20

// directIO tells whether downloads use direct I/O where the file system
// allows it (tests turn it off to test the buffered path).
var directIO = true

// directAlign is the alignment of direct I/O: file offsets, lengths and
// memory (the logical block size of any disk divides it).
const directAlign = 4096

// writebackChunk is how much of a file is written before its writeback
// to disk is started (see startWriteback).
const writebackChunk = 8 << 20

// item is one target to download.
type item struct {
	path   string // target path
	tf     *metadata.TargetFiles
	remote string // under the public directory: targets/DIR/SHA256.BASE
	final  string // local path
	part   string // partial file
}

// hashMismatchError is a downloaded target that does not match its signed
// hashes.
type hashMismatchError struct {
	path    string
	alg     string
	got     string
	want    string
	resumed bool
}

// Is makes a hash mismatch ErrRefused.
func (e *hashMismatchError) Is(target error) bool { return target == ErrRefused }

func (e *hashMismatchError) Error() string {
	return fmt.Sprintf("%s refused: does not match its signed %s hash (got %s, want %s): the address serves a corrupted or different package", e.path, e.alg, e.got, e.want)
}

// lengthError is a target longer or shorter than its signed length.
type lengthError struct {
	path      string
	got, want int64
	short     bool
}

// Is makes a target longer than signed ErrRefused (a short transfer is
// not: it may resume).
func (e *lengthError) Is(target error) bool { return target == ErrRefused && !e.short }

func (e *lengthError) Error() string {
	if e.short {
		return fmt.Sprintf("%s: the transfer ended after %d of %d bytes", e.path, e.got, e.want)
	}
	return fmt.Sprintf("%s refused: longer than its signed length of %d bytes", e.path, e.want)
}

// dlStats are a session's download counters.
type dlStats struct {
	files, resumed atomic.Int64
	bytes          atomic.Int64
	mu             sync.Mutex
	dirs           map[string]bool // directories that got a file
}

// downloadTargets fetches every target of ns that the local repository
// lacks, Config.Parallel at a time, each into its final place once
// verified.
//
// A target file already in place counts as present: by its size if the
// local state lists it (it was made durable before that state was
// published), by its hashes otherwise (a file left by an interrupted or
// abandoned session, which a power failure could have left incomplete).
func (m *Mirror) downloadTargets(ctx context.Context, e *endpoint, budget *transport.Budget, ns *newState, local *localState, sum *Summary) error {
	var items []*item
	buf := make([]byte, copyBufferSize)
	st := &dlStats{dirs: map[string]bool{}}
	for p, tf := range ns.targets.Signed.Targets {
		rel, err := remoteTargetPath(p, tf)
		if err != nil {
			return err
		}
		final := filepath.Join(m.cfg.Dir, filepath.FromSlash(rel))
		if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == tf.Length {
			if old := local.targetsMap()[p]; old != nil && old.Equal(*tf) {
				sum.Fetched.Present++
				continue
			}
			if err := ctx.Err(); err != nil {
				return context.Cause(ctx)
			}
			if verifyFile(final, p, tf, buf) == nil {
				sum.Fetched.Present++
				st.dirs[filepath.Dir(final)] = true // to be synced with the rest
				continue
			}
			if err := os.Remove(final); err != nil {
				return &publishError{err}
			}
		}
		items = append(items, &item{path: p, tf: tf, remote: rel, final: final,
			part: filepath.Join(m.cfg.Dir, workDir, partialDir, url.PathEscape(rel)+".part")})
	}
	// Definitions releases cheaper to build from a release the mirror
	// holds and deltas than to download wait for the other downloads
	// (their deltas among them).
	plans, items := m.planBuilds(ns, local, items)
	defer func() {
		sum.Fetched.TargetFiles += int(st.files.Load())
		sum.Fetched.TargetBytes += st.bytes.Load()
		sum.Fetched.Resumed += int(st.resumed.Load())
	}()
	if err := m.fetchItems(ctx, e, budget, items, st); err != nil {
		return err
	}
	// Build them; download those that fail.
	var fallback []*item
	for _, p := range plans {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if err := m.build(p, st); err != nil {
			var pe *publishError
			if errors.As(err, &pe) {
				return err
			}
			m.printf("  building %s from %s and %d deltas failed, downloading it: %v\n", p.it.path, p.base, len(p.chain), err)
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("%s could not be built from deltas (%v): downloaded", p.it.path, err))
			fallback = append(fallback, p.it)
			continue
		}
		m.printf("  built %s (%s) from %s and %d deltas (%s), verified against its signed length and hashes\n",
			p.it.path, transport.HumanBytes(p.it.tf.Length), p.base, len(p.chain), transport.HumanBytes(p.cost))
		sum.Fetched.Built++
		sum.Fetched.BuiltBytes += p.it.tf.Length
	}
	if err := m.fetchItems(ctx, e, budget, fallback, st); err != nil {
		return err
	}
	if err := m.syncTargets(st); err != nil {
		return err
	}
	if len(items)+len(plans) > 0 {
		hook("targets synced")
	}
	return nil
}

// fetchItems downloads items, Config.Parallel at a time, each into its
// final place once verified.
func (m *Mirror) fetchItems(ctx context.Context, e *endpoint, budget *transport.Budget, items []*item, st *dlStats) error {
	if len(items) == 0 {
		return nil
	}
	var total int64
	for _, it := range items {
		total += it.tf.Length
	}
	sort.Slice(items, func(i, j int) bool { return items[i].path < items[j].path })
	budget.Add(total) // the signed lengths: a resumed file needs less
	m.printf("  fetching %d targets (%s) from %s, %d at a time\n", len(items), transport.HumanBytes(total), e.addr, min(m.cfg.Parallel, len(items)))
	prog := m.cfg.Progress
	if prog == nil {
		prog = nopProgress{}
	}
	prog.Start(len(items), total)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var client = e.httpClient(m.cfg.Parallel)
	defer client.CloseIdleConnections()
	work := make(chan *item)
	var wg sync.WaitGroup
	for range min(m.cfg.Parallel, len(items)) {
		wg.Go(func() {
			tc := e.targetConn(ctx, client)
			defer tc.close()
			bufs := newDLBuffers()
			defer bufs.close()
			for it := range work {
				if err := m.fetchItem(ctx, tc, it, bufs, st, prog); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
feed:
	for _, it := range items {
		select {
		case work <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	prog.Finish()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	hook("targets fetched")
	return nil
}

// syncTargets makes the target files placed by a session, and their
// renames, durable: no metadata may name a file that a power failure
// could take back.
func (m *Mirror) syncTargets(st *dlStats) error {
	if len(st.dirs) == 0 {
		return nil
	}
	if !syncEachFile {
		if err := syncFS(m.cfg.Dir); err != nil {
			return &publishError{err}
		}
		return nil
	}
	dirs := make([]string, 0, len(st.dirs))
	for d := range st.dirs {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return &publishError{err}
		}
	}
	return nil
}

// fetchItem downloads one target, retrying once after a transport error
// (resuming) and once from scratch if a resumed download does not match
// its hash.
func (m *Mirror) fetchItem(ctx context.Context, tc targetConn, it *item, bufs *dlBuffers, st *dlStats, prog Progress) error {
	for attempt := 1; ; attempt++ {
		err := m.fetchOnce(ctx, tc, it, bufs, st, prog)
		if err == nil || ctx.Err() != nil {
			return err
		}
		var hm *hashMismatchError
		var le *lengthError
		var pe *publishError
		switch {
		case errors.As(err, &hm):
			if hm.resumed && attempt == 1 {
				continue // the partial file may have been the bad part: once more, whole
			}
			return err
		case errors.As(err, &le) && !le.short, transport.IsNotFound(err), errors.As(err, &pe), transport.IsSlow(err):
			return err // a slow address is not given a second chance
		case attempt < 2:
			tc.close()
			continue
		}
		return err
	}
}

// fetchOnce downloads it into its partial file, resuming what is there,
// verifies the whole file against the signed length and hashes, and
// renames it into place (synced first where syncEachFile; otherwise
// syncTargets makes every file durable at once, before any metadata names
// them).
func (m *Mirror) fetchOnce(ctx context.Context, tc targetConn, it *item, bufs *dlBuffers, st *dlStats, prog Progress) (err error) {
	hook("target %s start", it.path)
	f, err := os.OpenFile(it.part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return &publishError{err}
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return &publishError{err}
	}
	have := fi.Size()
	if have > it.tf.Length {
		if err := f.Truncate(0); err != nil {
			return &publishError{err}
		}
		have = 0
	}
	hs, err := repo.NewHashers(it.tf.Hashes)
	if err != nil {
		return fmt.Errorf("%s: %w", it.path, err)
	}
	if have > 0 {
		// Hash what a previous attempt left.
		if _, err := io.CopyBuffer(hs, io.NewSectionReader(f, 0, have), bufs.scratch); err != nil {
			return &publishError{err}
		}
	}
	resumedAt := have
	fp := prog.File(it.path, it.tf.Length, have)
	defer func() { fp.Done(err) }()
	if have < it.tf.Length {
		body, start, err := tc.open(ctx, it.remote, have)
		if errors.Is(err, transport.ErrRangeNotSatisfiable) {
			body, start, err = tc.open(ctx, it.remote, 0)
		}
		if err != nil {
			return err
		}
		if start != have { // the server ignored the offset: start over
			if err := f.Truncate(0); err != nil {
				body.Close()
				return &publishError{err}
			}
			hs.Reset()
			have, resumedAt = 0, 0
			fp.Restart()
		}
		n, rerr := m.copyBody(f, have, hs, fp, io.LimitReader(body, it.tf.Length-have+1), bufs, it.path)
		cerr := body.Close()
		have += n
		st.bytes.Add(n)
		switch {
		case have > it.tf.Length:
			f.Close()
			f = nil
			os.Remove(it.part)
			return &lengthError{path: it.path, got: have, want: it.tf.Length}
		case rerr != nil:
			return rerr
		case cerr != nil:
			return cerr
		case have < it.tf.Length:
			return &lengthError{path: it.path, got: have, want: it.tf.Length, short: true}
		}
	}
	if err := verifyHashes(hs, it.path, it.tf.Hashes, resumedAt > 0); err != nil {
		f.Close()
		f = nil
		os.Remove(it.part)
		return err
	}
	if syncEachFile {
		if err := f.Sync(); err != nil {
			return &publishError{err}
		}
	}
	if err := f.Close(); err != nil {
		f = nil
		return &publishError{err}
	}
	f = nil
	dir := filepath.Dir(it.final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return &publishError{err}
	}
	hook("target %s verified", it.path)
	if err := os.Rename(it.part, it.final); err != nil {
		return &publishError{err}
	}
	hook("target %s done", it.path)
	st.files.Add(1)
	if resumedAt > 0 {
		st.resumed.Add(1)
	}
	st.mu.Lock()
	st.dirs[dir] = true
	st.mu.Unlock()
	return nil
}

// copyBody copies r to f from offset start, hashing and reporting
// progress as it goes, and returns the number of bytes copied.
//
// Reads fill a buffer of bufs (downloadBufferSize), each read hashed at
// once, while it is in the CPU's cache; a full buffer goes to a writer
// goroutine and the next read starts in another buffer (write-behind:
// the network does not wait for the disk, up to writeBehind buffers).
// Where the file system allows it, whole blocks are written with direct
// I/O (O_DIRECT): from the buffer to the disk, without a copy into the
// page cache, the per-page work of buffered writes or writeback later;
// that is most of the CPU a buffered copy costs besides hashing. Writes
// are therefore large and block-aligned: when start is not aligned, the
// start of its block is read back from the file into the first buffer
// (and written again, unchanged). The last, partial block goes through
// the page cache. Otherwise (or if the file system refuses direct I/O)
// writes are buffered and their writeback started every writebackChunk
// (startWriteback). Either way the data is durable only after the
// session's syncfs (or the file's fsync). Everything read is written
// before copyBody returns.
func (m *Mirror) copyBody(f *os.File, start int64, hs *repo.Hashers, fp FileProgress, r io.Reader, bufs *dlBuffers, path string) (int64, error) {
	buf := <-bufs.free
	pos := start // where buf[0] goes
	head := 0    // bytes of buf already holding the file's content
	direct := false
	if a := start % directAlign; directIO && a != 0 {
		if _, err := f.ReadAt(buf[:a], start-a); err == nil {
			pos, head = start-a, int(a)
		}
	}
	if directIO && pos%directAlign == 0 {
		direct = setDirect(f, true)
	}
	if !direct {
		pos, head = start, 0
	}
	w := &blockWriter{f: f, direct: direct, flushed: pos, path: path}
	full := make(chan filled, writeBehind)
	done := make(chan error, 1)
	go func() { done <- w.run(full, bufs.free) }()

	var n int64
	var err error
	for err == nil && !w.failed.Load() {
		k := 0
		for head+k < len(buf) && err == nil {
			var got int
			got, err = r.Read(buf[head+k:])
			hs.Write(buf[head+k : head+k+got])
			k += got
		}
		if k == 0 {
			break
		}
		full <- filled{buf: buf[:head+k], pos: pos}
		pos += int64(head + k)
		head = 0
		n += int64(k)
		fp.Add(k)
		if err == nil {
			buf = <-bufs.free
		} else {
			buf = nil
		}
	}
	if buf != nil {
		bufs.free <- buf
	}
	close(full)
	if werr := <-done; werr != nil {
		return n, &publishError{werr}
	}
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// writeBehind is the number of buffers of a download worker: one being
// filled from the network while the others wait for, or are in, a write.
const writeBehind = 3

// dlBuffers are a download worker's buffers.
type dlBuffers struct {
	free    chan []byte // writeBehind buffers of downloadBufferSize (allocBuffer)
	scratch []byte      // for hashing a partial file
	release []func()
}

func newDLBuffers() *dlBuffers {
	b := &dlBuffers{free: make(chan []byte, writeBehind), scratch: make([]byte, copyBufferSize)}
	for range writeBehind {
		buf, release := allocBuffer(downloadBufferSize)
		b.free <- buf
		b.release = append(b.release, release)
	}
	return b
}

// close releases the buffers; every download using them has returned.
func (b *dlBuffers) close() {
	for _, r := range b.release {
		r()
	}
	b.release = nil
}

// filled is a buffer to write at pos.
type filled struct {
	buf []byte
	pos int64
}

// blockWriter writes a download's buffers (copyBody).
type blockWriter struct {
	f       *os.File
	direct  bool
	flushed int64 // buffered writes before this have had their writeback started
	path    string
	wrote   bool
	failed  atomic.Bool
}

// run writes every buffer of full, in order, and gives it back to free;
// after an error it only gives buffers back. It returns the first error.
func (w *blockWriter) run(full <-chan filled, free chan<- []byte) error {
	var err error
	var end int64
	for c := range full {
		if err == nil {
			if err = w.write(c.buf, c.pos); err != nil {
				w.failed.Store(true)
			}
			end = c.pos + int64(len(c.buf))
		}
		free <- c.buf[:cap(c.buf)]
	}
	if w.direct {
		setDirect(w.f, false)
	} else if err == nil && end > w.flushed {
		startWriteback(w.f, w.flushed, end-w.flushed)
	}
	return err
}

// write writes p at pos: whole blocks directly where direct I/O is on,
// the rest through the page cache (turning direct I/O off: only the last
// block of a file is partial).
func (w *blockWriter) write(p []byte, pos int64) error {
	if w.direct && len(p)%directAlign != 0 {
		a := len(p) &^ (directAlign - 1)
		if a > 0 {
			if err := writeBlocks(w.f, p[:a], pos, &w.direct); err != nil {
				return err
			}
		}
		w.direct = setDirect(w.f, false)
		if _, err := w.f.WriteAt(p[a:], pos+int64(a)); err != nil {
			return err
		}
	} else if err := writeBlocks(w.f, p, pos, &w.direct); err != nil {
		return err
	}
	if end := pos + int64(len(p)); !w.direct && end-w.flushed >= writebackChunk {
		startWriteback(w.f, w.flushed, end-w.flushed)
		w.flushed = end
	}
	if !w.wrote {
		w.wrote = true
		hook("target %s partial", w.path)
	}
	return nil
}

// writeBlocks writes p at off in f. A direct write that the file system
// refuses (EINVAL: it wants another alignment) turns direct I/O off for
// the rest of the file and is written again through the page cache.
func writeBlocks(f *os.File, p []byte, off int64, direct *bool) error {
	_, err := f.WriteAt(p, off)
	if err != nil && *direct && errors.Is(err, syscall.EINVAL) {
		*direct = setDirect(f, false)
		_, err = f.WriteAt(p, off)
	}
	return err
}

// alignedBuffer returns a buffer of n bytes (a multiple of directAlign)
// whose start is aligned for direct I/O.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+directAlign)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	if off != 0 {
		off = directAlign - off
	}
	return b[off : off+n : off+n]
}

// verifyHashes checks a downloaded target's sums against its signed
// hashes.
func verifyHashes(hs *repo.Hashers, path string, want metadata.Hashes, resumed bool) error {
	if alg, got, wanted, ok := hs.Mismatch(want); !ok {
		return &hashMismatchError{path: path, alg: alg, got: got, want: wanted, resumed: resumed}
	}
	return nil
}

// syncDir makes the entries of a directory durable (best effort where
// directories cannot be synced).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}
