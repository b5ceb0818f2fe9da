//go:build !unix

package liveupdate

// oNonblock has no portable equivalent here; special files are refused
// after they are opened.
const oNonblock = 0
