package api

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The relay stream (docs/protocol.md §2.7): GET /v1/relay/stream?after=N
// with an enrolled credential answers 200 with Content-Type
// DatagramStreamType and a body that never ends on its own: a sequence of
// frames, each a 2-byte big-endian length followed by that many bytes of
// one datagram exactly as the server multicasts it (a command envelope,
// a signed reference to one, a beacon). A zero-length frame is a
// keep-alive. The server first sends the announcement of every command
// after N in sequence order, then each new command as it is issued (by
// any instance sharing the store) and a beacon every beacon interval.

// RouteRelayStream is the relay stream, on the agent API.
var RouteRelayStream = Route{"relay_stream", http.MethodGet, "/v1/relay/stream"} // ?after=N

// DatagramStreamType is the media type of the relay stream's body.
const DatagramStreamType = "application/vnd.vigil.datagrams"

// MaxFrame is the largest datagram a frame can carry.
const MaxFrame = 1<<16 - 1

// ErrFrameTooLarge is a datagram longer than MaxFrame given to WriteFrame.
var ErrFrameTooLarge = errors.New("api: datagram longer than a frame can carry")

// WriteFrame writes datagram d as one frame of the relay stream; an empty
// d is a keep-alive.
func WriteFrame(w io.Writer, d []byte) error {
	if len(d) > MaxFrame {
		return ErrFrameTooLarge
	}
	var h [2]byte
	binary.BigEndian.PutUint16(h[:], uint16(len(d)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(d)
	return err
}

// FrameReader reads the frames of a relay stream.
type FrameReader struct {
	r   *bufio.Reader
	buf []byte
}

// NewFrameReader reads frames from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// ErrTruncatedFrame is a stream that ended inside a frame.
var ErrTruncatedFrame = errors.New("api: relay stream ended inside a frame")

// Next returns the next datagram, skipping keep-alives. The slice is valid
// until the next call. It returns io.EOF when the stream ends between
// frames, the read's error when it fails between frames, and
// ErrTruncatedFrame (wrapping the read's error) inside one.
func (f *FrameReader) Next() ([]byte, error) {
	for {
		var h [2]byte
		if n, err := io.ReadFull(f.r, h[:]); err != nil {
			if n == 0 {
				return nil, err // io.EOF, or why the stream failed
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%w: %w", ErrTruncatedFrame, err)
		}
		n := int(binary.BigEndian.Uint16(h[:]))
		if n == 0 {
			continue
		}
		if cap(f.buf) < n {
			f.buf = make([]byte, n, MaxFrame)
		}
		f.buf = f.buf[:n]
		if _, err := io.ReadFull(f.r, f.buf); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%w: %w", ErrTruncatedFrame, err)
		}
		return f.buf, nil
	}
}

// DatagramStream is an open relay stream.
type DatagramStream struct {
	*FrameReader
	body io.ReadCloser
}

// Close ends the stream.
func (s *DatagramStream) Close() error { return s.body.Close() }

// RelayStream opens the relay stream of the datagrams after sequence
// after (GET /v1/relay/stream). The stream lasts until ctx is done, the
// server ends it or Close; the client's HTTP timeout, if any, must allow
// that (use one without Timeout). Non-2xx answers return *HTTPError; an
// answer of another media type is an error.
func (c *AgentClient) RelayStream(ctx context.Context, after uint64) (*DatagramStream, error) {
	q := url.Values{"after": {strconv.FormatUint(after, 10)}}
	req, err := http.NewRequestWithContext(ctx, RouteRelayStream.Method, RouteRelayStream.URL(c.Base, q), nil)
	if err != nil {
		return nil, err
	}
	if c.Auth != "" {
		req.Header.Set("Authorization", "Bearer "+c.Auth)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	req.Header.Set("Accept", DatagramStreamType)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, &HTTPError{Code: resp.StatusCode, Message: e.Error, Reason: e.Reason}
	}
	if ct := resp.Header.Get("Content-Type"); ct != DatagramStreamType {
		resp.Body.Close()
		return nil, fmt.Errorf("relay stream: the server answered %q, not %s (is the base URL a Vigil server's agent API?)", ct, DatagramStreamType)
	}
	return &DatagramStream{FrameReader: NewFrameReader(resp.Body), body: resp.Body}, nil
}
