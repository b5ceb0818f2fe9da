package command

// Result statuses: what an agent reports as the outcome of a command
// (docs/protocol.md §2.5).
const (
	StatusOK          = "ok"
	StatusError       = "error"
	StatusUnsupported = "unsupported"
	StatusExpired     = "expired"
	StatusInterrupted = "interrupted"
)

// ValidStatus reports whether s is a known result status.
func ValidStatus(s string) bool {
	switch s {
	case StatusOK, StatusError, StatusUnsupported, StatusExpired, StatusInterrupted:
		return true
	}
	return false
}
