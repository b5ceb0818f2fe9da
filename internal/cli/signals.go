package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Signals. Main handles SIGINT and SIGTERM for every command, and SIGHUP
// for the long-running parts (server, agent, liveupdate, mirror); docs/
// operations.md describes what an administrator sees.
//
//   - The first SIGINT or SIGTERM is logged ("received SIGTERM; stopping")
//     by a part, cancels the command's context, and starts a grace timer.
//     A part that has not stopped when it expires is ended with exit
//     status 1 and an error line, so that a step that does not watch the
//     context (a blocked read of a preference file at start-up, a long
//     decode) cannot keep it alive. A second SIGINT or SIGTERM ends the
//     process at once, with status 128+signal.
//   - The grace is startupGrace while a part starts (its start-up steps
//     hold nothing that needs time to put away), and, once the part
//     declares it runs (Env.running), longer than the part's own shutdown
//     timeout.
//   - SIGHUP never stops a part: it re-reads the part's preference file
//     (see reload.go), applies what can be applied live and logs, by key,
//     what needs a restart.

const (
	// startupGrace is the grace after SIGINT/SIGTERM for a part that has
	// not declared it runs yet.
	startupGrace = 2 * time.Second
	// defaultGrace is the grace for a running part whose shutdown takes at
	// most a few seconds (the server's HTTP shutdown: 5s; the agent's last
	// report: 2s), and for the other commands.
	defaultGrace = 15 * time.Second
	// graceMargin is added to a part's configurable shutdown timeout.
	graceMargin = 5 * time.Second
)

// longRunning names the commands that are parts: they log signals and
// reload their preference file on SIGHUP.
var longRunning = map[string]bool{"server": true, "agent": true, "liveupdate": true, "mirror": true, "relay": true}

// process is the signal handling of one vigil process, made by Main. A nil
// *process (commands run by Run alone, as in tests) does nothing.
type process struct {
	cancel context.CancelFunc
	exit   func(code int)
	part   bool // log SIGINT/SIGTERM; SIGHUP is handled
	sigc   chan os.Signal
	done   chan struct{}

	mu      sync.Mutex
	log     *slog.Logger
	running bool
	grace   time.Duration
	rl      *reloader
	reloadc chan struct{} // wakes the reload worker; one pending reload at most
}

// watchSignals starts handling signals for a command: cmd is its name. It
// returns the context the command runs with; stop undoes it all.
func watchSignals(parent context.Context, cmd string, stderr io.Writer, exit func(int)) (context.Context, *process) {
	ctx, cancel := context.WithCancel(parent)
	p := &process{
		cancel:  cancel,
		exit:    exit,
		part:    longRunning[cmd],
		sigc:    make(chan os.Signal, 4),
		done:    make(chan struct{}),
		log:     slog.New(slog.NewTextHandler(stderr, nil)),
		reloadc: make(chan struct{}, 1),
	}
	if p.part {
		p.grace = startupGrace
		signal.Notify(p.sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	} else {
		p.running, p.grace = true, defaultGrace
		signal.Notify(p.sigc, syscall.SIGINT, syscall.SIGTERM)
	}
	go p.loop()
	go p.reloadWorker()
	return ctx, p
}

// stop stops handling signals.
func (p *process) stop() {
	signal.Stop(p.sigc)
	close(p.done)
	p.cancel()
}

func (p *process) logger() *slog.Logger {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log
}

func (p *process) loop() {
	var first os.Signal
	var expired <-chan time.Time
	var grace time.Duration
	for {
		select {
		case <-p.done:
			return
		case s := <-p.sigc:
			if s == syscall.SIGHUP {
				p.hup()
				continue
			}
			if first != nil {
				p.logger().Error(fmt.Sprintf("received %s again; exiting at once", sigName(s)))
				p.exit(128 + int(s.(syscall.Signal)))
				return
			}
			first = s
			p.mu.Lock()
			grace = p.grace
			starting := !p.running
			p.mu.Unlock()
			if p.part {
				msg := fmt.Sprintf("received %s; stopping", sigName(s))
				if starting {
					msg = fmt.Sprintf("received %s while starting; stopping", sigName(s))
				}
				p.logger().Info(msg, "exit_within", grace)
			}
			p.cancel()
			expired = time.After(grace)
		case <-expired:
			p.logger().Error(fmt.Sprintf("still running %s after %s; exiting", grace, sigName(first)))
			p.exit(1)
			return
		}
	}
}

// hup handles SIGHUP: it wakes the reload worker, so that a reload blocked
// on its file never holds up SIGTERM.
func (p *process) hup() {
	p.mu.Lock()
	rl, log := p.rl, p.log
	p.mu.Unlock()
	if rl == nil {
		log.Info("received SIGHUP while starting; nothing to reload yet")
		return
	}
	select {
	case p.reloadc <- struct{}{}:
	default:
		log.Info("received SIGHUP; a reload is pending already")
	}
}

func (p *process) reloadWorker() {
	for {
		select {
		case <-p.done:
			return
		case <-p.reloadc:
		}
		p.mu.Lock()
		rl, log := p.rl, p.log
		p.mu.Unlock()
		log.Info("received SIGHUP; reloading the preference file", "file", rl.file)
		rl.reload(log)
	}
}

// setReloader makes SIGHUP reload with rl.
func (p *process) setReloader(rl *reloader) {
	if p == nil || !p.part {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rl = rl
}

// reloaderOf returns the reloader set, or nil.
func (p *process) reloaderOf() *reloader {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rl
}

// running declares that the part has started and stops on its context
// within grace; log (if not nil) becomes the logger of signal messages.
func (e *Env) running(log *slog.Logger, grace time.Duration) {
	p := e.proc
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if log != nil {
		p.log = log
	}
	p.running, p.grace = true, grace
}

func sigName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}
