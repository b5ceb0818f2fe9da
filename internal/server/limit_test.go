package server

import (
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	l := logLimiter{every: 10 * time.Second}
	t0 := time.Unix(1_800_000_000, 0)
	if ok, n := l.allow(t0); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for i := range 99 {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * 50 * time.Millisecond)); ok {
			t.Fatalf("line %d within the interval let through", i+2)
		}
	}
	// The next line after the interval counts the ones held back.
	if ok, n := l.allow(t0.Add(10 * time.Second)); !ok || n != 99 {
		t.Fatalf("after the interval: %v %d, want true 99", ok, n)
	}
	if ok, _ := l.allow(t0.Add(11 * time.Second)); ok {
		t.Fatal("second line of the new interval let through")
	}
}

func TestLogValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"mac-17", "mac-17"},
		{"a\x1b]0;x\x07b", `a\x1b]0;x\ab`},
		{"tab\there\nnewline", `tab\there\nnewline`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"é\u202eevil", `é\u202eevil`},
		{strings.Repeat("x", 100), strings.Repeat("x", 64) + "…"},
		{strings.Repeat("é", 40), strings.Repeat("é", 32) + "…"},
	} {
		got := logValue(tc.in)
		if got != tc.want {
			t.Errorf("logValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) || strings.IndexFunc(got, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			t.Errorf("logValue(%q) = %q holds unprintable characters", tc.in, got)
		}
	}
}
