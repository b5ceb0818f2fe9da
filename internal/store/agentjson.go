package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// The JSON text both stores keep for an agent's on-access state and last
// definitions update (a column each): the keys fixed here rather than by
// the Go field names, times in Unix microseconds as every time the stores
// keep. A nil state is no text (NULL).

type onAccessJSON struct {
	Enabled bool     `json:"enabled"`
	Running bool     `json:"running"`
	Mode    string   `json:"mode,omitempty"`
	Paths   []string `json:"paths,omitempty"`
	Error   string   `json:"error,omitempty"`
}

type updateJSON struct {
	From      string `json:"from,omitempty"`
	To        string `json:"to"`
	AtMicros  int64  `json:"at_us,omitempty"` // absent when zero
	Bytes     int64  `json:"bytes"`
	FullBytes int64  `json:"full_bytes"`
	Deltas    int    `json:"deltas"`
}

// EncodeOnAccess returns o's stored text, nil for a nil o.
func EncodeOnAccess(o *OnAccess) (*string, error) {
	if o == nil {
		return nil, nil
	}
	return encodeText("on-access state", onAccessJSON(*o))
}

// DecodeOnAccess is the inverse of EncodeOnAccess.
func DecodeOnAccess(text string) (*OnAccess, error) {
	var o onAccessJSON
	if err := json.Unmarshal([]byte(text), &o); err != nil {
		return nil, fmt.Errorf("on-access state: %w", err)
	}
	if len(o.Paths) == 0 {
		o.Paths = nil
	}
	return (*OnAccess)(&o), nil
}

// EncodeUpdate returns u's stored text, nil for a nil u.
func EncodeUpdate(u *UpdateState) (*string, error) {
	if u == nil {
		return nil, nil
	}
	j := updateJSON{From: u.From, To: u.To, Bytes: u.Bytes, FullBytes: u.FullBytes, Deltas: u.Deltas}
	if !u.At.IsZero() {
		j.AtMicros = u.At.UnixMicro()
	}
	return encodeText("update state", j)
}

// DecodeUpdate is the inverse of EncodeUpdate.
func DecodeUpdate(text string) (*UpdateState, error) {
	var j updateJSON
	if err := json.Unmarshal([]byte(text), &j); err != nil {
		return nil, fmt.Errorf("update state: %w", err)
	}
	u := &UpdateState{From: j.From, To: j.To, Bytes: j.Bytes, FullBytes: j.FullBytes, Deltas: j.Deltas}
	if j.AtMicros != 0 {
		u.At = time.UnixMicro(j.AtMicros).UTC()
	}
	return u, nil
}

func encodeText(what string, v any) (*string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	s := string(b)
	return &s, nil
}
