package signatures

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// parseHash parses a .hdb or .hsb line: HASH:SIZE:NAME[:MINFL[:MAXFL]].
func parseHash(line string) (HashSig, error) {
	if strings.TrimSpace(line) == "" {
		return HashSig{}, errors.New("empty line (ClamAV rejects it too; use # for comments)")
	}
	f := strings.Split(line, ":")
	if len(f) < 3 || len(f) > 5 {
		return HashSig{}, fmt.Errorf("want HASH:SIZE:NAME[:MINFL[:MAXFL]], got %d fields", len(f))
	}
	var h HashSig
	switch len(f[0]) {
	case 32:
		h.Algo = MD5
	case 40:
		h.Algo = SHA1
	case 64:
		h.Algo = SHA256
	default:
		return HashSig{}, fmt.Errorf("hash %q has %d hex digits; want 32 (MD5), 40 (SHA-1) or 64 (SHA-256)", truncate(f[0]), len(f[0]))
	}
	var err error
	if h.Hash, err = hex.DecodeString(f[0]); err != nil {
		return HashSig{}, fmt.Errorf("hash %q is not hexadecimal", f[0])
	}
	if err := checkName(f[2]); err != nil {
		return HashSig{}, err
	}
	h.Name = f[2]
	minFL, err := checkFL(f[3:])
	if err != nil {
		return HashSig{}, err
	}
	if f[1] == "*" {
		if len(f) < 4 || minFL < minFLWildcardSize {
			return HashSig{}, fmt.Errorf("size \"*\" needs a minimum functionality level of at least %d in the 4th field, like ClamAV (HASH:*:NAME:%d)",
				minFLWildcardSize, minFLWildcardSize)
		}
		h.Size = AnySize
		return h, nil
	}
	if h.Size, err = parseUint(f[1], "size"); err != nil {
		return HashSig{}, err
	}
	if h.Size == 0 {
		return HashSig{}, errors.New("size 0 is invalid (ClamAV rejects it too)")
	}
	return h, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
