package signatures

import (
	"crypto/md5"
	"encoding/hex"
)

func md5sum(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}
