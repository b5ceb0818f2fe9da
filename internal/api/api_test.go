package api

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		cut  bool
	}{
		{"short", "pong from mac-17", false},
		{"exactly the limit", strings.Repeat("a", MaxOutput), false},
		{"one byte over", strings.Repeat("a", MaxOutput+1), true},
		{"multi-byte runes across the cut", strings.Repeat("é", MaxOutput), true},
		{"invalid UTF-8", "a\xffb", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := TruncateOutput(tc.in)
			if len(got) > MaxOutput || !utf8.ValidString(got) {
				t.Fatalf("%d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
			if cut := strings.HasSuffix(got, "[cut to 4 KiB]"); cut != tc.cut {
				t.Fatalf("cut note %v, want %v", cut, tc.cut)
			}
			if !tc.cut && utf8.ValidString(tc.in) && got != tc.in {
				t.Fatalf("changed a short output: %q", got)
			}
		})
	}
}

func TestTruncateOnAccessError(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", MaxOnAccessError) // 2 bytes a rune
	got := TruncateOnAccessError(long)
	if len(got) > MaxOnAccessError || !utf8.ValidString(got) || !strings.HasSuffix(got, " …[cut]") {
		t.Errorf("TruncateOnAccessError: %d bytes, valid %v, %q…", len(got), utf8.ValidString(got), got[len(got)-12:])
	}
	if s := "not running: no definitions"; TruncateOnAccessError(s) != s {
		t.Errorf("a short error was changed")
	}
}

func TestUpdateSummary(t *testing.T) {
	for _, c := range []struct {
		u    UpdateState
		want string
	}{
		{UpdateState{To: "2026120203", Bytes: 41 << 10, FullBytes: 22 << 20, Deltas: 2}, "2026120203, 41 KB of 22 MB (2 deltas)"},
		{UpdateState{To: "2026120203", Bytes: 1500, FullBytes: 22 << 20, Deltas: 1}, "2026120203, 1.5 KB of 22 MB (1 delta)"},
		{UpdateState{From: "1", To: "2", Bytes: 22 << 20, FullBytes: 22 << 20}, "2, 22 MB (full)"},
		{UpdateState{To: "7", Bytes: 512, FullBytes: 3 << 30, Deltas: 3}, "7, 512 B of 3.0 GB (3 deltas)"},
	} {
		if got := c.u.Summary(); got != c.want {
			t.Errorf("%+v: Summary() = %q, want %q", c.u, got, c.want)
		}
	}
}
