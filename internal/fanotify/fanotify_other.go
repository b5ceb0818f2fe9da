//go:build !linux

package fanotify

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// errUnsupported is what every Group method returns off Linux.
var errUnsupported = fmt.Errorf("fanotify: on-access events need Linux: %w", errors.ErrUnsupported)

// Group is a fanotify group; off Linux none can be created.
type Group struct{}

// New returns an error wrapping errors.ErrUnsupported: fanotify is Linux's.
func New(mode Mode, ops Op) (*Group, error) { return nil, errUnsupported }

// Watch returns an error wrapping errors.ErrUnsupported.
func (g *Group) Watch(path string, mount bool) error { return errUnsupported }

// Unwatch returns an error wrapping errors.ErrUnsupported.
func (g *Group) Unwatch(path string, mount bool) error { return errUnsupported }

// Ignore returns an error wrapping errors.ErrUnsupported.
func (g *Group) Ignore(path string) error { return errUnsupported }

// IgnoreFile returns an error wrapping errors.ErrUnsupported.
func (g *Group) IgnoreFile(f *os.File) error { return errUnsupported }

// Pinning reports false.
func (g *Group) Pinning() bool { return false }

// Unignore returns an error wrapping errors.ErrUnsupported.
func (g *Group) Unignore(f *os.File) error { return errUnsupported }

// FlushIgnores returns an error wrapping errors.ErrUnsupported.
func (g *Group) FlushIgnores() error { return errUnsupported }

// ReadEvents returns an error wrapping errors.ErrUnsupported.
func (g *Group) ReadEvents(ctx context.Context, buf []byte) ([]Event, error) {
	return nil, errUnsupported
}

// Respond returns an error wrapping errors.ErrUnsupported.
func (g *Group) Respond(ev *Event, allow bool) error { return errUnsupported }

// Close returns an error wrapping errors.ErrUnsupported.
func (g *Group) Close() error { return errUnsupported }
