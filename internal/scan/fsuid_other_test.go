//go:build !linux

package scan

import "errors"

func setfsuid(int) error { return errors.New("setfsuid is Linux-only") }
