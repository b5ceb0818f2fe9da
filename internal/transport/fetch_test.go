package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// countingReader yields an endless stream of 'x' and counts what was read.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestReadLimited(t *testing.T) {
	tests := []struct {
		name    string
		size    int64 // -1: endless
		max     int64
		hint    int64
		wantErr bool
	}{
		{"empty", 0, 10, -1, false},
		{"under", 5, 10, -1, false},
		{"exact", 10, 10, -1, false},
		{"exact with hint", 10, 10, 10, false},
		{"one over", 11, 10, -1, true},
		{"lying hint", 11, 10, 5, true},
		{"endless", -1, 1000, -1, true},
		{"endless, big limit", -1, 1 << 20, -1, true},
		{"zero limit", 1, 0, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr := &countingReader{}
			var r io.Reader = cr
			if tt.size >= 0 {
				r = io.LimitReader(cr, tt.size)
			}
			data, err := readLimited(r, "u", tt.max, tt.hint, nil)
			if tt.wantErr {
				if !IsTooLong(err) {
					t.Fatalf("err = %v, want a length mismatch", err)
				}
			} else if err != nil || int64(len(data)) != tt.size {
				t.Fatalf("got %d bytes, %v; want %d", len(data), err, tt.size)
			}
			if cr.n > tt.max+1 {
				t.Errorf("read %d bytes from the source, limit %d+1", cr.n, tt.max)
			}
		})
	}
}

func TestHTTPFetcher(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes
	var ua atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		ua.Store(r.UserAgent())
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Write(body[:500])
		w.(http.Flusher).Flush()
		w.Write(body[500:])
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 4096)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/liar", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(1<<30))
		w.Write(body)
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gone", http.StatusGone)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "oops", http.StatusInternalServerError)
	})
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:10])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	mux.HandleFunc("/noreply", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []downloadCase{
		{name: "whole file", path: "/file", max: 1000, want: body},
		{name: "more room", path: "/file", max: 1 << 20, want: body},
		{name: "chunked", path: "/chunked", max: 1000, want: body},
		{name: "content-length over limit", path: "/file", max: 999, check: IsTooLong, contains: "Content-Length 1000"},
		{name: "chunked over limit", path: "/chunked", max: 999, check: IsTooLong},
		{name: "endless body", path: "/endless", max: 4096, check: IsTooLong},
		{name: "lying content-length", path: "/liar", max: 1 << 20, check: IsTooLong},
		{name: "404", path: "/missing", max: 100, check: IsNotFound, contains: "not found"},
		{name: "410", path: "/gone", max: 100, check: IsNotFound},
		{name: "500", path: "/broken", max: 100, check: func(err error) bool {
			var h *metadata.ErrDownloadHTTP
			return errors.As(err, &h) && h.StatusCode == 500 && !IsNotFound(err)
		}, contains: "500"},
		{name: "stalled body", path: "/stall", max: 1000, contains: "timed out"},
		{name: "no reply", path: "/noreply", max: 1000, contains: "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewHTTPFetcher(context.Background(), nil, 300*time.Millisecond)
			start := time.Now()
			data, err := f.DownloadFile(srv.URL+tt.path, tt.max, 0)
			tt.verify(t, data, err)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	if got, _ := ua.Load().(string); !strings.HasPrefix(got, "vigil-agent/") {
		t.Errorf("User-Agent %q", got)
	}
}

func TestHTTPFetcherNotFoundIsGoTUFs(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := NewHTTPFetcher(context.Background(), nil, time.Second).DownloadFile(srv.URL+"/metadata/2.root.json", 100, 0)
	// This is exactly the test go-tuf's updater makes when probing roots.
	var h *metadata.ErrDownloadHTTP
	if !errors.As(err, &h) || h.StatusCode != http.StatusNotFound {
		t.Fatalf("err = %v (%T), want a *metadata.ErrDownloadHTTP with 404", err, err)
	}
}

func TestHTTPFetcherCancel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := NewHTTPFetcher(ctx, nil, time.Minute).DownloadFile(srv.URL, 100, 0)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestHTTPFetcherServerDown(t *testing.T) {
	addr := closedPort(t)
	_, err := NewHTTPFetcher(context.Background(), nil, time.Second).DownloadFile("http://"+addr+"/x", 100, 0)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err = %v, want connection refused", err)
	}
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestFTPFetcher(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 100)
	big := bytes.Repeat([]byte("y"), 1<<20)
	files := map[string][]byte{
		"/repo/metadata/1.root.json": body,
		"/repo/targets/big":          big,
		"/repo/empty":                {},
	}
	tests := []downloadCase{
		{name: "whole file", path: "/repo/metadata/1.root.json", max: 1000, want: body},
		{name: "more room", path: "/repo/metadata/1.root.json", max: 1 << 20, want: body},
		{name: "empty file", path: "/repo/empty", max: 10, want: []byte{}},
		{name: "over limit", path: "/repo/metadata/1.root.json", max: 999, check: IsTooLong},
		{name: "far over limit", path: "/repo/targets/big", max: 100, check: IsTooLong},
		{name: "missing", path: "/repo/metadata/2.root.json", max: 100, check: IsNotFound, contains: "550"},
	}
	for _, epsv := range []bool{true, false} {
		name := "EPSV"
		if !epsv {
			name = "PASV"
		}
		t.Run(name, func(t *testing.T) {
			srv := startFakeFTP(t, files, func(s *fakeFTP) { s.noEPSV = !epsv })
			f := NewFTPFetcher(context.Background(), 2*time.Second)
			defer f.Close()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					data, err := f.DownloadFile("ftp://"+srv.addr+tt.path, tt.max, 0)
					tt.verify(t, data, err)
				})
			}
			// The connection is reused, except after the transfers cut
			// short (over limit), after which the state is unknown.
			if n := srv.conns.Load(); n > 3 {
				t.Errorf("%d control connections for %d files", n, len(tests))
			}
			cmds := strings.Join(srv.commands(), " ")
			if !epsv && !strings.Contains(cmds, "EPSV PASV") {
				t.Errorf("no PASV fallback after a refused EPSV: %s", cmds)
			}
			if epsv && strings.Contains(cmds, "PASV") && !strings.Contains(cmds, "EPSV") {
				t.Errorf("EPSV not tried: %s", cmds)
			}
		})
	}
}

func TestFTPFetcherReusesConnection(t *testing.T) {
	srv := startFakeFTP(t, map[string][]byte{"/a": []byte("a"), "/b": []byte("bb")})
	f := NewFTPFetcher(context.Background(), 2*time.Second)
	defer f.Close()
	for _, p := range []string{"/a", "/b", "/missing", "/a"} {
		_, err := f.DownloadFile("ftp://"+srv.addr+p, 10, 0)
		if err != nil && !IsNotFound(err) {
			t.Fatal(err)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Errorf("%d control connections, want 1", n)
	}
	cmds := srv.commands()
	if cmds[0] != "USER" || cmds[1] != "PASS" {
		t.Errorf("commands %v", cmds)
	}
}

func TestFTPFetcherNotFoundIsGoTUFs(t *testing.T) {
	srv := startFakeFTP(t, nil)
	f := NewFTPFetcher(context.Background(), time.Second)
	defer f.Close()
	_, err := f.DownloadFile("ftp://"+srv.addr+"/metadata/2.root.json", 100, 0)
	var h *metadata.ErrDownloadHTTP
	if !errors.As(err, &h) || h.StatusCode != http.StatusNotFound {
		t.Fatalf("err = %v (%T), want a *metadata.ErrDownloadHTTP with 404", err, err)
	}
}

func TestFTPFetcherTimeoutAndCancel(t *testing.T) {
	body := bytes.Repeat([]byte("z"), 1000)
	t.Run("stalled transfer", func(t *testing.T) {
		srv := startFakeFTP(t, map[string][]byte{"/slow": body}, func(s *fakeFTP) { s.stall["/slow"] = 10 })
		f := NewFTPFetcher(context.Background(), 300*time.Millisecond)
		defer f.Close()
		start := time.Now()
		_, err := f.DownloadFile("ftp://"+srv.addr+"/slow", 1000, 0)
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("err = %v, want a timeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("silent server", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				defer c.Close()
				time.Sleep(3 * time.Second) // never says 220
			}
		}()
		f := NewFTPFetcher(context.Background(), 300*time.Millisecond)
		defer f.Close()
		_, err = f.DownloadFile("ftp://"+ln.Addr().String()+"/x", 10, 0)
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("err = %v, want a timeout", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		srv := startFakeFTP(t, map[string][]byte{"/slow": body}, func(s *fakeFTP) { s.stall["/slow"] = 10 })
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		f := NewFTPFetcher(ctx, time.Minute)
		defer f.Close()
		_, err := f.DownloadFile("ftp://"+srv.addr+"/slow", 1000, 0)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("server down", func(t *testing.T) {
		f := NewFTPFetcher(context.Background(), time.Second)
		defer f.Close()
		_, err := f.DownloadFile("ftp://"+closedPort(t)+"/x", 10, 0)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("err = %v, want connection refused", err)
		}
	})
}

// downloadCase is one download of the fetcher tests: the bytes it must
// return, or the error it must fail with.
type downloadCase struct {
	name     string
	path     string
	max      int64
	want     []byte
	check    func(error) bool // the kind of error, when it must fail
	contains string           // what the error must mention
}

func (tt downloadCase) verify(t *testing.T, data []byte, err error) {
	t.Helper()
	if tt.want != nil {
		if err != nil || !bytes.Equal(data, tt.want) {
			t.Fatalf("got %d bytes, %v", len(data), err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, %d bytes", len(data))
	}
	if tt.check != nil && !tt.check(err) {
		t.Errorf("wrong kind of error: %v", err)
	}
	if !strings.Contains(err.Error(), tt.contains) {
		t.Errorf("error %q does not mention %q", err, tt.contains)
	}
}
