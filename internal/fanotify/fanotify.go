// Package fanotify reports the files that processes open, execute and
// write on Linux, through the kernel's fanotify interface, and lets its
// caller allow or deny each open and exec before it happens. It is the
// building block of Vigil's on-access scanning (docs/onaccess.md); it
// scans nothing itself.
//
// A Group is one fanotify group, created in one of two modes:
//
//   - Block (FAN_CLASS_CONTENT): opens and execs are permission events.
//     The opening process waits in the kernel until the group answers
//     Respond(ev, allow). Writes are reported once the file is closed
//     (FAN_CLOSE_WRITE), as plain notifications.
//   - Notify (FAN_CLASS_NOTIF): the same accesses are reported after the
//     fact; nothing waits for the group.
//
// Marks say what is watched. Watch(dir, false) marks a directory and the
// files directly in it (FAN_EVENT_ON_CHILD); it is NOT recursive: files in
// its subdirectories are not reported unless each subdirectory is marked
// too. Watch(path, true) marks the whole filesystem that holds path
// (FAN_MARK_FILESYSTEM, every mount of it), or, on kernels without
// filesystem marks (before 4.20), the mount that holds it (FAN_MARK_MOUNT).
//
// The caller drives reading: ReadEvents blocks until events arrive, its
// context ends or the group is closed; the package starts no goroutine.
// Every Event holds an open file (the kernel opened it for the group, and
// reading it reports no further event) that the caller owns: it answers a
// permission event with Respond, then closes the event. Events caused by
// the group's own process are never returned: ReadEvents allows them at
// once and closes them, so a process that opens watched files itself (as
// an agent quarantining a file does) does not wait for its own answer.
// The goroutine that calls ReadEvents must still never open a watched file
// itself: it would wait for the answer only it can read.
//
// Nor may a process holding a Block group start a program whose exec the
// group holds (os/exec of a watched executable, or of any program when
// the group marks the filesystem holding /usr). Go starts children with
// vfork: the parent's thread waits, keeping its scheduler slot, until the
// child's execve has opened the program and its ELF interpreter, and
// those opens are permission events of the group, answered by the
// parent. If a garbage collection (or anything else that stops the
// world) starts meanwhile, it waits for that thread forever, the reader
// goroutine never runs again, and the child waits for it: the process
// hangs, holding every watched open until it is killed (the class of
// golang/go#11155). Start such programs from a process that holds no
// group, or keep them out of the group's events first (Ignore).
//
// The kernel keeps at most /proc/sys/fs/fanotify/max_queued_events events
// (16384 by default) waiting to be read; past that it drops events and
// queues one event of kind Overflow (FAN_Q_OVERFLOW, no file, no process),
// which the caller should count. Permission events are never dropped: the
// process waits instead.
//
// Closing the group (Close, or the death of the process, even by SIGKILL)
// lets every pending and future access through: the kernel answers every
// unanswered permission event with FAN_ALLOW. A slow or dead agent can
// therefore delay opens, never forbid them for good.
//
// fanotify needs CAP_SYS_ADMIN (in practice root). On systems other than
// Linux the package compiles, and New returns an error wrapping
// errors.ErrUnsupported.
package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mode is how a Group treats opens and execs.
type Mode int

const (
	// Notify reports accesses after they happened (FAN_CLASS_NOTIF).
	Notify Mode = iota
	// Block holds every open and exec until the group answers it
	// (FAN_CLASS_CONTENT, permission events).
	Block
)

func (m Mode) String() string {
	switch m {
	case Notify:
		return "notify"
	case Block:
		return "block"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Op is a set of accesses: those a Group watches (Open, Exec, CloseWrite)
// and those an Event reports (the same, and Overflow).
type Op uint32

const (
	// Open is a file being opened (FAN_OPEN_PERM in Block mode, FAN_OPEN
	// in Notify mode). A file that is executed is opened too.
	Open Op = 1 << iota
	// Exec is a file being opened to be executed, the program or the
	// script of an execve (FAN_OPEN_EXEC_PERM, FAN_OPEN_EXEC; Linux 5.0).
	Exec
	// CloseWrite is a file opened for writing being closed
	// (FAN_CLOSE_WRITE), in both modes a notification.
	CloseWrite
	// Overflow is not an access: the kernel's queue was full and events
	// were dropped (FAN_Q_OVERFLOW). An Overflow event has no file.
	Overflow
)

// Watchable are the Ops a Group can watch.
const Watchable = Open | Exec | CloseWrite

func (o Op) String() string {
	if o == 0 {
		return "none"
	}
	var names []string
	for _, n := range []struct {
		op   Op
		name string
	}{{Open, "open"}, {Exec, "exec"}, {CloseWrite, "close-write"}, {Overflow, "overflow"}} {
		if o&n.op != 0 {
			names = append(names, n.name)
			o &^= n.op
		}
	}
	if o != 0 {
		names = append(names, "0x"+strconv.FormatUint(uint64(o), 16))
	}
	return strings.Join(names, "|")
}

// The kernel's ABI (include/uapi/linux/fanotify.h), the same on every
// architecture; fanotify_linux_test.go checks them against x/sys/unix.
const (
	metadataVersion = 3  // FANOTIFY_METADATA_VERSION
	metadataLen     = 24 // FAN_EVENT_METADATA_LEN, sizeof(struct fanotify_event_metadata)
	responseLen     = 8  // sizeof(struct fanotify_response)
	noFD            = -1 // FAN_NOFD

	fanOpen         = 0x20
	fanOpenExec     = 0x1000
	fanCloseWrite   = 0x8
	fanQOverflow    = 0x4000
	fanAccessPerm   = 0x20000
	fanOpenPerm     = 0x10000
	fanOpenExecPerm = 0x40000
	fanAllow        = 0x1
	fanDeny         = 0x2

	permMask = fanOpenPerm | fanOpenExecPerm | fanAccessPerm
)

// ReadBufferSize is a good size for ReadEvents' buffer: 170 events of
// fanotify_event_metadata's 24 bytes, 170 file descriptors at most.
const ReadBufferSize = 4096

// Event is one access to a file.
type Event struct {
	// Op is what happened. Notification events of the same process on the
	// same file may be merged by the kernel, so a Notify event can carry
	// several Ops (Open|CloseWrite); a permission event carries one.
	Op Op
	// Mask is the kernel's event mask (FAN_* bits), Op's source.
	Mask uint64
	// File is the accessed file, opened read-only by the kernel for the
	// group (reading it raises no event). The event owns it: the caller
	// answers with Group.Respond, then calls Close. It is nil for
	// Overflow.
	File *os.File
	// PID is the process (thread group) that accessed the file; 0 for
	// Overflow.
	PID int
}

// Permission reports whether ev waits for an answer (Group.Respond): an
// open or exec of a Block group.
func (ev *Event) Permission() bool { return ev.Mask&permMask != 0 }

// Close closes the event's file. Answer a permission event first.
func (ev *Event) Close() error {
	if ev.File == nil {
		return nil
	}
	return ev.File.Close()
}

// errNoFile is returned by the helpers of an event without a file.
var errNoFile = errors.New("fanotify: event has no file")

// Path returns the path of the event's file as the kernel names it now
// (readlink of /proc/self/fd/N): " (deleted)" ends it when the file was
// unlinked, and a rename since the access shows the new name.
func (ev *Event) Path() (string, error) {
	if ev.File == nil {
		return "", errNoFile
	}
	rc, err := ev.File.SyscallConn()
	if err != nil {
		return "", fmt.Errorf("fanotify: path: %w", err)
	}
	var p string
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		p, lerr = os.Readlink("/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10))
	}); err != nil {
		return "", fmt.Errorf("fanotify: path: %w", err)
	}
	if lerr != nil {
		return "", fmt.Errorf("fanotify: path: %w", lerr)
	}
	return p, nil
}

// ProcessExe returns the executable of the process that caused ev
// (readlink of /proc/PID/exe), at best effort: the process may have
// exited (a notification outlives its process) or be a kernel thread.
func (ev *Event) ProcessExe() (string, error) {
	if ev.PID <= 0 {
		return "", errors.New("fanotify: event has no process")
	}
	p, err := os.Readlink("/proc/" + strconv.Itoa(ev.PID) + "/exe")
	if err != nil {
		return "", fmt.Errorf("fanotify: process %d: %w", ev.PID, err)
	}
	return p, nil
}

// opOf translates a kernel mask into Ops.
func opOf(mask uint64) Op {
	var o Op
	if mask&(fanOpen|fanOpenPerm) != 0 {
		o |= Open
	}
	if mask&(fanOpenExec|fanOpenExecPerm) != 0 {
		o |= Exec
	}
	if mask&fanCloseWrite != 0 {
		o |= CloseWrite
	}
	if mask&fanQOverflow != 0 {
		o |= Overflow
	}
	return o
}

// rawEvent is one struct fanotify_event_metadata of a read's buffer.
type rawEvent struct {
	off, len int // its bytes: buf[off : off+len], info records included
	mask     uint64
	fd       int32
	pid      int32
}

// ErrVersion is returned (wrapped) when the kernel reports events in a
// layout other than FANOTIFY_METADATA_VERSION 3, the only one this
// package reads. It is permanent: close the group.
var ErrVersion = errors.New("fanotify: unsupported event metadata version")

// parseEvents splits a read's buffer into its events
// (struct fanotify_event_metadata, each followed by info records that it
// skips). It returns the events before the first malformed one, and an
// error saying what is wrong with that one; an error wrapping ErrVersion
// when its version is not 3. Every event it returns lies within b and
// carries a file descriptor unless it is an overflow (fd FAN_NOFD); a
// permission event always carries one.
func parseEvents(b []byte) ([]rawEvent, error) {
	var evs []rawEvent
	for off := 0; off < len(b); {
		rest := b[off:]
		if len(rest) < metadataLen {
			return evs, fmt.Errorf("fanotify: event at byte %d: %d bytes left, want at least the %d of its metadata", off, len(rest), metadataLen)
		}
		if v := rest[4]; v != metadataVersion {
			return evs, fmt.Errorf("%w: event at byte %d has version %d, this package reads version %d", ErrVersion, off, v, metadataVersion)
		}
		ev := rawEvent{
			off:  off,
			len:  int(binary.NativeEndian.Uint32(rest[0:4])),
			mask: binary.NativeEndian.Uint64(rest[8:16]),
			fd:   int32(binary.NativeEndian.Uint32(rest[16:20])),
			pid:  int32(binary.NativeEndian.Uint32(rest[20:24])),
		}
		mlen := int(binary.NativeEndian.Uint16(rest[6:8]))
		switch {
		case mlen < metadataLen:
			return evs, fmt.Errorf("fanotify: event at byte %d: metadata of %d bytes, want at least %d", off, mlen, metadataLen)
		case ev.len < mlen:
			return evs, fmt.Errorf("fanotify: event at byte %d: %d bytes long, shorter than its %d bytes of metadata", off, ev.len, mlen)
		case ev.len > len(rest) || ev.len < 0:
			return evs, fmt.Errorf("fanotify: event at byte %d: %d bytes long, overruns the %d bytes left", off, uint32(ev.len), len(rest))
		case ev.fd < 0 && ev.fd != noFD:
			return evs, fmt.Errorf("fanotify: event at byte %d: file descriptor %d", off, ev.fd)
		case ev.fd == noFD && ev.mask&permMask != 0:
			return evs, fmt.Errorf("fanotify: event at byte %d: permission event (mask %#x) without a file descriptor", off, ev.mask)
		}
		evs = append(evs, ev)
		off += ev.len
	}
	return evs, nil
}
