// Package idleconn wraps a net.Conn so that a peer that stops answering
// cannot hang its user: every Read and Write must make progress within a
// timeout, and the connection is closed when a context ends. Vigil's FTP
// clients (the agents' updater, the mirror and vigil doctor) dial through
// it, since the FTP client library takes a dial function but no context.
package idleconn

import (
	"context"
	"net"
	"sync"
	"time"
)

// Conn is a net.Conn whose every Read and Write has a deadline of timeout
// from its start, and which is closed when its context ends.
type Conn struct {
	net.Conn
	timeout time.Duration
	stop    func() bool
	once    sync.Once
}

// New wraps c. A timeout of zero or less sets no deadlines; c is closed
// as soon as ctx is done, which ends any Read or Write in progress.
func New(ctx context.Context, c net.Conn, timeout time.Duration) *Conn {
	return &Conn{Conn: c, timeout: timeout, stop: context.AfterFunc(ctx, func() { _ = c.Close() })}
}

func (c *Conn) Read(b []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(b)
}

func (c *Conn) Write(b []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Write(b)
}

// Close closes the connection and releases its context watch.
func (c *Conn) Close() error {
	c.once.Do(func() { c.stop() })
	return c.Conn.Close()
}
