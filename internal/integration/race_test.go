//go:build linux && race

package integration

func init() { raceEnabled = true }
