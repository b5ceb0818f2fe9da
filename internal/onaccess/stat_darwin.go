package onaccess

import (
	"os"
	"syscall"
)

func statOf(fi os.FileInfo) Stat {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return portableStat(fi)
	}
	return Stat{
		Dev: uint64(uint32(st.Dev)), Ino: st.Ino, Size: st.Size,
		Mtime: st.Mtimespec.Nano(), Ctime: st.Ctimespec.Nano(),
	}
}
