package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/vigil-fleet/vigil/internal/doctor"
	"github.com/vigil-fleet/vigil/internal/ports"
)

func runDoctor(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "doctor", "[-server FILE] [-agent FILE] [-liveupdate FILE] [-mirror FILE] [-relay FILE] [-runtime-dir DIR] [-wait DURATION] [-timeout DURATION] [-json]")
	var pf partFiles
	pf.register(fs)
	wait := fs.Duration("wait", 0, "how long to wait for a signed beacon on the multicast group, as an agent receives it or a relay re-sends it (default: the server's beacon interval and 5s when the server is on this machine, else 35s)")
	timeout := fs.Duration("timeout", doctor.DefaultTimeout, "time allowed for each step of a check: connecting, a reply")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *wait < 0 || *timeout <= 0 {
		return usageError{fmt.Errorf("-wait must not be negative and -timeout must be positive")}
	}
	m, err := pf.load(env)
	if err != nil {
		return err
	}
	// Where the settings came from: before the results, or on standard
	// error when standard output is JSON.
	info := env.Stdout
	if *asJSON {
		info = env.Stderr
	}
	fmt.Fprintf(info, "Read from %s\n", m.readFrom())
	for _, n := range m.notes {
		fmt.Fprintf(info, "Note: %s\n", n)
	}
	dc := doctor.Config{Agent: m.agent, Wait: *wait, Options: doctor.Options{Timeout: *timeout}}
	if m.relay != nil {
		dc.Relay = &m.relay.cfg
		if dc.RelayTLS, err = caConfig(m.relay.cfg.UpstreamCA); err != nil {
			return fmt.Errorf("relay: -upstream-ca: %w", err)
		}
	}
	if dc.Wait == 0 && m.server != nil {
		dc.Wait = m.server.cfg.BeaconInterval + 5*time.Second
	}
	if mi := m.mirror; mi != nil {
		if dc.MirrorRoot, err = os.ReadFile(mi.RootFile); err != nil {
			return fmt.Errorf("mirror: -root: %w", err)
		}
		if dc.MirrorTLS, err = caConfig(mi.CAFile); err != nil {
			return fmt.Errorf("mirror: %w", err)
		}
	}
	// The checks are those of the flows vigil ports lists for these parts.
	pc := m.portsConfig()
	pc.ResolveTimeout = *timeout
	plan, err := ports.Build(ctx, pc)
	if err != nil {
		return err
	}
	checks, err := doctor.Checks(plan, dc)
	if err != nil {
		return err
	}
	results := doctor.Run(ctx, checks)
	if *asJSON {
		err = doctor.WriteJSON(env.Stdout, results)
	} else {
		err = doctor.Write(env.Stdout, results)
	}
	if err != nil {
		return err
	}
	if doctor.Failed(results) {
		n := 0
		for _, r := range results {
			if !r.OK {
				n++
			}
		}
		return exitError{code: 1, err: fmt.Errorf("%d of %d checks failed", n, len(results))}
	}
	return nil
}
