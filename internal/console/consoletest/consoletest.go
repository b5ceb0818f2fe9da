// Package consoletest is test support for the web console: a real
// headless Chromium (Debian's chromium) driven with chromedp, for the
// console's own tests and the end-to-end tests of internal/integration.
// Only tests import it: the vigil binary does not link chromedp.
package consoletest

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vigil-fleet/vigil/internal/testenv"
)

// Browser starts headless Chromium for tb and returns a chromedp context
// on a new tab, ended at tb's cleanup or after timeout. Its host resolver
// maps every name to nothing: it reaches 127.0.0.1 only. Without chromium
// in PATH tb is skipped, or failed under VIGIL_REQUIRE_TOOLS=1.
func Browser(tb testing.TB, timeout time.Duration) context.Context {
	tb.Helper()
	path := testenv.NeedTool(tb, "chromium", "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 800),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-proxy-server", true),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	tb.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	tb.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, timeout)
	tb.Cleanup(cancel3)
	return ctx
}
