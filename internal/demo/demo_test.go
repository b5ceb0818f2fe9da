package demo_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-fleet/vigil/internal/cli"
	"github.com/vigil-fleet/vigil/internal/demo"
)

// TestDemo runs the README's first command, `vigil demo`, through the
// command line, and checks that it shows the whole system working and
// runs every step of the outline, in order.
func TestDemo(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(20000 + rand.IntN(40000))
	var outb, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cli.Run(ctx, &cli.Env{Stdout: &outb, Stderr: &errb, Getenv: func(string) string { return "" }}, []string{"demo", "-agents", "3", "-port", port, "-v"})
	out, stderr := outb.String(), errb.String()
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"agent demo-1: enrolled as",
		"agent demo-3: enrolled as",
		"demo-2 executed #1 ping (received by multicast): ok",
		"demo-2 passed over #2 set: not addressed to it",
		"checkin_interval=60",
		"dropped 1 datagram(s) signed by another key and 1 replayed; executed nothing",
		"demo-1 started #4 update (received by multicast)",
		"liveupdate.vendor.test is an alias for lu.geo.vendor.test.",
		"lu-pool.vendor.test has address 127.0.0.3",
		"127.0.0.3       timestamp version 2",
		"highest verified timestamp version (3)",
		"definitions 2026112502 installed from ftp://",
		"definitions 2026112502 installed from http://",
		"demo-1 scanned 2 files (88 bytes) with definitions 2026112502: 1 infected",
		"$ vigil detections",
		// One detection per file, as clamscan reports it.
		"invoice.pdf.com  Eicar-Signature  2026112502",
		"Demo finished",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q\n%s", want, out)
		}
	}
	if strings.Count(out, " executed #1 ping") != 3 {
		t.Errorf("not every agent executed the ping once:\n%s", out)
	}
	// -v logs each step as it starts: all of them ran, in order.
	rest := stderr
	for _, name := range demo.Outline() {
		value := name // as log/slog's text handler writes it
		if strings.ContainsAny(name, " \"=") {
			value = strconv.Quote(name)
		}
		i := strings.Index(rest, `msg="demo step" step=`+value+"\n")
		if i < 0 {
			t.Errorf("step %q not logged (in order) on stderr", name)
			continue
		}
		rest = rest[i:]
	}
}
