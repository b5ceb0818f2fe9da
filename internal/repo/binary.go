package repo

import (
	"debug/elf"
	"debug/macho"
	"fmt"
)

// CheckBinary reports whether the file at path is an executable for
// goos/goarch: ELF for linux, Mach-O (thin or universal) for darwin, for
// the right processor.
func CheckBinary(path, goos, goarch string) error {
	if err := CheckPlatform(goos, goarch); err != nil {
		return err
	}
	want := goos + "/" + goarch
	switch goos {
	case "linux":
		f, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("%s is not a %s executable: %v", path, want, err)
		}
		defer f.Close()
		m := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Class != elf.ELFCLASS64 || f.Machine != m || f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
			return fmt.Errorf("%s is not a %s executable (ELF %v %v %v)", path, want, f.Class, f.Machine, f.Type)
		}
		return nil
	case "darwin":
		cpu := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]
		if f, err := macho.Open(path); err == nil {
			defer f.Close()
			if f.Cpu != cpu || f.Type != macho.TypeExec {
				return fmt.Errorf("%s is not a %s executable (Mach-O %v %v)", path, want, f.Cpu, f.Type)
			}
			return nil
		}
		ff, err := macho.OpenFat(path)
		if err != nil {
			return fmt.Errorf("%s is not a %s executable: not Mach-O", path, want)
		}
		defer ff.Close()
		for _, a := range ff.Arches {
			if a.Cpu == cpu && a.Type == macho.TypeExec {
				return nil
			}
		}
		return fmt.Errorf("%s is a universal Mach-O file without a %s executable", path, want)
	}
	return fmt.Errorf("unsupported os %q", goos)
}
