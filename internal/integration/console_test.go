package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"howett.net/plist"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
	"github.com/vigil-fleet/vigil/internal/console/consoletest"
	"github.com/vigil-fleet/vigil/internal/prefs"
	"github.com/vigil-fleet/vigil/internal/server"
)

// addUser runs `vigil users add NAME -role ROLE` with the password on
// standard input, as an administrator would script it.
func addUser(t *testing.T, s *loopbackServer, name, role, password string) {
	t.Helper()
	addUserAt(t, s.admin, s.dataDir, name, role, password)
}

// addUserAt is addUser for the server whose admin URL is admin and data
// directory (holding the admin token) dataDir.
func addUserAt(t *testing.T, admin, dataDir, name, role, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vigilBin, "users", "-admin", admin, "-token-file", filepath.Join(dataDir, server.FileAdminToken),
		"add", name, "-role", role)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vigil users add %s: %v: %s", name, err, out)
	}
}

// TestConsoleRestoresWithRealAgent drives the console of a real `vigil
// server` in headless Chromium, with a real agent: the agent's scan
// quarantines EICAR; an operator, made with `vigil users add`, logs in,
// opens the agent's page and presses Restore, and the file is back on
// the agent's disk; a viewer sees the same page with no Restore control.
func TestConsoleRestoresWithRealAgent(t *testing.T) {
	t.Parallel()
	ctx := consoletest.Browser(t, 90*time.Second)
	s := newLoopbackServer(t)
	f := s.fleet(t)
	m := s.addAgent(f, "desk")
	scanned := t.TempDir()
	eicarPath := filepath.Join(scanned, "eicar.com")
	writeTestFile(t, eicarPath, eicarString, 0o644)
	p, err := prefs.Load(m.plist)
	if err != nil {
		t.Fatal(err)
	}
	p.QuarantineDirectory, p.ScanPaths = filepath.Join(t.TempDir(), "quarantine"), []string{scanned}
	if err := prefs.Write(m.plist, p, plist.XMLFormat); err != nil {
		t.Fatal(err)
	}
	installTestDefinitions(t, filepath.Join(m.state, "definitions"))
	f.startAgent(m)
	f.learnIDs()
	f.send(command.Target{All: true}, command.Scan)
	admin := s.adminClient(t)
	var det api.DetectionInfo
	deadline := time.Now().Add(30 * time.Second)
	for det.Quarantine == "" && time.Now().Before(deadline) {
		ds, err := admin.Detections(t.Context(), m.id, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) > 0 {
			det = ds[0]
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if det.Quarantine == "" || det.Path != eicarPath {
		t.Fatalf("the scan's detection: %+v; want %s quarantined", det, eicarPath)
	}
	if _, err := os.Stat(eicarPath); !os.IsNotExist(err) {
		t.Fatalf("%s after the scan: %v, want it quarantined", eicarPath, err)
	}
	addUser(t, s, "olga", "operator", "operator-password-1")
	addUser(t, s, "vera", "viewer", "viewer-password-1")

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	login := func(user, password string) {
		t.Helper()
		do("log in as "+user,
			chromedp.Navigate(s.admin+"/agents/"+m.id),
			chromedp.WaitVisible(chromedp.CSS("form.login")),
			chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), user),
			chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
			chromedp.Click(chromedp.CSS(`form.login button`)),
			chromedp.WaitVisible(chromedp.CSS(`form[action="/logout"]`)),
		)
	}
	count := func(css string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+css+"`"+`).length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	login("vera", "viewer-password-1")
	if !strings.Contains(mustText(t, ctx, "body"), det.Quarantine) {
		t.Fatalf("the viewer's agent page does not list quarantine id %s", det.Quarantine)
	}
	if n := count("button.restore"); n != 0 {
		t.Fatalf("the viewer sees %d Restore buttons", n)
	}
	do("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.CSS("form.login")))

	login("olga", "operator-password-1")
	if n := count("button.restore"); n != 1 {
		t.Fatalf("the operator sees %d Restore buttons, want 1", n)
	}
	do("restore", chromedp.Click(chromedp.CSS("button.restore")))
	deadline = time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(eicarPath); err == nil {
			if string(b) != eicarString {
				t.Fatalf("restored %s holds %q", eicarPath, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not restored 30 s after the operator pressed Restore", eicarPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The audit log names who restored it.
	out, err := f.vigil("audit", "-action", "restore")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "olga") || !strings.Contains(string(out), det.Quarantine) {
		t.Errorf("vigil audit -action restore:\n%s\nwant olga restoring %s", out, det.Quarantine)
	}
}

func mustText(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector(`+"`"+css+"`"+`).textContent`))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
