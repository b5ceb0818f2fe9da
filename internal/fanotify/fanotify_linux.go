package fanotify

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Group is a fanotify group. Its methods may be called from several
// goroutines; ReadEvents by one at a time (others wait their turn).
type Group struct {
	mode Mode
	mask uint64 // the events marked
	pid  int32  // this process, whose events are allowed at once
	// f is the fanotify descriptor, non-blocking, in the runtime's poller:
	// a Read parks its goroutine, not a thread, and Close wakes it.
	f *os.File
	// reading is a one-slot semaphore: one ReadEvents at a time, since a
	// context's end sets the shared read deadline.
	reading chan struct{}

	mu        sync.Mutex
	mountMark uint // FAN_MARK_FILESYSTEM or FAN_MARK_MOUNT once known
	// pinning: the kernel has no evictable marks (before Linux 5.19), so
	// IgnoreFile's marks keep their inodes in memory.
	pinning atomic.Bool
}

// New creates a group in mode that watches ops (a non-empty subset of
// Watchable) on what Watch marks. It needs CAP_SYS_ADMIN: without it the
// error wraps EPERM; on a kernel without fanotify ENOSYS, and Block on one
// without permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS) EINVAL.
func New(mode Mode, ops Op) (*Group, error) {
	if ops == 0 || ops&^Watchable != 0 {
		return nil, fmt.Errorf("fanotify: cannot watch %v: want Open, Exec or CloseWrite", ops)
	}
	var class uint
	var mask uint64
	switch mode {
	case Block:
		class = unix.FAN_CLASS_CONTENT
		if ops&Open != 0 {
			mask |= unix.FAN_OPEN_PERM
		}
		if ops&Exec != 0 {
			mask |= unix.FAN_OPEN_EXEC_PERM
		}
	case Notify:
		class = unix.FAN_CLASS_NOTIF
		if ops&Open != 0 {
			mask |= unix.FAN_OPEN
		}
		if ops&Exec != 0 {
			mask |= unix.FAN_OPEN_EXEC
		}
	default:
		return nil, fmt.Errorf("fanotify: unknown %v", mode)
	}
	if ops&CloseWrite != 0 {
		mask |= unix.FAN_CLOSE_WRITE
	}
	fd, err := unix.FanotifyInit(class|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fanotify: %v group: %w", mode, os.NewSyscallError("fanotify_init", err))
	}
	return &Group{
		mode:    mode,
		mask:    mask,
		pid:     int32(os.Getpid()),
		f:       os.NewFile(uintptr(fd), "fanotify"),
		reading: make(chan struct{}, 1),
	}, nil
}

// Watch marks path. With mount false, path is a directory (its files are
// watched, not those of its subdirectories: marks are not recursive) or a
// single file. With mount true, the whole filesystem holding path is
// watched, every mount of it, whatever directory path names; on kernels
// before 4.20, which lack filesystem marks, the mount holding path.
func (g *Group) Watch(path string, mount bool) error {
	return g.mark(unix.FAN_MARK_ADD, path, mount)
}

// Unwatch removes the mark Watch(path, mount) added.
func (g *Group) Unwatch(path string, mount bool) error {
	return g.mark(unix.FAN_MARK_REMOVE, path, mount)
}

// Ignore keeps the file at path out of the group's events, whatever mark
// covers it (an ignore mark, FAN_MARK_IGNORED_MASK, on its inode): its
// opens and execs are neither reported nor held. The kernel drops the
// ignore mark when the file is modified, so a rewritten file is reported
// again. An agent holding a Block group ignores the programs it starts
// (and their ELF interpreter), which it must otherwise not start (see the
// package comment).
func (g *Group) Ignore(path string) error {
	if err := g.fanotifyMark(unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK, g.mask, path); err != nil {
		return fmt.Errorf("fanotify: ignore %s: %w", path, err)
	}
	return nil
}

// IgnoreFile keeps the inode of the open file f (an Event's File, say)
// out of the group's events, like Ignore, until the file is modified
// (written, truncated: the kernel then drops the mark) or FlushIgnores.
// It is how a verdict is cached in the kernel: a file found clean is not
// reported again until it changes. The mark is evictable where the
// kernel allows it (Linux 5.19): it does not keep the inode in memory,
// and once the kernel evicts the inode its events come again. Elsewhere
// each mark holds its inode in memory: see Pinning.
func (g *Group) IgnoreFile(f *os.File) error {
	flags := uint(unix.FAN_MARK_ADD | unix.FAN_MARK_IGNORED_MASK)
	if !g.pinning.Load() {
		err := g.fileMark(flags|unix.FAN_MARK_EVICTABLE, f)
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
		g.pinning.Store(true)
	}
	return g.fileMark(flags, f)
}

// Pinning reports whether IgnoreFile's marks keep their inodes in memory
// (the kernel has no evictable marks): the caller should bound them.
func (g *Group) Pinning() bool { return g.pinning.Load() }

// Unignore removes IgnoreFile's mark from f's inode.
func (g *Group) Unignore(f *os.File) error {
	return g.fileMark(unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK, f)
}

// FlushIgnores removes every mark the group holds on single inodes: those
// of Ignore and IgnoreFile, and those of Watch(path, false) too. Watch's
// marks of whole filesystems stay.
func (g *Group) FlushIgnores() error {
	if err := g.fanotifyMark(unix.FAN_MARK_FLUSH, 0, "/"); err != nil {
		return fmt.Errorf("fanotify: flush: %w", err)
	}
	return nil
}

// fileMark marks the inode of the open file f.
func (g *Group) fileMark(flags uint, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("fanotify: ignore %s: %w", f.Name(), err)
	}
	var merr error
	if err := rc.Control(func(ffd uintptr) {
		merr = g.markAt(flags, g.mask, int(ffd), "")
	}); err != nil {
		return fmt.Errorf("fanotify: ignore %s: %w", f.Name(), err)
	}
	if merr != nil {
		return fmt.Errorf("fanotify: ignore %s: %w", f.Name(), merr)
	}
	return nil
}

func (g *Group) mark(op uint, path string, mount bool) error {
	what := "watch"
	if op == unix.FAN_MARK_REMOVE {
		what = "unwatch"
	}
	if !mount {
		err := g.fanotifyMark(op, g.mask|unix.FAN_EVENT_ON_CHILD, path)
		if err != nil {
			return fmt.Errorf("fanotify: %s %s: %w", what, path, err)
		}
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	kind := g.mountMark
	if kind == 0 {
		kind = unix.FAN_MARK_FILESYSTEM
	}
	err := g.fanotifyMark(op|kind, g.mask, path)
	if errors.Is(err, unix.EINVAL) && g.mountMark == 0 && op == unix.FAN_MARK_ADD {
		// Before Linux 4.20: no filesystem marks; mark the mount.
		if err2 := g.fanotifyMark(op|unix.FAN_MARK_MOUNT, g.mask, path); err2 == nil {
			kind, err = unix.FAN_MARK_MOUNT, nil
		}
	}
	if err != nil {
		return fmt.Errorf("fanotify: %s the filesystem of %s: %w", what, path, err)
	}
	g.mountMark = kind
	return nil
}

func (g *Group) fanotifyMark(flags uint, mask uint64, path string) error {
	return g.markAt(flags, mask, unix.AT_FDCWD, path)
}

// markAt calls fanotify_mark(2) on path relative to dirfd; with path ""
// (NULL), on the object dirfd refers to.
func (g *Group) markAt(flags uint, mask uint64, dirfd int, path string) error {
	rc, err := g.f.SyscallConn()
	if err != nil {
		return err
	}
	var merr error
	if err := rc.Control(func(fd uintptr) {
		merr = unix.FanotifyMark(int(fd), flags, mask, dirfd, path)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("fanotify_mark", merr)
}

// aLongTimeAgo is a read deadline in the past: it ends a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// ReadEvents waits for events and returns them, reading the kernel's
// queue with buf (ReadBufferSize bytes is a good size; at least one
// event's 24 bytes plus its info records). It returns ctx.Err() when ctx
// ends first, and an error wrapping os.ErrClosed once the group is
// closed, which ends a ReadEvents in progress. Events of this process are
// allowed and closed here, never returned (see the package comment).
//
// Other errors concern one read and the caller may read again: the kernel
// fails a read whose next event it cannot open a file for (EMFILE when
// this process is out of descriptors: that event is denied by the
// kernel), and a buffer it cannot parse is reported as an error after the
// events parsed from it were allowed and closed (fail-open). An error
// wrapping ErrVersion is permanent: close the group.
func (g *Group) ReadEvents(ctx context.Context, buf []byte) ([]Event, error) {
	if len(buf) < metadataLen {
		return nil, fmt.Errorf("fanotify: read buffer of %d bytes, want at least %d", len(buf), metadataLen)
	}
	select {
	case g.reading <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-g.reading }()
	for {
		n, err := g.read(ctx, buf)
		if err != nil {
			return nil, err
		}
		evs, err := g.events(buf[:n])
		if err != nil || len(evs) > 0 {
			return evs, err
		}
		// Only this process's events: read on.
	}
}

// read reads once from the group, until ctx ends.
func (g *Group) read(ctx context.Context, buf []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if ctx.Done() != nil {
		expired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = g.f.SetReadDeadline(aLongTimeAgo)
			close(expired)
		})
		defer func() {
			if !stop() {
				<-expired
				_ = g.f.SetReadDeadline(time.Time{})
			}
		}()
	}
	n, err := g.f.Read(buf)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("fanotify: read: %w", err)
	}
	return n, nil
}

// events turns a read's bytes into Events, answering this process's own.
func (g *Group) events(b []byte) ([]Event, error) {
	raws, perr := parseEvents(b)
	evs := make([]Event, 0, len(raws))
	for _, r := range raws {
		if r.pid == g.pid || perr != nil {
			// This process's own access, or a read we cannot trust
			// entirely: let it through.
			if r.fd >= 0 {
				if r.mask&permMask != 0 {
					_ = g.respond(r.fd, true)
				}
				_ = unix.Close(int(r.fd))
			}
			continue
		}
		ev := Event{Op: opOf(r.mask), Mask: r.mask, PID: int(r.pid)}
		if r.fd >= 0 {
			ev.File = os.NewFile(uintptr(r.fd), "/proc/self/fd/"+strconv.Itoa(int(r.fd)))
		}
		evs = append(evs, ev)
	}
	if perr != nil {
		return nil, perr
	}
	return evs, nil
}

// Respond answers a permission event: allow lets the open or exec
// proceed, deny fails it with EPERM. It does nothing for notifications
// (ev.Permission() false) and does not close ev: call ev.Close after.
// Once the group is closed there is nothing left to answer (the kernel
// allowed everything) and it returns an error wrapping os.ErrClosed.
func (g *Group) Respond(ev *Event, allow bool) error {
	if !ev.Permission() {
		return nil
	}
	if ev.File == nil {
		return errNoFile
	}
	rc, err := ev.File.SyscallConn()
	if err != nil {
		return fmt.Errorf("fanotify: respond: %w", err)
	}
	var rerr error
	// Control holds ev.File open: its descriptor number, which names the
	// event to the kernel, cannot be another event's meanwhile.
	if err := rc.Control(func(fd uintptr) { rerr = g.respond(int32(fd), allow) }); err != nil {
		return fmt.Errorf("fanotify: respond: %w", err)
	}
	return rerr
}

// respond writes struct fanotify_response for the event whose file is fd.
func (g *Group) respond(fd int32, allow bool) error {
	var resp [responseLen]byte
	binary.NativeEndian.PutUint32(resp[0:4], uint32(fd))
	verdict := uint32(unix.FAN_DENY)
	if allow {
		verdict = unix.FAN_ALLOW
	}
	binary.NativeEndian.PutUint32(resp[4:8], verdict)
	if _, err := g.f.Write(resp[:]); err != nil {
		return fmt.Errorf("fanotify: respond: %w", err)
	}
	return nil
}

// Close closes the group: the kernel lets every access it holds for the
// group, and every later one, through. A ReadEvents in progress returns
// an error wrapping os.ErrClosed. Events already read stay open until
// their Close.
func (g *Group) Close() error {
	if err := g.f.Close(); err != nil {
		return fmt.Errorf("fanotify: close: %w", err)
	}
	return nil
}
