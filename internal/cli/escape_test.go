package cli

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/command"
)

func TestSafe(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"plain host-1.example", "plain host-1.example"},
		{"héllo wörld ✓ 日本", "héllo wörld ✓ 日本"},
		{"\x1b]0;title\x07", `\x1b]0;title\x07`},
		{"\x1b]52;c;ZXZpbA==\x1b\\", `\x1b]52;c;ZXZpbA==\x1b\\`},
		{"\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"a\tb\nc\rd", `a\tb\nc\rd`},
		{"\x00\x7f", `\x00\x7f`},
		{"c1 \u009b31m csi", `c1 \u009b31m csi`},
		{"\u0085next", `\u0085next`},
		{"file\u202egpj.exe", `file\u202egpj.exe`},
		{"\u2066iso\u2069 \u200e\u200f\u061c", `\u2066iso\u2069 \u200e\u200f\u061c`},
		{"line\u2028sep", `line\u2028sep`},
		{"bad \xff\xfe utf8 \xe2\x82", `bad \xff\xfe utf8 \xe2\x82`},
		{`back\slash`, `back\\slash`},
		{"\uFFFD kept", "\uFFFD kept"},
	} {
		if got := safe(tt.in); got != tt.want {
			t.Errorf("safe(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := safeLines("first\x1b[1m\nsecond\tline"); got != "first\\x1b[1m\nsecond\\tline" {
		t.Errorf("safeLines: %q", got)
	}
}

// FuzzSafe checks that nothing a terminal could obey survives safe, and
// that the escaping loses nothing: printable text is kept as it is.
func FuzzSafe(f *testing.F) {
	for _, s := range []string{"", "host", "\x1b]0;x\x07", "a\tb\nc", "\xff", "\u202e", "\u009b", `\x1b`, "日本\u2069"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := safe(s)
		if !utf8.ValidString(out) {
			t.Fatalf("safe(%q) = %q: not valid UTF-8", s, out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f || escapedRune(r) {
				t.Fatalf("safe(%q) = %q: keeps %U", s, out, r)
			}
		}
		if needsEscape(s) != (out != s) {
			t.Fatalf("needsEscape(%q) = %v but safe gives %q", s, needsEscape(s), out)
		}
		if uq, err := strconv.Unquote(`"` + strings.ReplaceAll(out, `"`, `\"`) + `"`); err != nil || (utf8.ValidString(s) && uq != s) {
			t.Fatalf("safe(%q) = %q does not read back (%q, %v)", s, out, uq, err)
		}
	})
}

// Text an agent supplies — its host name, a command's output, a detected
// file's path and signature — reaches vigil agents, results and
// detections through a real server; the tables must show it escaped, one
// row per agent, result and detection, with no control character.
func TestAgentTextEscaped(t *testing.T) {
	t.Parallel()
	const (
		hostname = "evil\x1b]0;pwned\x07\x1b[2J\tHOST\nFAKE-AGENT  pwned"
		output   = "pong\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07\nagent-0  fake  ok"
		path     = "/tmp/\x1b[8minvisible\x1b[0m\tcol\nrow\u202egpj.exe"
		sig      = "Eicar\u009b31m"
	)
	ts := startAdminServer(t)
	agentAPI := ts.enroll(t, hostname)
	ctx := context.Background()
	env := ts.env
	code, out, stderr := run(t, env, "send", "-all", "ping")
	if code != 0 {
		t.Fatalf("send: exit %d: %s", code, stderr)
	}
	seq, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("send printed %q", out)
	}
	if err := agentAPI.Call(ctx, api.RouteResults, nil, api.ResultsRequest{Results: []api.Result{
		{Seq: seq, Status: command.StatusOK, Output: output, ExecutedAt: time.Now()},
	}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := agentAPI.Call(ctx, api.RouteScans, nil, api.ScanReport{
		ReportID: "r1", DefsVer: "1", StartedAt: time.Now(), FinishedAt: time.Now(), Files: 1,
		Detections: []api.Detection{{Path: path, Signature: sig, SHA256: "00", FoundAt: time.Now()}},
	}, nil); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		args []string
		want []string // in the one data row, escaped
	}{
		{[]string{"agents"}, []string{safe(hostname)}},
		{[]string{"results", strconv.FormatUint(seq, 10)}, []string{safe(hostname), safe(output)}},
		{[]string{"detections"}, []string{safe(hostname), safe(path), safe(sig)}},
	} {
		code, out, stderr := run(t, env, tt.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, code, stderr)
		}
		for _, r := range out {
			if r < 0x20 && r != '\n' || r == 0x7f || escapedRune(r) {
				t.Errorf("%v: output holds %U:\n%q", tt.args, r, out)
			}
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		switch tt.args[0] {
		case "results":
			lines = lines[1:] // the "command N: ping ..." line
		case "agents":
			if i := slices.Index(lines, ""); i > 0 {
				lines = lines[:i] // the note under the table
			}
		}
		if len(lines) != 2 {
			t.Errorf("%v: %d lines, want a header and one row:\n%s", tt.args, len(lines), out)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(lines[1], w) {
				t.Errorf("%v: row %q lacks %q", tt.args, lines[1], w)
			}
		}
	}
}
