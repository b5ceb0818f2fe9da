package server

import (
	"bytes"
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/vigil-fleet/vigil/internal/api"
)

// The check-in is the request the server answers most often, and one of
// its largest costs was encoding/json's reflection over a small, fixed
// shape. decodeCheckIn reads the body the agent daemon sends (a flat JSON
// object of known keys, plain strings and numbers) without reflection, and
// hands anything else (an escape in a string, a key in another case, a
// null, a duplicate of the on-access object, a malformed body) to
// encoding/json, which decides as it always did: the fast path accepts
// only bodies encoding/json accepts, and decodes them to the same value
// (checkinjson_test.go checks both, and a fuzz test compares them).

// bodyBufs holds request body buffers between check-ins.
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decodeCheckIn reads a check-in body into req, answering 400 (as
// decodeBody does) when it is malformed.
func decodeCheckIn(w http.ResponseWriter, r *http.Request, req *api.CheckInRequest) bool {
	buf := bodyBufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			bodyBufs.Put(buf)
		}
	}()
	buf.Reset()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxRequestBody)); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body: %v", err)
		return false
	}
	if parseCheckIn(buf.Bytes(), req) {
		return true
	}
	*req = api.CheckInRequest{}
	return decodeJSON(w, bytes.NewReader(buf.Bytes()), req)
}

// errSlow makes the fast path give the body to encoding/json.
var errSlow = errors.New("not on the fast path")

// ciParser reads the JSON of a check-in; any error sends the body to
// encoding/json.
type ciParser struct {
	b []byte
	i int
}

// parseCheckIn decodes b into req and reports whether it could. When it
// reports false, req holds a partial value the caller discards.
func parseCheckIn(b []byte, req *api.CheckInRequest) bool {
	p := ciParser{b: b}
	if p.object(func(key []byte) error { return p.checkInField(key, req) }) != nil {
		return false
	}
	p.space()
	return p.i == len(p.b)
}

func (p *ciParser) checkInField(key []byte, req *api.CheckInRequest) error {
	var err error
	switch string(key) {
	case "epoch":
		var s []byte
		if s, err = p.rawString(); err == nil {
			req.Epoch, err = parseUint(s)
		}
	case "hostname":
		req.Hostname, err = p.str()
	case "os":
		req.OS, err = p.str()
	case "arch":
		req.Arch, err = p.str()
	case "version":
		req.Version, err = p.str()
	case "defs_version":
		req.DefsVer, err = p.str()
	case "groups":
		req.Groups, err = p.strings()
	case "last_seq":
		req.LastSeq, err = p.uint()
	case "counters":
		if req.Counters != nil {
			// encoding/json merges a second object into the first.
			return errSlow
		}
		req.Counters = map[string]uint64{}
		err = p.object(func(k []byte) error {
			v, err := p.uint()
			req.Counters[string(k)] = v
			return err
		})
	case "on_access":
		if req.OnAccess != nil {
			// encoding/json decodes a second object into the first.
			return errSlow
		}
		oa := &api.OnAccessState{}
		req.OnAccess = oa
		err = p.object(func(k []byte) error { return p.onAccessField(k, oa) })
	case "update":
		if req.Update != nil {
			// encoding/json decodes a second object into the first.
			return errSlow
		}
		u := &api.UpdateState{}
		req.Update = u
		err = p.object(func(k []byte) error { return p.updateField(k, u) })
	default:
		return errSlow
	}
	return err
}

func (p *ciParser) updateField(key []byte, u *api.UpdateState) error {
	var err error
	switch string(key) {
	case "from":
		u.From, err = p.str()
	case "to":
		u.To, err = p.str()
	case "at":
		// time.Time decodes itself from the quoted string, as it does
		// under encoding/json.
		start := p.i
		if _, err = p.rawString(); err == nil {
			err = u.At.UnmarshalJSON(p.b[start:p.i])
		}
	case "bytes":
		u.Bytes, err = p.int64()
	case "full_bytes":
		u.FullBytes, err = p.int64()
	case "deltas":
		var v int64
		v, err = p.int64()
		u.Deltas = int(v)
		if int64(u.Deltas) != v {
			return errSlow
		}
	default:
		return errSlow
	}
	return err
}

// int64 reads a non-negative integer that fits an int64 (a negative one,
// which the server refuses, goes to encoding/json).
func (p *ciParser) int64() (int64, error) {
	v, err := p.uint()
	if err != nil || v > math.MaxInt64 {
		return 0, errSlow
	}
	return int64(v), nil
}

func (p *ciParser) onAccessField(key []byte, oa *api.OnAccessState) error {
	var err error
	switch string(key) {
	case "enabled":
		oa.Enabled, err = p.bool()
	case "running":
		oa.Running, err = p.bool()
	case "mode":
		oa.Mode, err = p.str()
	case "paths":
		oa.Paths, err = p.strings()
	case "error":
		oa.Error, err = p.str()
	default:
		return errSlow
	}
	return err
}

// space skips JSON white space.
func (p *ciParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips white space and consumes c.
func (p *ciParser) next(c byte) error {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return nil
	}
	return errSlow
}

// peek skips white space and reports whether the next byte is c, and
// consumes it if so.
func (p *ciParser) peek(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling field for each key with the
// parser at the value.
func (p *ciParser) object(field func(key []byte) error) error {
	if err := p.next('{'); err != nil {
		return err
	}
	if p.peek('}') {
		return nil
	}
	for {
		p.space()
		key, err := p.rawString()
		if err != nil {
			return err
		}
		if err := p.next(':'); err != nil {
			return err
		}
		p.space()
		if err := field(key); err != nil {
			return err
		}
		if p.peek(',') {
			continue
		}
		return p.next('}')
	}
}

// rawString reads a string without escapes and returns its bytes. A
// string with an escape, a control character or bytes that are not UTF-8
// goes to encoding/json.
func (p *ciParser) rawString() ([]byte, error) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, errSlow
	}
	start, ascii := p.i+1, true
	for j := start; j < len(p.b); j++ {
		c := p.b[j]
		switch {
		case c == '"':
			s := p.b[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, errSlow
			}
			p.i = j + 1
			return s, nil
		case c == '\\' || c < 0x20:
			return nil, errSlow
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, errSlow
}

func (p *ciParser) str() (string, error) {
	s, err := p.rawString()
	return string(s), err
}

// strings reads an array of strings.
func (p *ciParser) strings() ([]string, error) {
	if err := p.next('['); err != nil {
		return nil, err
	}
	out := []string{}
	if p.peek(']') {
		return out, nil
	}
	for {
		p.space()
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		if p.peek(',') {
			continue
		}
		return out, p.next(']')
	}
}

// uint reads a non-negative integer without sign, fraction or exponent.
func (p *ciParser) uint() (uint64, error) {
	j := p.i
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	if j < len(p.b) {
		switch p.b[j] {
		case '.', 'e', 'E':
			return 0, errSlow
		}
	}
	v, err := parseUint(p.b[p.i:j])
	if err == nil {
		p.i = j
	}
	return v, err
}

func (p *ciParser) bool() (bool, error) {
	switch {
	case bytes.HasPrefix(p.b[p.i:], []byte("true")):
		p.i += 4
		return true, nil
	case bytes.HasPrefix(p.b[p.i:], []byte("false")):
		p.i += 5
		return false, nil
	}
	return false, errSlow
}

// parseUint parses decimal digits as JSON writes a number: no leading
// zero, no sign, within uint64.
func parseUint(s []byte) (uint64, error) {
	if len(s) == 0 || len(s) > 1 && s[0] == '0' {
		return 0, errSlow
	}
	var v uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errSlow
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, errSlow
		}
		v = v*10 + d
	}
	return v, nil
}

// writeCheckInResponse writes resp as writeJSON would, without
// reflection for the common answer (no epoch statement).
func writeCheckInResponse(w http.ResponseWriter, resp api.CheckInResponse) {
	if len(resp.EpochProof) > 0 {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	b := make([]byte, 0, 128)
	b = append(b, `{"changed":`...)
	b = strconv.AppendBool(b, resp.Changed)
	b = append(b, `,"epoch":"`...)
	b = strconv.AppendUint(b, resp.Epoch, 10)
	b = append(b, `","latest_seq":`...)
	b = strconv.AppendUint(b, resp.LatestSeq, 10)
	b = append(b, `,"checkin_interval_s":`...)
	b = strconv.AppendInt(b, int64(resp.CheckInSeconds), 10)
	b = append(b, `,"spread_ms":`...)
	b = strconv.AppendInt(b, int64(resp.SpreadMillis), 10)
	b = append(b, "}\n"...)
	h := w.Header()
	// The values are shared by every answer (nothing changes them once
	// set): no allocation per answer, the same headers as writeJSON's.
	h["Content-Type"], h["Cache-Control"] = contentTypeJSON, cacheNoStore
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

var (
	contentTypeJSON = []string{"application/json"}
	cacheNoStore    = []string{"no-store"}
)
