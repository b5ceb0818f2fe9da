package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"time"

	"github.com/vigil-fleet/vigil/internal/api"
)

// The generator's closed loop measured the server less than it measured
// itself: Go's HTTP client, encoding/json and a fresh body per request cost
// it about four times wrk's CPU per check-in, on the same cores as the
// server. A worker of RunCheckIns over plain HTTP therefore talks HTTP/1.1
// itself, as wrk does: one keep-alive connection per worker, each agent's
// request (headers and JSON body) encoded once and again only when what it
// reports changed (its epoch or last sequence), the answer read into the
// worker's buffer and its two figures (epoch, latest_seq) picked out
// without reflection. An answer with an epoch statement, or one the
// picker does not recognise, goes through encoding/json and the same
// handling as Fleet.CheckIn.

// checkInConn is one worker's connection and buffers.
type checkInConn struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
	body []byte
}

// rawCheckIns reports whether RunCheckIns may use checkInConn: the fleet
// talks plain HTTP.
func (f *Fleet) rawCheckIns() bool {
	u, err := url.Parse(f.cfg.NodeCommURL)
	return err == nil && u.Scheme == "http"
}

// checkInRequest returns agent a's check-in request as bytes on the wire,
// encoding it again when its epoch or last sequence changed. Its counters
// are those at encoding time: they change when commands execute, which
// moves the last sequence too.
func (f *Fleet) checkInRequest(a *simAgent) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	epoch, last := a.id.Epoch, a.core.LastSeq()
	if a.wire != nil && a.wireEpoch == epoch && a.wireSeq == last {
		return a.wire, nil
	}
	body, err := json.Marshal(api.CheckInRequest{
		Epoch: epoch, Hostname: a.id.Hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Version: Version,
		Groups: f.cfg.Groups, LastSeq: last, Counters: a.core.Count.Snapshot(),
	})
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(api.RouteCheckIn.URL(f.cfg.NodeCommURL, nil))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		u.RequestURI(), u.Host, a.client.Auth, len(body))
	b.Write(body)
	a.wire, a.wireEpoch, a.wireSeq = b.Bytes(), epoch, last
	return a.wire, nil
}

// checkInRaw is Fleet.CheckIn over the worker's connection cc.
func (f *Fleet) checkInRaw(ctx context.Context, cc *checkInConn, i int) error {
	a := f.agents[i]
	req, err := f.checkInRequest(a)
	if err != nil {
		return err
	}
	status, body, err := cc.roundTrip(ctx, req)
	if err != nil {
		return err
	}
	if status != 200 {
		var e api.Error
		json.Unmarshal(body, &e)
		return fmt.Errorf("check-in: HTTP %d: %s", status, e.Error)
	}
	epoch, ok1 := pickQuoted(body, `"epoch":"`)
	latest, ok2 := pickNumber(body, `"latest_seq":`)
	if ok1 && ok2 && !bytes.Contains(body, []byte(`"epoch_proof"`)) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if epoch != a.id.Epoch {
			return fmt.Errorf("server epoch %d differs from the agent's %d and the answer has no epoch statement", epoch, a.id.Epoch)
		}
		a.core.Learn(latest)
		a.armFetchLocked()
		return nil
	}
	var resp api.CheckInResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("check-in answer: %w", err)
	}
	return f.checkInAnswer(a, resp)
}

// roundTrip writes req on the connection (dialling it first if needed)
// and reads the answer's status and body, which stays valid until the
// next round trip. A broken connection is closed and dialled again on the
// next call.
func (cc *checkInConn) roundTrip(ctx context.Context, req []byte) (int, []byte, error) {
	if cc.c == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", cc.addr)
		if err != nil {
			return 0, nil, err
		}
		cc.c = c
		if cc.r == nil {
			cc.r = bufio.NewReaderSize(c, 4096)
		} else {
			cc.r.Reset(c)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		cc.c.SetDeadline(dl.Add(time.Second)) // the run's end, and a second to finish
	}
	status, body, keep, err := cc.exchange(req)
	if err != nil || !keep {
		cc.close()
	}
	return status, body, err
}

func (cc *checkInConn) close() {
	if cc.c != nil {
		cc.c.Close()
		cc.c = nil
	}
}

// exchange writes req and reads one answer: its status, body, and whether
// the connection stays open.
func (cc *checkInConn) exchange(req []byte) (int, []byte, bool, error) {
	if _, err := cc.c.Write(req); err != nil {
		return 0, nil, false, err
	}
	line, err := cc.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, false, fmt.Errorf("check-in: bad status line %q", line)
	}
	st, ok := digits(line[9:12])
	if !ok {
		return 0, nil, false, fmt.Errorf("check-in: bad status line %q", line)
	}
	status := int(st)
	length, keep := -1, true
	for {
		h, err := cc.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, false, fmt.Errorf("check-in: bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := digits(value)
			if !ok || n > 1<<20 {
				return 0, nil, false, fmt.Errorf("check-in: bad Content-Length %q", value)
			}
			length = int(n)
		case bytes.EqualFold(name, []byte("Connection")):
			keep = !bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, nil, false, errors.New("check-in: a chunked answer (the server answers with a length)")
		}
	}
	if length < 0 {
		return 0, nil, false, errors.New("check-in: an answer without Content-Length")
	}
	if cap(cc.body) < length {
		cc.body = make([]byte, length)
	}
	cc.body = cc.body[:length]
	if _, err := io.ReadFull(cc.r, cc.body); err != nil {
		return 0, nil, false, err
	}
	return status, cc.body, keep, nil
}

// pickQuoted finds key (ending in an opening quote) in b and parses the
// decimal digits up to the closing quote.
func pickQuoted(b []byte, key string) (uint64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, false
	}
	return digits(rest[:j])
}

// pickNumber finds key in b and parses the decimal digits after it.
func pickNumber(b []byte, key string) (uint64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	return digits(rest[:j])
}

// digits parses decimal digits within uint64 (no sign, no conversion to
// a string: nothing allocated).
func digits(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}
