package unpack

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// maxFileSizeCap is the largest max-filesize libclamav accepts
// (cl_engine_set_num: INT_MAX - 2); larger values are cut to it, so files
// of 2 GiB or more are never scanned.
const maxFileSizeCap = math.MaxInt32 - 2

// ParseSize reads a size argument as clamscan reads --max-filesize and
// --max-scansize (common/optparser.c): digits, with an optional K, M or G
// suffix in either case (powers of 1024); the digits as strtoll reads
// them with base 0, so a leading 0 makes them octal; 0, and a value too
// large, give 4 GiB - 1 (UINT_MAX), which is what "0" means to clamscan:
// not "no limit".
func ParseSize(s string) (int64, error) {
	digits := s
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult, digits = 1<<10, s[:n-1]
		case 'm', 'M':
			mult, digits = 1<<20, s[:n-1]
		case 'g', 'G':
			mult, digits = 1<<30, s[:n-1]
		}
	}
	if digits == "" {
		return 0, fmt.Errorf("size %q: not a number with an optional K, M or G", s)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("size %q: not a number with an optional K, M or G", s)
		}
	}
	base := 10
	if len(digits) > 1 && digits[0] == '0' {
		base = 8
	}
	v, err := strconv.ParseInt(digits, base, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return math.MaxUint32, nil
	case err != nil:
		// strtoll stops at the first digit that is not octal.
		end := 0
		for end < len(digits) && digits[end] >= '0' && digits[end] <= '7' {
			end++
		}
		if end < len(digits) {
			return 0, fmt.Errorf("size %q: 8 or 9 in an octal number", s)
		}
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	if v > math.MaxInt64/mult {
		return math.MaxUint32, nil
	}
	v *= mult
	if v == 0 {
		return math.MaxUint32, nil
	}
	return v, nil
}
