package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/vigil-fleet/vigil/internal/doctor"
	"github.com/vigil-fleet/vigil/internal/ports"
)

func runDoctor(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "doctor", "[-server FILE] [-agent FILE] [-liveupdate FILE] [-mirror FILE] [-runtime-dir DIR] [-wait DURATION] [-timeout DURATION] [-json]")
	var pf partFiles
	pf.register(fs)
	wait := fs.Duration("wait", 0, "how long to wait for a signed beacon on the multicast group (default: the server's beacon interval and 5s when the server is on this machine, else 35s)")
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
	fmt.Fprintf(info, "Read from %s\n", m.sourceLine())
	for _, n := range m.notes {
		fmt.Fprintf(info, "Note: %s\n", n)
	}
	opts := doctor.Options{Timeout: *timeout}

	groups := make([][]doctor.Result, 4)
	var wg sync.WaitGroup
	run := func(i int, f func() []doctor.Result) {
		wg.Go(func() {
			groups[i] = f()
		})
	}
	if s := m.server; s != nil {
		run(0, func() []doctor.Result {
			return []doctor.Result{
				doctor.Listening(ctx, ports.FlowAgentAPI, s.cfg.Listen),
				doctor.Listening(ctx, ports.FlowAdmin, s.cfg.AdminListen),
			}
		})
	}
	if a := m.agent; a != nil {
		w := *wait
		if w == 0 {
			w = doctor.DefaultMulticastWait
			if m.server != nil {
				w = m.server.cfg.BeaconInterval + 5*time.Second
			}
		}
		run(1, func() []doctor.Result {
			return doctor.Agent(ctx, doctor.AgentConfig{Prefs: a, Wait: w, Options: opts})
		})
	}
	if l := m.liveUpdate; l != nil {
		run(2, func() []doctor.Result {
			var rs []doctor.Result
			for _, addr := range []string{l.cfg.FTPAddr, l.cfg.HTTPAddr} {
				if addr != "" {
					rs = append(rs, doctor.Listening(ctx, ports.FlowDefinitions, addr))
				}
			}
			return rs
		})
	}
	if mi := m.mirror; mi != nil {
		root, err := os.ReadFile(mi.rootFile)
		if err != nil {
			return fmt.Errorf("mirror: -root: %w", err)
		}
		o := opts
		if mi.caFile != "" {
			pem, err := os.ReadFile(mi.caFile)
			if err != nil {
				return fmt.Errorf("mirror: -ca-cert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("mirror: -ca-cert: %s holds no PEM certificate", mi.caFile)
			}
			o.TLS = &tls.Config{RootCAs: pool}
		}
		run(3, func() []doctor.Result {
			return doctor.Upstream(ctx, mi.upstream, mi.resolver, root, o)
		})
	}
	wg.Wait()
	var results []doctor.Result
	for _, g := range groups {
		results = append(results, g...)
	}
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
