package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// parseFrames is the frame format read the simplest way, the reference
// FrameReader is checked against: the datagrams of data, keep-alives left
// out, and whether it ends between frames (io.EOF) or inside one.
func parseFrames(data []byte) ([][]byte, error) {
	var out [][]byte
	for {
		if len(data) == 0 {
			return out, io.EOF
		}
		if len(data) < 2 {
			return out, ErrTruncatedFrame
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data)-2 < n {
			return out, ErrTruncatedFrame
		}
		if n > 0 {
			out = append(out, data[2:2+n])
		}
		data = data[2+n:]
	}
}

// readAll reads every frame of data with a FrameReader, copying each.
func readAll(r io.Reader) ([][]byte, error) { return readFrames(NewFrameReader(r)) }

// readFrames reads every frame of fr, copying each.
func readFrames(fr *FrameReader) ([][]byte, error) {
	var out [][]byte
	for {
		d, err := fr.Next()
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(d))
	}
}

func sameFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestFrameReader(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte{0xab}, MaxFrame)
	frame := func(d []byte) []byte {
		var b bytes.Buffer
		if err := WriteFrame(&b, d); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		in   []byte
		want [][]byte
		err  error // io.EOF: a clean end
	}{
		{"empty stream", nil, nil, io.EOF},
		{"one datagram", frame([]byte("abc")), [][]byte{[]byte("abc")}, io.EOF},
		{"keep-alives only", cat(frame(nil), frame(nil)), nil, io.EOF},
		{"keep-alives around datagrams", cat(frame(nil), frame([]byte("a")), frame(nil), frame(nil), frame([]byte("bc")), frame(nil)),
			[][]byte{[]byte("a"), []byte("bc")}, io.EOF},
		{"largest frame", cat(frame(big), frame([]byte("x"))), [][]byte{big, []byte("x")}, io.EOF},
		{"one byte of a length", cat(frame([]byte("a")), []byte{0}), [][]byte{[]byte("a")}, ErrTruncatedFrame},
		{"length without its datagram", cat(frame([]byte("a")), []byte{0, 3}), [][]byte{[]byte("a")}, ErrTruncatedFrame},
		{"datagram cut short", cat(frame([]byte("a")), []byte{0, 3, 'x', 'y'}), [][]byte{[]byte("a")}, ErrTruncatedFrame},
		{"largest length, short datagram", cat([]byte{0xff, 0xff}, big[:100]), nil, ErrTruncatedFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(bytes.NewReader(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("ended with %v, want %v", err, tc.err)
			}
			if tc.err == ErrTruncatedFrame && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("truncation %v does not wrap io.ErrUnexpectedEOF", err)
			}
			if !sameFrames(got, tc.want) {
				t.Errorf("read %d datagrams %q, want %d %q", len(got), got, len(tc.want), tc.want)
			}
		})
	}
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestFrameReaderFailure: a read failing between frames is returned as
// it is (it truncates nothing); inside a frame it is a truncation that
// wraps it.
func TestFrameReaderFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	_, err := readAll(&failingReader{data: []byte{0, 1, 'a'}, err: boom})
	if err != boom {
		t.Errorf("failure between frames: %v, want %v", err, boom)
	}
	_, err = readAll(&failingReader{data: []byte{0, 2, 'a'}, err: boom})
	if !errors.Is(err, ErrTruncatedFrame) || !errors.Is(err, boom) {
		t.Errorf("failure inside a frame: %v, want ErrTruncatedFrame wrapping %v", err, boom)
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := WriteFrame(&b, make([]byte, MaxFrame+1)); !errors.Is(err, ErrFrameTooLarge) || b.Len() != 0 {
		t.Fatalf("WriteFrame of %d bytes: %v, %d bytes written", MaxFrame+1, err, b.Len())
	}
}

// FuzzFrameReader: whatever the bytes, FrameReader never panics, returns
// exactly the datagrams the format says they hold (none longer than what
// was given) and ends as it says; and datagrams written with WriteFrame,
// keep-alives between them, read back the same.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{}, uint8(3))
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'}, uint8(0))
	f.Add([]byte{0, 5, 'a'}, uint8(1))
	f.Add([]byte{0xff, 0xff, 1, 2, 3}, uint8(7))
	f.Add([]byte{0}, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		// Arbitrary bytes, read against the reference parse.
		got, err := readAll(bytes.NewReader(data))
		want, wantErr := parseFrames(data)
		if !errors.Is(err, wantErr) {
			t.Fatalf("ended with %v, want %v", err, wantErr)
		}
		if !sameFrames(got, want) {
			t.Fatalf("read %q, want %q", got, want)
		}
		total := 0
		for _, d := range got {
			total += 2 + len(d)
		}
		if total > len(data) {
			t.Fatalf("read %d bytes of frames from %d bytes", total, len(data))
		}

		// Round trip: data cut into datagrams of at most cut+1 bytes,
		// each after a keep-alive when its first byte is odd.
		var dgs [][]byte
		var enc bytes.Buffer
		for rest := data; len(rest) > 0; {
			n := min(len(rest), int(cut)+1)
			d := rest[:n]
			rest = rest[n:]
			if d[0]%2 == 1 {
				if err := WriteFrame(&enc, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFrame(&enc, d); err != nil {
				t.Fatal(err)
			}
			dgs = append(dgs, d)
		}
		back, err := readAll(&enc)
		if err != io.EOF || !sameFrames(back, dgs) {
			t.Fatalf("round trip: read %q (%v), wrote %q", back, err, dgs)
		}
	})
}

// TestRelayStreamClient: the client reads the frames of a 200 of the
// stream's media type, and refuses any other answer with an error that
// says what came back.
func TestRelayStreamClient(t *testing.T) {
	t.Parallel()
	var gotAuth, gotAfter, gotAccept string
	mux := http.NewServeMux()
	mux.HandleFunc(RouteRelayStream.MuxPattern("/base"), func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotAfter, gotAccept = r.Header.Get("Authorization"), r.URL.Query().Get("after"), r.Header.Get("Accept")
		switch gotAfter {
		case "7":
			w.Header().Set("Content-Type", DatagramStreamType)
			WriteFrame(w, []byte("one"))
			WriteFrame(w, nil)
			WriteFrame(w, []byte("two"))
		case "8":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html>a proxy's page</html>")
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":"agent a was revoked","reason":"revoked"}`)
		}
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	c := &AgentClient{Client: Client{Base: ts.URL + "/base", Auth: "a.tok"}}

	s, err := c.RelayStream(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readFrames(s.FrameReader)
	s.Close()
	if err != io.EOF || !sameFrames(got, [][]byte{[]byte("one"), []byte("two")}) {
		t.Fatalf("read %q, %v", got, err)
	}
	if gotAuth != "Bearer a.tok" || gotAfter != "7" || gotAccept != DatagramStreamType {
		t.Errorf("request had Authorization %q, after %q, Accept %q", gotAuth, gotAfter, gotAccept)
	}

	if _, err := c.RelayStream(context.Background(), 8); err == nil || !strings.Contains(err.Error(), `"text/html"`) {
		t.Errorf("an answer of another media type: %v", err)
	}
	_, err = c.RelayStream(context.Background(), 9)
	var he *HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusForbidden || he.Reason != ReasonRevoked {
		t.Errorf("a 403: %v, want an HTTPError with the reason", err)
	}
}
