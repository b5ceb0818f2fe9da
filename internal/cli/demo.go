package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
	"github.com/vigil-fleet/vigil/internal/config"
	"github.com/vigil-fleet/vigil/internal/demo"
	"github.com/vigil-fleet/vigil/internal/doctor"
	"github.com/vigil-fleet/vigil/internal/ports"
	"github.com/vigil-fleet/vigil/internal/prefs"
)

// runDemo is `vigil demo`: its flags, then internal/demo's steps.
func runDemo(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "demo", "[flags]")
	n := fs.Int("agents", 3, "number of agents to run")
	port := fs.Int("port", 8192, "multicast UDP port (on the loopback interface only)")
	keep := fs.Bool("keep", false, "keep the temporary directory and print its path")
	verbose := fs.Bool("v", false, "show the server's and agents' logs")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 50 {
		return usageError{errors.New("-agents: want 1 to 50")}
	}
	dir, err := os.MkdirTemp("", "vigil-demo-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(env.Stdout, "demo files kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logw := io.Discard
	if *verbose {
		logw = env.Stderr
	}
	log := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return demo.Run(ctx, demo.Config{Agents: *n, Port: *port, Dir: dir, Stdout: env.Stdout, Logger: log, Commands: demoCommands{}})
}

// demoCommands renders, for the demo, what the commands it shows print.
type demoCommands struct{}

func (demoCommands) SendArgs(args map[string]string) string { return formatArgs(args) }

func (demoCommands) Results(res api.CommandResults) string {
	var buf bytes.Buffer
	printResults(&Env{Stdout: &buf}, res)
	return buf.String()
}

func (demoCommands) Detections(ds []api.DetectionInfo) string {
	var buf bytes.Buffer
	printDetections(&buf, ds)
	return buf.String()
}

func (demoCommands) Agents(list []api.AgentInfo) (string, error) {
	var buf bytes.Buffer
	err := printAgents(&buf, list)
	return buf.String(), err
}

func (demoCommands) Ports(ctx context.Context, file string, p *prefs.Agent) (string, error) {
	m := &machineParts{agent: p, sources: map[string]string{config.PartAgent: file}}
	plan, err := ports.Build(ctx, m.portsConfig())
	if err != nil {
		return "", err
	}
	plan.Sources = m.sources
	var buf bytes.Buffer
	err = plan.WriteTable(&buf)
	return buf.String(), err
}

func (demoCommands) Doctor(ctx context.Context, p *prefs.Agent, wait time.Duration) (string, bool, error) {
	// The checks of the flows vigil ports lists for this agent, as vigil
	// doctor derives them.
	m := &machineParts{agent: p}
	plan, err := ports.Build(ctx, m.portsConfig())
	if err != nil {
		return "", false, err
	}
	checks, err := doctor.Checks(plan, doctor.Config{Agent: p, Wait: wait, Options: doctor.Options{Timeout: 3 * time.Second}})
	if err != nil {
		return "", false, err
	}
	rs := doctor.Run(ctx, checks)
	var buf bytes.Buffer
	err = doctor.Write(&buf, rs)
	return buf.String(), doctor.Failed(rs), err
}
