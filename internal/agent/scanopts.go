package agent

import (
	"runtime"
	"strings"

	"github.com/vigil-fleet/vigil/internal/scan"
	"github.com/vigil-fleet/vigil/internal/unpack"
)

// scanOptions are the options of the agent's scans: clamscan's defaults
// (archives opened within ClamAV's limits, one detection per file,
// directories entered down to 15 levels), with MaxScanFileSize as
// clamscan's --max-filesize, the agent's exclusions, and never the
// agent's own state and quarantine.
func (a *Agent) scanOptions() scan.Options {
	lim := unpack.DefaultLimits()
	if a.p.MaxScanFileSize > 0 {
		lim.MaxFileSize = a.p.MaxScanFileSize
	}
	opts := scan.Options{Limits: lim, Workers: max(1, runtime.NumCPU()/2)}
	for _, e := range a.p.ScanExclude {
		if strings.Contains(e, "/") {
			opts.Exclude = append(opts.Exclude, e)
		} else {
			opts.ExcludePatterns = append(opts.ExcludePatterns, e)
		}
	}
	opts.Exclude = append(opts.Exclude, a.p.StateDirectory)
	if a.p.QuarantineDirectory != "" {
		opts.Exclude = append(opts.Exclude, a.p.QuarantineDirectory)
	}
	return opts
}
