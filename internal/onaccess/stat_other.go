//go:build !linux && !darwin

package onaccess

import "os"

func statOf(fi os.FileInfo) Stat { return portableStat(fi) }
