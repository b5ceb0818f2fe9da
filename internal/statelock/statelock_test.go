package statelock

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A second Take (flocks are per open file description, so one process
// shows it) is refused with the holder's PID; once the first closes its
// file, Take succeeds again, on the same file.
func TestTake(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "lock")
	f, err := Take(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, want this PID", b)
	}
	_, err = Take(path)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() || held.Holder("agent") != "the agent with PID "+strconv.Itoa(os.Getpid()) {
		t.Fatalf("second Take: %v, want a HeldError naming PID %d", err, os.Getpid())
	}
	f.Close()
	g, err := Take(path)
	if err != nil {
		t.Fatalf("Take after the holder closed: %v", err)
	}
	g.Close()
	if _, err := Take(filepath.Join(t.TempDir(), "missing", "lock")); err == nil || errors.As(err, &held) {
		t.Fatalf("Take in a missing directory: %v", err)
	}
}
