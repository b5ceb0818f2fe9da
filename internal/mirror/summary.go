package mirror

import (
	"fmt"
	"io"
	"strings"

	"github.com/vigil-fleet/vigil/internal/transport"
)

// WriteText writes the summary for people: what was chosen and why, what
// was skipped and why, what was fetched, published and pruned, the
// self-update status and the time taken.
func (s *Summary) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Summary of %s → %s:\n", s.Upstream, s.Dir)
	switch {
	case s.Chosen != "":
		fmt.Fprintf(w, "  chosen:    %s: %s\n", s.Chosen, s.Reason)
	default:
		fmt.Fprintf(w, "  chosen:    no address\n")
	}
	for _, k := range s.Skipped {
		fmt.Fprintf(w, "  skipped:   %s (%s): %s\n", k.Address, k.Stage, k.Reason)
	}
	state := func(v StateVersions) string {
		if v.Timestamp == 0 {
			return fmt.Sprintf("no state (root %d)", v.Root)
		}
		return fmt.Sprintf("timestamp %d, snapshot %d, targets %d, root %d, %d targets", v.Timestamp, v.Snapshot, v.Targets, v.Root, v.TargetFiles)
	}
	switch {
	case s.UpToDate:
		fmt.Fprintf(w, "  state:     up to date: %s\n", state(s.After))
	case s.Behind != nil && s.After != s.Before:
		fmt.Fprintf(w, "  state:     BEHIND: %s → %s; %s serves timestamp %d, which could not be fetched\n", state(s.Before), state(s.After), s.Behind.Address, s.Behind.Newest)
	case s.Behind != nil:
		fmt.Fprintf(w, "  state:     BEHIND: unchanged: %s; %s serves timestamp %d, which could not be fetched\n", state(s.After), s.Behind.Address, s.Behind.Newest)
	case s.After != s.Before:
		fmt.Fprintf(w, "  state:     %s → %s\n", state(s.Before), state(s.After))
	default:
		fmt.Fprintf(w, "  state:     unchanged: %s\n", state(s.After))
	}
	f := s.Fetched
	var parts []string
	parts = append(parts, fmt.Sprintf("%d targets (%s", f.TargetFiles, transport.HumanBytes(f.TargetBytes)))
	if f.Resumed > 0 {
		parts[0] += fmt.Sprintf(", %d resumed", f.Resumed)
	}
	parts[0] += ")"
	parts = append(parts, fmt.Sprintf("%d metadata files (%s)", f.MetadataFiles, transport.HumanBytes(f.MetadataBytes)))
	fmt.Fprintf(w, "  fetched:   %s", strings.Join(parts, " and "))
	if f.Built > 0 {
		fmt.Fprintf(w, "; %d definitions releases (%s) built from deltas", f.Built, transport.HumanBytes(f.BuiltBytes))
	}
	if f.Present > 0 {
		fmt.Fprintf(w, "; %d targets already present", f.Present)
	}
	fmt.Fprintln(w)
	if s.Pruned.Files > 0 {
		fmt.Fprintf(w, "  pruned:    %d files (%s)\n", s.Pruned.Files, transport.HumanBytes(s.Pruned.Bytes))
	}
	for _, x := range s.Warnings {
		fmt.Fprintf(w, "  warning:   %s\n", x)
	}
	if su := s.SelfUpdate; su != nil {
		switch {
		case su.Latest == "":
			fmt.Fprintf(w, "  vigil:     running %s; no release for this platform in the repository\n", su.Running)
		case su.Updated:
			fmt.Fprintf(w, "  vigil:     updated %s from %s to %s (previous kept as %s); restart to use it\n", su.Executable, su.Running, su.Latest, su.Previous)
		case su.Error != "":
			fmt.Fprintf(w, "  vigil:     running %s; %s is available; self-update failed: %s\n", su.Running, su.Latest, su.Error)
		case su.Available:
			fmt.Fprintf(w, "  vigil:     running %s; %s is available (-self-update installs it)\n", su.Running, su.Latest)
		default:
			fmt.Fprintf(w, "  vigil:     running %s, the newest release\n", su.Running)
		}
	}
	if s.Error != "" {
		fmt.Fprintf(w, "  error:     %s\n", s.Error)
	}
	fmt.Fprintf(w, "  time:      %.2fs\n", s.Seconds)
}
