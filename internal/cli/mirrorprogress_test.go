package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestLogProgress: one line per finished download (with where a resumed
// one resumed) and per failed one; nothing for bytes in between.
func TestLogProgress(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	p := newLogProgress(&out)
	p.Start(3, 3<<20)
	a := p.File("definitions/1.tar", 1<<20, 0)
	a.Add(1 << 20)
	a.Done(nil)
	b := p.File("definitions/2.tar", 1<<20, 512<<10)
	b.Add(512 << 10)
	b.Done(nil)
	c := p.File("definitions/3.tar", 1<<20, 0)
	c.Add(10)
	c.Done(errors.New("connection reset"))
	p.Finish()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		"  fetched definitions/1.tar (1.0 MiB) in ",
		"  fetched definitions/2.tar (1.0 MiB, resumed at 512.0 KiB) in ",
		"  failed  definitions/3.tar: connection reset",
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want it to start with %q", i, lines[i], w)
		}
	}
}
