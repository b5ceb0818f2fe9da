package fanotify

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// wait bounds every wait of these tests for something the kernel or a
// child process does; it is reached only when the test fails.
const wait = 10 * time.Second

// newGroup creates a group, closed at the test's end. Without root
// (CAP_SYS_ADMIN) or without fanotify in the kernel it skips the test, or
// fails it under VIGIL_REQUIRE_NETNS=1.
func newGroup(t *testing.T, mode Mode, ops Op) *Group {
	t.Helper()
	g, err := New(mode, ops)
	switch {
	case errors.Is(err, unix.EPERM):
		testenv.SkipOrFail(t, testenv.RequireNetns, fmt.Sprintf("fanotify needs root (CAP_SYS_ADMIN): %v", err))
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
		testenv.SkipOrFail(t, testenv.RequireNetns, fmt.Sprintf("this kernel lacks fanotify or its permission events (CONFIG_FANOTIFY, CONFIG_FANOTIFY_ACCESS_PERMISSIONS): %v", err))
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// tempDir is t.TempDir with its symbolic links resolved, as the kernel
// names the files in it.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

// seen is an event as the tests' reader saw it.
type seen struct {
	op    Op
	path  string
	pid   int
	perm  bool
	exe   string
	data  string // the file's first bytes, read through the event's file
	allow bool
}

// serve reads g's events until the group closes, answers each permission
// event with !deny(path, op), and sends what it saw on the returned
// channel. The test's cleanup closes g and waits for the reader.
func serve(t *testing.T, g *Group, deny func(path string, op Op) bool) <-chan seen {
	t.Helper()
	ch := make(chan seen, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, ReadBufferSize)
		for {
			evs, err := g.ReadEvents(context.Background(), buf)
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					t.Errorf("ReadEvents: %v", err)
				}
				return
			}
			for i := range evs {
				ev := &evs[i]
				s := seen{op: ev.Op, pid: ev.PID, perm: ev.Permission()}
				s.path, _ = ev.Path()
				s.exe, _ = ev.ProcessExe()
				if ev.File != nil {
					b := make([]byte, 64)
					n, _ := ev.File.ReadAt(b, 0)
					s.data = string(b[:n])
				}
				s.allow = !deny(s.path, ev.Op)
				if err := g.Respond(ev, s.allow); err != nil {
					t.Errorf("Respond(%v %s): %v", ev.Op, s.path, err)
				}
				if err := ev.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				select {
				case ch <- s:
				default:
					t.Errorf("reader's channel full; dropped %+v", s)
				}
			}
		}
	}()
	t.Cleanup(func() { g.Close(); <-done })
	return ch
}

// waitFor returns the first event on ch that match accepts.
func waitFor(t *testing.T, ch <-chan seen, what string, match func(seen) bool) seen {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case s := <-ch:
			if match(s) {
				return s
			}
		case <-timeout:
			t.Fatalf("no event %s within %v", what, wait)
		}
	}
}

// command is exec.Command with messages in English.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func TestABI(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"FANOTIFY_METADATA_VERSION", metadataVersion, unix.FANOTIFY_METADATA_VERSION},
		{"FAN_EVENT_METADATA_LEN", metadataLen, unix.FAN_EVENT_METADATA_LEN},
		{"sizeof(fanotify_event_metadata)", metadataLen, int64(unsafe.Sizeof(unix.FanotifyEventMetadata{}))},
		{"sizeof(fanotify_response)", responseLen, int64(unsafe.Sizeof(unix.FanotifyResponse{}))},
		{"FAN_NOFD", noFD, unix.FAN_NOFD},
		{"FAN_OPEN", fanOpen, unix.FAN_OPEN},
		{"FAN_OPEN_EXEC", fanOpenExec, unix.FAN_OPEN_EXEC},
		{"FAN_CLOSE_WRITE", fanCloseWrite, unix.FAN_CLOSE_WRITE},
		{"FAN_Q_OVERFLOW", fanQOverflow, unix.FAN_Q_OVERFLOW},
		{"FAN_ACCESS_PERM", fanAccessPerm, unix.FAN_ACCESS_PERM},
		{"FAN_OPEN_PERM", fanOpenPerm, unix.FAN_OPEN_PERM},
		{"FAN_OPEN_EXEC_PERM", fanOpenExecPerm, unix.FAN_OPEN_EXEC_PERM},
		{"FAN_ALLOW", fanAllow, unix.FAN_ALLOW},
		{"FAN_DENY", fanDeny, unix.FAN_DENY},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, x/sys/unix says %#x", c.name, c.got, c.want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		mode Mode
		ops  Op
	}{{Block, 0}, {Notify, Overflow}, {Block, Open | Op(1<<9)}, {Mode(7), Open}} {
		if g, err := New(c.mode, c.ops); err == nil || errors.Is(err, unix.EPERM) {
			if g != nil {
				g.Close()
			}
			t.Errorf("New(%v, %v) = %v, want an error about the arguments", c.mode, c.ops, err)
		}
	}
}

// TestBlockOpen: in Block mode an open the group denies fails with EPERM
// and one it allows reads the file; a subdirectory is not watched (marks
// are not recursive); after Unwatch nothing is.
func TestBlockOpen(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	clean, infected := filepath.Join(dir, "clean.txt"), filepath.Join(dir, "infected.txt")
	writeFile(t, clean, "clean\n", 0o644)
	writeFile(t, infected, "infected\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	nested := filepath.Join(dir, "sub", "infected.txt")
	writeFile(t, nested, "nested\n", 0o644)

	g := newGroup(t, Block, Open)
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	ch := serve(t, g, func(p string, _ Op) bool { return filepath.Base(p) == "infected.txt" })
	ctx := t.Context()

	out, err := command(ctx, "cat", clean).Output()
	if err != nil || string(out) != "clean\n" {
		t.Fatalf("cat %s = %q, %v; want its content", clean, out, err)
	}
	s := waitFor(t, ch, "open of clean.txt", func(s seen) bool { return s.path == clean })
	if s.op != Open || !s.perm || !s.allow || s.data != "clean\n" || filepath.Base(s.exe) != "cat" {
		t.Errorf("event of cat clean.txt = %+v; want a permission Open by cat, with the file's content", s)
	}

	cmd := command(ctx, "cat", infected)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err == nil || len(out) != 0 || !strings.Contains(stderr.String(), "Operation not permitted") {
		t.Fatalf("cat %s = %q, %v, stderr %q; want EPERM", infected, out, err, stderr.String())
	}
	s = waitFor(t, ch, "open of infected.txt", func(s seen) bool { return s.path == infected })
	if s.op != Open || !s.perm || s.allow || s.pid != cmd.Process.Pid {
		t.Errorf("event of cat infected.txt = %+v; want a denied Open by pid %d", s, cmd.Process.Pid)
	}

	// Not recursive: the subdirectory's infected.txt is never seen.
	if out, err := command(ctx, "cat", nested).Output(); err != nil || string(out) != "nested\n" {
		t.Fatalf("cat %s (in an unwatched subdirectory) = %q, %v", nested, out, err)
	}

	if err := g.Unwatch(dir, false); err != nil {
		t.Fatal(err)
	}
	if out, err := command(ctx, "cat", infected).Output(); err != nil || string(out) != "infected\n" {
		t.Fatalf("cat %s after Unwatch = %q, %v; want its content", infected, out, err)
	}
	if err := g.Unwatch(dir, false); !errors.Is(err, unix.ENOENT) {
		t.Errorf("second Unwatch = %v, want ENOENT", err)
	}
}

// execThroughHelper runs path the way TestBlockExec must: the test
// binary is started (its exec is not watched) and then executes path
// itself (syscall.Exec), printing the errno when that fails. The test
// process must not start a watched program itself: see the package
// comment, on os/exec's vfork.
func execThroughHelper(ctx context.Context, path string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=exec", helperArgEnv+"="+path, "LC_ALL=C")
	return cmd
}

// TestBlockExec: executing a script the group denies fails with EPERM, an
// allowed one runs, and the denied script can still be read (only its
// exec was refused). An exec is reported as Exec, then as Open.
func TestBlockExec(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	good, bad := filepath.Join(dir, "good.sh"), filepath.Join(dir, "bad.sh")
	writeFile(t, good, "#!/bin/sh\necho good ran\n", 0o755)
	writeFile(t, bad, "#!/bin/sh\necho bad ran\n", 0o755)

	g := newGroup(t, Block, Open|Exec)
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	ch := serve(t, g, func(p string, op Op) bool { return filepath.Base(p) == "bad.sh" && op == Exec })
	ctx := t.Context()

	cmd := execThroughHelper(ctx, good)
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "good ran\n" {
		t.Fatalf("exec %s = %q, %v", good, out, err)
	}
	s := waitFor(t, ch, "exec of good.sh", func(s seen) bool { return s.path == good && s.op == Exec })
	if !s.perm || s.pid != cmd.Process.Pid {
		t.Errorf("exec of good.sh: %+v, want a permission event of pid %d", s, cmd.Process.Pid)
	}
	waitFor(t, ch, "open of good.sh by its exec", func(s seen) bool { return s.path == good && s.op == Open && s.pid == cmd.Process.Pid })

	cmd = execThroughHelper(ctx, bad)
	out, err := cmd.CombinedOutput()
	if want := fmt.Sprintf("exec failed: errno %d\n", syscall.EPERM); err == nil || string(out) != want {
		t.Fatalf("exec %s = %q, %v; want %q", bad, out, err, want)
	}
	if s := waitFor(t, ch, "exec of bad.sh", func(s seen) bool { return s.path == bad && s.op == Exec }); s.allow || s.pid != cmd.Process.Pid {
		t.Errorf("exec of bad.sh: %+v, want it denied, for pid %d", s, cmd.Process.Pid)
	}
	if out, err := command(ctx, "cat", bad).Output(); err != nil || !strings.Contains(string(out), "bad ran") {
		t.Fatalf("cat %s = %q, %v; want it readable", bad, out, err)
	}
}

// TestIgnore: an ignored file of a watched directory opens although the
// group denies everything, until it is modified.
func TestIgnore(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	ignored, other := filepath.Join(dir, "ignored.txt"), filepath.Join(dir, "other.txt")
	writeFile(t, ignored, "ignored\n", 0o644)
	writeFile(t, other, "other\n", 0o644)
	g := newGroup(t, Block, Open)
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	if err := g.Ignore(ignored); err != nil {
		t.Fatal(err)
	}
	ch := serve(t, g, func(string, Op) bool { return true })
	ctx := t.Context()
	if out, err := command(ctx, "cat", ignored).Output(); err != nil || string(out) != "ignored\n" {
		t.Fatalf("cat of the ignored file = %q, %v", out, err)
	}
	if out, err := command(ctx, "cat", other).Output(); err == nil {
		t.Fatalf("cat of another file = %q, want it denied", out)
	}
	waitFor(t, ch, "open of other.txt", func(s seen) bool { return s.path == other && !s.allow })
	// Its opens for writing are not held either, and a modification ends
	// the ignore mark.
	if out, err := command(ctx, "/bin/sh", "-c", `printf 'changed\n' >> "$1"`, "sh", ignored).CombinedOutput(); err != nil {
		t.Fatalf("sh appending to the ignored file: %v: %s", err, out)
	}
	if out, err := command(ctx, "cat", ignored).Output(); err == nil {
		t.Fatalf("cat of the rewritten file = %q, want it denied", out)
	}
	waitFor(t, ch, "open of the rewritten ignored.txt", func(s seen) bool { return s.path == ignored && !s.allow })
}

// TestCloseWrite: writing a file is reported when it is closed, with the
// written content, after the open for writing was a permission event.
func TestCloseWrite(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	g := newGroup(t, Block, Open|CloseWrite)
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	ch := serve(t, g, func(string, Op) bool { return false })
	file := filepath.Join(dir, "new.txt")
	cmd := command(t.Context(), "/bin/sh", "-c", `printf 'written' > "$1"`, "sh", file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh: %v: %s", err, out)
	}
	open := waitFor(t, ch, "open of new.txt", func(s seen) bool { return s.path == file })
	if open.op != Open || !open.perm || open.pid != cmd.Process.Pid {
		t.Errorf("first event of new.txt = %+v, want the permission Open of pid %d", open, cmd.Process.Pid)
	}
	s := waitFor(t, ch, "close-write of new.txt", func(s seen) bool { return s.path == file && s.op&CloseWrite != 0 })
	if s.perm || s.pid != cmd.Process.Pid || s.data != "written" {
		t.Errorf("close-write of new.txt = %+v, want a notification of pid %d with the content", s, cmd.Process.Pid)
	}
}

// readUntil reads g's events, answering none, until every one of match
// accepted an event, and returns those events (the first each accepted),
// in match's order; it closes the others.
func readUntil(t *testing.T, g *Group, what string, match ...func(*Event) bool) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	buf := make([]byte, ReadBufferSize)
	found := make([]Event, len(match))
	left := len(match)
	for left > 0 {
		evs, err := g.ReadEvents(ctx, buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	next:
		for _, ev := range evs {
			for i, m := range match {
				if found[i].Mask == 0 && m(&ev) {
					found[i] = ev
					left--
					continue next
				}
			}
			ev.Close()
		}
	}
	return found
}

// TestNotify: in Notify mode an open and an exec complete while nobody
// reads the group, and are reported afterwards as notifications.
func TestNotify(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	file, script := filepath.Join(dir, "a.txt"), filepath.Join(dir, "run.sh")
	writeFile(t, file, "a\n", 0o644)
	writeFile(t, script, "#!/bin/sh\necho ran\n", 0o755)
	g := newGroup(t, Notify, Open|Exec|CloseWrite)
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	// Nobody reads g yet: these complete all the same.
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	catCmd := command(ctx, "cat", file)
	if out, err := catCmd.Output(); err != nil || string(out) != "a\n" {
		t.Fatalf("cat = %q, %v", out, err)
	}
	runCmd := command(ctx, script)
	if out, err := runCmd.Output(); err != nil || string(out) != "ran\n" {
		t.Fatalf("%s = %q, %v", script, out, err)
	}

	evs := readUntil(t, g, "open of a.txt and exec of run.sh",
		func(ev *Event) bool { p, _ := ev.Path(); return p == file && ev.Op&Open != 0 },
		func(ev *Event) bool { p, _ := ev.Path(); return p == script && ev.Op&Exec != 0 })
	ev, ex := &evs[0], &evs[1]
	defer ev.Close()
	defer ex.Close()
	if ev.Permission() || ev.PID != catCmd.Process.Pid {
		t.Errorf("open of a.txt: %v (mask %#x) by %d; want a notification Open by %d", ev.Op, ev.Mask, ev.PID, catCmd.Process.Pid)
	}
	if err := g.Respond(ev, false); err != nil {
		t.Errorf("Respond to a notification = %v, want nil (nothing to answer)", err)
	}
	if ex.Permission() || ex.PID != runCmd.Process.Pid {
		t.Errorf("exec of run.sh: %v by %d; want a notification by %d", ex.Op, ex.PID, runCmd.Process.Pid)
	}
}

// TestNotifyFilesystem: Watch(path, true) reports opens anywhere on the
// filesystem holding path.
func TestNotifyFilesystem(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	deep := filepath.Join(dir, "x", "y")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(deep, "m.txt")
	writeFile(t, file, "m\n", 0o644)
	g := newGroup(t, Notify, Open)
	if err := g.Watch(dir, true); err != nil {
		t.Fatal(err)
	}
	cmd := command(t.Context(), "cat", file)
	if out, err := cmd.Output(); err != nil || string(out) != "m\n" {
		t.Fatalf("cat = %q, %v", out, err)
	}
	ev := readUntil(t, g, "open of x/y/m.txt", func(ev *Event) bool {
		p, _ := ev.Path()
		return p == file && ev.PID == cmd.Process.Pid
	})
	ev[0].Close()
	if err := g.Unwatch(dir, true); err != nil {
		t.Fatal(err)
	}
}

// TestOverflow: when the kernel's queue is full it reports Overflow, an
// event without file or process. The queue is filled by this process's
// own opens, which ReadEvents answers and never returns, so Overflow is
// the only event read.
func TestOverflow(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/sys/fs/fanotify/max_queued_events")
	if err != nil {
		t.Skipf("no queue limit to reach: %v", err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || limit > 100_000 {
		t.Skipf("max_queued_events %q: too many files to create", b)
	}
	g := newGroup(t, Notify, Open)
	dir := tempDir(t)
	n := limit + 10
	for i := range n {
		writeFile(t, filepath.Join(dir, strconv.Itoa(i)), "", 0o644)
	}
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		f, err := os.Open(filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	evs, err := g.ReadEvents(ctx, make([]byte, ReadBufferSize))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Op != Overflow || evs[0].File != nil || evs[0].PID != 0 || evs[0].Permission() {
		t.Fatalf("events after %d opens with a queue of %d: %+v; want one Overflow", n, limit, evs)
	}
	if err := g.Respond(&evs[0], true); err != nil {
		t.Errorf("Respond(Overflow) = %v, want nil", err)
	}
	if _, err := evs[0].Path(); err == nil {
		t.Error("Overflow has a path")
	}
}

// TestReadEventsEnds: ReadEvents returns when its context ends (and the
// group reads on afterwards) and when the group is closed.
func TestReadEventsEnds(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	file := filepath.Join(dir, "f")
	writeFile(t, file, "f", 0o644)
	g := newGroup(t, Notify, Open)
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, ReadBufferSize)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if evs, err := g.ReadEvents(ctx, buf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadEvents with nothing to read = %v, %v; want the context's deadline", evs, err)
	}
	if out, err := command(t.Context(), "cat", file).Output(); err != nil || string(out) != "f" {
		t.Fatalf("cat = %q, %v", out, err)
	}
	readUntil(t, g, "open after a deadline", func(ev *Event) bool { p, _ := ev.Path(); return p == file })[0].Close()

	res := make(chan error, 1)
	go func() {
		_, err := g.ReadEvents(context.Background(), buf)
		res <- err
	}()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("ReadEvents after Close = %v, want os.ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not end ReadEvents")
	}
}

// startCat starts cat of files and returns a channel that receives its
// result when it exits.
func startCat(t *testing.T, files ...string) (*exec.Cmd, *testenv.Buffer, <-chan error) {
	t.Helper()
	cmd := command(t.Context(), "cat", files...)
	var out testenv.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	return cmd, &out, done
}

// blockedInOpen reports whether pid is asleep (not running, not exited),
// and where the kernel says it waits.
func blockedInOpen(pid int) (bool, string) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false, err.Error()
	}
	// The state follows the command's closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false, "unreadable stat"
	}
	state := stat[i+2]
	wchan, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/wchan")
	return state == 'S' || state == 'D', fmt.Sprintf("state %c, wchan %q", state, wchan)
}

// TestCloseAllowsPending: a group that read an open and never answered
// it holds the opener until Close, which lets it through.
func TestCloseAllowsPending(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	file := filepath.Join(dir, "held.txt")
	writeFile(t, file, "held\n", 0o644)
	g := newGroup(t, Block, Open)
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	cmd, out, done := startCat(t, file)
	ev := readUntil(t, g, "open by cat", func(ev *Event) bool { return ev.PID == cmd.Process.Pid })[0]
	defer ev.Close()
	select {
	case err := <-done:
		t.Fatalf("cat finished (%v) while its open was unanswered", err)
	default:
	}
	if blocked, where := blockedInOpen(cmd.Process.Pid); !blocked || out.String() != "" {
		t.Fatalf("cat is not waiting (%s), output %q", where, out)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || out.String() != "held\n" {
			t.Fatalf("cat after Close = %q, %v", out, err)
		}
	case <-time.After(wait):
		t.Fatal("cat still waits after Close")
	}
	if err := g.Respond(&ev, false); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Respond after Close = %v, want os.ErrClosed", err)
	}
}

const (
	helperEnv    = "VIGIL_FANOTIFY_HELPER"
	helperArgEnv = "VIGIL_FANOTIFY_HELPER_ARG"
)

// TestHelperProcess is not a test: the tests run the test binary again
// with helperEnv set, and this is then a helper process:
//
//   - "exec": it executes the program helperArgEnv names, or prints
//     "exec failed: errno N" and exits 3;
//   - "hold": it holds a Block group on the directory helperArgEnv names,
//     reports every event it reads on standard output ("event PID PATH")
//     and answers none, until it is killed.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "exec":
		arg := os.Getenv(helperArgEnv)
		err := syscall.Exec(arg, []string{arg}, os.Environ())
		var errno syscall.Errno
		errors.As(err, &errno)
		fmt.Printf("exec failed: errno %d\n", errno)
		os.Exit(3)
	case "hold":
	default:
		return
	}
	g, err := New(Block, Open)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	if err := g.Watch(os.Getenv(helperArgEnv), false); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	var held []Event // never answered, never closed
	buf := make([]byte, ReadBufferSize)
	for {
		evs, err := g.ReadEvents(context.Background(), buf)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		for i := range evs {
			p, _ := evs[i].Path()
			fmt.Println("event", evs[i].PID, p)
		}
		held = append(held, evs...)
	}
}

// TestSafetyKill is the guarantee on-access scanning rests on: a process
// holding a Block group that stops answering (hung, or slow) holds the
// opens of its directory, and once it is killed with SIGKILL every one of
// them proceeds at once, and every file of the directory opens.
func TestSafetyKill(t *testing.T) {
	t.Parallel()
	newGroup(t, Block, Open).Close() // skips without root or fanotify
	dir := tempDir(t)
	files := []string{filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt"), filepath.Join(dir, "c.txt")}
	for _, f := range files {
		writeFile(t, f, filepath.Base(f)+"\n", 0o644)
	}

	helper := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	helper.Env = append(os.Environ(), helperEnv+"=hold", helperArgEnv+"="+dir)
	helper.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with this test
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	helperDone := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
		helperDone <- helper.Wait()
	}()
	t.Cleanup(func() { helper.Process.Kill(); <-helperDone })
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("helper exited before %s", what)
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("helper: %s", l)
			}
			return l
		case <-time.After(wait):
			t.Fatalf("helper: no %s within %v", what, wait)
		}
		return ""
	}
	if l := next("ready"); l != "ready" {
		t.Fatalf("helper said %q, want ready", l)
	}

	cat, out, catDone := startCat(t, files[0])
	want := fmt.Sprintf("event %d %s", cat.Process.Pid, files[0])
	for l := next("event of cat"); l != want; l = next("event of cat") {
	}
	// Guard: the open is held. The helper read it and will never answer.
	select {
	case err := <-catDone:
		t.Fatalf("cat finished (%v) while the helper held its open", err)
	default:
	}
	blocked, where := blockedInOpen(cat.Process.Pid)
	if !blocked || out.String() != "" {
		t.Fatalf("cat is not waiting for the helper (%s), output %q", where, out)
	}
	t.Logf("cat %d waits for the helper: %s", cat.Process.Pid, where)

	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case err := <-catDone:
		if err != nil || out.String() != "a.txt\n" {
			t.Fatalf("cat after the helper's death = %q, %v; want the file", out, err)
		}
		t.Logf("cat finished %v after SIGKILL", time.Since(killed))
	case <-time.After(wait):
		t.Fatalf("cat still waits %v after the helper was killed", wait)
	}
	var ws *exec.ExitError
	if err := <-helperDone; !errors.As(err, &ws) || ws.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want SIGKILL", err)
	}
	helperDone <- nil // for the cleanup

	// Every file of the directory opens at once, for another process and
	// for this one.
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	all, err := command(ctx, "cat", files...).Output()
	if err != nil || string(all) != "a.txt\nb.txt\nc.txt\n" {
		t.Fatalf("cat of every file = %q, %v", all, err)
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err != nil || string(b) != filepath.Base(f)+"\n" {
			t.Fatalf("read %s = %q, %v", f, b, err)
		}
	}
}

// TestIgnoreFile: the kernel's verdict cache. A file marked through an
// open descriptor is not reported again (its opens are not held) until it
// is modified, Unignore or FlushIgnores; the mark is evictable on this
// kernel or the group says it pins.
func TestIgnoreFile(t *testing.T) {
	t.Parallel()
	dir := tempDir(t)
	file := filepath.Join(dir, "clean.txt")
	writeFile(t, file, "clean\n", 0o644)
	g := newGroup(t, Block, Open)
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	ch := serve(t, g, func(string, Op) bool { return true }) // deny every open
	f, err := os.Open(file)                                  // this process's open: allowed by ReadEvents
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := t.Context()
	denied := func(what string) {
		t.Helper()
		if out, err := command(ctx, "cat", file).Output(); err == nil {
			t.Fatalf("%s: cat = %q, want it denied", what, out)
		}
		waitFor(t, ch, what, func(s seen) bool { return s.path == file && !s.allow })
	}
	allowed := func(what string) {
		t.Helper()
		if out, err := command(ctx, "cat", file).Output(); err != nil {
			t.Fatalf("%s: cat = %q, %v; want the ignored file read", what, out, err)
		}
	}
	denied("before IgnoreFile")
	ignore := func() {
		t.Helper()
		if err := g.IgnoreFile(f); err != nil {
			t.Fatal(err)
		}
	}
	ignore()
	allowed("after IgnoreFile")
	t.Logf("marks pin their inodes: %v", g.Pinning())

	// A truncation is a modification.
	if err := os.Truncate(file, 3); err != nil {
		t.Fatal(err)
	}
	denied("after a truncation")

	ignore()
	allowed("ignored again")
	if err := g.Unignore(f); err != nil {
		t.Fatal(err)
	}
	denied("after Unignore")

	ignore()
	allowed("ignored once more")
	if err := g.FlushIgnores(); err != nil {
		t.Fatal(err)
	}
	// The flush removed the directory's mark too: its files are no
	// longer watched.
	allowed("after FlushIgnores, which removes the directory's mark")
	if err := g.Watch(dir, false); err != nil {
		t.Fatal(err)
	}
	denied("watched again after FlushIgnores")
}
